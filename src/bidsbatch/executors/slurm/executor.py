"""The Slurm executor: every scan an array task, the group step a dependent job.

``submit`` writes a manifest and a job script into the run directory (the
cluster's shared disk) and submits one array per ``MaxArraySize`` scans
(``submit.py``); ``poll`` is one squeue call for the whole run, plus the
markers, plus one sacct call when the cluster has accounting (``poll.py``);
``cancel`` is one scancel of the run's arrays; ``logs`` reads the task's
file. A retry while the run goes on submits the failed scans as a new
array and a new group job that waits for it too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

from ...errors import BidsbatchError
from ...ledger import Ledger
from ...markers import done_scans
from ...pipelines import check_no_credentials
from ...runs import RunDir
from ...specs import Spec
from ...states import ACTIVE, GROUP_ACTIVE, GroupState, ScanState
from ...storage import open_location
from ..base import Executor, follow_file
from ..settings import ExecutorSettings
from .commands import Runner, SlurmCommands
from .files import SlurmFiles
from .poll import CANCEL_REASON, Poller
from .settings import SlurmSettings
from .submit import EXECUTOR, Submitter


class SlurmExecutor(Executor):
    """Runs scans as Slurm array jobs."""

    name = EXECUTOR
    settings_type = SlurmSettings
    #: Slurm keeps its queue itself: a retry (or a rerun) while scans run is taken.
    accepts_rerun_while_active = True
    settings: SlurmSettings

    def __init__(self, settings: ExecutorSettings | None = None, *,
                 runner: Runner | None = None, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(settings)
        self.commands = SlurmCommands(runner)
        self.clock = clock
        self.sleep = sleep
        # the runner's waits follow this run's cadence (30 s unless the settings say less)
        self.min_poll_seconds = self.settings.slurm_poll_seconds  # type: ignore[misc]

    @classmethod
    def from_settings(cls, settings: ExecutorSettings) -> SlurmExecutor:
        assert isinstance(settings, SlurmSettings)
        return cls(settings.resolved())

    def describe(self) -> str:
        where = ", ".join(f"{k} {v}" for k, v in (
            ("partition", self.settings.slurm_partition),
            ("account", self.settings.slurm_account)) if v)
        return f"{self.name} ({where})" if where else self.name

    # -- submit

    def submit(self, run: RunDir, specs: list[Spec], ledger: Ledger, *, force: bool) -> None:
        info = run.info()
        check_no_credentials(info.pipeline.env, where=f"pipeline {info.pipeline.name}")
        if specs:
            # their old tasks are done with: each gets its new task below
            with ledger.transaction():
                for spec in specs:
                    ledger.update(spec.scan_id, job_id=None)
        sub = Submitter(commands=self.commands, settings=self.settings, run=run, info=info,
                        ledger=ledger)
        sub.submit_scans(specs, force=force)
        if info.pipeline.group and ledger.group().state == GroupState.SUBMITTED:
            try:
                sub.submit_group(live_arrays=_live_arrays(ledger))
            except BaseException:
                ledger.set_group(None)
                raise
        ledger.set_meta("cancel_requested", False)
        Poller.mark(ledger, self.clock())

    # -- watch

    def poller(self, run: RunDir, ledger: Ledger) -> Poller:
        info = run.info()

        def done(scan_ids: list[str]) -> set[str]:
            return done_scans(open_location(info.output), [run.spec(s) for s in scan_ids])

        return Poller(commands=self.commands, ledger=ledger, run_id=info.run_id,
                      output=lambda: open_location(info.output), done_scans=done,
                      files=SlurmFiles(run), poll_seconds=self.settings.slurm_poll_seconds,
                      clock=self.clock)

    def poll(self, run: RunDir, ledger: Ledger) -> None:
        self.poller(run, ledger).poll()

    def cancel(self, run: RunDir, ledger: Ledger) -> None:
        ledger.set_meta("cancel_requested", True)
        ids = _live_arrays(ledger)
        group = ledger.group()
        if group.job_id and group.state in GROUP_ACTIVE:
            ids.append(group.job_id)
        # one call: an array id cancels every task of it
        self.commands.scancel(ids)
        left = [r.scan_id for r in ledger.scans(states=(*ACTIVE, ScanState.PLANNED))]
        running = {r.scan_id for r in ledger.scans(states=(ScanState.RUNNING,))}
        for scan_id in left:
            if scan_id in running:  # its attempt ends here (for cost: it ran until now)
                ledger.finish_attempt(scan_id, state=ScanState.CANCELLED, exit_code=None,
                                      reason=CANCEL_REASON)
        queued = [s for s in left if s not in running]
        if queued:
            ledger.update_many(queued, state=ScanState.CANCELLED, reason=CANCEL_REASON)
        if group.state in GROUP_ACTIVE:
            ledger.set_group(GroupState.CANCELLED, reason=CANCEL_REASON)

    # -- logs

    def logs(self, run: RunDir, scan_id: str, *, follow: bool = False) -> Iterator[str]:
        files = SlurmFiles(run)
        with Ledger.open(run.ledger_path) as ledger:
            if scan_id == "group":
                gid = ledger.group().job_id
                paths = [files.task_log(gid)] if gid else []
            else:
                paths = _log_paths(ledger, files, scan_id)
        paths = [p for p in paths if p.exists()]
        if not paths:
            raise BidsbatchError(f"no log yet for {scan_id} in run {run.path.name}",
                                 hint="its task has not started; see bidsbatch status")
        for path in paths[:-1]:
            yield f"==> {path}"
            yield from _read(path)
        yield f"==> {paths[-1]}"
        yield from self._follow(run, scan_id, paths[-1], follow=follow)

    def log_note(self) -> str:
        return "last lines of each task's Slurm output file (logs/slurm/ in the run directory)"

    def _follow(self, run: RunDir, scan_id: str, path: Path, *,
                follow: bool) -> Iterator[str]:
        def ended() -> bool:
            with Ledger.open(run.ledger_path) as ledger:
                self.poll(run, ledger)  # spaced like every poll
                rec = ledger.scan(scan_id)
                return rec is None or rec.state not in ACTIVE

        yield from follow_file(path, follow=follow, ended=ended, sleep=self.sleep, interval=0.5)


def _live_arrays(ledger: Ledger) -> list[str]:
    """The run's arrays that still have a queued or running scan."""
    active = {r.scan_id for r in ledger.scans(states=ACTIVE)}
    return [j.job_id for j in ledger.jobs(kind="array") if active.intersection(j.scans)]


def _log_paths(ledger: Ledger, files: SlurmFiles, scan_id: str) -> list[Path]:
    """Every task that ran ``scan_id`` (every submission), oldest first."""
    rec = ledger.scan(scan_id)
    if rec is None:
        return []
    keys = [a.job_id for a in ledger.attempts(scan_id) if a.job_id]
    if rec.job_id:
        keys.append(rec.job_id)
    return [files.task_log(k) for k in dict.fromkeys(keys) if "_" in k]


def _read(path: Path) -> Iterator[str]:
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            yield line.rstrip("\n")
