"""Concurrent runs (issue 14, items 3 and 4): the run directory's lock, the per-scan
leases in the output, and apps that do not outlive their worker. Real processes,
the installed CLI, the demo app."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from conftest import BIN, run_cli, unique_bucket
from treesum import changes, tree_sums

from bidsbatch.synth import make_dataset


@pytest.fixture(scope="module")
def ds(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    return make_dataset(tmp_path_factory.mktemp("ds") / "ds", subjects=3, sessions=None,
                        shape=(8, 8, 6), n_volumes=4, modalities=("anat",))


SCANS = ["sub-01", "sub-02", "sub-03"]


def _start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([str(BIN / "bidsbatch"), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLUMNS": "200", **(env or {})})


def _app_runs(*run_dirs: Path) -> dict[str, int]:
    """How many times the app was started for each scan, over every log of these runs."""
    counts = dict.fromkeys(SCANS, 0)
    for run_dir in run_dirs:
        for scan in SCANS:
            log = run_dir / "logs" / f"{scan}.log"
            if log.exists():
                counts[scan] += log.read_text().count("[worker] run: ")
    return counts


def _one_error_line(stderr: str) -> str:
    errors = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    return errors[0]


@pytest.mark.parametrize("trial", range(4))
def test_two_runs_started_together_run_each_scan_once(trial: int, ds: Path,
                                                      tmp_path: Path) -> None:
    before = tree_sums(ds)
    out = tmp_path / "out"
    env = {"BIDSBATCH_DEMO_SLEEP": "1"}
    procs = [_start("run", "--pipeline", "demo", str(ds), str(out), "--jobs", "3",
                    env=env) for _ in range(2)]
    results = [(*p.communicate(timeout=240), p.returncode) for p in procs]
    results = [(code, out, err) for out, err, code in results]
    codes = sorted(r[0] for r in results)
    assert codes in ([0, 0], [0, 2]), results
    for code, _out, err in results:
        if code == 2:
            assert "is already running" in _one_error_line(err)
    run_dirs = list((tmp_path / "bidsbatch-home" / "runs").iterdir())
    assert len(run_dirs) == 1
    assert _app_runs(*run_dirs) == dict.fromkeys(SCANS, 1)
    assert all((out / ".bidsbatch/done" / f"{s}.json").exists() for s in SCANS)
    assert changes(before, tree_sums(ds)) == []


@pytest.mark.parametrize("trial", range(2))
def test_two_run_dirs_into_one_output_run_each_scan_once(trial: int, ds: Path,
                                                         tmp_path: Path) -> None:
    out = tmp_path / "out"
    a, b = tmp_path / "run-a", tmp_path / "run-b"
    env = {"BIDSBATCH_DEMO_SLEEP": "2"}
    procs = [_start("run", "--pipeline", "demo", str(ds), str(out), "--jobs", "3", "--run-dir",
                    str(r), "--json",
                    env=env) for r in (a, b)]
    results = [(*p.communicate(timeout=240), p.returncode) for p in procs]
    results = [(code, out, err) for out, err, code in results]
    assert [r[0] for r in results] == [0, 0], results
    assert _app_runs(a, b) == dict.fromkeys(SCANS, 1)
    records = [(scan["scan_id"], scan["state"], scan["reason"] or "")
               for _code, stdout, _err in results for scan in json.loads(stdout)["scans"]]
    for scan in SCANS:
        assert "succeeded" in [st for sid, st, _r in records if sid == scan], records
    # a run that did not run a scan says why: held by the other run, or done by it
    for _sid, state, reason in records:
        if state == "skipped":
            assert "being processed by run" in reason or "already done" in reason, records
    assert not list((out / ".bidsbatch" / "claims").glob("*.json"))  # every lease released


def _lease(scan: str, *, pid: int, expires_in: float, run_id: str = "other-run") -> bytes:
    from datetime import UTC, datetime, timedelta

    from bidsbatch.leases import process_start

    expires = datetime.now(UTC) + timedelta(seconds=expires_in)
    return json.dumps({
        "scan_id": scan, "owner": "someone", "run_id": run_id, "host": socket.gethostname(),
        "pid": pid, "pid_start": process_start(pid), "job_id": None,
        "expires_at": expires.isoformat(timespec="seconds"),
    }).encode()


def test_a_held_lease_is_skipped_and_said_so(ds: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    claims = out / ".bidsbatch" / "claims"
    claims.mkdir(parents=True)
    holder = subprocess.Popen(["sleep", "120"])
    try:
        (claims / "sub-01.json").write_bytes(_lease("sub-01", pid=holder.pid, expires_in=600))
        res = run_cli("run", "--pipeline", "demo", str(ds), str(out), "-p", "01", "--json")
        assert res.returncode == 0, res.stderr
        scan = json.loads(res.stdout)["scans"][0]
        assert scan["state"] == "skipped"
        assert f"being processed by run other-run (host {socket.gethostname()}, " \
               f"pid {holder.pid})" in scan["reason"]
        assert not (out / ".bidsbatch/done/sub-01.json").exists()
        assert (claims / "sub-01.json").exists()  # not ours to delete
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: the next run takes the lease over and runs the scan
    res = run_cli("run", "--pipeline", "demo", str(ds), str(out), "-p", "01", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["scans"][0]["state"] == "succeeded"
    assert not (claims / "sub-01.json").exists()


def test_an_expired_lease_is_taken_over(ds: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    claims = out / ".bidsbatch" / "claims"
    claims.mkdir(parents=True)
    (claims / "sub-02.json").write_bytes(_lease("sub-02", pid=os.getpid(), expires_in=-5))
    res = run_cli("run", "--pipeline", "demo", str(ds), str(out), "-p", "02", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["scans"][0]["state"] == "succeeded"


def test_a_lease_on_s3_output_is_honoured(ds: Path, tmp_path: Path, s3, aws) -> None:  # type: ignore[no-untyped-def]
    bucket = unique_bucket()
    s3.create_bucket(Bucket=bucket)
    out = f"s3://{bucket}/derivs"
    s3.put_object(Bucket=bucket, Key="derivs/.bidsbatch/claims/sub-03.json",
                  Body=_lease("sub-03", pid=os.getpid(), expires_in=600))
    res = run_cli("run", "--pipeline", "demo", str(ds), out, "-p", "01,03", "--json")
    assert res.returncode == 0, res.stderr
    states = {s["scan_id"]: (s["state"], s["reason"]) for s in json.loads(res.stdout)["scans"]}
    assert states["sub-01"][0] == "succeeded"
    assert states["sub-03"][0] == "skipped" and "being processed by" in states["sub-03"][1]
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert "derivs/.bidsbatch/claims/sub-01.json" not in keys  # released
    assert "derivs/.bidsbatch/claims/sub-03.json" in keys  # someone else's
    assert "derivs/.bidsbatch/done/sub-03.json" not in keys


# --------------------------------------------------------------------------- 4. apps


def _pids_with_env(needle: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                if needle.encode() in fh.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found


def test_the_app_dies_with_its_killed_worker(ds: Path, tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    res = run_cli("run", "--pipeline", "demo", str(ds), str(tmp_path / "out"), "-p", "01",
                  "--no-wait", "--json",
                  "--scratch", str(scratch), env={"BIDSBATCH_DEMO_SLEEP": "120"})
    assert res.returncode == 0, res.stderr
    run_dir = Path(json.loads(res.stdout)["run_dir"])
    deadline = time.monotonic() + 60
    apps: list[int] = []
    while time.monotonic() < deadline and not apps:
        apps = _pids_with_env(f"BIDSBATCH_BIDS_DIR={scratch}")
        time.sleep(0.2)
    assert apps, "the app never started"
    log = (run_dir / "logs" / "sub-01.log").read_text()
    worker_pid = int(json.loads(run_cli("status", str(run_dir), "--json").stdout)
                     ["scans"][0]["job_id"].split(":")[1])
    assert "[worker] run: " in log
    os.kill(worker_pid, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and _pids_with_env(f"BIDSBATCH_BIDS_DIR={scratch}"):
        time.sleep(0.2)
    assert _pids_with_env(f"BIDSBATCH_BIDS_DIR={scratch}") == [], "the app outlived its worker"
    # the run ends (the scan failed: its worker was killed); the next run cleans the scratch
    deadline = time.monotonic() + 30
    while json.loads(run_cli("status", str(run_dir), "--json").stdout)["counts"]["running"]:
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert list(scratch.glob("bidsbatch-sub-01-*"))  # a SIGKILLed worker cannot clean up
    again = run_cli("run", "--pipeline", "demo", str(ds), str(tmp_path / "out"), "-p", "01",
                    "--json",
                    "--scratch", str(scratch))
    assert again.returncode == 0, again.stderr
    assert list(scratch.glob("bidsbatch-*")) == []
