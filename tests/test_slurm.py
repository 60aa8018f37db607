"""The Slurm executor's parts: settings, job script, parsing, states, and its calls to a
real cluster (how many, how often), with the no-accounting fallback."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from conftest import run_cli
from slurm_cluster import SlurmCluster

from bidsbatch.errors import CredentialsInJobError, UsageError
from bidsbatch.executors import make_executor, restore_executor
from bidsbatch.executors.slurm.commands import (
    Completed,
    SlurmCommands,
    parse_config,
    parse_sacct,
    parse_squeue,
    subprocess_runner,
)
from bidsbatch.executors.slurm.executor import SlurmExecutor
from bidsbatch.executors.slurm.script import JobShape, array_script, group_script
from bidsbatch.executors.slurm.settings import SlurmSettings, parse_extra
from bidsbatch.executors.slurm.states import Phase, phase
from bidsbatch.executors.slurm.submit import array_option, chunks
from bidsbatch.ledger import Ledger
from bidsbatch.runs import find_run
from bidsbatch.synth import make_dataset

# --------------------------------------------------------------------------- settings


def test_extra_options_are_checked() -> None:
    assert parse_extra("--constraint=avx2 --nice=10 --exclusive") == (
        "--constraint=avx2", "--nice=10", "--exclusive")
    for bad in ("--constraint=avx2;rm -rf ~", "--x=$(id)", "-p big", "--comment='a b'",
                "--nice=1 `id`", "constraint=avx2", "--output=/tmp/x", "--array=0-3",
                "--wrap=id", '"--nice=1'):
        with pytest.raises(UsageError):
            parse_extra(bad)


def test_settings_round_trip_through_the_ledger_form() -> None:
    given = {"slurm_partition": "gpu", "slurm_account": "lab-x", "slurm_qos": "normal",
             "slurm_max_running": 20, "slurm_extra": "--constraint=avx2  --nice=10"}
    exe = make_executor("slurm", given)
    saved = exe.saved_settings()
    assert saved["slurm_extra"] == "--constraint=avx2 --nice=10"
    assert saved["slurm_poll_seconds"] == 30
    assert restore_executor("slurm", saved).settings == exe.settings
    assert exe.settings.extra == ("--constraint=avx2", "--nice=10")
    for bad in ({"slurm_partition": "gpu; id"}, {"slurm_max_running": 0},
                {"slurm_extra": "--x=$(id)"}, {"slurm_poll_seconds": -1}):
        with pytest.raises(UsageError):
            make_executor("slurm", bad)
    with pytest.raises(CredentialsInJobError):
        SlurmSettings(job_env={"AWS_SECRET_ACCESS_KEY": "x"}).resolved()


# --------------------------------------------------------------------------- script


def _bash_syntax_ok(text: str, tmp_path: Path) -> None:
    path = tmp_path / "job.sh"
    path.write_text(text)
    res = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_job_script_quotes_every_value(tmp_path: Path) -> None:
    odd = tmp_path / "runs with space" / "it's $(id)"
    settings = SlurmSettings(slurm_partition="gpu", slurm_extra="--constraint=avx2",
                             job_env={"MY_VAR": "a b; $(id)"}).resolved()
    shape = JobShape(cpus=4, memory_mib=8192, gpus=1, time_minutes=150)
    text = array_script(run_id="demo-0123456789", submission=3, manifest=odd / "m.json",
                        log_dir=odd / "logs", shape=shape, settings=settings)
    lines = text.splitlines()
    assert lines[0] == "#!/bin/bash"
    for want in ("--job-name=demo", "--cpus-per-task=4", "--mem=8192M", "--time=150",
                 "--gres=gpu:1", "--partition=gpu", "--constraint=avx2", "--requeue",
                 "--open-mode=append"):
        assert any(ln.startswith("#SBATCH " + want.split("=")[0]) and want.split("=")[-1] in ln
                   for ln in lines), want
    out = next(ln for ln in lines if ln.startswith("#SBATCH --output="))
    assert shlex.split(out.split("=", 1)[1]) == [str(odd / "logs" / "%A_%a.log")]
    assert f"export MY_VAR={shlex.quote('a b; $(id)')}" in lines
    command = shlex.split(lines[-1])
    assert command[0] == "exec" and command[2:5] == ["worker", "--manifest", str(odd / "m.json")]
    assert command[5:7] == ["--index-offset", "$offset"]
    _bash_syntax_ok(text, tmp_path)
    group = group_script(run_id="demo-0123456789", run_dir=odd, log_dir=odd / "logs",
                         shape=shape, settings=SlurmSettings())
    assert shlex.split(group.splitlines()[-1])[-1] == str(odd)
    _bash_syntax_ok(group, tmp_path)


def test_chunks_and_array_option() -> None:
    parts = chunks([f"s{i}" for i in range(10_000)], 10_001)
    assert len(parts) == 1 and parts[0].offset == 0
    parts = chunks([f"s{i}" for i in range(10_000)], 1001)
    assert [p.offset for p in parts] == list(range(0, 10_000, 1001))
    assert sum(len(p.scans) for p in parts) == 10_000 and len(parts[-1].scans) == 991
    assert array_option(5, None) == "--array=0-4"
    assert array_option(5, 2) == "--array=0-4%2"
    assert array_option(1, None) == "--array=0"


# --------------------------------------------------------------------------- parsing


def test_parse_squeue_sacct_config() -> None:
    rows = parse_squeue("7|0|8|COMPLETED|None|2026-12-01T10:00:00|2026-12-01T10:00:05|2|bb-r\n"
                        "7|3|7|PENDING|JobArrayTaskLimit|N/A|N/A|2|bb-r\n"
                        "9|N/A|9|PENDING|Dependency|N/A|N/A|1|bb-r\n")
    assert [r.key for r in rows] == ["7_0", "7_3", "9"]
    assert rows[0].start == "2026-12-01T10:00:00" and rows[1].start is None
    assert rows[1].reason == "JobArrayTaskLimit" and rows[0].cpus == 2
    acct = parse_sacct("7_2|10|bb-r|FAILED|3:0|2026-12-01T10:00:00|2026-12-01T10:01:00|2|"
                       "00:01:30.5\n7_4|12|bb-r|CANCELLED by 0|0:15|Unknown|Unknown|2|\n")
    assert acct[0].key == "7_2" and acct[0].exit_code == 3 and acct[0].cpu_seconds == 90.5
    assert acct[1].state == "CANCELLED" and acct[1].start is None
    assert parse_config("MaxArraySize            = 1001\nMinJobAge = 300 sec\n")[
        "MaxArraySize"] == "1001"


def test_states() -> None:
    assert phase("PENDING") is Phase.QUEUED and phase("RUNNING") is Phase.RUNNING
    assert phase("COMPLETED") is Phase.ENDED and phase("CANCELLED by 0") is Phase.CANCELLED
    for s in ("FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "SOMETHING_NEW"):
        assert phase(s) is Phase.FAILED
    assert phase("PREEMPTED") is Phase.REQUEUED and phase("REQUEUE_HOLD") is Phase.REQUEUED


# --------------------------------------------------------------------------- the cluster


class Counting:
    """The real runner, counting the commands it ran by name."""

    def __init__(self) -> None:
        self.inner = subprocess_runner()
        self.calls: list[str] = []

    def __call__(self, argv: Sequence[str]) -> Completed:
        self.calls.append(argv[0])
        return self.inner(argv)

    def count(self, name: str) -> int:
        return self.calls.count(name)


def test_commands_on_a_cluster_without_accounting(slurm: SlurmCluster,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_CONF", str(slurm.conf))
    commands = SlurmCommands(Counting())
    assert commands.max_array_size() == 10001
    res = slurm.run("sbatch", "--parsable", "--hold", "--array=0-2", "-J", "bb-cmds",
                    "--wrap", "true")
    array = res.stdout.strip()
    try:
        rows = commands.squeue(name="bb-cmds")
        assert sorted(r.key for r in rows) == [f"{array}_{i}" for i in range(3)]
        assert all(r.state == "PENDING" for r in rows)
        # sacct says "Slurm accounting storage is disabled" and exits 1: not an error
        assert commands.sacct([array], since="now-1hour") is None
    finally:
        commands.scancel([array])
    commands.scancel([array])  # gone already: fine


@pytest.fixture(scope="module")
def ds(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    return make_dataset(tmp_path_factory.mktemp("ds") / "ds", subjects=2, sessions=("1",),
                        shape=(12, 12, 8), n_volumes=8)


def test_poll_cadence_one_squeue_per_poll(ds: Path, tmp_path: Path, slurm: SlurmCluster,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_CONF", str(slurm.conf))
    env = {**slurm.env, "BIDSBATCH_DEMO_SLEEP": "30"}
    res = run_cli("run", "--pipeline", "demo", str(ds), str(tmp_path / "out"), "--executor",
                  "slurm", "--no-wait",
                  "--json", env=env)
    assert res.returncode == 0, res.stderr
    run = find_run(json.loads(res.stdout)["run_id"])
    now = [time.time() + 100.0]
    counting = Counting()
    with Ledger.open(run.ledger_path) as ledger:
        settings = ledger.executor_settings
        assert settings["slurm_poll_seconds"] == 30  # the default
        exe = SlurmExecutor(SlurmSettings.from_json(settings), runner=counting,
                            clock=lambda: now[0])
        try:
            exe.poll(run, ledger)
            # one squeue for the whole run; sacct tried once, disabled, not asked again
            assert counting.calls == ["squeue", "sacct"]
            assert ledger.get_meta("slurm_accounting") is False
            now[0] += 29
            for _ in range(20):
                exe.poll(run, ledger)
            assert counting.calls == ["squeue", "sacct"]  # not yet 30 s: nothing asked
            now[0] += 1
            exe.poll(run, ledger)
            assert counting.calls == ["squeue", "sacct", "squeue"]
            # a running task requeued by Slurm (node failure, preemption): an attempt ended
            deadline = time.monotonic() + 60
            while ledger.counts()["running"] < 2 and time.monotonic() < deadline:
                now[0] += 30
                exe.poll(run, ledger)
                time.sleep(0.5)
            rec = ledger.scans()[0]
            assert rec.state == "running" and rec.attempts == 1
            assert slurm.run("scontrol", "requeue", rec.job_id).returncode == 0
            deadline = time.monotonic() + 30
            while ledger.scan(rec.scan_id).state == "running" and time.monotonic() < deadline:
                now[0] += 30  # COMPLETING first, then PENDING (BeginTime) for ~2 minutes
                exe.poll(run, ledger)
                time.sleep(0.5)
            rec = ledger.scan(rec.scan_id)
            assert rec is not None and rec.state == "submitted" and rec.attempts == 1
            (attempt,) = ledger.attempts(rec.scan_id)
            assert attempt.finished_at and "requeued" in (attempt.reason or "")
            calls = len(counting.calls)
            exe.cancel(run, ledger)
            assert counting.calls[calls:] == ["scancel"]  # one call for the whole run
            assert ledger.counts()["cancelled"] == 2
        finally:
            exe.cancel(run, ledger)
    assert slurm.wait_idle(30)
    assert os.environ["SLURM_CONF"] == str(slurm.conf)


def test_poll_seconds_zero_is_kept() -> None:
    assert make_executor("slurm", {"slurm_poll_seconds": 0}).settings.slurm_poll_seconds == 0
    assert make_executor("slurm", {}).settings.slurm_poll_seconds == 30


def test_a_killed_sessions_cluster_is_reaped(tmp_path: Path) -> None:
    """A session killed before its teardown leaves its daemons; the next start stops them."""
    import slurm_cluster

    why = slurm_cluster.ensure_slurm()
    if why:
        pytest.skip(why)
    tests = Path(__file__).parent
    # The starter exits at once without stopping its cluster, as `kill -9` of pytest would.
    child = subprocess.run(
        [sys.executable, "-c",
         "import sys, json; sys.path.insert(0, sys.argv[1]); import slurm_cluster as s; "
         "c = s.start_cluster(s.Path(sys.argv[2]), cpus=2); print(json.dumps(c.pids()))",
         str(tests), str(tmp_path / "orphan")],
        capture_output=True, text=True, timeout=120, check=True)
    pids = json.loads(child.stdout)
    assert len(pids) == 3 and all(slurm_cluster._alive(p) for p in pids)
    try:
        ended = slurm_cluster.reap_stale()
        assert sorted(ended) == sorted(pids)
        assert not any(slurm_cluster._alive(p) for p in pids)
        assert not list(slurm_cluster.REGISTRY.glob("*.json")) or all(
            json.loads(r.read_text())["state"] != str((tmp_path / "orphan").resolve())
            for r in slurm_cluster.REGISTRY.glob("*.json"))
    finally:
        for pid in pids:
            if slurm_cluster._alive(pid) and slurm_cluster._names_cluster(
                    pid, str((tmp_path / "orphan").resolve())):
                slurm_cluster._end(pid)
