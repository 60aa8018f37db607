"""The local executor's client side: submit, poll, cancel and logs, from any process.

``submit`` starts a small supervisor process (``supervisor.py``), detached
from the terminal, that forks one long-lived worker per slot and hands each
a scan at a time (``slotworker.py``; as many slots as the CPUs and memory
allow for the pipeline's resources, or ``--jobs``), records each attempt in
the ledger and runs the group step at the end. Because the supervisor is its
own process, ``run --no-wait`` returns at once, ``status`` and ``logs`` work
from another terminal, and ``cancel`` (or Ctrl-C in ``run``) stops it: it
sends SIGTERM to every worker's process group (a busy worker stops its app),
waits a grace period, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

from ...errors import BidsbatchError, UsageError
from ...ledger import Ledger
from ...pidwait import wait_gone
from ...runlock import held_fd
from ...runs import RunDir
from ...specs import Spec
from ...states import ACTIVE, GROUP_ACTIVE, GroupState, ScanState
from ..base import Executor, follow_file
from ..settings import ExecutorSettings
from .settings import LocalSettings

#: SIGTERM to SIGKILL, for a worker (and its app) being stopped.
GRACE_SECONDS = 10.0
#: The group step's log, in the run's log folder.
GROUP_LOG = "group.log"


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True


class LocalExecutor(Executor):
    """Runs scans on this machine."""

    name = "local"
    settings_type = LocalSettings
    settings: LocalSettings

    @classmethod
    def from_settings(cls, settings: ExecutorSettings) -> LocalExecutor:
        assert isinstance(settings, LocalSettings)
        if settings.jobs is not None and settings.jobs < 1:
            raise UsageError("--jobs must be at least 1")
        return cls(settings)

    def submit(self, run: RunDir, specs: list[Spec], ledger: Ledger, *, force: bool) -> None:
        pid = ledger.get_meta("supervisor_pid")
        if pid_alive(pid):
            raise UsageError(
                f"run {run.path.name} is already running (supervisor pid {pid})",
                hint=f"watch it with: bidsbatch status {run.path.name} --watch",
            )
        if not specs and ledger.group().state != GroupState.SUBMITTED:
            return
        cmd = [sys.executable, "-m", "bidsbatch.executors.local.supervisor", str(run.path)]
        if self.settings.jobs:
            cmd += ["--jobs", str(self.settings.jobs)]
        if self.settings.scratch:
            cmd += ["--scratch", self.settings.scratch]
        if self.settings.keep_scratch:
            cmd.append("--keep-scratch")
        if force:
            cmd.append("--force")
        # The run directory's lock (runner.start holds it) goes to the supervisor, which
        # keeps it while it lives: no second run of this directory starts meanwhile.
        lock_fd = held_fd(run.path)
        if lock_fd is not None:
            cmd += ["--lock-fd", str(lock_fd)]
        log = open(run.path / "supervisor.log", "ab")  # noqa: SIM115 (handed to the child)
        with log:
            proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True,
                pass_fds=(lock_fd,) if lock_fd is not None else (),
            )
        ledger.set_meta("supervisor_pid", proc.pid)

    def poll(self, run: RunDir, ledger: Ledger) -> None:
        pid = ledger.get_meta("supervisor_pid")
        if pid_alive(pid):
            return
        # The supervisor is gone. It records every outcome before it exits, so what is
        # still active now was orphaned (the machine rebooted, the process was killed).
        active = ledger.scans(states=ACTIVE)
        if active:
            with ledger.transaction():
                for rec in active:
                    ledger.update(rec.scan_id, state=ScanState.FAILED,
                                  reason="the local supervisor stopped before this scan ended")
        if ledger.group().state in GROUP_ACTIVE:
            ledger.set_group(GroupState.FAILED)

    def wait_for_change(self, run: RunDir, ledger: Ledger, seconds: float, *,
                        sleep: Callable[[float], None]) -> None:
        # The supervisor records every outcome before it exits: its exit is the run's end,
        # seen the moment it happens (a pidfd), not at the next poll.
        pid = ledger.get_meta("supervisor_pid")
        if pid_alive(pid):
            wait_gone(pid, seconds, alive=pid_alive, sleep=sleep)
        else:
            sleep(seconds)

    def cancel(self, run: RunDir, ledger: Ledger) -> None:
        pid = ledger.get_meta("supervisor_pid")
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            if not wait_gone(pid, GRACE_SECONDS + 5, alive=pid_alive):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
        left = [r.scan_id for r in ledger.scans(states=(*ACTIVE, ScanState.PLANNED))]
        if left:
            ledger.update_many(left, state=ScanState.CANCELLED, reason="cancelled by the user")
        if ledger.group().state in GROUP_ACTIVE:
            ledger.set_group(GroupState.CANCELLED)

    def logs(self, run: RunDir, scan_id: str, *, follow: bool = False) -> Iterator[str]:
        path = run.logs_dir / GROUP_LOG if scan_id == "group" else run.log_path(scan_id)
        if not path.exists():
            what = "no group step log" if scan_id == "group" else f"no log yet for {scan_id}"
            raise BidsbatchError(f"{what} in run {run.path.name}",
                                 hint="it has not started; see bidsbatch status")

        def ended() -> bool:
            with Ledger.open(run.ledger_path) as ledger:
                rec = ledger.scan(scan_id)
                return rec is None or rec.state not in ACTIVE

        yield from follow_file(path, follow=follow, ended=ended, sleep=time.sleep, interval=0.2)
