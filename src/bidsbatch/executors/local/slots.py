"""How many scans of a pipeline's shape fit on this machine at once."""

from __future__ import annotations

import os

from ...specs import Spec


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
