"""What this process may use of the machine: CPUs and memory, limits included.

``os.cpu_count()`` is the machine's count. Under ``taskset -c 0``, in a
container with ``--cpus 2``, or in a Slurm allocation (``salloc -c 8`` on a
128-core node) this process may use far fewer, and the local executor must
size its slots by what it may use, not by what the machine has:

- CPUs: the affinity mask (``os.sched_getaffinity``), capped by the cgroup's
  CPU quota (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``);
- memory: ``MemAvailable`` of ``/proc/meminfo``, capped by the cgroup's limit
  (v2 ``memory.max``, v1 ``memory.limit_in_bytes``).

The cgroup of this process is read from ``/proc/self/cgroup`` and found under
the cgroup root (``/sys/fs/cgroup``); both are arguments, so tests read a
cgroup tree of real files written in a temporary folder.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

MiB = 1024 * 1024
#: cgroup v1 writes "no limit" as a huge number (PAGE_COUNTER_MAX pages), not "max".
_V1_UNLIMITED = 1 << 60


@dataclass(frozen=True)
class HostLimits:
    """The CPUs and memory this process may use, and where each figure came from."""

    cpus: float
    memory_mib: int
    cpu_source: str
    memory_source: str


def host_limits(
    *,
    cgroup_root: Path = Path("/sys/fs/cgroup"),
    proc_self_cgroup: Path = Path("/proc/self/cgroup"),
    meminfo: Path = Path("/proc/meminfo"),
    affinity: set[int] | None = None,
) -> HostLimits:
    """The CPUs and memory this process may use (see the module docstring)."""
    cpus, cpu_source = _affinity_cpus(affinity)
    memory, memory_source = _meminfo_available(meminfo)
    for folder in _cgroup_folders(cgroup_root, proc_self_cgroup):
        quota = _cpu_quota(folder)
        if quota is not None and quota < cpus:
            cpus, cpu_source = quota, f"cgroup CPU quota ({folder})"
        limit = _memory_limit(folder)
        if limit is not None and limit < memory:
            memory, memory_source = limit, f"cgroup memory limit ({folder})"
    return HostLimits(cpus=cpus, memory_mib=max(1, memory // MiB), cpu_source=cpu_source,
                      memory_source=memory_source)


def _affinity_cpus(affinity: set[int] | None) -> tuple[float, str]:
    if affinity is None and hasattr(os, "sched_getaffinity"):
        affinity = os.sched_getaffinity(0)
    if affinity:
        return float(len(affinity)), "CPU affinity"
    return float(os.cpu_count() or 1), "CPU count"


def _meminfo_available(meminfo: Path) -> tuple[int, str]:
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024, "MemAvailable"
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "physical memory"
    except (ValueError, OSError):
        return 4096 * MiB, "a guess (4 GiB)"


def _cgroup_folders(root: Path, proc_self_cgroup: Path) -> list[Path]:
    """This process's cgroup folders and their ancestors: a parent's limit binds too.

    ``/proc/self/cgroup`` lines are ``ID:CONTROLLERS:PATH``: ``0::PATH`` for v2,
    ``N:cpu,cpuacct:PATH`` and ``N:memory:PATH`` for v1 (whose hierarchies are
    mounted at ``ROOT/<controllers>``).
    """
    try:
        lines = proc_self_cgroup.read_text().splitlines()
    except OSError:
        return []
    bases: list[Path] = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _id, controllers, path = parts
        rel = path.strip().lstrip("/")
        if not controllers:
            # v2: one unified hierarchy, at the root or (hybrid layout) at ROOT/unified.
            hybrid = not (root / "cgroup.controllers").exists() and (root / "unified").is_dir()
            bases.append((root / "unified" if hybrid else root) / rel)
            continue
        for name in controllers.split(","):
            if name in ("cpu", "memory"):
                for mount in (root / controllers, root / name):
                    if mount.is_dir():
                        bases.append(mount / rel)
                        break
    folders: list[Path] = []
    for base in bases:
        # In a container the cgroup path is often that of the host, and the
        # container's own cgroup is mounted at the root: try both.
        for start in (base, *[p for p in base.parents if p == root or root in p.parents]):
            if start in folders or not start.is_dir():
                continue
            folders.append(start)
        # (the walk ends at the mount: ``root`` is a parent of every base)
    return folders


def _cpu_quota(folder: Path) -> float | None:
    v2 = _read(folder / "cpu.max")
    if v2 is not None:
        fields = v2.split()
        if len(fields) == 2 and fields[0] != "max":
            return _ratio(fields[0], fields[1])
        return None
    quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
    if quota is not None and period is not None and quota.strip() != "-1":
        return _ratio(quota, period)
    return None


def _ratio(quota: str, period: str) -> float | None:
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    if q <= 0 or p <= 0:
        return None
    # A quota of 1.5 CPUs runs one 1-CPU job at full speed, not two.
    return max(1.0, math.floor(q / p * 100) / 100)


def _memory_limit(folder: Path) -> int | None:
    """The cgroup's memory limit in bytes, None when it has none.

    Not minus its usage: ``memory.current`` counts the page cache, which the
    kernel reclaims for the jobs (``MemAvailable`` already says what is free).
    """
    for name in ("memory.max", "memory.limit_in_bytes"):
        text = _read(folder / name)
        if text is None:
            continue
        try:
            limit = int(text.strip())
        except ValueError:
            return None  # "max": no limit here
        return None if limit >= _V1_UNLIMITED else limit
    return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None
