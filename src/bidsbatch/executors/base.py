"""The executor interface: submit, poll, cancel, logs. Engine code stays in its module.

An executor turns specs into jobs on an engine (this machine, AWS Batch,
Slurm) and reports what happened into the run's ledger. Waiting, progress
and rendering live in one shared place (``runner.py``), not in each executor.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any, ClassVar

from ..ledger import Ledger
from ..runs import RunDir
from ..specs import Spec


class Executor(ABC):
    """Submits specs to an engine and records their fate in the ledger."""

    #: The name users type after ``--executor``.
    name: ClassVar[str]
    #: An engine that keeps its queued and running jobs itself (Batch) takes a rerun while
    #: scans are still active: those are left alone and the rest is submitted.
    accepts_rerun_while_active: ClassVar[bool] = False
    #: The engine runs the pipeline's image itself (Batch): inside the job the worker
    #: runs the app's command without a container runtime.
    runs_in_image: ClassVar[bool] = False

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> Executor:
        """Build from CLI/API options; take what this executor needs, ignore the rest."""
        return cls()

    def settings(self) -> dict[str, Any]:
        """Non-secret settings saved in the ledger so later commands rebuild this executor."""
        return {}

    @abstractmethod
    def submit(self, run: RunDir, specs: list[Spec], ledger: Ledger, *, force: bool) -> None:
        """Start processing ``specs`` (already marked submitted in the ledger)."""

    @abstractmethod
    def poll(self, run: RunDir, ledger: Ledger) -> None:
        """Bring the ledger up to date with the engine. Errors surface; never "still running"."""

    def fetch_details(self, run: RunDir, ledger: Ledger) -> None:
        """Record in the ledger every attempt's details that :meth:`poll` left out.

        Two levels: :meth:`poll` keeps each scan's state (what ``status`` shows)
        at the least cost; this adds what cost and the report need (each
        attempt's start and stop, lost attempts), for engines that report those
        apart (AWS Batch). Called by ``cost``, ``report`` and the end of ``run``;
        asks nothing once they are recorded. Engines that record attempts as
        they go (local) have nothing to add.
        """
        return None

    @abstractmethod
    def cancel(self, run: RunDir, ledger: Ledger) -> None:
        """Stop every queued and running job of the run; record them as cancelled."""

    @abstractmethod
    def logs(self, run: RunDir, scan_id: str, *, follow: bool = False) -> Iterator[str]:
        """The scan's log lines (every attempt), following new lines when asked."""

    def busy(self, run: RunDir, ledger: Ledger) -> bool:
        """Is anything of this run still queued or running on the engine (group step too)?"""
        from ..ledger import ACTIVE, PLANNED

        counts = ledger.counts()
        group = ledger.get_meta("group_state")
        return any(counts[s] for s in (*ACTIVE, PLANNED)) or group in ("submitted", "running")
