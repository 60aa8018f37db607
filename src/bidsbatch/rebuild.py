"""Rebuild a run's ledger from what the output says (``bidsbatch status RUN --rebuild``).

The ledger is a record, not the truth: a scan is done when its completion
marker matches its spec, and the failure record says why its last attempt
failed. A damaged ledger (random bytes, truncated, a folder in its place) is
moved aside, never deleted, and a new one is written from the markers and
the failure records. Which executor ran the run is not recorded there: the
next ``run`` records it again (and a remote executor finds its jobs again).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .errors import BidsbatchError
from .executors.registry import DEFAULT_EXECUTOR
from .ledger import Ledger
from .markers import failed_key, is_done, read_marker
from .runlock import run_lock
from .runs import RunDir
from .states import ScanState
from .storage import open_location


@dataclass(frozen=True)
class Rebuilt:
    moved_aside: Path | None
    succeeded: int
    failed: int
    unknown: int


def rebuild_ledger(run: RunDir) -> Rebuilt:
    """Move the ledger aside and write a new one from the output's records."""
    info = run.info()
    specs = run.specs()
    with run_lock(run.path):  # not while a supervisor of this run writes to it
        aside = _move_aside(run.ledger_path)
        output = open_location(info.output)
        ok = bad = 0
        with Ledger.open(run.ledger_path) as ledger:
            ledger.add_scans(info.scans)
            with ledger.transaction():
                for spec in specs:
                    marker = read_marker(output, spec.scan_id)
                    if is_done(spec, marker):
                        assert marker is not None
                        ledger.update(spec.scan_id, state=ScanState.SUCCEEDED, exit_code=0,
                                      attempts=marker.attempt, started_at=marker.started_at,
                                      finished_at=marker.finished_at,
                                      job_id=marker.executor_job_id,
                                      reason="rebuilt from its completion marker")
                        ok += 1
                        continue
                    failure = _failure(output, spec.scan_id, spec.config_hash)
                    if failure is not None:
                        ledger.update(spec.scan_id, state=ScanState.FAILED,
                                      exit_code=failure.get("exit_code"),
                                      attempts=int(failure.get("attempt") or 1),
                                      reason=str(failure.get("reason") or "failed"))
                        bad += 1
            if (run.path / "supervisor.log").exists():
                # Only the default engine (local) keeps a supervisor's log in the run dir.
                ledger.record_executor(DEFAULT_EXECUTOR, {})
    return Rebuilt(aside, ok, bad, len(specs) - ok - bad)


def _move_aside(path: Path) -> Path | None:
    if not (path.exists() or path.is_symlink()):
        return None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = path.with_name(f"{path.name}.damaged-{stamp}")
    try:
        os.replace(path, aside)
        for suffix in ("-wal", "-shm"):
            extra = path.with_name(path.name + suffix)
            if extra.exists():
                os.replace(extra, aside.with_name(aside.name + suffix))
    except OSError as exc:
        raise BidsbatchError(f"cannot move the ledger {path} aside: {exc.strerror}") from None
    return aside


def _failure(output, scan_id: str, config_hash: str) -> dict | None:  # type: ignore[no-untyped-def]
    with contextlib.suppress(BidsbatchError, ValueError):
        if output.exists(failed_key(scan_id)):
            data = json.loads(output.read_bytes(failed_key(scan_id)))
            if isinstance(data, dict) and data.get("config_hash") == config_hash:
                return data
    return None
