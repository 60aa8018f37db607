"""The executor interface: submit, poll, cancel, logs, and the hooks shared code asks.

An executor turns specs into jobs on an engine (this machine, AWS Batch,
Slurm) and reports what happened into the run's ledger. Waiting, progress,
rate limiting and rendering live in one shared place (``runner.py``), not in
each executor. What shared code needs to know of an engine (where a scan's
log is, what an attempt cost) it asks through the hooks below, so no module
outside an engine's package names that engine.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..ledger import AttemptRecord, Ledger, ScanRecord
from ..runs import RunDir
from ..specs import Spec
from ..states import ACTIVE, GROUP_ACTIVE, ScanState
from .settings import ExecutorSettings

if TYPE_CHECKING:
    from ..cost import CostContext
    from ..pricing import PriceTable
    from ..specs import RunInfo

#: Lines of a failed scan's log the report shows.
LOG_TAIL_LINES = 30


class Executor(ABC):
    """Submits specs to an engine and records their fate in the ledger."""

    #: The name users type after ``--executor`` (the registry's key).
    name: ClassVar[str]
    #: The type of this executor's settings (their fields are its CLI options).
    settings_type: ClassVar[type[ExecutorSettings]] = ExecutorSettings
    #: An engine that keeps its queued and running jobs itself (Batch) takes a rerun while
    #: scans are still active: those are left alone and the rest is submitted.
    accepts_rerun_while_active: ClassVar[bool] = False
    #: The engine runs the pipeline's image itself (Batch): inside the job the worker
    #: runs the app's command without a container runtime.
    runs_in_image: ClassVar[bool] = False
    #: The least time between two polls while waiting: engines whose queries weigh on
    #: shared services (a cluster's controller) ask for more.
    min_poll_seconds: ClassVar[float] = 0.0

    def __init__(self, settings: ExecutorSettings | None = None) -> None:
        self.settings = settings if settings is not None else self.settings_type()

    @classmethod
    def from_settings(cls, settings: ExecutorSettings) -> Executor:
        """Build from settings (given or saved); complete and check them first.

        Raises UsageError for settings the engine cannot use.
        """
        return cls(settings)

    def saved_settings(self) -> dict[str, Any]:
        """What the ledger keeps so later commands rebuild this executor (never secrets)."""
        return self.settings.to_json()

    # -- the engine

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
        """The scan's log lines (every attempt), following new lines when asked.

        ``scan_id`` ``"group"`` is the group step's log.
        """

    def wait_for_change(self, run: RunDir, ledger: Ledger, seconds: float, *,
                        sleep: Callable[[float], None]) -> None:
        """Between two polls of ``runner.wait``: return after ``seconds``, or sooner when
        the engine can tell that the run changed (the local supervisor exited)."""
        sleep(seconds)

    def busy(self, run: RunDir, ledger: Ledger) -> bool:
        """Is anything of this run still queued or running on the engine (group step too)?"""
        counts = ledger.counts()
        active = any(counts[s] for s in (*ACTIVE, ScanState.PLANNED))
        return active or ledger.group().state in GROUP_ACTIVE

    # -- hooks for shared code (report, cost)

    def log_file(self, run: RunDir, record: ScanRecord) -> Path | None:
        """The scan's log as a file on this machine, if the engine keeps one there."""
        log = record.log or ""
        if log and (log.startswith("/") or Path(log).exists()):
            return Path(log)
        candidate = run.log_path(record.scan_id)
        return candidate if candidate.exists() else None

    def log_link(self, run: RunDir, record: ScanRecord) -> str | None:
        """A web address of the scan's log, for engines whose logs live elsewhere."""
        return None

    def log_tail(self, run: RunDir, record: ScanRecord,
                 lines: int = LOG_TAIL_LINES) -> list[str] | None:
        """The last lines of the scan's log, when they are cheap to read (None: not here)."""
        path = self.log_file(run, record)
        return tail_lines(path, lines) if path else None

    def log_missing(self, run: RunDir, record: ScanRecord) -> str:
        """What the report says of a failed scan whose log tail it cannot show."""
        path = Path(record.log) if record.log else run.log_path(record.scan_id)
        return f"no log at {path}"

    def log_note(self) -> str:
        """One line for the report on where failed scans' logs are."""
        return f"last {LOG_TAIL_LINES} lines of each log"

    def cost_context(self, *, info: RunInfo, table: PriceTable,
                     attempts: list[AttemptRecord]) -> CostContext:
        """How to price this run's attempts. Engines without a bill: times only."""
        from ..cost import CostContext
        from ..pricing import job_resources

        return CostContext(job=job_resources(info), priced=False, assumptions=(
            f"{self.name} run: wall and CPU time, no dollars",))

    def describe(self) -> str:
        """One line for the report and ``runs``: the engine and where it runs."""
        return self.name


def follow_file(path: Path, *, follow: bool, ended: Callable[[], bool],
                sleep: Callable[[float], None], interval: float) -> Iterator[str]:
    """The lines of a log file; with ``follow``, new ones too until ``ended()`` says so.

    Shared by the engines whose logs are files here (local, Slurm). After the end,
    one last read yields the lines written just before it.
    """
    with open(path, encoding="utf-8", errors="replace") as fh:
        while True:
            line = fh.readline()
            if line:
                yield line.rstrip("\n")
                continue
            if not follow:
                return
            if ended():
                for rest in fh:
                    yield rest.rstrip("\n")
                return
            sleep(interval)


def tail_lines(path: Path, lines: int = LOG_TAIL_LINES) -> list[str] | None:
    """The last ``lines`` lines of a log file (None when it cannot be read)."""
    import os

    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return None
    out = text.splitlines()
    if size > 64 * 1024:
        out = out[1:]  # the first line read is likely cut
    return out[-lines:]


def with_own_bin_on_path(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` with bidsbatch's own ``bin/`` on ``PATH``, for engines on this machine.

    Apps installed next to bidsbatch (the same venv: the demo app) are then found
    without activating it. Engines that run elsewhere must not do this: in a job
    image it would shadow the app's own Python.
    """
    import os
    import sys

    env = dict(environ)
    here = os.path.dirname(sys.executable)
    if here not in env.get("PATH", "").split(os.pathsep):
        env["PATH"] = here + os.pathsep + env.get("PATH", "")
    return env
