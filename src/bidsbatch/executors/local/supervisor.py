"""The local executor's supervisor: a detached process whose slot workers run the scans.

Started by :meth:`LocalExecutor.submit` as ``python -m
bidsbatch.executors.local.supervisor RUN_DIR``. It forks one long-lived
worker for each slot (``--jobs``, or as many as fit at once), hands each a
scan at a time over a pipe, records every attempt in the ledger, retries a
transient fault (exit 75) as Batch's retry strategy would, and runs the group
step at the end.

Slot workers are forks of the supervisor, which has the worker and boto3
already imported, and each runs scan after scan without a fork
(:mod:`.slotworker`): this is what keeps the overhead per scan in
milliseconds (bench/RESULTS.md). A worker runs
:func:`bidsbatch.worker_entry.run_job` for each scan, exactly what the
``bidsbatch worker`` command runs in a Batch or Slurm job, without the CLI.
A worker that dies costs its scan only: it is recorded as killed and a new
worker takes the next scan.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import re
import select
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ...errors import EX_CLAIMED, EX_INTERRUPTED, EX_TEMPFAIL, BidsbatchError
from ...ledger import Ledger
from ...runlock import try_lock
from ...runs import RunDir
from ...specs import Spec
from ...states import GroupState, ScanState
from ..base import with_own_bin_on_path
from .executor import GRACE_SECONDS, GROUP_LOG
from .queue import ScanQueue
from .slots import slots_for
from .slotworker import SlotOptions, SlotWorker, spawn

#: The supervisor's fd of the run directory's lock (closed in every forked worker).
_LOCK_FD: int | None = None


class _Supervisor:
    """Hands scans to its slot workers, records outcomes. Single-threaded (it forks)."""

    def __init__(self, run: RunDir, *, jobs: int | None, scratch: str | None, force: bool,
                 keep_scratch: bool = False):
        self.run = run
        self.ledger = Ledger.open(run.ledger_path)
        self.jobs = jobs
        self.scratch = scratch
        self.options = SlotOptions(scratch=Path(scratch) if scratch else None, force=force,
                                   keep_scratch=keep_scratch)
        self.cancelling = False
        self.workers: dict[int, SlotWorker] = {}  # pid -> its slot worker
        self.children: dict[int, tuple[Spec, int]] = {}  # the group step: pid -> (spec, 1)

    def _pids(self) -> list[int]:
        return [*self.workers, *self.children]

    def on_signal(self, signum: int, _frame: Any) -> None:
        if self.cancelling:
            return
        self.cancelling = True
        for pid in self._pids():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
        signal.signal(signal.SIGALRM, self._kill_all)
        signal.alarm(int(GRACE_SECONDS))

    def _kill_all(self, _signum: int, _frame: Any) -> None:
        for pid in self._pids():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)

    def main(self) -> int:
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, self.on_signal)
        os.environ.update(with_own_bin_on_path(os.environ))
        self.ledger.set_meta("supervisor_pid", os.getpid())
        self._clean_scratch()
        # Ids only, a page at a time: a worker reads a spec when its scan starts (queue.py).
        queue = ScanQueue(self.ledger)
        first = self._first_spec(queue.peek())
        slots = self.jobs or (slots_for(first) if first else 1)
        # Every spec of a run has the same dataset and output (a group step alone: no spec).
        _preload_worker(s3=first is None or any(
            u.startswith("s3://") for u in (first.dataset, first.output)))
        while (queue or self._busy()) and not (self.cancelling and not self._busy()):
            outcomes = self._wait(queue) if self.workers else []
            starts: list[_Started] = []
            while queue and not self.cancelling:
                worker = self._idle(slots)
                if worker is None:
                    break
                starts.append(self._start(worker, queue.pop()))
            # One transaction a round: what ended and what began (one commit, not three a
            # scan). A supervisor killed before it commits leaves those scans active in the
            # ledger; the next poll records them as stopped, and the markers say what is done.
            with self.ledger.transaction():
                for outcome in outcomes:
                    outcome.record(self.ledger)
                for began in starts:
                    began.record(self.ledger)
        self._stop_workers()
        if self.cancelling:
            left = [r.scan_id for r in self.ledger.scans(states=(ScanState.SUBMITTED,))]
            if left:
                self.ledger.update_many(left, state=ScanState.CANCELLED,
                                        reason="cancelled by the user")
            if self.ledger.group().state == GroupState.SUBMITTED:
                self.ledger.set_group(GroupState.CANCELLED)
            return EX_INTERRUPTED
        self._group()
        return 0

    def _busy(self) -> bool:
        return any(w.busy for w in self.workers.values())

    def _idle(self, slots: int) -> SlotWorker | None:
        """An idle slot worker, a new one while there are free slots, else None."""
        for worker in self.workers.values():
            if not worker.busy:
                return worker
        if len(self.workers) >= slots:
            return None
        extra = (_LOCK_FD,) if _LOCK_FD is not None else ()
        worker = spawn(self.run, options=self.options, others=list(self.workers.values()),
                       close_in_child=extra)
        self.workers[worker.pid] = worker
        return worker

    def _first_spec(self, scan_id: str | None) -> Spec | None:
        if scan_id is None:
            return None
        try:
            return self.run.spec(scan_id)
        except (BidsbatchError, OSError):
            return None  # its scan fails when it starts, saying why

    def _clean_scratch(self) -> None:
        """Scratch folders of workers killed earlier (they could not clean up)."""
        from ...orphans import clean_dead_scratch
        from ...worker import scratch_base

        base = scratch_base(Path(self.scratch) if self.scratch else None, os.environ)
        for root in clean_dead_scratch(base):
            print(f"removed the scratch folder of a dead worker: {root}", flush=True)

    def _start(self, worker: SlotWorker, scan_id: str) -> _Started:
        """Hand the scan to an idle worker; what to record."""
        attempt = self.ledger.attempt_count(scan_id) + 1
        started_at = self.ledger.now()
        worker.assign(scan_id, attempt)
        return _Started(scan_id, pid=worker.pid, log=str(self.run.log_path(scan_id)),
                        started_at=started_at)

    def _wait(self, queue: ScanQueue) -> list[_Outcome]:
        """Wait for a worker to answer (or end), then take every answer that is there."""
        poller = select.poll()
        by_fd = {w.results: w for w in self.workers.values()}
        for fd in by_fd:
            poller.register(fd, select.POLLIN)
        outcomes: list[_Outcome] = []
        for fd, _event in poller.poll():
            worker = by_fd[fd]
            scan_id, attempt = worker.scan_id, worker.attempt
            results, ended = worker.read()
            for result in results:
                worker.cpu_reported += result.cpu_seconds
                if result.error is not None:  # its spec could not be read: exit 2, said why
                    outcomes.append(_Outcome(result.scan_id, exit_code=2,
                                             cpu_seconds=result.cpu_seconds,
                                             finished_at=self.ledger.now(),
                                             reason=result.error))
                    continue
                outcomes.append(self._outcome(result.scan_id, attempt, result.exit_code,
                                              result.cpu_seconds, result.attempts, queue))
            if ended:
                code, cpu = self._reap(worker)
                if scan_id is not None and not results:  # it died during its scan
                    outcomes.append(self._outcome(scan_id, attempt, code, cpu, 1, queue))
        return outcomes

    def _reap(self, worker: SlotWorker) -> tuple[int, float]:
        """A worker that ended: its exit code and the CPU it used that it did not report."""
        worker.close()
        del self.workers[worker.pid]
        try:
            _pid, status, rusage = os.wait4(worker.pid, 0)
        except ChildProcessError:
            return 1, 0.0
        cpu = rusage.ru_utime + rusage.ru_stime - worker.cpu_reported
        return os.waitstatus_to_exitcode(status), max(0.0, cpu)

    def _stop_workers(self) -> None:
        for worker in list(self.workers.values()):
            self._reap(worker)

    def _outcome(self, scan_id: str, attempt: int, code: int, cpu: float, attempts: int,
                 queue: ScanQueue) -> _Outcome:
        if code < 0:  # killed: it could not stop its app, whose children may live on
            from ...orphans import kill_attempt

            kill_attempt(run_id=self.run_id, scan_id=scan_id, attempt=attempt)
        done = _Outcome(scan_id, exit_code=code, cpu_seconds=cpu,
                        finished_at=self.ledger.now())
        if code == 0:
            return replace(done, state=ScanState.SUCCEEDED)
        if self.cancelling:
            return replace(done, state=ScanState.CANCELLED, reason="cancelled by the user")
        if code == EX_CLAIMED:
            return replace(done, state=ScanState.SKIPPED,
                           reason=_claimed_reason(self.run.log_path(scan_id)))
        if code == EX_TEMPFAIL and attempt < attempts:
            # A transient storage fault: retried, as Batch's retry strategy would.
            queue.retry(scan_id)
            return replace(done, state=ScanState.SUBMITTED, reason="transient fault, retrying")
        return replace(done, state=ScanState.FAILED,
                       reason=_reason(code, self.run.log_path(scan_id)))

    @functools.cached_property
    def run_id(self) -> str:
        return self.run.info().run_id

    def _group(self) -> None:
        if self.ledger.group().state != GroupState.SUBMITTED:
            return
        counts = self.ledger.counts()
        if counts[ScanState.FAILED] or counts[ScanState.CANCELLED]:
            self.ledger.set_group(GroupState.SKIPPED, reason="some scans did not succeed")
            return
        if any(r.state == ScanState.SKIPPED and r.exit_code == EX_CLAIMED
               for r in self.ledger.scans()):
            # Their outputs are not there yet: the run processing them runs the group step.
            self.ledger.set_group(GroupState.SKIPPED,
                                  reason="some scans are being processed by another run")
            return
        self.ledger.set_group(GroupState.RUNNING, started_at=self.ledger.now())
        log = self.run.logs_dir / GROUP_LOG
        scratch = Path(self.scratch) if self.scratch else None
        pid = _fork(lambda: _group_step(self.run.path, scratch), log,
                    header="bidsbatch group-step: group step")
        self.children[pid] = (None, 1)  # type: ignore[assignment]
        while self.children:
            try:
                got, status, _rusage = os.wait4(pid, 0)
            except ChildProcessError:
                break
            if got == pid:
                self.children.clear()
                code = os.waitstatus_to_exitcode(status)
                state = GroupState.SUCCEEDED if code == 0 else (
                    GroupState.CANCELLED if self.cancelling else GroupState.FAILED)
                self.ledger.set_group(state, exit_code=code, finished_at=self.ledger.now())


@dataclass(frozen=True)
class _Started:
    """A worker forked: its attempt, to record."""

    scan_id: str
    pid: int
    log: str
    started_at: str

    def record(self, ledger: Ledger) -> None:
        ledger.start_attempt(self.scan_id, job_id=f"local:{self.pid}",
                             started_at=self.started_at)
        ledger.update(self.scan_id, log=self.log)


@dataclass(frozen=True)
class _Outcome:
    """A worker ended: its attempt's outcome, to record."""

    scan_id: str
    exit_code: int
    cpu_seconds: float
    finished_at: str
    state: ScanState = ScanState.FAILED
    reason: str | None = None

    def record(self, ledger: Ledger) -> None:
        ledger.finish_attempt(self.scan_id, state=self.state, exit_code=self.exit_code,
                              reason=self.reason, cpu_seconds=self.cpu_seconds,
                              finished_at=self.finished_at)


_LOG_PREFIX = re.compile(r"^\S+Z \[(?P<source>app|worker)\] ")
_ERROR_WORDS = ("error", "exception", "traceback", "fail")


def _reason(code: int, log: Path) -> str:
    """One line on why a scan failed, from the end of its log.

    The app's own last error line says most (``injected failure…``,
    ``MemoryError``), then the worker's ``error:`` line (``app exited with
    code 3``, ``access denied…``); else just the exit code.
    """
    if code < 0:
        return f"killed by signal {-code}"
    try:
        with open(log, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 16384))
            lines = fh.read().decode("utf-8", "replace").splitlines()
    except OSError:
        lines = []
    app_lines, worker_errors = [], []
    for line in lines:
        m = _LOG_PREFIX.match(line)
        if not m:
            continue
        text = line[m.end():].strip()
        if m["source"] == "app" and any(w in text.lower() for w in _ERROR_WORDS):
            app_lines.append(text)
        elif m["source"] == "worker" and text.startswith("error:"):
            worker_errors.append(text[len("error:"):].strip())
    for found in (app_lines, worker_errors):
        if found:
            return f"exit {code}: {found[-1][:200]}"
    return f"exit {code}"


def _claimed_reason(log: Path) -> str:
    """The worker's own "skipped: … is being processed by …" line, from its log."""
    try:
        with open(log, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 8192))
            lines = fh.read().decode("utf-8", "replace").splitlines()
    except OSError:
        lines = []
    for line in reversed(lines):
        m = _LOG_PREFIX.match(line)
        if m and m["source"] == "worker" and line[m.end():].startswith("skipped: "):
            return line[m.end():].split(";")[0]
    return "skipped: the scan is being processed by another run"


def _preload_worker(*, s3: bool) -> None:
    """Import what the worker needs once, so forked workers start without importing.

    boto3 only for a run that reads or writes S3: it is a third of the supervisor's
    start (0.3 to 0.7 s) and a local run's workers never load it.
    """
    if s3:
        with contextlib.suppress(ImportError):
            import boto3  # noqa: F401
            import botocore.session  # noqa: F401

    from ... import group, worker  # noqa: F401
    from ...orphans import libc_prctl, setpriv

    libc_prctl()  # ctypes and libc once here, not in every worker (die_with_parent)
    setpriv()  # found once, not by every worker (dying_with_parent)


def _group_step(run_path: Path, scratch: Path | None) -> int:
    from ...console import print_error
    from ...group import run_group_step

    try:
        return run_group_step(str(run_path), scratch=scratch)
    except BidsbatchError as exc:
        print_error(exc)
        return exc.exit_code


def _fork(main: Callable[[], int], log: Path, *, header: str) -> int:
    """Fork a process that runs ``main`` with its output appended to ``log``; its pid."""
    log.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    # What the supervisor holds moves to the collector's permanent generation: a worker's
    # collections then never walk (and so copy, page by page) the inherited heap. The
    # supervisor itself takes it back at once (its garbage is still collected).
    gc.freeze()
    pid = os.fork()
    if pid:
        gc.unfreeze()
        os.close(fd)
        return pid
    # The child: its own process group (so cancel reaches the app too), output to the log.
    code = 1
    try:
        if _LOCK_FD is not None:  # the run's lock is the supervisor's, not its workers'
            os.close(_LOCK_FD)
        os.setpgid(0, 0)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        from datetime import UTC, datetime

        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        print(f"==> {stamp} {header}", flush=True)
        code = main()
    except BaseException:  # a forked child must never return into the parent
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def supervise(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="bidsbatch-local-supervisor")
    parser.add_argument("run_dir")
    parser.add_argument("--jobs", type=int)
    parser.add_argument("--scratch")
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--keep-scratch", action="store_true")
    parser.add_argument("--lock-fd", type=int)
    ns = parser.parse_args(argv)
    global _LOCK_FD
    _LOCK_FD = ns.lock_fd if ns.lock_fd is not None else try_lock(Path(ns.run_dir))
    if _LOCK_FD is None:
        print(f"run directory {ns.run_dir} is locked by another supervisor", file=sys.stderr)
        return 2
    sup = _Supervisor(RunDir(Path(ns.run_dir)), jobs=ns.jobs, scratch=ns.scratch,
                      force=ns.force, keep_scratch=ns.keep_scratch)
    return sup.main()


if __name__ == "__main__":
    sys.exit(supervise())
