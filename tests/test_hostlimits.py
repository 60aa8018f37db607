"""What the local executor may use: CPU affinity, cgroup CPU quota and memory limit.

The cgroup trees are real files in the kernel's formats, written in a temporary
folder (the cgroup root is an argument); the end-to-end test pins ``bidsbatch
run`` to one CPU with ``taskset``.
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import BIN

from bidsbatch.hostlimits import host_limits
from bidsbatch.ledger import Ledger
from bidsbatch.runs import RunDir
from bidsbatch.synth import make_dataset

GiB = 1024**3


def _meminfo(tmp_path: Path, available_gib: int) -> Path:
    path = tmp_path / "meminfo"
    path.write_text(f"MemTotal:       {64 * 1024 * 1024} kB\n"
                    f"MemFree:        1000 kB\n"
                    f"MemAvailable:   {available_gib * 1024 * 1024} kB\n")
    return path


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_quota_and_memory_limit(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    _write(root / "cgroup.controllers", "cpu memory\n")
    # A Slurm-like job cgroup (8 CPUs' quota, 16 GiB) around this process's step cgroup.
    _write(root / "job_42/cpu.max", "800000 100000\n")
    _write(root / "job_42/memory.max", f"{16 * GiB}\n")
    _write(root / "job_42/step_0/cpu.max", "max 100000\n")
    _write(root / "job_42/step_0/memory.max", "max\n")
    own = tmp_path / "self-cgroup"
    own.write_text("0::/job_42/step_0\n")
    limits = host_limits(cgroup_root=root, proc_self_cgroup=own,
                         meminfo=_meminfo(tmp_path, 100), affinity=set(range(128)))
    assert limits.cpus == 8
    assert limits.memory_mib == 16 * 1024
    assert "cgroup" in limits.cpu_source and "cgroup" in limits.memory_source


def test_cgroup_v1_quota_and_limit(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    _write(root / "cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "150000\n")
    _write(root / "cpu,cpuacct/docker/abc/cpu.cfs_period_us", "100000\n")
    _write(root / "memory/docker/abc/memory.limit_in_bytes", f"{3 * GiB}\n")
    own = tmp_path / "self-cgroup"
    own.write_text("4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n0::/\n")
    limits = host_limits(cgroup_root=root, proc_self_cgroup=own,
                         meminfo=_meminfo(tmp_path, 100), affinity=set(range(16)))
    assert limits.cpus == 1.5
    assert limits.memory_mib == 3 * 1024


def test_no_limits_affinity_and_memavailable(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    _write(root / "cpu/cpu.cfs_quota_us", "-1\n")
    _write(root / "cpu/cpu.cfs_period_us", "100000\n")
    _write(root / "memory/memory.limit_in_bytes", "9223372036854771712\n")
    own = tmp_path / "self-cgroup"
    own.write_text("4:memory:/\n2:cpu:/\n")
    limits = host_limits(cgroup_root=root, proc_self_cgroup=own,
                         meminfo=_meminfo(tmp_path, 5), affinity={0, 3, 5})
    assert limits.cpus == 3 and limits.cpu_source == "CPU affinity"
    assert limits.memory_mib == 5 * 1024 and limits.memory_source == "MemAvailable"


def test_a_process_cgroup_outside_the_mount_falls_back_to_the_root(tmp_path: Path) -> None:
    # In a container without a cgroup namespace, /proc/self/cgroup names the host's path.
    root = tmp_path / "cgroup"
    _write(root / "cgroup.controllers", "cpu memory\n")
    _write(root / "cpu.max", "200000 100000\n")
    _write(root / "memory.max", f"{2 * GiB}\n")
    own = tmp_path / "self-cgroup"
    own.write_text("0::/system.slice/docker-0123.scope\n")
    limits = host_limits(cgroup_root=root, proc_self_cgroup=own,
                         meminfo=_meminfo(tmp_path, 100), affinity=set(range(64)))
    assert (limits.cpus, limits.memory_mib) == (2, 2048)


def test_taskset_one_cpu_gives_one_slot(tmp_path: Path) -> None:
    """Pinned to one CPU, the executor runs one scan at a time: no two attempts overlap."""
    taskset = shutil.which("taskset")
    if taskset is None:
        pytest.skip("taskset (util-linux) is not installed")
    ds = make_dataset(tmp_path / "ds", subjects=3, sessions=None, shape=(8, 8, 6),
                      n_volumes=4)
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [taskset, "-c", "0", str(BIN / "bidsbatch"), "run", "--pipeline", "demo", str(ds),
                                                     str(tmp_path / "out"),
         "--run-dir", str(run_dir), "--json"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["counts"]["succeeded"] == 3
    with Ledger.open(RunDir(run_dir).ledger_path) as ledger:
        spans = sorted((a.started_at, a.finished_at) for a in ledger.attempts())
    assert len(spans) == 3 and all(start and end for start, end in spans)
    for (_s1, end1), (start2, _e2) in itertools.pairwise(spans):
        assert start2 >= end1, f"two scans ran at once under taskset -c 0: {spans}"
