"""What the app really used: its peak memory and CPU time, measured by the worker.

The worker waits for the app with ``os.wait4``, whose ``rusage`` covers the
app process and every descendant it waited for: ``ru_maxrss`` is the largest
resident set of any one of them (Linux: KiB), ``ru_utime + ru_stime`` their
CPU time. That is the app itself when it runs as a plain process, under
Apptainer (its starter waits for the app), and on AWS Batch (the worker and
the app share the job's container, the app being the worker's child).

docker and podman are different: the client the worker starts only talks to
the engine, and the container's processes are children of ``conmon`` (or
containerd's shim), never of the worker. Their figures are read from the
container's own cgroup while it runs (:class:`CgroupSampler`): ``memory.peak``
(cgroup v2) or ``memory.max_usage_in_bytes`` (v1), and the CPU time of
``cpu.stat`` (``usage_usec``) or ``cpuacct.usage``. Where the cgroup cannot be
found, nothing is claimed: the figures are None and ``measured`` says why.

The result travels in the completion marker (:mod:`bidsbatch.markers`), so it
survives whatever engine ran the scan.
"""

from __future__ import annotations

import os
import resource
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .containers.job import AppLaunch
    from .cwl.launch import CwlLaunch

MiB = 1024 * 1024
#: What ``measured`` says for each way of measuring.
BY_RUSAGE = "rusage of the app process and the children it waited for (wait4)"
BY_CGROUP = "the container's cgroup"
CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class AppUsage:
    """The app's peak memory (MiB), CPU time and run time (s), and how they were measured."""

    peak_memory_mib: float | None
    cpu_seconds: float | None
    wall_seconds: float
    measured: str

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AppUsage:
        return cls(peak_memory_mib=_num(data.get("peak_memory_mib")),
                   cpu_seconds=_num(data.get("cpu_seconds")),
                   wall_seconds=float(data.get("wall_seconds") or 0.0),
                   measured=str(data.get("measured") or ""))

    @property
    def cpu_use(self) -> float | None:
        """Average CPUs busy while the app ran (CPU time / wall time)."""
        if self.cpu_seconds is None or self.wall_seconds <= 0:
            return None
        return self.cpu_seconds / self.wall_seconds


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


def rusage_usage(ru: resource.struct_rusage, *, wall_seconds: float) -> AppUsage:
    """An :class:`AppUsage` from ``wait4``'s rusage (``ru_maxrss`` is KiB on Linux)."""
    return AppUsage(peak_memory_mib=ru.ru_maxrss / 1024,
                    cpu_seconds=ru.ru_utime + ru.ru_stime,
                    wall_seconds=wall_seconds, measured=BY_RUSAGE)


class AppWaiter:
    """Waits for the app with ``os.wait4`` to keep its rusage.

    Stands in for ``Popen.wait``/``poll``: once the app is reaped its return code is
    set on the ``Popen`` object, so nothing else ever waits for the pid (a second
    ``waitpid`` would find no child and lose the exit status). The wait is a pidfd
    (:mod:`bidsbatch.pidwait`): the caller's thread sleeps in ``poll`` until the app
    exits or the timeout passes, then ``wait4`` reaps it at once; no thread a scan.
    Without a pidfd (not Linux, an old kernel) one thread blocks in ``wait4``.
    """

    def __init__(self, proc: subprocess.Popen[bytes], *,
                 sampler: CgroupSampler | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        from .pidwait import open_pidfd

        self.proc = proc
        self._sampler = sampler
        self.pid = proc.pid
        self._clock = clock
        self._started = clock()
        self._ended: float | None = None
        self._rusage: resource.struct_rusage | None = None
        self._done = threading.Event()
        self._pidfd = open_pidfd(proc.pid)
        if self._pidfd is None:
            threading.Thread(target=self._reap, args=(0,), name="app-wait4",
                             daemon=True).start()

    def _reap(self, flags: int) -> bool:
        """Reap the app (``flags``: 0 blocks, WNOHANG does not); whether it has ended."""
        while True:
            try:
                pid, status, ru = os.wait4(self.pid, flags)
            except InterruptedError:  # pragma: no cover (PEP 475 retries it)
                continue
            except ChildProcessError:  # reaped elsewhere: no figures
                self.proc.returncode = self.proc.returncode if \
                    self.proc.returncode is not None else 0
                break
            if pid == 0:  # WNOHANG: still running
                return False
            self._rusage = ru
            self.proc.returncode = os.waitstatus_to_exitcode(status)
            break
        self._ended = self._clock()
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        self._done.set()
        return True

    def wait(self, timeout: float | None = None) -> int:
        """The app's return code; ``subprocess.TimeoutExpired`` after ``timeout`` seconds."""
        if not self._done.is_set() and self._pidfd is not None:
            from .pidwait import wait_pidfd

            if not wait_pidfd(self._pidfd, timeout):
                raise subprocess.TimeoutExpired(self.proc.args, timeout or 0.0)
            self._reap(0)  # it has exited: this returns at once
        if not self._done.wait(timeout):
            raise subprocess.TimeoutExpired(self.proc.args, timeout or 0.0)
        return int(self.proc.returncode)

    def poll(self) -> int | None:
        if not self._done.is_set() and self._pidfd is not None:
            self._reap(os.WNOHANG)
        return int(self.proc.returncode) if self._done.is_set() else None

    @property
    def returncode(self) -> int | None:
        return self.poll()

    def usage(self) -> AppUsage | None:
        """What the app used (None while it runs, or when it was reaped elsewhere)."""
        if self._ended is None:
            return None
        wall = self._ended - self._started
        if self._sampler is not None:
            self._sampler.stop()
            return self._sampler.usage(wall_seconds=wall)
        if self._rusage is None:
            return None
        return rusage_usage(self._rusage, wall_seconds=wall)


class UsageMeter:
    """How one app run is measured: rusage, or its container's cgroup.

    ``container_id`` (docker, podman) finds the running container's id; without
    it the app is measured by ``wait4``'s rusage.
    """

    def __init__(self, *, container_id: Callable[[], str | None] | None = None,
                 runtime: str = "") -> None:
        self.container_id = container_id
        self.runtime = runtime

    @classmethod
    def for_launch(cls, launch: AppLaunch | CwlLaunch) -> UsageMeter:
        from .containers.job import AppLaunch

        # cwltool is our child whatever it runs the tool in: its rusage, which counts
        # the children it waited for, is what can be measured.
        if not isinstance(launch, AppLaunch) or launch.request is None \
                or not launch.runtime.keeps_containers:
            return cls()  # a plain process, or Apptainer: the app is our descendant
        return cls(container_id=launch.container_id, runtime=launch.runtime.name)

    def start(self, proc: subprocess.Popen[bytes]) -> AppWaiter:
        sampler = None
        if self.container_id is not None:
            sampler = CgroupSampler(self.container_id, runtime=self.runtime)
        return AppWaiter(proc, sampler=sampler)


def describe_usage(usage: AppUsage | None) -> str:
    """For the worker log: ``; peak memory 312.4 MiB, CPU time 41.2 s`` (or nothing)."""
    if usage is None:
        return ""
    if usage.peak_memory_mib is None and usage.cpu_seconds is None:
        return f"; usage {usage.measured}"
    parts = []
    if usage.peak_memory_mib is not None:
        parts.append(f"peak memory {usage.peak_memory_mib:.1f} MiB")
    if usage.cpu_seconds is not None:
        parts.append(f"CPU time {usage.cpu_seconds:.1f} s")
    return "; " + ", ".join(parts)


# --------------------------------------------------------------------------- cgroups


@dataclass(frozen=True)
class CgroupFiles:
    """Where one cgroup keeps its memory high-water mark and CPU time."""

    memory_peak: Path | None
    cpu: Path | None
    cpu_is_usec_stat: bool  # v2 cpu.stat (usage_usec) rather than v1 cpuacct.usage (ns)


def cgroup_files(container_id: str, *, root: Path = CGROUP_ROOT) -> CgroupFiles | None:
    """The cgroup files of a container (found by its id in the cgroup tree), or None."""
    if not container_id:
        return None
    v2 = (root / "cgroup.controllers").exists()
    if v2:
        found = _find_dir(root, container_id)
        if found is None:
            return None
        return CgroupFiles(_exists(found / "memory.peak"), _exists(found / "cpu.stat"), True)
    memory = _find_dir(root / "memory", container_id)
    cpu = _find_dir(root / "cpuacct", container_id) or _find_dir(root / "cpu,cpuacct",
                                                                container_id)
    if memory is None and cpu is None:
        return None
    return CgroupFiles(_exists(memory / "memory.max_usage_in_bytes") if memory else None,
                       _exists(cpu / "cpuacct.usage") if cpu else None, False)


def _exists(path: Path) -> Path | None:
    return path if path.exists() else None


def _find_dir(top: Path, container_id: str, *, depth: int = 4) -> Path | None:
    """The folder under ``top`` whose name holds the container id (libpod-ID, docker-ID.scope)."""
    level = [top]
    for _ in range(depth):
        nxt = []
        for folder in level:
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue
            for e in entries:
                if e.is_dir(follow_symlinks=False):
                    if container_id in e.name:
                        # podman nests the container's processes one level down
                        inner = Path(e.path) / "container"
                        return inner if inner.is_dir() else Path(e.path)
                    nxt.append(Path(e.path))
        level = nxt
    return None


def read_cgroup(files: CgroupFiles) -> tuple[float | None, float | None]:
    """(peak memory MiB, CPU seconds) of a cgroup now; None for what cannot be read."""
    peak = cpu = None
    try:
        if files.memory_peak is not None:
            peak = int(files.memory_peak.read_text().strip()) / MiB
        if files.cpu is not None:
            text = files.cpu.read_text()
            if files.cpu_is_usec_stat:
                for line in text.splitlines():
                    key, _, value = line.partition(" ")
                    if key == "usage_usec":
                        cpu = int(value) / 1e6
            else:
                cpu = int(text.strip()) / 1e9
    except (OSError, ValueError):
        pass  # the container is gone: the last reading stands
    return peak, cpu


class CgroupSampler:
    """Reads a container's cgroup while it runs; the last reading is its usage.

    The container is removed when it exits (``--rm``), its cgroup with it, so the
    high-water mark is read every ``interval`` seconds: what the app reached in
    its last ``interval`` before exiting may be missed (said in ``measured``).
    ``find_id`` returns the container's id once the engine knows it (None before).
    """

    def __init__(self, find_id: Callable[[], str | None], *, runtime: str,
                 interval: float = 0.2, root: Path = CGROUP_ROOT) -> None:
        self._find_id = find_id
        self._runtime = runtime
        self._interval = interval
        self._root = root
        self._stop = threading.Event()
        self.peak: float | None = None
        self.cpu: float | None = None
        self.found = False
        self._thread = threading.Thread(target=self._loop, name="app-cgroup", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        files = None
        while not self._stop.is_set():
            if files is None:
                cid = self._find_id()
                files = cgroup_files(cid, root=self._root) if cid else None
            if files is not None:
                self.found = True
                peak, cpu = read_cgroup(files)
                if peak is not None:
                    self.peak = max(self.peak or 0.0, peak)
                if cpu is not None:
                    self.cpu = max(self.cpu or 0.0, cpu)
            self._stop.wait(self._interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def usage(self, *, wall_seconds: float) -> AppUsage:
        if not self.found:
            return AppUsage(None, None, wall_seconds,
                            f"not measured: the app ran in a {self._runtime} container, whose "
                            "processes are not the worker's children, and its cgroup was "
                            "not found")
        return AppUsage(self.peak, self.cpu, wall_seconds,
                        f"{BY_CGROUP} ({self._runtime}; page cache included), read every "
                        f"{self._interval:g} s")
