"""A slot's worker: one long-lived process that runs scan after scan, no fork a scan.

The supervisor forks one slot worker for each of its slots and hands it scans
over a pipe, one at a time. The worker runs each in-process with
:func:`bidsbatch.worker_entry.run_job` (exactly what ``bidsbatch worker`` runs in
a Batch or Slurm job), its output appended to the scan's log, and answers with
one line: the exit code and the CPU the scan took (the worker's own and its
app's). A fork and exit of the supervisor for every scan cost 5–6 ms of CPU
here (most of it kernel time: copying and tearing down page tables), and each
new child warmed every cache again (regexes, imports' first calls): that was
most of a no-op scan's cost (bench/RESULTS.md).

What a fork per scan gave, kept:

* **a crash costs one scan.** A worker that dies (killed, out of memory)
  ends the pipe; the supervisor records its scan as killed, kills what is left
  of that attempt's app (:func:`bidsbatch.orphans.kill_attempt`) and forks a
  new worker for the next scan;
* **cancel** is SIGTERM to the worker's process group: a busy worker stops its
  app and cleans up (``run_job``'s handler), an idle one just ends;
* **a bounded life.** A worker is replaced after :data:`MAX_SCANS` scans, so
  whatever a long run might accumulate in one process cannot grow forever;
* **its own state each scan.** ``run_job`` takes the environment as it is,
  restores the signal handler it sets, and joins the threads it starts; the
  log's file descriptors 1 and 2 point at the scan's log during the scan and
  back at the supervisor's log between scans.

The protocol, one line each way, each under ``PIPE_BUF`` (written at once):
the supervisor writes ``ATTEMPT SCAN_ID``; the worker answers with a JSON
object (:class:`SlotResult`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import resource
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ...errors import BidsbatchError
from ...runs import RunDir

#: Scans a worker runs before it is replaced by a fresh fork.
MAX_SCANS = 1000


@dataclass(frozen=True)
class SlotOptions:
    """What every scan of this supervisor runs with (its command line)."""

    scratch: Path | None = None
    force: bool = False
    keep_scratch: bool = False


@dataclass(frozen=True)
class SlotResult:
    """A worker's answer for one scan."""

    scan_id: str
    exit_code: int
    cpu_seconds: float
    #: How many attempts the scan's spec allows (for the supervisor's retry).
    attempts: int = 1
    #: Why, when the scan could not start (its spec unreadable): said in the ledger.
    error: str | None = None

    def encode(self) -> bytes:
        return json.dumps({"scan": self.scan_id, "code": self.exit_code,
                           "cpu": round(self.cpu_seconds, 6), "attempts": self.attempts,
                           "error": self.error}).encode() + b"\n"

    @classmethod
    def decode(cls, line: bytes) -> SlotResult:
        data = json.loads(line)
        return cls(scan_id=str(data["scan"]), exit_code=int(data["code"]),
                   cpu_seconds=float(data["cpu"]), attempts=int(data["attempts"]),
                   error=data["error"])


def encode_task(scan_id: str, attempt: int) -> bytes:
    return f"{attempt} {scan_id}\n".encode()


def _cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def serve(run: RunDir, tasks_fd: int, results_fd: int, *, options: SlotOptions,
          max_scans: int = MAX_SCANS) -> int:
    """The worker's loop: read a task, run its scan, answer; until EOF or ``max_scans``."""
    from ...worker_entry import WorkerJob, run_job

    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # idle: a stop just ends the worker
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    home_out, home_err = os.dup(1), os.dup(2)  # the supervisor's log, between scans
    tasks = open(tasks_fd, "rb")  # noqa: SIM115 (the pipe lives as long as the worker)
    done = 0
    while done < max_scans:
        line = tasks.readline()
        if not line:
            return 0  # the supervisor has nothing more (or is gone)
        attempt_text, scan_id = line.decode().rstrip("\n").split(" ", 1)
        attempt = int(attempt_text)
        before = _cpu()
        try:
            spec = run.spec(scan_id)
        except (BidsbatchError, OSError) as exc:
            # One unreadable spec fails its scan, not the run (specs are read as they start).
            reason = exc.message if isinstance(exc, BidsbatchError) else str(exc)
            _answer(results_fd, SlotResult(scan_id, 2, _cpu() - before,
                                           error=f"cannot read the spec: {reason}"))
            done += 1
            continue
        job = WorkerJob(spec=str(run.spec_path(scan_id)), attempt=attempt,
                        job_id=f"local:{scan_id}:{attempt}", scratch=options.scratch,
                        force=options.force, keep_scratch=options.keep_scratch)
        code = _logged(run.log_path(scan_id), f"bidsbatch worker: attempt {attempt}",
                       functools.partial(run_job, job, loaded=spec), home=(home_out, home_err))
        _answer(results_fd, SlotResult(scan_id, code, _cpu() - before, attempts=spec.attempts))
        done += 1
        if code == 128 + signal.SIGTERM:
            return 0  # stopped mid-scan: the supervisor is cancelling
    return 0


def _answer(fd: int, result: SlotResult) -> None:
    data = result.encode()
    try:
        os.write(fd, data)
    except BrokenPipeError:  # the supervisor is gone: the scan's marker says what is done
        os._exit(0)


def _logged(log: Path, header: str, main: Callable[[], int], *, home: tuple[int, int]) -> int:
    """Run ``main`` with fds 1 and 2 (and ``sys.stdout``/``sys.stderr``) on ``log``."""
    try:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except FileNotFoundError:
        log.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    _flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    code = 1
    try:
        from datetime import UTC, datetime

        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        sys.stdout.write(f"==> {stamp} {header}\n")
        sys.stdout.flush()
        code = main()
    except Exception:  # a bug of ours fails this scan, and says so in its log
        import traceback

        traceback.print_exc()
    finally:
        _flush()
        os.dup2(home[0], 1)
        os.dup2(home[1], 2)
    return code


def _flush() -> None:
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()


# --------------------------------------------------------------------------- the supervisor's side


@dataclass
class SlotWorker:
    """The supervisor's handle on one slot worker: its pid, its pipes, its scan."""

    pid: int
    tasks: int  # write end
    results: int  # read end
    scan_id: str | None = None
    attempt: int = 0
    #: CPU seconds of the scans it answered for (the rest of its rusage is its last scan's).
    cpu_reported: float = 0.0
    _pending: bytes = b""

    @property
    def busy(self) -> bool:
        return self.scan_id is not None

    def assign(self, scan_id: str, attempt: int) -> None:
        """Hand the worker a scan (it is idle, so the line fits the pipe at once)."""
        os.write(self.tasks, encode_task(scan_id, attempt))
        self.scan_id, self.attempt = scan_id, attempt

    def read(self) -> tuple[list[SlotResult], bool]:
        """What the worker answered since the last read, and whether it has ended (EOF)."""
        data = os.read(self.results, 65536)
        if not data:
            return [], True
        self._pending += data
        *lines, self._pending = self._pending.split(b"\n")
        results = [SlotResult.decode(line) for line in lines if line]
        if results:
            self.scan_id = None
        return results, False

    def close(self) -> None:
        """No more scans: the worker ends when it reads the end of its pipe."""
        for fd in (self.tasks, self.results):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.tasks = self.results = -1


def spawn(run: RunDir, *, options: SlotOptions, others: list[SlotWorker],
          close_in_child: tuple[int, ...] = ()) -> SlotWorker:
    """Fork a slot worker. ``others``' pipes (and ``close_in_child``) are closed in it.

    A worker holding another's pipe ends would keep that other's end-of-file from
    ever reaching the supervisor when it dies.
    """
    import gc

    task_r, task_w = os.pipe()
    result_r, result_w = os.pipe()
    # What the supervisor holds moves to the collector's permanent generation: a worker's
    # collections then never walk (and so copy, page by page) the inherited heap.
    gc.freeze()
    pid = os.fork()
    if pid:
        gc.unfreeze()
        os.close(task_r)
        os.close(result_w)
        return SlotWorker(pid=pid, tasks=task_w, results=result_r)
    code = 1
    try:
        for fd in (task_w, result_r, *close_in_child,
                   *(f for w in others for f in (w.tasks, w.results))):
            with contextlib.suppress(OSError):
                os.close(fd)
        os.setpgid(0, 0)  # cancel reaches the worker, not the supervisor
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        code = serve(run, task_r, result_w, options=options)
    except BaseException:  # a forked child must never return into the parent
        import traceback

        with contextlib.suppress(Exception):
            traceback.print_exc()
    finally:
        _flush()
        os._exit(code)
