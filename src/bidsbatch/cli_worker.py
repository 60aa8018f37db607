"""``bidsbatch worker``: the command that runs inside a job and processes one scan."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Annotated

import typer

from .console import err_console
from .errors import StorageError, TransientStorageError, UsageError


def register(app: typer.Typer) -> None:
    """Add the ``worker`` command to ``app``."""
    app.command("worker")(worker_command)


def worker_command(
    spec: Annotated[str | None, typer.Option(
        "--spec", metavar="URI", help="The scan's spec: a path, file:// or s3:// URI.")] = None,
    manifest: Annotated[str | None, typer.Option(
        "--manifest", metavar="URI",
        help="A run's manifest; the scan is chosen by --index, AWS_BATCH_JOB_ARRAY_INDEX "
             "or SLURM_ARRAY_TASK_ID.")] = None,
    index: Annotated[int | None, typer.Option(
        help="Position in the manifest (overrides the array variables).")] = None,
    index_base: Annotated[int, typer.Option(
        help="The number the array counts from (Slurm's --array=1-N: 1).")] = 0,
    attempt: Annotated[int | None, typer.Option(
        help="Attempt number (default: AWS_BATCH_JOB_ATTEMPT, SLURM_RESTART_COUNT+1, 1).",
        min=1)] = None,
    job_id: Annotated[str | None, typer.Option(
        help="Executor job id to record (default: AWS_BATCH_JOB_ID, SLURM_JOB_ID).")] = None,
    scratch: Annotated[Path | None, typer.Option(
        help="Folder for the scratch space (default: $BIDSBATCH_SCRATCH, $TMPDIR).")] = None,
    keep_scratch: Annotated[bool, typer.Option(
        help="Keep the scratch folder at the end (for debugging).")] = False,
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
    from .worker import (
        EX_TEMPFAIL,
        Terminated,
        WorkerOptions,
        array_index,
        attempt_number,
        executor_job_id,
        load_manifest_spec,
        load_spec,
        run_worker,
    )

    if (spec is None) == (manifest is None):
        raise UsageError("give exactly one of --spec URI and --manifest URI")
    environ = dict(os.environ)
    try:
        if spec is not None:
            the_spec = load_spec(spec)
        else:
            assert manifest is not None
            position = array_index(index, environ, base=index_base)
            if position is None:
                raise UsageError(
                    "--manifest needs an index",
                    hint="pass --index, or run as an array job (AWS_BATCH_JOB_ARRAY_INDEX, "
                         "SLURM_ARRAY_TASK_ID)",
                )
            the_spec = load_manifest_spec(manifest, position)
    except TransientStorageError as exc:
        # Reading the spec is part of the job: a storage fault here is retryable too.
        err_console.print(f"[bold red]error:[/] {exc.message}", highlight=False)
        raise typer.Exit(EX_TEMPFAIL) from None
    except StorageError as exc:
        # A spec or manifest that cannot be read is a usage error (exit 2, as documented).
        raise UsageError(f"cannot read the spec: {exc.message}", hint=exc.hint) from None

    options = WorkerOptions(
        scratch=scratch, keep_scratch=keep_scratch, force=force,
        attempt=attempt_number(attempt, environ), job_id=executor_job_id(job_id, environ),
        timeout_seconds=timeout * 60 if timeout is not None else None,
        max_workers=transfers, retries=transfer_retries,
    )

    def on_signal(signum: int, _frame: object) -> None:
        raise Terminated(signum)

    # Batch stops a job (and ECS a reclaimed Spot task) with SIGTERM, then SIGKILL:
    # stop the app and clean up in between, and leave no marker.
    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        code = run_worker(the_spec, options=options, environ=environ)
    except Terminated as exc:
        err_console.print(f"[yellow]worker stopped by signal {exc.signum}[/]")
        code = 128 + exc.signum
    finally:
        signal.signal(signal.SIGTERM, previous)
    raise typer.Exit(code)
