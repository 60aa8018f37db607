"""The local executor's settings: how many scans at once, and where scratch goes."""

from __future__ import annotations

from dataclasses import dataclass

from ..settings import ExecutorSettings, option

#: What scratch is where the local executor's options do not reach.
KEEP_AND_WORK_ELSEWHERE = (
    "a Slurm task's scratch is $BIDSBATCH_SCRATCH, else $TMPDIR of its node (sbatch "
    "passes your environment on); an AWS Batch job's is its container's disk "
    "(resources.disk_gib), gone with the job: a failed scan's crash files are kept in "
    "OUTPUT/.bidsbatch/failed/ on every executor")


@dataclass(frozen=True)
class LocalSettings(ExecutorSettings):
    """Settings of ``--executor local``."""

    jobs: int | None = option(
        flag="--jobs", short="-j", on_retry=True,
        help="Local executor: scans at once (default: as many as the CPUs and memory fit "
             "for the pipeline's resources).")
    scratch: str | None = option(
        flag="--work-dir", short="-w", aliases=("--scratch",), metavar="DIR",
        help="Where each worker's scratch folder goes (its inputs, out/, work/ and tmp/), as "
             "BIDS Apps' -w (default: $BIDSBATCH_SCRATCH, else $TMPDIR).",
        elsewhere=KEEP_AND_WORK_ELSEWHERE)
    keep_scratch: bool | None = option(
        flag="--keep-scratch", on_retry=True,
        help="Keep the scratch folder of a failed scan (and say where), for debugging.",
        elsewhere=KEEP_AND_WORK_ELSEWHERE)
