"""The local executor: every scan on this machine, in parallel, one worker process each.

``submit`` starts a small supervisor process, detached from the terminal, that
forks one worker process per scan (at most as many at once as the CPUs and
memory allow for the pipeline's resources, or ``--jobs``), records each
attempt in the ledger and runs the group step at the end. Because the
supervisor is its own process, ``run --no-wait`` returns at once, ``status``
and ``logs`` work from another terminal, and ``cancel`` (or Ctrl-C in
``run``) stops it: it sends SIGTERM to every worker's process group (the app
included), waits a grace period, then SIGKILL.

Workers are forked from the supervisor, which has bidsbatch and boto3
already imported, so a scan costs a fork rather than a new interpreter: this
is what keeps the overhead per scan in milliseconds (bench/RESULTS.md).
A worker process runs exactly the ``bidsbatch worker`` command, as a Batch or
Slurm job would.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import BidsbatchError, UsageError
from ..ledger import ACTIVE, CANCELLED, SKIPPED, SUBMITTED, Ledger
from ..runlock import held_fd, try_lock
from ..runs import RunDir
from ..specs import Spec
from .base import Executor

EX_TEMPFAIL = 75
EX_CLAIMED = 86  # the worker's "skipped: another run holds this scan" (worker.EX_CLAIMED)

#: The supervisor's fd of the run directory's lock (closed in every forked worker).
_LOCK_FD: int | None = None
GRACE_SECONDS = 10.0


def available_memory_mib() -> int:
    """Memory this machine can give to jobs (MemAvailable, else physical memory)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
    except (ValueError, OSError):
        return 4096


def slots_for(spec: Spec, *, cpus: int | None = None, memory_mib: int | None = None) -> int:
    """How many scans of this shape fit on this machine at once (at least one)."""
    cpus = cpus or os.cpu_count() or 1
    memory_mib = memory_mib or available_memory_mib()
    by_cpu = int(cpus // max(spec.resources.vcpus, 0.01))
    by_mem = memory_mib // max(spec.resources.memory_mib, 1)
    return max(1, min(by_cpu, by_mem))


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

    def __init__(self, *, jobs: int | None = None, scratch: str | None = None) -> None:
        if jobs is not None and jobs < 1:
            raise UsageError("--jobs must be at least 1")
        self.jobs = jobs
        self.scratch = scratch

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> LocalExecutor:
        return cls(jobs=options.get("jobs"), scratch=options.get("scratch"))

    def settings(self) -> dict[str, Any]:
        return {"jobs": self.jobs, "scratch": self.scratch}

    def submit(self, run: RunDir, specs: list[Spec], ledger: Ledger, *, force: bool) -> None:
        pid = ledger.get_meta("supervisor_pid")
        if pid_alive(pid):
            raise UsageError(
                f"run {run.path.name} is already running (supervisor pid {pid})",
                hint=f"watch it with: bidsbatch status {run.path.name} --watch",
            )
        if not specs and ledger.get_meta("group_state") != "submitted":
            return
        cmd = [sys.executable, "-m", "bidsbatch.executors.local", str(run.path)]
        if self.jobs:
            cmd += ["--jobs", str(self.jobs)]
        if self.scratch:
            cmd += ["--scratch", self.scratch]
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
        ledger.set_meta("cancel_requested", False)

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
                    ledger.update(rec.scan_id, state="failed",
                                  reason="the local supervisor stopped before this scan ended")
        if ledger.get_meta("group_state") in ("submitted", "running"):
            ledger.set_meta("group_state", "failed")

    def cancel(self, run: RunDir, ledger: Ledger) -> None:
        ledger.set_meta("cancel_requested", True)
        pid = ledger.get_meta("supervisor_pid")
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + GRACE_SECONDS + 5
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if pid_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
        left = [r.scan_id for r in ledger.scans(states=(*ACTIVE, "planned"))]
        if left:
            ledger.update_many(left, state=CANCELLED, reason="cancelled by the user")
        if ledger.get_meta("group_state") in ("submitted", "running"):
            ledger.set_meta("group_state", CANCELLED)

    def logs(self, run: RunDir, scan_id: str, *, follow: bool = False) -> Iterator[str]:
        path = run.log_path(scan_id)
        if not path.exists():
            raise BidsbatchError(f"no log yet for {scan_id} in run {run.path.name}",
                                 hint="it has not started; see bidsbatch status")
        with open(path, encoding="utf-8", errors="replace") as fh:
            while True:
                line = fh.readline()
                if line:
                    yield line.rstrip("\n")
                    continue
                if not follow:
                    return
                with Ledger.open(run.ledger_path) as ledger:
                    rec = ledger.scan(scan_id)
                    if rec is None or rec.state not in ACTIVE:
                        # One last read: lines written just before the end.
                        for rest in fh:
                            yield rest.rstrip("\n")
                        return
                time.sleep(0.2)


# --------------------------------------------------------------------------- supervisor


class _Supervisor:
    """Forks workers, reaps them, records outcomes. Single-threaded (it forks)."""

    def __init__(self, run: RunDir, *, jobs: int | None, scratch: str | None, force: bool):
        self.run = run
        self.ledger = Ledger.open(run.ledger_path)
        self.jobs = jobs
        self.scratch = scratch
        self.force = force
        self.cancelling = False
        self.children: dict[int, tuple[Spec, int]] = {}  # pid -> (spec, attempt)

    def on_signal(self, signum: int, _frame: Any) -> None:
        if self.cancelling:
            return
        self.cancelling = True
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
        signal.signal(signal.SIGALRM, self._kill_all)
        signal.alarm(int(GRACE_SECONDS))

    def _kill_all(self, _signum: int, _frame: Any) -> None:
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)

    def main(self) -> int:
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, self.on_signal)
        # Apps installed next to bidsbatch (same venv) are found without activating it.
        here = os.path.dirname(sys.executable)
        if here not in os.environ.get("PATH", "").split(os.pathsep):
            os.environ["PATH"] = here + os.pathsep + os.environ.get("PATH", "")
        self.ledger.set_meta("supervisor_pid", os.getpid())
        self._clean_scratch()
        queue = [self.run.spec(r.scan_id) for r in self.ledger.scans(states=(SUBMITTED,))]
        slots = self.jobs or (slots_for(queue[0]) if queue else 1)
        self.ledger.set_meta("local_slots", slots)
        _preload_worker()
        while (queue or self.children) and not (self.cancelling and not self.children):
            while queue and len(self.children) < slots and not self.cancelling:
                spec = queue.pop(0)
                self._start(spec)
            if self.children:
                self._reap(queue)
        if self.cancelling:
            left = [s.scan_id for s in queue]
            if left:
                self.ledger.update_many(left, state=CANCELLED, reason="cancelled by the user")
            if self.ledger.get_meta("group_state") == "submitted":
                self.ledger.set_meta("group_state", CANCELLED)
            return 130
        self._group()
        return 0

    def _clean_scratch(self) -> None:
        """Scratch folders of workers killed earlier (they could not clean up)."""
        from ..orphans import clean_dead_scratch
        from ..worker import scratch_base

        base = scratch_base(Path(self.scratch) if self.scratch else None, os.environ)
        for root in clean_dead_scratch(base):
            print(f"removed the scratch folder of a dead worker: {root}", flush=True)

    def _start(self, spec: Spec) -> None:
        attempt = self.ledger.start_attempt(spec.scan_id)
        log = self.run.log_path(spec.scan_id)
        args = ["worker", "--spec", str(self.run.spec_path(spec.scan_id)),
                "--attempt", str(attempt), "--job-id", f"local:{spec.scan_id}:{attempt}"]
        if self.scratch:
            args += ["--scratch", self.scratch]
        if self.force:
            args.append("--force")
        pid = _fork_command(args, log, header=f"attempt {attempt}")
        self.ledger.update(spec.scan_id, job_id=f"local:{pid}", log=str(log))
        self.children[pid] = (spec, attempt)

    def _reap(self, queue: list[Spec]) -> None:
        try:
            pid, status, rusage = os.wait4(-1, 0)
        except ChildProcessError:
            self.children.clear()
            return
        if pid not in self.children:
            return
        spec, attempt = self.children.pop(pid)
        code = os.waitstatus_to_exitcode(status)
        if code < 0:  # killed: it could not stop its app, whose children may live on
            from ..orphans import kill_attempt

            kill_attempt(run_id=spec.run_id, scan_id=spec.scan_id, attempt=attempt)
        cpu = rusage.ru_utime + rusage.ru_stime
        if code == 0:
            self.ledger.finish_attempt(spec.scan_id, state="succeeded", exit_code=0,
                                       cpu_seconds=cpu)
        elif self.cancelling:
            self.ledger.finish_attempt(spec.scan_id, state=CANCELLED, exit_code=code,
                                       reason="cancelled by the user", cpu_seconds=cpu)
        elif code == EX_CLAIMED:
            self.ledger.finish_attempt(spec.scan_id, state=SKIPPED, exit_code=code,
                                       reason=_claimed_reason(self.run.log_path(spec.scan_id)),
                                       cpu_seconds=cpu)
        elif code == EX_TEMPFAIL and attempt < spec.attempts:
            # A transient storage fault: retried, as Batch's retry strategy would.
            self.ledger.finish_attempt(spec.scan_id, state=SUBMITTED, exit_code=code,
                                       reason="transient fault, retrying", cpu_seconds=cpu)
            queue.append(spec)
        else:
            self.ledger.finish_attempt(spec.scan_id, state="failed", exit_code=code,
                                       reason=_reason(code, self.run.log_path(spec.scan_id)),
                                       cpu_seconds=cpu)

    def _group(self) -> None:
        if self.ledger.get_meta("group_state") != "submitted":
            return
        counts = self.ledger.counts()
        if counts["failed"] or counts["cancelled"]:
            self.ledger.set_meta("group_state", "skipped")
            self.ledger.set_meta("group_reason", "some scans did not succeed")
            return
        if any(r.state == SKIPPED and r.exit_code == EX_CLAIMED for r in self.ledger.scans()):
            # Their outputs are not there yet: the run processing them runs the group step.
            self.ledger.set_meta("group_state", "skipped")
            self.ledger.set_meta("group_reason", "some scans are being processed by another run")
            return
        self.ledger.set_meta("group_state", "running")
        self.ledger.set_meta("group_started_at", self.ledger.now())
        log = self.run.logs_dir / "group.log"
        args = ["group-step", "--run", str(self.run.path)]
        if self.scratch:
            args += ["--scratch", self.scratch]
        pid = _fork_command(args, log, header="group step")
        self.children[pid] = (None, 1)  # type: ignore[assignment]
        while self.children:
            try:
                got, status, _rusage = os.wait4(pid, 0)
            except ChildProcessError:
                break
            if got == pid:
                self.children.clear()
                code = os.waitstatus_to_exitcode(status)
                state = "succeeded" if code == 0 else (
                    CANCELLED if self.cancelling else "failed")
                self.ledger.set_meta("group_state", state)
                self.ledger.set_meta("group_exit_code", code)
                self.ledger.set_meta("group_finished_at", self.ledger.now())


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


def _preload_worker() -> None:
    """Import what the worker needs once, so forked workers start without importing.

    typer imports part of itself (and pydantic) lazily at the first parse: one
    parse of ``worker --help`` here saves every forked worker ~150 ms.
    """
    import io

    from .. import cli

    with contextlib.suppress(ImportError):
        import boto3  # noqa: F401
        import botocore.session  # noqa: F401

        from .. import worker  # noqa: F401
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        cli.main(["worker", "--help"])
        # A full parse builds (and caches) typer's value converters too; the spec does
        # not exist, so the worker stops at once.
        cli.main(["worker", "--spec", "/nonexistent/bidsbatch-warm-up.json", "--attempt", "1",
                  "--job-id", "warm-up", "--scratch", "/nonexistent"])


def _fork_command(args: list[str], log: Path, *, header: str) -> int:
    """Fork a process that runs ``bidsbatch ARGS`` with its output appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    pid = os.fork()
    if pid:
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
        print(f"==> {stamp} bidsbatch {' '.join(args[:1])}: {header}", flush=True)
        from ..cli import main

        code = main(args)
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
    parser.add_argument("--lock-fd", type=int)
    ns = parser.parse_args(argv)
    global _LOCK_FD
    _LOCK_FD = ns.lock_fd if ns.lock_fd is not None else try_lock(Path(ns.run_dir))
    if _LOCK_FD is None:
        print(f"run directory {ns.run_dir} is locked by another supervisor", file=sys.stderr)
        return 2
    sup = _Supervisor(RunDir(Path(ns.run_dir)), jobs=ns.jobs, scratch=ns.scratch,
                      force=ns.force)
    return sup.main()


if __name__ == "__main__":
    sys.exit(supervise())
