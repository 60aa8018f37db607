"""``bidsbatch run`` with the local executor, end to end through the CLI.

Real demo app, real synthetic data, real S3 (moto server) where named.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import BIN, run_cli, unique_bucket, upload_tree
from validator import describe, validate

from bidsbatch.synth import make_dataset


@pytest.fixture(scope="module")
def ds(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    return make_dataset(tmp_path_factory.mktemp("ds") / "ds", subjects=3, sessions=("1", "2"),
                        shape=(12, 12, 8), n_volumes=8)


def _status(run: str) -> dict:
    res = run_cli("status", run, "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def _states(status: dict) -> dict[str, str]:
    return {s["scan_id"]: s["state"] for s in status["scans"]}


def test_local_in_local_out_then_resume(ds: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = run_cli("run", "--pipeline", "demo", str(ds), str(out), "--json")
    assert res.returncode == 0, res.stderr
    status = json.loads(res.stdout)
    assert status["counts"]["succeeded"] == 6 and status["group_state"] == "succeeded"
    for sid in _states(status):
        marker = json.loads((out / ".bidsbatch/done" / f"{sid}.json").read_text())
        assert marker["exit_code"] == 0 and marker["outputs"]
        for o in marker["outputs"]:
            assert (out / o["key"]).stat().st_size == o["size"]
    assert (out / "group_brainvolume.tsv").read_text().count("\n") == 7  # header + 6 scans
    errors = validate(out)
    assert not errors, describe(errors)
    # the second run of the same command skips everything and touches no data
    stamp = {p: p.stat().st_mtime_ns for p in out.rglob("*.csv")}
    again = run_cli("run", "--pipeline", "demo", str(ds), str(out), "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["counts"]["skipped"] == 6
    assert "6 already done (skipped)" in again.stderr
    assert stamp == {p: p.stat().st_mtime_ns for p in out.rglob("*.csv")}
    # --force redoes them
    forced = run_cli("run", "--pipeline", "demo", str(ds), str(out), "-p", "01", "--force",
                     "--json")
    assert forced.returncode == 0, forced.stderr
    assert json.loads(forced.stdout)["counts"]["succeeded"] == 2


def test_status_logs_and_latest_run(ds: Path, tmp_path: Path) -> None:
    res = run_cli("run", "--pipeline", "demo", str(ds), str(tmp_path / "out"), "-p", "02", "--json")
    assert res.returncode == 0, res.stderr
    run_id = json.loads(res.stdout)["run_id"]
    latest = run_cli("status", "--json")
    assert json.loads(latest.stdout)["run_id"] == run_id
    table = run_cli("status", run_id)
    assert "sub-02_ses-1" in table.stderr and "succeeded 2" in table.stderr
    logs = run_cli("logs", run_id, "sub-02_ses-2")
    assert logs.returncode == 0
    assert "[app]" in logs.stdout and "participant" in logs.stdout
    assert run_cli("logs", run_id, "group").returncode == 0
    bad = run_cli("logs", run_id, "sub-09")
    assert bad.returncode == 2 and "has no scan sub-09" in bad.stderr
    unknown = run_cli("status", "nope-123")
    assert unknown.returncode == 2 and "no run 'nope-123'" in unknown.stderr


def test_one_failing_scan_then_retry_failed_only(ds: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = run_cli("run", "--pipeline", "demo", str(ds), str(out), "--json",
                  env={"BIDSBATCH_DEMO_FAIL": "02"})
    assert res.returncode == 1
    status = json.loads(res.stdout)
    states = _states(status)
    assert states == {"sub-01_ses-1": "succeeded", "sub-01_ses-2": "succeeded",
                      "sub-02_ses-1": "failed", "sub-02_ses-2": "failed",
                      "sub-03_ses-1": "succeeded", "sub-03_ses-2": "succeeded"}
    assert status["group_state"] == "skipped"
    failed = [s for s in status["scans"] if s["state"] == "failed"]
    assert all(s["exit_code"] == 3 for s in failed)
    # the reason is the app's own error line, not a worker step
    assert all("injected failure (sub-02 is in BIDSBATCH_DEMO_FAIL)" in s["reason"]
               for s in failed)
    assert not (out / ".bidsbatch/done/sub-02_ses-1.json").exists()
    assert "failed sub-02_ses-1" in res.stderr
    retry = run_cli("retry", status["run_id"])
    assert retry.returncode == 0, retry.stderr
    assert "retrying 2 scan(s): sub-02_ses-1, sub-02_ses-2" in retry.stderr
    after = _status(status["run_id"])
    attempts = {s["scan_id"]: s["attempts"] for s in after["scans"]}
    assert attempts == {"sub-01_ses-1": 1, "sub-01_ses-2": 1, "sub-02_ses-1": 2,
                        "sub-02_ses-2": 2, "sub-03_ses-1": 1, "sub-03_ses-2": 1}
    assert set(_states(after).values()) == {"succeeded"}
    assert after["group_state"] == "succeeded"
    assert run_cli("retry", status["run_id"]).stderr.startswith("nothing to retry")


def test_changed_pipeline_setting_redoes_the_scans(ds: Path, tmp_path: Path) -> None:
    from bidsbatch.pipelines import load_pipeline  # noqa: F401  (the preset is the base)

    out = tmp_path / "out"
    assert run_cli("run", "--pipeline", "demo", str(ds), str(out), "-p", "01").returncode == 0
    preset = (Path(__import__("bidsbatch").__file__).parent / "presets/demo.toml").read_text()
    changed = tmp_path / "demo-grid3.toml"
    changed.write_text(preset.replace('"participant",', '"participant", '
                                      '"--parcellation-grid", "3",', 1))
    res = run_cli("run", str(ds), str(out), "-p", "01", "--pipeline", str(changed), "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["counts"]["succeeded"] == 2  # redone, not skipped
    assert list(out.rglob("*grid3_connectome.csv"))


def test_cancel_stops_running_scans(ds: Path, tmp_path: Path) -> None:
    env = {"BIDSBATCH_DEMO_SLEEP": "60"}
    res = run_cli("run", "--pipeline", "demo", str(ds), str(tmp_path / "out"), "--no-wait",
                  "--jobs", "2",
                  "--json", env=env)
    assert res.returncode == 0, res.stderr
    run_id = json.loads(res.stdout)["run_id"]
    deadline = time.monotonic() + 30
    while _status(run_id)["counts"]["running"] < 2:
        assert time.monotonic() < deadline, "scans never started"
        time.sleep(0.2)
    t0 = time.monotonic()
    cancel = run_cli("cancel", run_id)
    assert cancel.returncode == 0, cancel.stderr
    assert time.monotonic() - t0 < 20
    status = _status(run_id)
    assert status["counts"]["cancelled"] == 6 and status["counts"]["running"] == 0
    # no app left behind
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(tmp_path) not in ps


def test_ctrl_c_cancels_the_run(ds: Path, tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [str(BIN / "bidsbatch"), "run", "--pipeline", "demo", str(ds), str(tmp_path / "out"),
                                 "--jobs", "1"],
        env={**os.environ, "BIDSBATCH_DEMO_SLEEP": "60"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    # Interrupt once a scan is running (not after a fixed time: a loaded machine can take
    # seconds just to start the CLI, and a ^C during its imports tests nothing of ours).
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        now = run_cli("status", "--json")
        if now.returncode == 0 and json.loads(now.stdout)["counts"].get("running", 0) >= 1:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "cancelling the run" in err
    status = _status(run_cli("status", "--json").stdout and json.loads(
        run_cli("status", "--json").stdout)["run_id"])
    assert status["counts"]["cancelled"] == 6


def test_s3_in_s3_out_and_resume_without_downloads(ds: Path, tmp_path: Path, s3, aws) -> None:  # type: ignore[no-untyped-def]
    bucket = unique_bucket()
    upload_tree(s3, ds, bucket, "bids/ds")
    out = f"s3://{bucket}/derivatives/demo"
    res = run_cli("run", "--pipeline", "demo", f"s3://{bucket}/bids/ds", out, "-p", "01,03",
                  "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["counts"]["succeeded"] == 4
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket,
                                                 Prefix="derivatives/demo/")["Contents"]}
    assert "derivatives/demo/.bidsbatch/done/sub-03_ses-2.json" in keys
    assert "derivatives/demo/group_brainvolume.tsv" in keys
    assert any(k.endswith("_connectome.csv") for k in keys)
    aws.reset_requests()
    again = run_cli("run", "--pipeline", "demo", f"s3://{bucket}/bids/ds", out, "-p", "01,03",
                    "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["counts"]["skipped"] == 4
    data_gets = [r for r in aws.requests() if r["method"] == "GET"
                 and r["path"].startswith(f"/{bucket}/bids/ds/sub-")]
    assert data_gets == []
