"""The Slurm executor: every scan an array task, the group step a dependent job.

``submit`` writes a manifest and a job script into the run directory (the
cluster's shared disk) and submits one array per ``MaxArraySize`` scans
(``submit``); ``poll`` is one squeue call for the whole run, plus the
markers, plus one sacct call when the cluster has accounting (``poll``);
``cancel`` is one scancel of the run's arrays; ``logs`` reads the task's
file. A retry while the run goes on submits the failed scans as a new
array and a new group job that waits for it too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from ...errors import BidsbatchError
from ...ledger import ACTIVE, CANCELLED, PLANNED, RUNNING, Ledger
from ...locations import open_location
from ...markers import done_scans
from ...pipelines import check_no_credentials
from ...runs import RunDir
from ...specs import Spec
from ..base import Executor
from .commands import Runner, SlurmCommands
from .files import SlurmFiles
from .poll import CANCEL_REASON, Poller
from .settings import SlurmSettings
from .submit import EXECUTOR, Submitter


class SlurmExecutor(Executor):
    """Runs scans as Slurm array jobs."""

    name = EXECUTOR
    accepts_rerun_while_active: ClassVar[bool] = True

    def __init__(self, settings: SlurmSettings | None = None, *, runner: Runner | None = None,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.config = settings or SlurmSettings()
        self.commands = SlurmCommands(runner)
        self.clock = clock
        self.sleep = sleep

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> SlurmExecutor:
        return cls(SlurmSettings.from_options(options))

    def settings(self) -> dict[str, Any]:
        return self.config.to_dict()

    # -- submit

    def submit(self, run: RunDir, specs: list[Spec], ledger: Ledger, *, force: bool) -> None:
        info = run.info()
        check_no_credentials(info.pipeline.get("env") or {},
                             where=f"pipeline {info.pipeline['name']}")
        if specs:
            # their old tasks are done with: each gets its new task below
            with ledger.transaction():
                for spec in specs:
                    ledger.update(spec.scan_id, job_id=None)
        sub = Submitter(commands=self.commands, settings=self.config, run=run, info=info,
                        ledger=ledger)
        sub.submit_scans(specs, force=force)
        if info.pipeline.get("group") and ledger.get_meta("group_state") == "submitted":
            try:
                sub.submit_group(live_arrays=_live_arrays(ledger))
            except BaseException:
                ledger.set_meta("group_state", None)
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
                      poll_seconds=self.config.poll_seconds, clock=self.clock)

    def poll(self, run: RunDir, ledger: Ledger) -> None:
        self.poller(run, ledger).poll()

    def cancel(self, run: RunDir, ledger: Ledger) -> None:
        ledger.set_meta("cancel_requested", True)
        ids = _live_arrays(ledger)
        gid = ledger.get_meta("group_job_id")
        if gid and ledger.get_meta("group_state") in ("submitted", "running"):
            ids.append(gid)
        # one call: an array id cancels every task of it
        self.commands.scancel(ids)
        left = [r.scan_id for r in ledger.scans(states=(*ACTIVE, PLANNED))]
        running = {r.scan_id for r in ledger.scans(states=(RUNNING,))}
        for scan_id in left:
            if scan_id in running:  # its attempt ends here (for cost: it ran until now)
                ledger.finish_attempt(scan_id, state=CANCELLED, exit_code=None,
                                      reason=CANCEL_REASON)
        queued = [s for s in left if s not in running]
        if queued:
            ledger.update_many(queued, state=CANCELLED, reason=CANCEL_REASON)
        if ledger.get_meta("group_state") in ("submitted", "running"):
            ledger.set_meta("group_state", CANCELLED)
            ledger.set_meta("group_reason", CANCEL_REASON)

    def logs(self, run: RunDir, scan_id: str, *, follow: bool = False) -> Iterator[str]:
        files = SlurmFiles(run)
        with Ledger.open(run.ledger_path) as ledger:
            if scan_id == "group":
                gid = ledger.get_meta("group_job_id")
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

    def _follow(self, run: RunDir, scan_id: str, path: Path, *,
                follow: bool) -> Iterator[str]:
        with open(path, encoding="utf-8", errors="replace") as fh:
            while True:
                line = fh.readline()
                if line:
                    yield line.rstrip("\n")
                    continue
                if not follow:
                    return
                with Ledger.open(run.ledger_path) as ledger:
                    self.poll(run, ledger)  # spaced like every poll
                    rec = ledger.scan(scan_id)
                    if rec is None or rec.state not in ACTIVE:
                        for rest in fh:
                            yield rest.rstrip("\n")
                        return
                self.sleep(0.5)


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

