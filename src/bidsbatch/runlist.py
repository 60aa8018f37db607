"""The runs this machine knows, newest first (``bidsbatch runs``).

A run lives in ``BIDSBATCH_HOME/runs/<run-id>/`` or where ``--run-dir`` put
it. The second kind cannot be found by looking in the runs home, so every
run directory written is also remembered in ``BIDSBATCH_HOME/runs.list``
(one absolute path a line, appended once). Listing reads each run's own
record only: ``run.json`` and, when the run was started, its ledger (states
as last seen: ``status RUN`` asks the executor). Nothing is polled, so the
list is quick and works offline.

The "latest run" (``status``, ``logs``, ``retry`` without RUN) is the last
run *started* (:func:`bidsbatch.runs.mark_latest`, called by the runner), not
the last planned: ``plan`` is a dry run and leaves the pointer alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .errors import BidsbatchError
from .runs import RunDir, bidsbatch_home, runs_root
from .states import STATES, ScanState

LIST_FILE = "runs.list"


def remember(run: RunDir) -> None:
    """Add ``run`` to the list of known runs (once); best effort, under a lock."""
    home = bidsbatch_home()
    path = str(run.path.absolute())
    with contextlib.suppress(OSError):
        home.mkdir(parents=True, exist_ok=True)
        with open(home / LIST_FILE, "a+", encoding="utf-8") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)  # two plans at once append one line each
            fh.seek(0)
            if path not in (line.rstrip("\n") for line in fh):
                fh.write(path + "\n")


def known_run_dirs() -> list[RunDir]:
    """Every run directory that still has its ``run.json``: the runs home's and the listed."""
    seen: dict[str, RunDir] = {}
    root = runs_root()
    candidates: list[Path] = []
    if root.is_dir():
        candidates += [p.parent for p in root.glob("*/run.json")]
    with contextlib.suppress(OSError):
        text = (bidsbatch_home() / LIST_FILE).read_text(encoding="utf-8", errors="replace")
        candidates += [Path(line) for line in text.splitlines() if line.strip()]
    for path in candidates:
        key = os.path.realpath(path)
        if key not in seen and (path / "run.json").is_file():
            seen[key] = RunDir(path.absolute())
    return list(seen.values())


@dataclass(frozen=True)
class RunSummary:
    """One line of ``bidsbatch runs``."""

    run_id: str
    path: Path
    dataset: str
    pipeline: str
    #: None: planned, never started.
    executor: str | None
    counts: dict[ScanState, int]
    last_activity: datetime
    latest: bool
    #: Set when the run's record cannot be read (the line says why, the list goes on).
    problem: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "run_id": self.run_id, "run_dir": str(self.path), "dataset": self.dataset,
            "pipeline": self.pipeline, "executor": self.executor,
            "counts": {str(s): n for s, n in self.counts.items() if n},
            "last_activity": self.last_activity.isoformat(timespec="seconds"),
            "latest": self.latest, "problem": self.problem,
        }


def summarise(run: RunDir, *, latest: Path | None = None) -> RunSummary:
    """What ``run``'s own record says (nothing is polled)."""
    from .ledger import Ledger

    is_latest = latest is not None and os.path.realpath(latest) == os.path.realpath(run.path)
    when = _last_activity(run)
    try:
        info = run.info()
    except BidsbatchError as exc:
        return RunSummary(run_id=run.path.name, path=run.path, dataset="", pipeline="",
                          executor=None, counts={}, last_activity=when, latest=is_latest,
                          problem=exc.message)
    counts = dict.fromkeys(STATES, 0)
    executor = None
    problem = None
    if run.ledger_path.exists():
        try:
            with Ledger.open(run.ledger_path) as ledger:
                executor = ledger.executor_name
                counts = ledger.counts()
        except BidsbatchError as exc:
            problem = exc.message
    if not any(counts.values()):
        counts[ScanState.PLANNED] = len(info.scans)
    return RunSummary(run_id=info.run_id, path=run.path, dataset=info.dataset,
                      pipeline=info.pipeline.name, executor=executor, counts=counts,
                      last_activity=when, latest=is_latest, problem=problem)


def list_runs() -> list[RunSummary]:
    """Every known run, the most recently active first."""
    latest_file = bidsbatch_home() / "latest"
    latest = None
    with contextlib.suppress(OSError):
        latest = Path(latest_file.read_text().strip())
    runs = [summarise(r, latest=latest) for r in known_run_dirs()]
    return sorted(runs, key=lambda r: (r.last_activity, r.run_id), reverse=True)


def _last_activity(run: RunDir) -> datetime:
    """When the run's record last changed: run.json, the ledger (and its WAL), the logs folder."""
    newest = 0.0
    for path in (run.run_json, run.ledger_path, run.path / "ledger.sqlite-wal", run.logs_dir,
                 run.path / "supervisor.log"):
        with contextlib.suppress(OSError):
            newest = max(newest, path.stat().st_mtime)
    return datetime.fromtimestamp(newest, UTC)
