"""The commands that run inside jobs: ``worker`` (one scan) and ``group-step``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add the commands that run inside jobs to ``app``: ``worker`` and ``group-step``."""
    app.command("worker")(worker_command)
    app.command("group-step")(group_step_command)


def worker_command(
    spec: Annotated[str | None, typer.Option(
        "--spec", metavar="URI", help="The scan's spec: a path, file:// or s3:// URI.")] = None,
    manifest: Annotated[str | None, typer.Option(
        "--manifest", metavar="URI",
        help="A run's manifest; the scan is chosen by --index, AWS_BATCH_JOB_ARRAY_INDEX "
             "or SLURM_ARRAY_TASK_ID.")] = None,
    pack: Annotated[str | None, typer.Option(
        "--pack", metavar="URI",
        help="A spec pack: the scan is chosen as for --manifest, read with ranged GETs.")]
    = None,
    index: Annotated[int | None, typer.Option(
        help="Position in the manifest (overrides the array variables).")] = None,
    index_base: Annotated[int, typer.Option(
        help="The number the array counts from (Slurm's --array=1-N: 1).")] = 0,
    index_offset: Annotated[int, typer.Option(
        help="Added to the array index: the manifest position of this array's index 0 "
             "(a run split into arrays by the cluster's MaxArraySize).", min=0)] = 0,
    attempt: Annotated[int | None, typer.Option(
        help="Attempt number (default: AWS_BATCH_JOB_ATTEMPT, SLURM_RESTART_COUNT+1, 1).",
        min=1)] = None,
    job_id: Annotated[str | None, typer.Option(
        help="Executor job id to record (default: AWS_BATCH_JOB_ID, SLURM_JOB_ID).")] = None,
    scratch: Annotated[Path | None, typer.Option(
        help="Folder for the scratch space (default: $BIDSBATCH_SCRATCH, $TMPDIR).")] = None,
    keep_scratch: Annotated[bool, typer.Option(
        help="Keep the scratch folder of a failed attempt (for debugging).")] = False,
    force: Annotated[bool, typer.Option(
        help="Run even when the scan is already done.")] = False,
    timeout: Annotated[float | None, typer.Option(
        metavar="MINUTES", help="App timeout in minutes (default: the spec's).", min=0.001)]
    = None,
    transfers: Annotated[int, typer.Option(
        help="Files (or parts) transferred at once.", min=1, max=32)] = 16,
    transfer_retries: Annotated[int, typer.Option(
        help="Retry rounds for transfers that failed transiently, on top of the SDK's.",
        min=0, max=10)] = 3,
) -> None:
    """Process one scan inside a job: stage in, run the app, stage out, commit.

    Exits with the app's own code when it fails; 75 on a transient storage
    fault (retry the job); 124 on timeout; 127 when the app is not found.
    """
    from ..worker_entry import WorkerJob, run_job

    raise typer.Exit(run_job(WorkerJob(
        spec=spec, manifest=manifest, pack=pack, index=index, index_base=index_base,
        index_offset=index_offset, attempt=attempt,
        job_id=job_id, scratch=scratch, keep_scratch=keep_scratch, force=force,
        timeout_minutes=timeout, transfers=transfers, transfer_retries=transfer_retries,
    )))


def group_step_command(
    run: Annotated[str, typer.Option("--run", metavar="URI",
                                     help="The run: a run directory or a run.json URI.")],
    scratch: Annotated[Path | None, typer.Option(help="Folder for the scratch space.")] = None,
) -> None:
    """Run the pipeline's group step over a run's output (what the group job runs)."""
    from ..group import run_group_step

    code = run_group_step(run, scratch=scratch)
    if code:
        raise typer.Exit(code)
