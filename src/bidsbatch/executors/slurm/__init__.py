"""The Slurm executor: array jobs on an HPC cluster.

``executor.py`` is the executor; ``submit.py`` (manifest, job script, one
sbatch per chunk), ``poll.py`` (one squeue per look, markers, sacct if any),
``states.py`` (Slurm states as scan states), ``logs.py`` (a task's log
tail), ``script.py`` (the job scripts), ``files.py`` (where they live),
``commands.py`` (sbatch, squeue, scontrol, scancel, sacct as argv lists),
``group_job.py`` (what the group job runs), ``settings.py`` its options.
"""

from __future__ import annotations

from ..registry import Engine
from .settings import SlurmSettings

ENGINE = Engine(
    name="slurm",
    description="Slurm array jobs on an HPC cluster (one sbatch per MaxArraySize scans, "
                "one squeue per look)",
    settings=SlurmSettings,
    executor="bidsbatch.executors.slurm.executor:SlurmExecutor",
)
