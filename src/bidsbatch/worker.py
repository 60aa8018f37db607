"""The worker: what runs inside one job and processes one scan.

``stage in ▶ run the app ▶ stage out ▶ commit``, the same code locally, in an
AWS Batch array child and in a Slurm array task:

1. **check**: every input key is a safe relative path (else exit 1 before a
   byte is read); a scan whose completion marker exists with the same config
   hash is already done (exit 0, nothing downloaded);
2. **stage in**: the scan's files (its own, the inherited sidecars, the
   top-level files) into ``SCRATCH/bids``, a BIDS dataset of one scan, after a
   free-disk check, in parallel and verified (:mod:`bidsbatch.storage.transfer`);
3. **run** the app with the spec's argv (runtime placeholders filled, never a
   shell), its output merged and logged line by line with timestamps, under
   the spec's timeout;
4. **stage out** ``SCRATCH/out`` to the output location, minus the pipeline's
   excludes, recording the sha256 of each file;
5. **commit**: the worker log to ``.bidsbatch/done/<scan>.log``, then, last,
   the marker ``.bidsbatch/done/<scan>.json``. A failed attempt leaves
   ``.bidsbatch/failed/<scan>.json`` and ``.log`` instead.

The contract with the app (paths, environment, exit codes) is written down in
the README, section "The worker and its contract with the app".
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, TextIO

from . import __version__
from .containers.job import AppLaunch, AppPaths, prepare_app
from .crashfiles import CrashFile, remove_crash_files, with_debugging
from .cwl.launch import CwlLaunch, cwl_output, prepare_cwl
from .errors import (
    EX_CANNOT_EXECUTE,
    EX_CLAIMED,
    EX_FAILURE,
    EX_NOT_FOUND,
    EX_OK,
    EX_TEMPFAIL,
    EX_TIMEOUT,
    BidsbatchError,
    StorageError,
    TransientStorageError,
    UsageError,
)
from .expected_outputs import check_expected
from .leases import ClaimHeld, ScanClaim
from .markers import (
    STATE_PREFIX,
    Marker,
    failed_key,
    failed_log_key,
    is_done,
    marker_key,
    read_marker,
    worker_log_key,
    write_marker,
)
from .orphans import dying_with_parent, write_pid_file
from .pipelines import CREDENTIAL_VARIABLES, check_no_credentials, fill_runtime
from .provenance import record_for_scan, take_app_description, with_description
from .specs import Manifest, Spec, canonical_json
from .storage import Location, OutputFile, open_location, safe_key
from .storage.transfer import (
    DEFAULT_WORKERS,
    MiB,
    RetryPolicy,
    TransferStats,
    collect_files,
    download_many,
    upload_tree,
)
from .timestamps import Clock, iso, utcnow
from .usage import AppUsage, AppWaiter, UsageMeter, describe_usage

#: Free disk wanted beyond the inputs before stage-in: 10 % of them plus 100 MiB.
DISK_MARGIN_RATIO = 0.10
DISK_MARGIN_BYTES = 100 * MiB

#: Thread-count variables set to the spec's vCPUs unless already set: on a
#: shared Batch host ``os.cpu_count()`` is the whole machine, not the job's share.
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS",
)

class Terminated(BaseException):
    """The worker was asked to stop (SIGTERM: Batch stopping the job, a Spot reclaim).

    A BaseException so that no ``except Exception`` in between swallows it; the
    worker stops the app, removes its scratch and exits ``128 + signum``.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(f"terminated by signal {signum}")
        self.signum = signum


@dataclass(frozen=True)
class WorkerOptions:
    """How this attempt runs (what it runs is the spec)."""

    scratch: Path | None = None  # parent of the scratch folder; None: $BIDSBATCH_SCRATCH, $TMPDIR
    keep_scratch: bool = False
    force: bool = False  # run even when the scan's marker says done
    attempt: int = 1
    job_id: str | None = None
    timeout_seconds: float | None = None  # None: the spec's resources.timeout_minutes
    max_workers: int = DEFAULT_WORKERS
    retries: int = 3  # transfer retry rounds on top of botocore's
    retry_delay: float = 2.0  # first backoff of those rounds, doubled each round
    kill_grace_seconds: float = 10.0  # SIGTERM to SIGKILL when the app must stop


@dataclass(frozen=True)
class FailureRecord:
    """``OUTPUT/.bidsbatch/failed/<scan>.json``: why the last attempt failed."""

    run_id: str
    scan_id: str
    config_hash: str
    attempt: int
    stage: str  # check, stage-in, app, stage-out, commit
    exit_code: int
    reason: str
    started_at: str
    finished_at: str
    executor_job_id: str | None = None
    host: str | None = None
    bidsbatch_version: str | None = None
    #: The app's crash files saved next to this record (:mod:`bidsbatch.crashfiles`).
    crash_files: list[CrashFile] = field(default_factory=list)
    #: The scratch folder left on ``host`` by ``--keep-scratch``.
    kept_scratch: str | None = None

    def to_json(self) -> str:
        return canonical_json(asdict(self))


@dataclass(frozen=True)
class AppResult:
    """How the app ended: its exit code (or ours for timeout/not found) and why."""

    exit_code: int
    timed_out: bool = False
    reason: str | None = None
    #: What the app used (peak memory, CPU time), when it could be measured.
    usage: AppUsage | None = None


# --------------------------------------------------------------------------- log


class WorkerLog:
    """The worker's log: timestamped lines to a stream (the executor's capture) and a file.

    Lines logged before :meth:`attach` are kept in memory and written to the
    file when it is attached. Thread-safe: the app's output comes from a
    reader thread, transfer progress from transfer threads.
    """

    def __init__(self, stream: TextIO, *, clock: Clock = utcnow) -> None:
        self.stream = stream
        self.clock = clock
        self._lock = threading.Lock()
        self._buffer: list[str] = []
        self._file: IO[str] | None = None
        self._path: Path | None = None

    def _emit(self, source: str, text: str) -> None:
        line = f"{iso(self.clock())} [{source}] {text}\n"
        with self._lock:
            try:
                self.stream.write(line)
                self.stream.flush()
            except (OSError, ValueError):
                pass  # a closed stdout must not stop the job; the file still has it
            if self._file is not None:
                self._file.write(line)
            elif self._path is None:
                self._buffer.append(line)

    def info(self, text: str) -> None:
        self._emit("worker", text)

    def app(self, text: str) -> None:
        self._emit("app", text)

    def error(self, exc: BidsbatchError | str) -> None:
        """Log an error, and say it on stderr as one line (plus its hint)."""
        from .console import err_console

        message = exc.message if isinstance(exc, BidsbatchError) else exc
        hint = exc.hint if isinstance(exc, BidsbatchError) else None
        self._emit("worker", f"error: {message}" + (f" (hint: {hint})" if hint else ""))
        from rich.markup import escape

        err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
        if hint:
            err_console.print(f"  [dim]hint:[/] {escape(hint)}", highlight=False)

    def attach(self, path: Path) -> None:
        """Also write the log to ``path`` from now on (with what was logged so far)."""
        with self._lock:
            self._file = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
            self._path = path
            self._file.writelines(self._buffer)
            self._buffer.clear()

    def text(self) -> str:
        """Everything logged so far."""
        with self._lock:
            if self._path is None:
                return "".join(self._buffer)
            if self._file is not None:
                self._file.flush()
            return self._path.read_text(encoding="utf-8", errors="replace")

    def close(self) -> None:
        """Close the file; later lines go to the stream only."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
            self._path = None
            self._buffer.clear()


class _ProgressLine:
    """Transfer progress as a log line at most every ``interval`` seconds (logs, not bars)."""

    def __init__(self, log: WorkerLog, label: str, total: int, *, interval: float = 30.0) -> None:
        self.log, self.label, self.total, self.interval = log, label, total, interval
        self.done = 0
        self._lock = threading.Lock()
        self._last = time.monotonic()

    def __call__(self, n: int) -> None:
        with self._lock:
            self.done += n
            now = time.monotonic()
            if now - self._last < self.interval:
                return
            self._last = now
            done = self.done
        self.log.info(f"{self.label}: {done / MiB:.1f} of {self.total / MiB:.1f} MiB")


# --------------------------------------------------------------------------- scratch


@dataclass(frozen=True)
class Scratch:
    """The job's scratch folder: ``bids/`` (inputs), ``out/``, ``work/``, ``tmp/``."""

    root: Path

    @property
    def bids(self) -> Path:
        return self.root / "bids"

    @property
    def out(self) -> Path:
        return self.root / "out"

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def log(self) -> Path:
        return self.root / "worker.log"

    @classmethod
    def make(cls, base: Path, scan_id: str) -> Scratch:
        """A new ``base/bidsbatch-<scan>-<random>/`` with its four folders."""
        try:
            try:
                root = Path(tempfile.mkdtemp(prefix=f"bidsbatch-{scan_id}-", dir=base))
            except FileNotFoundError:  # made when missing, not checked every scan
                base.mkdir(parents=True, exist_ok=True)
                root = Path(tempfile.mkdtemp(prefix=f"bidsbatch-{scan_id}-", dir=base))
            scratch = cls(root)
            for d in (scratch.bids, scratch.out, scratch.work, scratch.tmp):
                d.mkdir()
        except OSError as exc:
            raise StorageError(
                f"cannot make a scratch folder in {base}: {exc.strerror}",
                hint="point --scratch or BIDSBATCH_SCRATCH at a writable folder",
            ) from None
        return scratch

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def scratch_base(explicit: Path | None, environ: Mapping[str, str]) -> Path:
    """Where scratch folders go: ``--scratch``, else ``$BIDSBATCH_SCRATCH``, else ``$TMPDIR``."""
    if explicit is not None:
        return Path(explicit).expanduser().absolute()
    for name in ("BIDSBATCH_SCRATCH", "TMPDIR"):
        if environ.get(name):
            return Path(environ[name]).expanduser().absolute()
    return Path(tempfile.gettempdir())


def required_disk(spec: Spec) -> int:
    """Bytes of free disk the worker insists on: the inputs, plus 10 %, plus 100 MiB."""
    return int(spec.input_bytes * (1 + DISK_MARGIN_RATIO)) + DISK_MARGIN_BYTES


def check_free_disk(path: Path, spec: Spec, *, log: WorkerLog) -> None:
    """Refuse to start without room for the inputs; warn below the pipeline's ``disk_gib``.

    Only the inputs are a hard floor: outputs and work files cannot be known
    in advance, and refusing a small test run because a preset asks for
    100 GiB would be wrong on a laptop.
    """
    free = shutil.disk_usage(path).free
    needed = required_disk(spec)
    gib = 1024**3
    if free < needed:
        raise StorageError(
            f"not enough free disk in {path.parent} for {spec.scan_id}: needs "
            f"{needed / gib:.2f} GiB (inputs {spec.input_bytes / gib:.2f} GiB + 10 % + 100 MiB), "
            f"{free / gib:.2f} GiB free",
            hint="give the job more disk (resources.disk_gib) or point --scratch / "
            "BIDSBATCH_SCRATCH at a larger volume",
        )
    wanted = spec.resources.disk_gib * gib
    if free < wanted:
        log.info(
            f"warning: {free / gib:.1f} GiB free in {path.parent}, the pipeline asks for "
            f"{spec.resources.disk_gib} GiB; going on (inputs need {needed / gib:.2f} GiB)"
        )


# --------------------------------------------------------------------------- steps


def check_spec(spec: Spec) -> None:
    """Refuse a spec the worker must not run: hostile input keys, credentials, no argv."""
    for f in spec.inputs:
        safe_key(f.key)
    if not spec.argv or not all(isinstance(a, str) for a in spec.argv):
        raise UsageError(
            f"spec of {spec.scan_id}: argv must be a non-empty list of strings",
            hint="plan the run again",
        )
    check_no_credentials(spec.env, where=f"spec of {spec.scan_id}")


def stage_in(
    spec: Spec, dataset: Location, scratch: Scratch, *, options: WorkerOptions, log: WorkerLog,
    sleep: Callable[[float], None] = time.sleep,
) -> TransferStats:
    """Download the scan's inputs into ``scratch.bids`` (a one-scan BIDS dataset)."""
    log.info(f"stage-in: {len(spec.inputs)} files, {spec.input_bytes / MiB:.1f} MiB "
             f"from {dataset.uri}")
    stats = download_many(
        dataset, spec.inputs, scratch.bids, max_workers=options.max_workers,
        retry=RetryPolicy(options.retries, options.retry_delay, sleep),
        progress=_ProgressLine(log, "stage-in", spec.input_bytes),
    )
    log.info(f"stage-in: done, {stats.files} files, {stats.bytes / MiB:.1f} MiB in "
             f"{stats.seconds:.1f} s ({stats.mib_per_s:.1f} MiB/s)")
    return stats


def host_paths(scratch: Scratch) -> AppPaths:
    """The scratch folders as an app without a container sees them."""
    return AppPaths(bids=str(scratch.bids), out=str(scratch.out), work=str(scratch.work),
                    tmp=str(scratch.tmp))


def app_argv(spec: Spec, scratch: Scratch, *, paths: AppPaths | None = None) -> list[str]:
    """The spec's argv with ``{bids_dir}``, ``{output_dir}``, ``{work_dir}`` filled.

    ``paths``: the folders as the app sees them (in a container: ``/bids``, …).
    """
    p = paths or host_paths(scratch)
    return fill_runtime(spec.argv, bids_dir=p.bids, output_dir=p.out, work_dir=p.work)


def app_environment(
    spec: Spec, scratch: Scratch, *, attempt: int, base: Mapping[str, str],
    paths: AppPaths | None = None,
) -> dict[str, str]:
    """The app's environment: the worker's, minus AWS keys, plus the contract's variables.

    The app gets no AWS access keys: the worker moves the data, and the app is
    someone else's code. Thread hints follow the spec's vCPUs unless set.
    """
    env = {k: v for k, v in base.items() if k.upper() not in CREDENTIAL_VARIABLES}
    threads = str(max(1, int(spec.resources.vcpus)))
    for name in THREAD_VARIABLES:
        env.setdefault(name, threads)
    env.setdefault("PYTHONUNBUFFERED", "1")  # Python apps: lines as they come, not at exit
    env.update(spec.env)
    p = paths or host_paths(scratch)
    tmp = p.tmp
    env.update({
        "TMPDIR": tmp, "TMP": tmp, "TEMP": tmp,
        "BIDSBATCH_RUN_ID": spec.run_id,
        "BIDSBATCH_SCAN_ID": spec.scan_id,
        "BIDSBATCH_PARTICIPANT": spec.participant,
        "BIDSBATCH_SESSION": spec.session or "",
        "BIDSBATCH_ATTEMPT": str(attempt),
        "BIDSBATCH_BIDS_DIR": p.bids,
        "BIDSBATCH_OUTPUT_DIR": p.out,
        "BIDSBATCH_WORK_DIR": p.work,
        "BIDSBATCH_N_CPUS": threads,
        "BIDSBATCH_MEMORY_MIB": str(spec.resources.memory_mib),
    })
    return env


def run_app(
    argv: list[str], *, env: Mapping[str, str], cwd: Path, timeout: float | None,
    log: WorkerLog, grace: float = 10.0, cleanup: Callable[[], None] | None = None,
    meter: UsageMeter | None = None,
) -> AppResult:
    """Run the app (no shell), stream its merged output into ``log``, enforce ``timeout``.

    The app runs in its own session so that a timeout or a stop reaches its
    children too: SIGTERM to the whole group, SIGKILL after ``grace`` seconds.
    ``cleanup`` runs once the process is gone: a container client (docker,
    podman) proxies the SIGTERM into its container, but a SIGKILLed client
    leaves the container behind, so it is removed by name. ``meter`` measures
    what the app used (:mod:`bidsbatch.usage`; default: ``wait4``'s rusage).
    """
    log.info(f"run: {shlex.join(argv)}")
    # A SIGKILLed worker takes its app with it.
    spawn, preexec = dying_with_parent(argv, path=env.get("PATH", os.defpath))
    try:
        proc = subprocess.Popen(
            spawn, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env=dict(env), cwd=cwd, start_new_session=True, preexec_fn=preexec,
        )
    except FileNotFoundError:
        return AppResult(EX_NOT_FOUND, reason=f"app {argv[0]!r} not found (not on PATH here)")
    except PermissionError:
        return AppResult(EX_CANNOT_EXECUTE, reason=f"app {argv[0]!r} is not executable")
    except OSError as exc:
        return AppResult(EX_CANNOT_EXECUTE, reason=f"cannot execute {argv[0]!r}: {exc.strerror}")
    assert proc.stdout is not None
    waiter = (meter or UsageMeter()).start(proc)  # reaps the app: never proc.wait()
    pump = threading.Thread(target=_pump, args=(proc.stdout, log), name="app-output",
                            daemon=True)
    pump.start()
    timed_out = False
    try:
        try:  # an event, not a sleep loop: AppWaiter sleeps on the app's pidfd
            waiter.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            log.info(f"app ran past its timeout of {_duration(timeout or 0)}: stopping it "
                     f"(SIGTERM, SIGKILL after {grace:g} s)")
            _stop(waiter, grace)
    finally:
        if waiter.poll() is None:  # the worker itself is stopping
            _stop(waiter, grace)
        # Whatever the app left running in its session would hold the pipe open.
        _signal_group(proc.pid, signal.SIGKILL)
        if cleanup is not None:
            cleanup()
        pump.join(timeout=10)
        proc.stdout.close()
    code = waiter.wait()
    usage = waiter.usage()
    if timed_out:
        return AppResult(EX_TIMEOUT, timed_out=True,
                         reason=f"app timed out after {_duration(timeout or 0)}", usage=usage)
    if code < 0:
        name = _signal_name(-code)
        hint = " (out of memory?)" if -code == signal.SIGKILL else ""
        return AppResult(128 - code, reason=f"app killed by {name}{hint}", usage=usage)
    return AppResult(code, reason=None if code == 0 else f"app exited with code {code}",
                     usage=usage)


def _pump(stream: IO[bytes], log: WorkerLog) -> None:
    # Bounded reads: a line without a newline cannot grow without limit.
    for raw in iter(lambda: stream.readline(64 * 1024), b""):
        text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        # Progress bars redraw with \r: one log line per state, not one huge line.
        for piece in text.split("\r"):
            if piece:
                log.app(piece)


def _stop(proc: AppWaiter, grace: float) -> None:
    _signal_group(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _duration(seconds: float) -> str:
    if seconds >= 60:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def stage_out(
    spec: Spec, output: Location, scratch: Scratch, *, options: WorkerOptions, log: WorkerLog,
    sleep: Callable[[float], None] = time.sleep,
) -> list[OutputFile]:
    """Upload ``scratch.out`` to the output location, minus excludes; return the manifest."""
    collected = collect_files(scratch.out, excludes=spec.output_excludes,
                              reserved=(STATE_PREFIX,))
    total = sum(f.size for f in collected.files)
    log.info(f"stage-out: {len(collected.files)} files, {total / MiB:.1f} MiB to {output.uri}"
             + (f" ({collected.excluded} excluded)" if collected.excluded else ""))
    for note in collected.skipped:
        log.info(f"stage-out: left out {note}")
    if not collected.files:
        log.info(f"warning: the app wrote nothing to {{output_dir}} ({scratch.out})")
    started = time.monotonic()
    outputs = upload_tree(
        scratch.out, output, excludes=spec.output_excludes, max_workers=options.max_workers,
        retry=RetryPolicy(options.retries, options.retry_delay, sleep),
        progress=_ProgressLine(log, "stage-out", total), collected=collected,
    )
    seconds = time.monotonic() - started
    log.info(f"stage-out: done, {len(outputs)} files, {total / MiB:.1f} MiB in {seconds:.1f} s"
             f" ({total / MiB / seconds if seconds else 0:.1f} MiB/s)")
    return outputs


def commit(output: Location, marker: Marker, *, log: WorkerLog) -> None:
    """Write the worker log, then the marker (last: the scan is done from then on)."""
    log.info(f"commit: {len(marker.outputs)} outputs; writing "
             f"{output.describe(marker_key(marker.scan_id))}")
    output.write_text(worker_log_key(marker.scan_id), log.text())
    write_marker(output, marker)
    for key in (failed_key(marker.scan_id), failed_log_key(marker.scan_id)):
        try:
            output.delete(key)
        except StorageError as exc:  # the scan is done; a stale record is only noise
            log.info(f"warning: could not remove the old failure record {key}: {exc}")
    try:
        remove_crash_files(output, marker.scan_id)
    except StorageError as exc:
        log.info(f"warning: could not remove the old crash files: {exc}")


# --------------------------------------------------------------------------- the whole job


@dataclass
class _Attempt:
    spec: Spec
    options: WorkerOptions
    log: WorkerLog
    clock: Clock
    started: datetime
    stage: str = "check"
    host: str = field(default_factory=socket.gethostname)
    scratch: Scratch | None = None  # once made: a failure saves its crash files from it
    failed: bool = False

    def failure(self, exit_code: int, reason: str) -> FailureRecord:
        s = self.spec
        return FailureRecord(
            run_id=s.run_id, scan_id=s.scan_id, config_hash=s.config_hash,
            attempt=self.options.attempt, stage=self.stage, exit_code=exit_code,
            reason=reason, started_at=iso(self.started), finished_at=iso(self.clock()),
            executor_job_id=self.options.job_id, host=self.host,
            bidsbatch_version=__version__,
        )


def run_worker(
    spec: Spec,
    *,
    options: WorkerOptions = WorkerOptions(),
    dataset: Location | None = None,
    output: Location | None = None,
    stream: TextIO | None = None,
    clock: Clock = utcnow,
    sleep: Callable[[float], None] = time.sleep,
    environ: Mapping[str, str] | None = None,
) -> int:
    """Process one scan: check, stage in, run, stage out, commit. Returns the exit code.

    ``dataset`` and ``output`` default to the spec's locations; ``stream`` to
    stdout; ``environ`` (the base of the app's environment, and where
    ``BIDSBATCH_SCRATCH``/``TMPDIR`` are read) to ``os.environ``. ``clock``
    and ``sleep`` are injected for tests.

    Exit codes: 0 done (or already done); the app's own code when it fails;
    1 worker failure; 75 transient storage fault; 124 timeout; 126/127 app
    not executable/not found; 128+N app killed by signal N.
    """
    env = dict(os.environ if environ is None else environ)
    log = WorkerLog(stream if stream is not None else sys.stdout, clock=clock)
    job = _Attempt(spec, options, log, clock, clock())
    scratch: Scratch | None = None
    claim: ScanClaim | None = None
    out_loc: Location | None = output
    try:
        log.info(
            f"bidsbatch {__version__} worker: scan {spec.scan_id} of run {spec.run_id}, "
            f"attempt {options.attempt}"
            + (f", job {options.job_id}" if options.job_id else "")
            + f", host {job.host}"
        )
        # --requester-pays and --no-sign-request describe the dataset: outputs are
        # always written signed, with the job's own credentials.
        out_loc = output or spec.open_output()
        check_spec(spec)
        ds_loc = dataset or spec.open_dataset()

        previous = read_marker(out_loc, spec.scan_id)
        if is_done(spec, previous) and not options.force:
            log.info(f"already done: {out_loc.describe(marker_key(spec.scan_id))} has config "
                     f"{spec.config_hash[:12]}; nothing to do (--force to run again)")
            return EX_OK

        # No scan runs twice at once: claim it in the output (a second run skips it).
        claim = ScanClaim(out_loc, scan_id=spec.scan_id, run_id=spec.run_id,
                          job_id=options.job_id, now=clock)
        claim.acquire()
        previous = read_marker(out_loc, spec.scan_id)
        if is_done(spec, previous) and not options.force:
            # Another run finished it between our first look and the claim.
            log.info(f"already done: {out_loc.describe(marker_key(spec.scan_id))} was "
                     "committed by another run meanwhile; nothing to do")
            return EX_OK

        scratch = job.scratch = Scratch.make(scratch_base(options.scratch, env), spec.scan_id)
        write_pid_file(scratch.root)  # the next run removes it if this worker is killed
        log.attach(scratch.log)
        log.info(f"scratch: {scratch.root}")
        check_free_disk(scratch.root, spec, log=log)

        job.stage = "stage-in"
        stage_in(spec, ds_loc, scratch, options=options, log=log, sleep=sleep)

        job.stage = "app"
        timeout = options.timeout_seconds
        if timeout is None:
            timeout = spec.resources.timeout_minutes * 60.0
        started_app = time.monotonic()
        launch: AppLaunch | CwlLaunch = (
            prepare_cwl(spec, host_paths(scratch), environ=env) if spec.cwl is not None
            else prepare_app(spec, host_paths(scratch), attempt=options.attempt, environ=env))
        invocation = launch.invocation(
            app_argv(spec, scratch, paths=launch.paths),
            app_environment(spec, scratch, attempt=options.attempt, base=launch.base_env,
                            paths=launch.paths))
        log.info(f"container: {launch.description}")
        result = run_app(invocation.argv, env=invocation.env, cwd=scratch.work,
                         timeout=timeout, log=log, grace=options.kill_grace_seconds,
                         cleanup=launch.cleanup, meter=UsageMeter.for_launch(launch))
        log.info(f"app: exit code {result.exit_code} after "
                 f"{time.monotonic() - started_app:.1f} s" + describe_usage(result.usage))
        if result.exit_code != 0:
            reason = result.reason or f"app exited with code {result.exit_code}"
            log.error(f"{spec.scan_id}: {reason}; no outputs uploaded, no marker written")
            _record_failure(out_loc, job.failure(result.exit_code, reason), job=job)
            return result.exit_code

        if spec.expected_outputs:
            # Exit 0 without the outputs is no done scan: fail before the marker can vouch.
            written = collect_files(scratch.out, excludes=spec.output_excludes).files
            check_expected((f.key for f in written), spec.expected_outputs)
            log.info(f"app: wrote what the pipeline expects ({len(spec.expected_outputs)} "
                     "pattern(s) matched)")

        job.stage = "stage-out"
        if previous is not None:
            # Its outputs are about to be overwritten: it must not vouch for them.
            log.info(f"removing the previous marker (config {previous.config_hash[:12]})")
            out_loc.delete(marker_key(spec.scan_id))
        # A BIDS App's own description is merged into the output's, not uploaded as is.
        app_description = take_app_description(scratch.out) if spec.kind is None else None
        outputs = stage_out(spec, out_loc, scratch, options=options, log=log, sleep=sleep)

        job.stage = "commit"
        if spec.kind is None:  # a BIDS derivative: GeneratedBy, SourceDatasets
            described = record_for_scan(out_loc, spec, app_description, log=log)
            outputs = with_description(outputs, described)
        marker = Marker(
            run_id=spec.run_id, scan_id=spec.scan_id, config_hash=spec.config_hash,
            attempt=options.attempt, started_at=iso(job.started), finished_at=iso(clock()),
            exit_code=0, outputs=outputs, executor_job_id=options.job_id, host=job.host,
            bidsbatch_version=__version__, fingerprint=dict(spec.fingerprint),
            tool_output=cwl_output(launch, out_loc),
            usage=result.usage,
        )
        commit(out_loc, marker, log=log)
        log.info(f"done: {spec.scan_id}")
        return EX_OK
    except ClaimHeld as exc:
        log.info(f"skipped: {exc.message}; not run here (no marker, no failure record)")
        return EX_CLAIMED
    except TransientStorageError as exc:
        return _fail(job, out_loc, exc, EX_TEMPFAIL)
    except BidsbatchError as exc:
        return _fail(job, out_loc, exc, exc.exit_code)
    except Exception as exc:
        log.info("unexpected error:\n" + "".join(traceback.format_exception(exc)).rstrip())
        err = BidsbatchError(f"unexpected {type(exc).__name__} in {job.stage}: {exc}")
        return _fail(job, out_loc, err, EX_FAILURE)
    except Terminated as exc:
        log.info(f"stopping: {exc} during {job.stage}; no marker written")
        raise
    finally:
        log.close()
        if scratch is not None and not (options.keep_scratch and job.failed):
            scratch.remove()  # a failed attempt's is kept with --keep-scratch (crashfiles.py)
        if claim is not None:
            claim.release()


def _fail(job: _Attempt, output: Location | None, exc: BidsbatchError, code: int) -> int:
    job.log.error(exc)
    if code == EX_TEMPFAIL:
        job.log.info(f"exit {EX_TEMPFAIL}: a transient fault; the executor may retry this job")
    if output is not None:
        _record_failure(output, job.failure(code, str(exc)), job=job)
    return code


def _record_failure(output: Location, record: FailureRecord, *, job: _Attempt) -> None:
    """Leave the failure record, log and crash files next to the markers; best effort."""
    log = job.log
    job.failed = True
    try:
        record = with_debugging(output, record, scratch=job.scratch,
                                keep=job.options.keep_scratch, log=log)
        output.write_text(failed_log_key(record.scan_id), log.text())
        output.write_text(failed_key(record.scan_id), record.to_json())
        log.info(f"failure recorded: {output.describe(failed_key(record.scan_id))}")
    except BidsbatchError as exc:
        log.info(f"warning: could not record the failure at {output.uri}: {exc}")


# --------------------------------------------------------------------------- specs and manifests


def _split_uri(uri: str) -> tuple[Location, str]:
    """``s3://b/p/spec.json`` → (location ``s3://b/p``, ``spec.json``); same for paths."""
    text = str(uri)
    if text.startswith("s3://"):
        rest = text[len("s3://"):]
        if "/" not in rest.strip("/"):
            raise UsageError(f"{text} names a bucket, not a file")
        parent, name = rest.rstrip("/").rsplit("/", 1)
        return open_location(f"s3://{parent}"), name
    if text.startswith("file://"):
        text = text[len("file://"):]
    path = Path(text).expanduser().absolute()
    return open_location(path.parent), path.name


def read_uri(uri: str) -> bytes:
    """The bytes of a file named by a path, ``file://`` or ``s3://`` URI."""
    location, key = _split_uri(uri)
    return location.read_bytes(key)


def load_spec(uri: str) -> Spec:
    """The spec at ``uri`` (a path, ``file://`` or ``s3://``)."""
    return Spec.from_json(read_uri(uri), source=str(uri))


def manifest_entry_uri(manifest_uri: str, entry: str) -> str:
    """Where a manifest entry points: absolute as is, relative against the manifest's folder."""
    if "://" in entry or entry.startswith("/"):
        return entry
    location, _ = _split_uri(manifest_uri)
    return location.describe(safe_key(entry))


def load_manifest_spec(uri: str, index: int) -> Spec:
    """Spec number ``index`` (from 0) of the manifest at ``uri``."""
    manifest = Manifest.from_json(read_uri(uri), source=str(uri))
    if not 0 <= index < len(manifest.specs):
        raise UsageError(
            f"index {index} is out of range: {uri} lists {len(manifest.specs)} spec(s)",
            hint="check --index / --index-base and the array size",
        )
    spec_uri = manifest_entry_uri(uri, manifest.specs[index])
    spec = load_spec(spec_uri)
    if spec.run_id != manifest.run_id:
        raise UsageError(
            f"{spec_uri} belongs to run {spec.run_id}, not to the manifest's run "
            f"{manifest.run_id}",
            hint="submit the run again so that its manifest and specs agree",
        )
    return spec


def array_index(
    explicit: int | None, environ: Mapping[str, str], *, base: int = 0
) -> int | None:
    """This array child's position from 0: ``--index``, else Batch's, else Slurm's variable.

    ``base`` is the number the array counts from (Batch: always 0; Slurm: what
    ``--array`` said, 0 when bidsbatch submits).
    """
    raw: str | int | None = explicit
    source = "--index"
    if raw is None:
        for name in ("AWS_BATCH_JOB_ARRAY_INDEX", "SLURM_ARRAY_TASK_ID"):
            if environ.get(name, "").strip():
                raw, source = environ[name].strip(), name
                break
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise UsageError(f"{source}={raw!r} is not a whole number") from None
    if value - base < 0:
        raise UsageError(f"{source}={value} is below the index base {base}",
                         hint="check --index-base")
    return value - base


def attempt_number(explicit: int | None, environ: Mapping[str, str]) -> int:
    """``--attempt``, else ``AWS_BATCH_JOB_ATTEMPT``, else Slurm's restart count + 1, else 1."""
    if explicit is not None:
        return explicit
    with contextlib.suppress(ValueError):
        if environ.get("AWS_BATCH_JOB_ATTEMPT"):
            return int(environ["AWS_BATCH_JOB_ATTEMPT"])
        if environ.get("SLURM_RESTART_COUNT"):
            return int(environ["SLURM_RESTART_COUNT"]) + 1
    return 1


def executor_job_id(explicit: str | None, environ: Mapping[str, str]) -> str | None:
    """``--job-id``, else ``AWS_BATCH_JOB_ID``, else ``SLURM_JOB_ID``."""
    if explicit:
        return explicit
    for name in ("AWS_BATCH_JOB_ID", "SLURM_JOB_ID"):
        if environ.get(name):
            return environ[name]
    return None
