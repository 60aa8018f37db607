"""What scans used, measured by the worker, and what the next run should ask for.

One local run of the demo app told to hold a known amount of memory (its
``--allocate-mib``), read back through the marker, ``cost RUN``, ``cost suggest``,
``plan --resources-from`` and ``cost estimate`` (which prices with the run's
median time per scan). The cgroup readers run on cgroup trees laid out as
podman and docker leave them (v1 and v2); real podman containers are measured
in ``test_containers.py``.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

import pytest
from conftest import run_cli

from bidsbatch.markers import Marker, marker_key
from bidsbatch.synth import make_dataset
from bidsbatch.usage import BY_RUSAGE, cgroup_files, read_cgroup

ALLOCATE_MIB = 300
ASKED_MIB = 1024


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A local run of one scan whose app holds ALLOCATE_MIB MiB; its home is kept for others."""
    import os

    base = tmp_path_factory.mktemp("usage")
    ds = make_dataset(base / "ds", subjects=1, sessions=None, shape=(6, 6, 4), n_volumes=4)
    demo = (resources.files("bidsbatch") / "presets" / "demo.toml").read_text()
    pipe = base / "alloc.toml"
    pipe.write_text(demo.replace('name = "demo"', 'name = "alloc"')
                    .replace('"{participant}",', f'"{{participant}}", "--allocate-mib", '
                                                 f'"{ALLOCATE_MIB}",', 1)
                    .replace("memory_mib = 512", f"memory_mib = {ASKED_MIB}"))
    env = {"BIDSBATCH_HOME": str(base / "home"), "BIDSBATCH_CONFIG_DIR": str(base / "cfg")}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        res = run_cli("run", str(ds), str(base / "out"), "--pipeline", str(pipe))
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert res.returncode == 0, res.output
    run_id = re.search(r"run directory: .*/(alloc-[0-9a-f]+)", res.stderr)
    assert run_id, res.stderr
    return {"ds": ds, "out": base / "out", "pipe": pipe, "env": env, "run": run_id[1],
            "stderr": res.stderr}


def test_peak_memory_is_what_the_app_held(measured: dict[str, object]) -> None:
    out = Path(str(measured["out"]))
    marker = Marker.from_json((out / marker_key("sub-01")).read_text())
    usage = marker.usage
    assert usage is not None and usage.measured == BY_RUSAGE
    log = (out / ".bidsbatch/done/sub-01.log").read_text()
    before = float(re.search(r"holding \d+ MiB \(resident before: ([\d.]+) MiB\)", log)[1])
    # The app's peak is what it held before plus what it allocated: within 10% of it.
    assert usage.peak_memory_mib is not None
    assert abs(usage.peak_memory_mib - (before + ALLOCATE_MIB)) <= 0.1 * ALLOCATE_MIB
    assert usage.cpu_seconds is not None and 0 < usage.cpu_seconds <= usage.wall_seconds * 2
    assert "peak memory" in log  # the worker says it too
    # The end of `run` suggests less memory: the app used about a third of what it asked.
    assert "right-size: the scans used at most" in str(measured["stderr"])
    assert f"see bidsbatch cost suggest {measured['run']}" in str(measured["stderr"])


def test_cost_shows_usage_and_suggest_lowers_memory(measured: dict[str, object]) -> None:
    env = measured["env"]
    assert isinstance(env, dict)
    run = str(measured["run"])
    cost = run_cli("cost", run, "--json", env=env)
    assert cost.returncode == 0, cost.stderr
    assert json.loads(cost.stdout)["usage"]["sub-01"]["peak_memory_mib"] > ALLOCATE_MIB
    res = run_cli("cost", "suggest", run, "--json", env=env)
    assert res.returncode == 0, res.stderr
    sug = json.loads(res.stdout)
    assert sug["current"]["memory_mib"] == ASKED_MIB
    p95 = sug["peak_memory_p95_mib"]
    # p95 plus 20% (at least 256 MiB), rounded up to a slot of the instance that packs whole.
    assert max(p95 * 1.2, p95 + 256) <= sug["suggested"]["memory_mib"] < ASKED_MIB
    assert sug["suggested"]["vcpus"] == 1
    assert sug["per_instance"]["suggested"] >= sug["per_instance"]["now"]
    # The next plan asks for what was suggested.
    plan = run_cli("plan", str(measured["ds"]), str(Path(str(measured["out"])).parent / "o2"),
                   "--pipeline", str(measured["pipe"]), "--resources-from", run, "--json",
                   env=env)
    assert plan.returncode == 0, plan.stderr
    spec = json.loads(plan.stdout)["specs"][0]
    assert spec["resources"]["memory_mib"] == sug["suggested"]["memory_mib"]
    assert f"resources from run {run}" in plan.stderr


def test_estimate_uses_the_median_of_earlier_runs(measured: dict[str, object],
                                                  tmp_path: Path) -> None:
    env = measured["env"]
    assert isinstance(env, dict)
    res = run_cli("cost", "estimate", str(measured["ds"]), "--pipeline", str(measured["pipe"]),
                  "--json", env=env)
    assert res.returncode == 0, res.stderr
    est = json.loads(res.stdout)
    assert est["hours_per_scan"] < 0.1  # seconds, not the default hour
    assert any("median of 1 scan(s) of 1 earlier alloc run(s)" in a for a in est["assumptions"])
    assert "warning: the prices are from 2024-12-01" in res.stderr
    assert "bidsbatch cost prices --refresh" in res.stderr
    fresh = run_cli("cost", "estimate", str(measured["ds"]), "--pipeline",
                    str(measured["pipe"]), "--json",
                    env={**env, "BIDSBATCH_HOME": str(tmp_path / "empty")})
    est = json.loads(fresh.stdout)
    assert est["hours_per_scan"] == 1.0
    assert any("no earlier alloc run here: the default" in a for a in est["assumptions"])


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_files_of_a_container_v1_and_v2(tmp_path: Path) -> None:
    cid = "4f1c" * 16
    # cgroup v1, podman with cgroupfs: memory and cpuacct hierarchies apart.
    v1 = tmp_path / "v1"
    _write(v1 / "memory/libpod_parent" / f"libpod-{cid}" / "memory.max_usage_in_bytes",
           f"{300 * 1024 * 1024}\n")
    _write(v1 / "cpuacct/libpod_parent" / f"libpod-{cid}" / "cpuacct.usage", "2500000000\n")
    files = cgroup_files(cid, root=v1)
    assert files is not None and read_cgroup(files) == (300.0, 2.5)
    # cgroup v2, systemd: one tree, podman's processes one level down in container/.
    v2 = tmp_path / "v2"
    _write(v2 / "cgroup.controllers", "cpu memory\n")
    inner = v2 / "machine.slice" / f"libpod-{cid}.scope" / "container"
    _write(inner / "memory.peak", f"{64 * 1024 * 1024}\n")
    _write(inner / "cpu.stat", "usage_usec 1500000\nuser_usec 1000000\n")
    files = cgroup_files(cid, root=v2)
    assert files is not None and read_cgroup(files) == (64.0, 1.5)
    assert cgroup_files("0" * 64, root=v2) is None
