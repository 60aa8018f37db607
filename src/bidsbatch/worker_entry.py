"""The worker as a process: what ``bidsbatch worker`` runs, and what a forked local worker runs.

:func:`run_job` finds the scan (a spec, or a manifest and an array index),
runs :func:`bidsbatch.worker.run_worker` with SIGTERM turned into a clean
stop, and returns the exit code; errors are printed as one line. The CLI's
``worker`` command only parses its options into a :class:`WorkerJob`; the
local executor's supervisor calls :func:`run_job` directly in a forked child,
without the CLI.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .console import err_console, print_error
from .errors import (
    EX_TEMPFAIL,
    BidsbatchError,
    StorageError,
    TransientStorageError,
    UsageError,
)

if TYPE_CHECKING:
    from .specs import Spec


@dataclass(frozen=True)
class WorkerJob:
    """One worker invocation: which scan, and how (the ``worker`` command's options)."""

    spec: str | None = None
    manifest: str | None = None
    #: A spec pack (``specpack``): the child reads only its own spec, by index.
    pack: str | None = None
    index: int | None = None
    index_base: int = 0
    #: Added to the array index: the manifest position of this array's index 0.
    index_offset: int = 0
    attempt: int | None = None
    job_id: str | None = None
    scratch: Path | None = None
    keep_scratch: bool = False
    force: bool = False
    timeout_minutes: float | None = None
    transfers: int = 16
    transfer_retries: int = 3


def run_job(job: WorkerJob, *, environ: Mapping[str, str] | None = None,
            loaded: Spec | None = None) -> int:
    """Process the job's scan; the exit code (the app's own when it fails, 75 to retry).

    ``loaded`` is the job's spec already read (a forked local worker's), not read again.
    """
    try:
        return _run(job, dict(os.environ if environ is None else environ), loaded)
    except BidsbatchError as exc:
        print_error(exc)
        return exc.exit_code


def _run(job: WorkerJob, environ: dict[str, str], loaded: Spec | None) -> int:
    from .worker import (
        Terminated,
        WorkerOptions,
        array_index,
        attempt_number,
        executor_job_id,
        load_manifest_spec,
        load_spec,
        run_worker,
    )

    if sum(x is not None for x in (job.spec, job.manifest, job.pack)) != 1:
        raise UsageError("give exactly one of --spec URI, --manifest URI and --pack URI")
    try:
        if loaded is not None:
            the_spec = loaded
        elif job.spec is not None:
            the_spec = load_spec(job.spec)
        else:
            position = array_index(job.index, environ, base=job.index_base)
            if position is None:
                raise UsageError(
                    f"--{'pack' if job.pack is not None else 'manifest'} needs an index",
                    hint="pass --index, or run as an array job (AWS_BATCH_JOB_ARRAY_INDEX, "
                         "SLURM_ARRAY_TASK_ID)",
                )
            if job.pack is not None:
                from .specpack import load_uri

                the_spec = load_uri(job.pack, position + job.index_offset)
            else:
                assert job.manifest is not None
                the_spec = load_manifest_spec(job.manifest, position + job.index_offset)
    except TransientStorageError as exc:
        # Reading the spec is part of the job: a storage fault here is retryable too.
        err_console.print(f"[bold red]error:[/] {exc.message}", highlight=False)
        return EX_TEMPFAIL
    except StorageError as exc:
        # A spec or manifest that cannot be read is a usage error (exit 2, as documented).
        raise UsageError(f"cannot read the spec: {exc.message}", hint=exc.hint) from None

    options = WorkerOptions(
        scratch=job.scratch, keep_scratch=job.keep_scratch, force=job.force,
        attempt=attempt_number(job.attempt, environ),
        job_id=executor_job_id(job.job_id, environ),
        timeout_seconds=job.timeout_minutes * 60 if job.timeout_minutes is not None else None,
        max_workers=job.transfers, retries=job.transfer_retries,
    )

    def on_signal(signum: int, _frame: object) -> None:
        raise Terminated(signum)

    # Batch stops a job (and ECS a reclaimed Spot task) with SIGTERM, then SIGKILL:
    # stop the app and clean up in between, and leave no marker.
    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        return run_worker(the_spec, options=options, environ=environ)
    except Terminated as exc:
        err_console.print(f"[yellow]worker stopped by signal {exc.signum}[/]")
        return 128 + exc.signum
    finally:
        signal.signal(signal.SIGTERM, previous)
