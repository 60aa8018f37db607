"""``bidsbatch run --executor slurm`` end to end on a real one-node Slurm cluster.

The cluster (``slurm_cluster.py``) runs on 127.0.0.1 without accounting, so
these also cover the no-sacct path. Every command is the installed CLI; the
demo app sleeps (``BIDSBATCH_DEMO_SLEEP``, exported to the jobs by sbatch)
where a test needs tasks to be running.
"""

from __future__ import annotations

import itertools
import json
import re
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import run_cli
from slurm_cluster import SlurmCluster, ensure_slurm, start_cluster

from bidsbatch.synth import make_dataset

FAST = ["--executor", "slurm", "--slurm-poll-seconds", "1"]


@pytest.fixture(scope="module")
def ds(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    return make_dataset(tmp_path_factory.mktemp("ds") / "ds", subjects=3, sessions=("1", "2"),
                        shape=(12, 12, 8), n_volumes=8)


def _env(cluster: SlurmCluster, **extra: str) -> dict[str, str]:
    return {**cluster.env, **extra}


def _status(run: str, env: dict[str, str]) -> dict:
    res = run_cli("status", run, "--json", env=env)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def _scans(status: dict) -> dict[str, dict]:
    return {s["scan_id"]: s for s in status["scans"]}


def _until(what: str, check: Callable[[], bool], *, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _squeue(cluster: SlurmCluster, run_id: str) -> list[list[str]]:
    res = cluster.run("squeue", "-h", "-r", "-t", "all", "--name", f"bb-{run_id}",
                      "-o", "%i|%T|%r|%E")
    assert res.returncode == 0, res.stderr
    return [ln.split("|") for ln in res.stdout.splitlines() if ln.strip()]


def _jobs(run_dir: str, kind: str) -> list[tuple[str, list[str], dict]]:
    con = sqlite3.connect(Path(run_dir) / "ledger.sqlite")
    try:
        rows = con.execute("SELECT job_id, scans, details FROM jobs WHERE kind = ? "
                           "ORDER BY submitted_at, job_id", (kind,)).fetchall()
    finally:
        con.close()
    return [(j, json.loads(s), json.loads(d)) for j, s, d in rows]


def test_run_status_logs_cost_report(ds: Path, tmp_path: Path, slurm: SlurmCluster) -> None:
    out = tmp_path / "out"
    env = _env(slurm)
    res = run_cli("run", "--pipeline", "demo", str(ds), str(out), *FAST, "--json", env=env,
                  timeout=240)
    assert res.returncode == 0, res.stderr + slurm.log_tail()
    status = json.loads(res.stdout)
    assert status["counts"]["succeeded"] == 6 and status["group_state"] == "succeeded"
    assert "6 scan(s) submitted to slurm" in res.stderr
    assert (out / "group_brainvolume.tsv").read_text().count("\n") == 7
    scans = _scans(status)
    # one array of 6 tasks: job ids A_0 … A_5, logs named by Slurm's %A_%a
    arrays = _jobs(status["run_dir"], "array")
    assert len(arrays) == 1
    array_id, listed, _ = arrays[0]
    assert sorted(listed) == sorted(scans)
    for i, sid in enumerate(listed):
        assert scans[sid]["job_id"] == f"{array_id}_{i}"
        assert scans[sid]["log"].endswith(f"logs/slurm/{array_id}_{i}.log")
        marker = json.loads((out / ".bidsbatch/done" / f"{sid}.json").read_text())
        assert marker["executor_job_id"] == f"{array_id}_{i}"
    # the job script is in the run directory, readable, every value quoted
    script = Path(status["run_dir"]) / "slurm" / "submit-1.sh"
    text = script.read_text()
    assert f"#SBATCH --job-name=bb-{status['run_id']}" in text
    assert "#SBATCH --cpus-per-task=1" in text and "#SBATCH --mem=512M" in text
    assert "#SBATCH --time=40" in text and "#SBATCH --requeue" in text
    assert re.search(r"^exec \S+bidsbatch worker --manifest \S+manifest-1\.json", text, re.M)
    # the worker's and the app's lines, from the task's file
    logs = run_cli("logs", status["run_id"], "sub-02_ses-1", env=env)
    assert logs.returncode == 0, logs.stderr
    assert "[app]" in logs.stdout and "[worker]" in logs.stdout
    group = run_cli("logs", status["run_id"], "group", env=env)
    assert group.returncode == 0 and "group step done" in group.stdout
    # the table, with CPU time (allocated CPUs × wall), and the cost
    table = run_cli("status", status["run_id"], env=env)
    assert "succeeded 6" in table.stderr and "CPU time" in table.stderr
    cost = run_cli("cost", status["run_id"], env=env)
    assert cost.returncode == 0, cost.stderr
    assert (Path(status["run_dir"]) / "report.html").exists()
    # a second run skips every scan and submits nothing
    again = run_cli("run", "--pipeline", "demo", str(ds), str(out), *FAST, "--json", env=env,
                    timeout=120)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["counts"]["skipped"] == 6
    assert len(_jobs(status["run_dir"], "array")) == 1


def test_killed_task_retry_while_running_then_cancel(ds: Path, tmp_path: Path,
                                                    slurm: SlurmCluster) -> None:
    env = _env(slurm, BIDSBATCH_DEMO_SLEEP="60")
    res = run_cli("run", "--pipeline", "demo", str(ds), str(tmp_path / "out"), *FAST, "--no-wait",
                  "--json",
                  env=env)
    assert res.returncode == 0, res.stderr
    started = json.loads(res.stdout)
    run_id, run_dir = started["run_id"], started["run_dir"]
    (array_id, listed, _), = _jobs(run_dir, "array")
    _until("every task running", lambda: sum(
        r[1] == "RUNNING" for r in _squeue(slurm, run_id)) == 6)
    _until("the demo app sleeping", lambda: all(
        "sleeping" in p.read_text() for p in (Path(run_dir) / "logs/slurm").glob("*_*.log"))
        and len(list((Path(run_dir) / "logs/slurm").glob("*_*.log"))) == 6)
    victim = listed[0]
    assert slurm.run("scancel", f"{array_id}_0").returncode == 0
    _until("the killed task failed", lambda: _scans(_status(run_id, env))[victim]["state"]
           == "failed")
    status = _status(run_id, env)
    rec = _scans(status)[victim]
    assert rec["reason"].startswith("cancelled on the cluster (scancel)")
    assert "signal" in rec["reason"]  # the log's tail: the worker stopped by SIGTERM
    assert status["counts"]["running"] == 5
    # retry while the others run: a new array of just the failed scan
    retry = run_cli("retry", run_id, "--no-wait", env=_env(slurm, BIDSBATCH_DEMO_SLEEP="0"))
    assert retry.returncode == 0, retry.stderr
    assert f"retrying 1 scan(s): {victim}" in retry.stderr
    arrays = _jobs(run_dir, "array")
    assert len(arrays) == 2 and arrays[1][1] == [victim]
    assert json.loads((Path(run_dir) / "slurm/manifest-2.json").read_text())["specs"][0] \
        .endswith(f"specs/{victim}.json")
    # the group job now waits for both arrays
    groups = _jobs(run_dir, "group")
    assert len(groups) == 2 and groups[1][2]["after"] == [array_id, arrays[1][0]]
    _until("the retried scan done", lambda: _scans(_status(run_id, env))[victim]["state"]
           == "succeeded")
    status = _status(run_id, env)
    assert status["counts"]["running"] == 5 and _scans(status)[victim]["attempts"] == 2
    logs = run_cli("logs", run_id, victim, env=env)
    assert logs.stdout.count("==> ") == 2  # both tasks' files, oldest first
    # cancel stops the rest: one scancel of the run's arrays and the group job
    cancel = run_cli("cancel", run_id, env=env)
    assert cancel.returncode == 0, cancel.stderr
    final = _status(run_id, env)
    assert final["counts"]["cancelled"] == 5 and final["group_state"] == "cancelled"
    _until("Slurm cancelled them", lambda: all(
        r[1] == "CANCELLED" for r in _squeue(slurm, run_id) if not r[0].endswith(
            ("_0",)) or r[0].startswith(arrays[0][0])))
    assert slurm.wait_idle(30)


def test_throttle_and_group_dependency(ds: Path, tmp_path: Path,
                                       slurm: SlurmCluster) -> None:
    env = _env(slurm, BIDSBATCH_DEMO_SLEEP="2")
    res = run_cli("run", "--pipeline", "demo", str(ds), str(tmp_path / "out"), *FAST, "-p", "01,02",
                  "--slurm-max-running", "1", "--no-wait", "--json", env=env)
    assert res.returncode == 0, res.stderr
    started = json.loads(res.stdout)
    run_id, run_dir = started["run_id"], started["run_dir"]
    (array_id, _, _), = _jobs(run_dir, "array")
    (group_id, _, group), = _jobs(run_dir, "group")
    assert group["after"] == [array_id]
    rows = {r[0]: r for r in _squeue(slurm, run_id)}
    assert rows[group_id][2] == "Dependency" and f"afterany:{array_id}" in rows[group_id][3]
    # at most one task at a time: the others wait with reason JobArrayTaskLimit
    _until("one task running", lambda: any(r[1] == "RUNNING" for r in _squeue(slurm, run_id)))
    rows = _squeue(slurm, run_id)
    assert sum(r[1] == "RUNNING" for r in rows) == 1
    assert any(r[2] == "JobArrayTaskLimit" for r in rows if r[1] == "PENDING")
    watched = run_cli("status", run_id, "--watch", "--json", env=env, timeout=180)
    assert watched.returncode == 0, watched.stderr
    final = json.loads(watched.stdout)
    assert final["counts"]["succeeded"] == 4 and final["group_state"] == "succeeded"
    starts = sorted((s["started_at"], s["finished_at"]) for s in final["scans"])
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(starts))


@pytest.fixture(scope="module")
def small_cluster(tmp_path_factory):  # type: ignore[no-untyped-def]
    """A second cluster: MaxArraySize=2 (indexes 0-1), and finished jobs forgotten at once."""
    why = ensure_slurm()
    if why:
        pytest.skip(why)
    cluster = start_cluster(tmp_path_factory.mktemp("slurm-small"), cpus=16, max_array_size=2,
                            min_job_age=2)
    try:
        yield cluster
    finally:
        cluster.stop()


def test_chunks_by_max_array_size(ds: Path, tmp_path: Path,
                                                     small_cluster: SlurmCluster) -> None:
    out = tmp_path / "out"
    env = _env(small_cluster, BIDSBATCH_DEMO_FAIL="02")
    res = run_cli("run", "--pipeline", "demo", str(ds), str(out), "--executor", "slurm",
                  "--slurm-poll-seconds", "1", "--json", env=env, timeout=240)
    assert res.returncode == 1, res.stderr
    status = json.loads(res.stdout)
    arrays = _jobs(status["run_dir"], "array")
    # 6 scans, at most 2 per array: 3 sbatch calls, offsets 0, 2, 4 into one manifest
    assert [d["offset"] for _, _, d in arrays] == [0, 2, 4]
    assert {d["submission"] for _, _, d in arrays} == {1}
    assert [len(s) for _, s, _ in arrays] == [2, 2, 2]
    scans = _scans(status)
    assert status["counts"] == {**status["counts"], "succeeded": 4, "failed": 2}
    for sid in ("sub-02_ses-1", "sub-02_ses-2"):
        assert "injected failure" in scans[sid]["reason"]
    assert status["group_state"] == "skipped"
    for job_id, listed, _ in arrays:
        for i, sid in enumerate(listed):
            assert scans[sid]["job_id"] == f"{job_id}_{i}"



def test_vanished_task_fails_with_its_log_tail(ds: Path, tmp_path: Path,
                                               small_cluster: SlurmCluster) -> None:
    """Tasks Slurm forgot (MinJobAge) before a poll saw them end: markers, else failed."""
    env = _env(small_cluster, BIDSBATCH_DEMO_FAIL="02")
    res = run_cli("run", "--pipeline", "demo", str(ds), str(tmp_path / "out"), "--executor",
                  "slurm", "-p", "01,02",
                  "--slurm-poll-seconds", "15", "--no-wait", "--json", env=env)
    assert res.returncode == 0, res.stderr
    submitted = time.monotonic()  # the next look is due 15 s after the submission ended
    run_id = json.loads(res.stdout)["run_id"]
    # no bidsbatch command looks meanwhile: the first poll finds every task gone
    _until("Slurm forgot the run's jobs", lambda: not _squeue(small_cluster, run_id))
    time.sleep(max(0.0, 16 - (time.monotonic() - submitted)))
    status = _status(run_id, env)
    scans = _scans(status)
    assert status["counts"]["succeeded"] == 2 and status["counts"]["failed"] == 2
    for sid in ("sub-02_ses-1", "sub-02_ses-2"):
        reason = scans[sid]["reason"]
        assert reason.startswith("gone from Slurm's queue without a completion marker")
        assert "injected failure" in reason
        assert scans[sid]["exit_code"] == 3  # from the worker's failure record
    assert status["group_state"] == "skipped"
