"""How many scans of a pipeline's shape fit on this machine at once."""

from __future__ import annotations

from ...hostlimits import host_limits
from ...specs import Spec


def slots_for(spec: Spec, *, cpus: float | None = None, memory_mib: int | None = None) -> int:
    """How many scans of this shape fit at once in what this process may use (at least one)."""
    if cpus is None or memory_mib is None:
        limits = host_limits()  # affinity, cgroup quota and memory limit, MemAvailable
        cpus = limits.cpus if cpus is None else cpus
        memory_mib = limits.memory_mib if memory_mib is None else memory_mib
    by_cpu = int(cpus // max(spec.resources.vcpus, 0.01))
    by_mem = memory_mib // max(spec.resources.memory_mib, 1)
    return max(1, min(by_cpu, by_mem))
