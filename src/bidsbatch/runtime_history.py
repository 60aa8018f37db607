"""How long a pipeline's scans took before: the median of earlier runs, for ``cost estimate``.

Every run directory under the runs home (``BIDSBATCH_HOME/runs``) whose
pipeline has the same name is read: the wall time of each succeeded attempt
in its ledger. Run directories kept elsewhere (``--run-dir``) are not seen.
A damaged or unreadable run is skipped: history is a hint, not a record.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from .cost import parse_time
from .errors import BidsbatchError
from .ledger import Ledger
from .runs import RunDir, runs_root


@dataclass(frozen=True)
class RuntimeHistory:
    """The succeeded scans' times of earlier runs of one pipeline."""

    pipeline: str
    runs: int
    seconds: tuple[float, ...]

    @property
    def median_hours(self) -> float | None:
        return statistics.median(self.seconds) / 3600 if self.seconds else None


def runtime_history(pipeline: str) -> RuntimeHistory:
    """The wall times of every succeeded attempt of earlier runs of ``pipeline``."""
    root = runs_root()
    seconds: list[float] = []
    runs = 0
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    for folder in folders:
        run = RunDir(folder)
        if not run.ledger_path.exists():
            continue
        try:
            if run.info().pipeline.name != pipeline:
                continue
            with Ledger.open(run.ledger_path) as ledger:
                attempts = ledger.attempts()
        except (BidsbatchError, OSError, ValueError):
            continue
        found = [(end - start).total_seconds() for a in attempts
                 if a.exit_code == 0 and (start := parse_time(a.started_at))
                 and (end := parse_time(a.finished_at)) and end > start]
        if found:
            runs += 1
            seconds += found
    return RuntimeHistory(pipeline=pipeline, runs=runs, seconds=tuple(seconds))
