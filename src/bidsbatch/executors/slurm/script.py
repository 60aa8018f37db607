"""The job scripts: what every array task (and the group job) runs, written to the run dir.

A script is readable on its own: its ``#SBATCH`` lines say what it asks
for, its last line is the one command it runs. Every value in it is quoted
(``shlex.quote``; sbatch reads quotes in ``#SBATCH`` lines the same way),
and the values that could come from a dataset or a path never reach a shell
unquoted. What differs per chunk of a submission (``--array`` and the index
offset) is given on the ``sbatch`` command line and as the script's first
argument, so one script serves every chunk.
"""

from __future__ import annotations

import math
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from ...pipelines import Resources
from .settings import SlurmSettings

#: Staging in and out comes on top of the app's own timeout (the worker enforces that).
STAGING_MINUTES = 30


def job_name(run_id: str) -> str:
    """Every job of a run carries its id: one ``squeue --name`` finds them all."""
    return f"bb-{run_id}"


def bidsbatch_argv() -> list[str]:
    """How a job starts bidsbatch: the console script next to this Python, else ``-m``."""
    script = Path(sys.executable).parent / "bidsbatch"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from bidsbatch.cli.app import run; run()"]


@dataclass(frozen=True)
class JobShape:
    """What one task asks Slurm for."""

    cpus: int
    memory_mib: int
    gpus: int
    time_minutes: int

    @classmethod
    def of(cls, resources: Resources) -> JobShape:
        return cls(cpus=max(1, math.ceil(resources.vcpus)), memory_mib=resources.memory_mib,
                   gpus=resources.gpus,
                   time_minutes=resources.timeout_minutes + STAGING_MINUTES)


def sbatch_options(*, name: str, output: Path, shape: JobShape,
                   settings: SlurmSettings) -> list[str]:
    """The options every job of a submission shares (in the script's ``#SBATCH`` lines)."""
    opts = [
        f"--job-name={name}",
        f"--output={output}",
        # every attempt of a requeued task appends to the same file
        "--open-mode=append",
        f"--cpus-per-task={shape.cpus}",
        f"--mem={shape.memory_mib}M",
        f"--time={shape.time_minutes}",
        # a task whose node failed (or that was preempted) runs again: a new attempt
        "--requeue",
    ]
    if shape.gpus:
        opts.append(f"--gres=gpu:{shape.gpus}")
    for flag, value in (("partition", settings.slurm_partition),
                        ("account", settings.slurm_account), ("qos", settings.slurm_qos)):
        if value:
            opts.append(f"--{flag}={value}")
    opts.extend(settings.extra)
    return opts


def _sbatch_line(option: str) -> str:
    name, sep, value = option.partition("=")
    return f"#SBATCH {name}{sep}{shlex.quote(value)}" if sep else f"#SBATCH {name}"


def render(*, title: str, options: list[str], env: dict[str, str], argv: list[str],
           takes_offset: bool) -> str:
    """A bash job script: header comments, ``#SBATCH`` lines, exports, one ``exec``."""
    lines = ["#!/bin/bash", f"# {title}", "# written by bidsbatch; submitted with sbatch "
             + ("--array=… SCRIPT OFFSET" if takes_offset else "SCRIPT")]
    lines += [_sbatch_line(o) for o in options]
    lines += ["set -eu"]
    # apps installed next to bidsbatch (the same venv) are found without activating it
    lines += [f'export PATH={shlex.quote(str(Path(sys.executable).parent))}"${{PATH:+:$PATH}}"']
    lines += [f"export {k}={shlex.quote(v)}" for k, v in sorted(env.items())]
    command = " ".join(shlex.quote(a) for a in argv)
    if takes_offset:
        lines += ['offset="${1:?the manifest position of index 0 is the first argument}"',
                  # the task's own name in the marker: the array id and index, as in its log
                  f'exec {command} --index-offset "$offset" '
                  '--job-id "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"']
    else:
        lines += [f"exec {command}"]
    return "\n".join(lines) + "\n"


def array_script(*, run_id: str, submission: int, manifest: Path, log_dir: Path,
                 shape: JobShape, settings: SlurmSettings, force: bool = False) -> str:
    """The script of submission ``submission``: task ``i`` runs manifest entry ``offset + i``."""
    options = sbatch_options(name=job_name(run_id), output=log_dir / "%A_%a.log",
                             shape=shape, settings=settings)
    argv = [*bidsbatch_argv(), "worker", "--manifest", str(manifest),
            *(["--force"] if force else [])]
    return render(title=f"bidsbatch run {run_id}, submission {submission}: one scan per "
                  "array task", options=options, env=settings.job_env, argv=argv,
                  takes_offset=True)


def group_script(*, run_id: str, run_dir: Path, log_dir: Path, shape: JobShape,
                 settings: SlurmSettings) -> str:
    """The group step's script: the guard (every scan done?) then ``group-step``."""
    options = sbatch_options(name=job_name(run_id), output=log_dir / "group-%j.log",
                             shape=shape, settings=settings)
    argv = [sys.executable, "-m", "bidsbatch.executors.slurm.group_job", str(run_dir)]
    return render(title=f"bidsbatch run {run_id}: the group step, after every array",
                  options=options, env=settings.job_env, argv=argv, takes_offset=False)
