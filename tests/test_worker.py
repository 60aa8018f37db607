"""The worker, end to end through ``bidsbatch worker`` as a job runs it.

Real data (synth), a real app process (a small Python script, argv as a list),
real S3 (the moto server), real faults: a closed port, a killed process, an
object replaced after planning. No mocks of our own code.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import moto_server
import pytest
from conftest import BIN, run_cli, unique_bucket, upload_tree

from bidsbatch.errors import StorageError
from bidsbatch.markers import failed_key, failed_log_key
from bidsbatch.planning import make_plan
from bidsbatch.specs import InputFile, Manifest, Spec
from bidsbatch.synth import make_dataset
from bidsbatch.worker import (
    WorkerLog,
    WorkerOptions,
    array_index,
    attempt_number,
    check_free_disk,
    executor_job_id,
    run_worker,
)

# The app of these tests: a BIDS-App-like script, steered by its environment.
APP = r'''
import json, os, pathlib, sys, time
bids, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
if os.environ.get("APP_PIDFILE"):
    pathlib.Path(os.environ["APP_PIDFILE"]).write_text(str(os.getpid()))
print("app: ready", flush=True)
if os.environ.get("APP_WAIT_FOR"):
    while not os.path.exists(os.environ["APP_WAIT_FOR"]):
        time.sleep(0.02)
time.sleep(float(os.environ.get("APP_SLEEP", "0")))
print("app: line to stderr", file=sys.stderr, flush=True)
sub = out / ("sub-" + os.environ["BIDSBATCH_PARTICIPANT"])
sub.mkdir(parents=True, exist_ok=True)
scan = os.environ["BIDSBATCH_SCAN_ID"]
inputs = sorted(p.relative_to(bids).as_posix() for p in bids.rglob("*") if p.is_file())
(sub / (scan + "_inputs.txt")).write_text("\n".join(inputs) + "\n")
names = ["TMPDIR", "BIDSBATCH_SCAN_ID", "BIDSBATCH_PARTICIPANT", "BIDSBATCH_SESSION",
         "BIDSBATCH_ATTEMPT", "BIDSBATCH_RUN_ID", "OMP_NUM_THREADS", "AWS_ACCESS_KEY_ID",
         "AWS_SECRET_ACCESS_KEY", "APP_FLAG"]
(sub / (scan + "_env.json")).write_text(json.dumps({n: os.environ.get(n) for n in names}))
(sub / (scan + "_cwd.txt")).write_text(os.getcwd())
(out / "tmp_d").mkdir(exist_ok=True)
(out / "tmp_d" / "scratch.bin").write_bytes(b"s" * 4096)
for i in range(int(os.environ.get("APP_BIG_FILES", "0"))):
    (sub / ("big-%02d.bin" % i)).write_bytes(os.urandom(2 * 1024 * 1024))
print("app: done", flush=True)
sys.exit(int(os.environ.get("APP_EXIT", "0")))
'''

LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \[(worker|app)\] ")


@pytest.fixture(scope="module")
def ds(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    return make_dataset(tmp_path_factory.mktemp("ds") / "ds", subjects=2, sessions=("1",),
                        shape=(8, 8, 6), n_volumes=4)


@pytest.fixture(scope="module")
def app_path(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("app") / "app.py"
    path.write_text(APP)
    return path


def make_specs(dataset: str, output: str, app: Path, *, env: dict[str, str] | None = None
               ) -> list[Spec]:
    """Plan the dataset with the demo preset, then run our test app instead of the demo's."""
    plan = make_plan(dataset, output, pipeline="demo")
    return [replace(s, argv=[sys.executable, str(app), "{bids_dir}", "{output_dir}",
                             "participant", "--participant_label", s.participant],
                    env=dict(env or {}), output_excludes=["tmp_d/**"],
                    # what the test app writes (the demo's expectations are the demo's)
                    expected_outputs=[[f"sub-{s.participant}/**"]])
            for s in plan.specs]


def write_spec(spec: Spec, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(spec.to_json())
    return path


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


# --------------------------------------------------------------------------- local in, local out


def test_local_in_local_out(ds: Path, app_path: Path, tmp_path: Path) -> None:
    out, scratch = tmp_path / "out", tmp_path / "scratch"
    spec = make_specs(str(ds), str(out), app_path, env={"APP_FLAG": "on"})[0]
    spec_path = write_spec(spec, tmp_path / "specs" / f"{spec.scan_id}.json")

    res = run_cli("worker", "--spec", str(spec_path), "--scratch", str(scratch),
                  "--job-id", "local:1")
    assert res.returncode == 0, res.output

    # Inputs: exactly the spec's files, laid out as a one-scan BIDS dataset.
    sub = out / f"sub-{spec.participant}"
    staged = (sub / f"{spec.scan_id}_inputs.txt").read_text().split()
    assert staged == sorted(f.key for f in spec.inputs)
    assert "dataset_description.json" in staged and "participants.tsv" in staged
    assert not [k for k in staged if k.startswith("sub-02")]

    # The app's environment: the contract's variables, TMPDIR in scratch, no AWS keys.
    env = json.loads((sub / f"{spec.scan_id}_env.json").read_text())
    assert env["BIDSBATCH_SCAN_ID"] == spec.scan_id
    assert env["BIDSBATCH_SESSION"] == "1"
    assert env["BIDSBATCH_ATTEMPT"] == "1"
    assert env["APP_FLAG"] == "on"
    assert env["OMP_NUM_THREADS"] == "1"
    assert env["TMPDIR"].startswith(str(scratch)) and env["TMPDIR"].endswith("/tmp")
    assert (sub / f"{spec.scan_id}_cwd.txt").read_text().endswith("/work")

    # Excludes honoured; the scratch folder removed.
    assert not (out / "tmp_d").exists()
    assert list(scratch.iterdir()) == []

    # The marker: last, with a manifest whose checksums are right.
    marker = json.loads((out / ".bidsbatch" / "done" / f"{spec.scan_id}.json").read_text())
    assert marker["config_hash"] == spec.config_hash and marker["exit_code"] == 0
    assert marker["executor_job_id"] == "local:1" and marker["attempt"] == 1
    keys = sorted(p.relative_to(out).as_posix() for p in out.rglob("*")
                  if p.is_file() and ".bidsbatch" not in p.parts)
    assert [o["key"] for o in marker["outputs"]] == keys
    for o in marker["outputs"]:
        data = (out / o["key"]).read_bytes()
        assert (o["size"], o["checksum"]) == (len(data), sha256(data))
    assert marker["started_at"] < marker["finished_at"]

    # The log: on stdout and next to the marker, every line timestamped, app lines included.
    log = (out / ".bidsbatch" / "done" / f"{spec.scan_id}.log").read_text()
    assert all(LINE.match(line) for line in log.splitlines())
    assert "[app] app: ready" in log and "[app] app: line to stderr" in log
    assert "[app] app: ready" in res.stdout
    assert not (out / ".bidsbatch" / "failed").exists() or not list(
        (out / ".bidsbatch" / "failed").iterdir())


def test_app_streams_lines_as_they_come(ds: Path, app_path: Path, tmp_path: Path) -> None:
    """The log shows the app's first line while it is still running, not at its end."""
    go = tmp_path / "go"
    spec = make_specs(str(ds), str(tmp_path / "out"), app_path,
                      env={"APP_WAIT_FOR": str(go)})[0]
    spec_path = write_spec(spec, tmp_path / "spec.json")
    proc = _start_worker(["--spec", str(spec_path), "--scratch", str(tmp_path / "scratch")])
    _read_until(proc, "[app] app: ready")
    assert proc.poll() is None  # the app is waiting for us: its line came through already
    go.touch()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, out + err


# --------------------------------------------------------------------------- S3, as a Batch child


def test_batch_array_child_s3_in_s3_out_then_already_done(aws, s3, ds: Path, app_path: Path,
                                                          tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bucket = unique_bucket()
    upload_tree(s3, ds, bucket, "ds")
    specs = make_specs(f"s3://{bucket}/ds", f"s3://{bucket}/out", app_path)
    run_prefix = f"out/.bidsbatch/runs/{specs[0].run_id}"
    for spec in specs:
        s3.put_object(Bucket=bucket, Key=f"{run_prefix}/specs/{spec.scan_id}.json",
                      Body=spec.to_json())
    manifest = Manifest(specs[0].run_id, [f"specs/{s.scan_id}.json" for s in specs])
    s3.put_object(Bucket=bucket, Key=f"{run_prefix}/manifest.json", Body=manifest.to_json())
    target = specs[1]
    batch_env = {"AWS_BATCH_JOB_ARRAY_INDEX": "1", "AWS_BATCH_JOB_ATTEMPT": "2",
                 "AWS_BATCH_JOB_ID": "0f1e2d3c-aaaa:1"}

    aws.reset_requests()
    res = run_cli("worker", "--manifest", f"s3://{bucket}/{run_prefix}/manifest.json",
                  "--scratch", str(tmp_path / "scratch"), env=batch_env)
    assert res.returncode == 0, res.output
    requests = aws.requests()
    data = [r for r in requests if f"/{bucket}/ds/" in r["path"]]
    assert not [r for r in data if r["method"] == "HEAD"], "sizes come from the spec"
    assert len([r for r in data if r["method"] == "GET"]) == len(target.inputs)
    assert not [r for r in requests if "acl" in r["query"]]

    marker = json.loads(s3.get_object(
        Bucket=bucket, Key=f"out/.bidsbatch/done/{target.scan_id}.json")["Body"].read())
    assert marker["attempt"] == 2 and marker["executor_job_id"] == "0f1e2d3c-aaaa:1"
    assert marker["scan_id"] == target.scan_id
    for o in marker["outputs"]:
        body = s3.get_object(Bucket=bucket, Key=f"out/{o['key']}")["Body"].read()
        assert o["checksum"] == sha256(body) and o["size"] == len(body)
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="out/")["Contents"]
    keys = {o["Key"] for o in listed}
    assert f"out/.bidsbatch/done/{target.scan_id}.log" in keys
    assert not [k for k in keys if "/tmp_d/" in k]
    env = json.loads(s3.get_object(
        Bucket=bucket,
        Key=f"out/sub-{target.participant}/{target.scan_id}_env.json")["Body"].read())
    assert env["AWS_ACCESS_KEY_ID"] is None and env["AWS_SECRET_ACCESS_KEY"] is None
    assert env["BIDSBATCH_ATTEMPT"] == "2"

    # The same child again (a retry after the commit): already done, no data read.
    aws.reset_requests()
    res = run_cli("worker", "--manifest", f"s3://{bucket}/{run_prefix}/manifest.json",
                  env=batch_env)
    assert res.returncode == 0, res.output
    assert "already done" in res.stdout
    requests = aws.requests()
    assert not [r for r in requests if f"/{bucket}/ds/" in r["path"]]
    assert not [r for r in requests if r["method"] in ("PUT", "POST", "DELETE")]


def test_pack_child_reads_only_its_own_spec_with_two_ranged_gets(aws, s3, ds: Path,  # type: ignore[no-untyped-def]
                                                                  app_path: Path, tmp_path: Path,
                                                                  capsys) -> None:
    from bidsbatch import specpack

    bucket = unique_bucket()
    upload_tree(s3, ds, bucket, "ds")
    specs = make_specs(f"s3://{bucket}/ds", f"s3://{bucket}/out", app_path)
    assert len(specs) == 2
    pack_key = f"out/.bidsbatch/runs/{specs[0].run_id}/specs-1.pack"
    s3.put_object(Bucket=bucket, Key=pack_key, Body=specpack.build(specs[0].run_id, specs))
    pack_uri = f"s3://{bucket}/{pack_key}"
    target = specs[1]

    aws.reset_requests()
    res = run_cli("worker", "--pack", pack_uri, "--scratch", str(tmp_path / "scratch"),
                  env={"AWS_BATCH_JOB_ARRAY_INDEX": "1", "AWS_BATCH_JOB_ID": "j:1"})
    assert res.returncode == 0, res.output
    assert f"scan {target.scan_id} of run {target.run_id}" in res.stdout
    reads = [r for r in aws.requests() if r["path"].endswith("/specs-1.pack")]
    assert [r["method"] for r in reads] == ["GET", "GET"]
    assert all(r["range"].startswith("bytes=") for r in reads)  # never the whole pack
    marker = json.loads(s3.get_object(
        Bucket=bucket, Key=f"out/.bidsbatch/done/{target.scan_id}.json")["Body"].read())
    assert marker["executor_job_id"] == "j:1" and marker["scan_id"] == target.scan_id

    # an index past the end, into the specs or past the object, is refused, not misread
    # (in this process: the same code the CLI runs, without a start-up each)
    from bidsbatch.worker_entry import WorkerJob, run_job

    for index in (len(specs), 10**6):
        assert run_job(WorkerJob(pack=pack_uri, index=index), environ={}) == 2
        assert "out of range" in capsys.readouterr().err
    assert run_job(WorkerJob(pack=pack_uri), environ={}) == 2
    assert "--pack needs an index" in capsys.readouterr().err
    # the same layout read from a local file; the whole pack's scans by index
    local = tmp_path / "specs-1.pack"
    local.write_bytes(specpack.build(specs[0].run_id, specs))
    from bidsbatch.storage import LocalLocation

    assert specpack.read_spec(LocalLocation(tmp_path), local.name, 0) == specs[0]
    assert specpack.scan_ids(local.read_bytes()) == [s.scan_id for s in specs]
    assert specpack.read_header(LocalLocation(tmp_path), local.name).count == len(specs)


# --------------------------------------------------------------------------- failures


def test_app_failure_passes_exit_code_then_rerun_succeeds(ds: Path, app_path: Path,
                                                         tmp_path: Path) -> None:
    out = tmp_path / "out"
    spec = make_specs(str(ds), str(out), app_path, env={"APP_EXIT": "3"})[0]
    spec_path = write_spec(spec, tmp_path / "spec.json")
    res = run_cli("worker", "--spec", str(spec_path))
    assert res.returncode == 3, res.output
    assert len(error_lines(res.stderr)) == 1 and "code 3" in res.stderr
    assert not (out / ".bidsbatch" / "done").exists()
    assert not (out / f"sub-{spec.participant}").exists(), "no outputs from a failed attempt"
    record = json.loads((out / failed_key(spec.scan_id)).read_text())
    assert record["exit_code"] == 3 and record["stage"] == "app"
    assert record["config_hash"] == spec.config_hash
    assert "[app] app: done" in (out / failed_log_key(spec.scan_id)).read_text()

    # Fixed: the same scan succeeds, and the stale failure record goes away.
    write_spec(replace(spec, env={}), spec_path)
    res = run_cli("worker", "--spec", str(spec_path))
    assert res.returncode == 0, res.output
    assert (out / ".bidsbatch" / "done" / f"{spec.scan_id}.json").exists()
    assert not (out / failed_key(spec.scan_id)).exists()
    assert not (out / failed_log_key(spec.scan_id)).exists()


@pytest.mark.parametrize("key", ["../escape.txt", "/tmp/bidsbatch-abs-escape.txt"])
def test_hostile_spec_is_refused_before_anything(ds: Path, app_path: Path, tmp_path: Path,
                                                 key: str) -> None:
    out, scratch = tmp_path / "out", tmp_path / "scratch"
    spec = make_specs(str(ds), str(out), app_path)[0]
    spec = replace(spec, inputs=[*spec.inputs, InputFile(key, 10)])
    spec_path = write_spec(spec, tmp_path / "spec.json")
    res = run_cli("worker", "--spec", str(spec_path), "--scratch", str(scratch))
    assert res.returncode == 1, res.output
    errors = error_lines(res.stderr)
    assert len(errors) == 1 and "unsafe key" in errors[0], res.stderr
    assert not scratch.exists(), "refused before a scratch folder was even made"
    assert not (tmp_path / "escape.txt").exists()
    assert not Path("/tmp/bidsbatch-abs-escape.txt").exists()
    assert not (out / f"sub-{spec.participant}").exists()
    assert json.loads((out / failed_key(spec.scan_id)).read_text())["exit_code"] == 1


def test_app_timeout_exits_124_and_stops_the_app(ds: Path, app_path: Path,
                                                 tmp_path: Path) -> None:
    out, pidfile = tmp_path / "out", tmp_path / "app.pid"
    spec = make_specs(str(ds), str(out), app_path,
                      env={"APP_SLEEP": "60", "APP_PIDFILE": str(pidfile)})[0]
    spec_path = write_spec(spec, tmp_path / "spec.json")
    started = time.monotonic()
    res = run_cli("worker", "--spec", str(spec_path), "--timeout", "0.02")  # 1.2 s
    assert res.returncode == 124, res.output
    assert time.monotonic() - started < 30
    assert "timed out" in res.stderr
    assert not _alive(int(pidfile.read_text()))
    assert json.loads((out / failed_key(spec.scan_id)).read_text())["exit_code"] == 124
    assert not (out / ".bidsbatch" / "done").exists()


def test_app_not_found_exits_127(ds: Path, app_path: Path, tmp_path: Path) -> None:
    spec = make_specs(str(ds), str(tmp_path / "out"), app_path)[0]
    spec = replace(spec, argv=["bidsbatch-no-such-app", "{bids_dir}", "{output_dir}"])
    res = run_cli("worker", "--spec", str(write_spec(spec, tmp_path / "spec.json")))
    assert res.returncode == 127, res.output
    assert len(error_lines(res.stderr)) == 1 and "not found" in res.stderr


def test_changed_input_is_caught_by_its_etag(aws, s3, ds: Path, app_path: Path,
                                             tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bucket = unique_bucket()
    upload_tree(s3, ds, bucket, "ds")
    spec = make_specs(f"s3://{bucket}/ds", f"s3://{bucket}/out", app_path)[0]
    victim = max(spec.inputs, key=lambda f: f.size)
    # Replaced after planning with bytes of the same size: the size check cannot see it.
    s3.put_object(Bucket=bucket, Key=f"ds/{victim.key}", Body=os.urandom(victim.size))
    res = run_cli("worker", "--spec", str(write_spec(spec, tmp_path / "spec.json")),
                  "--transfer-retries", "0")
    assert res.returncode == 1, res.output
    assert "does not match its ETag" in res.stderr
    record = json.loads(s3.get_object(Bucket=bucket,
                                      Key=f"out/{failed_key(spec.scan_id)}")["Body"].read())
    assert record["stage"] == "stage-in"
    assert "app: ready" not in res.stdout, "the app never ran"


def test_storage_lost_during_stage_out_exits_75(ds: Path, app_path: Path,
                                                tmp_path: Path) -> None:
    """A real outage: the output's S3 server goes away while the app runs."""
    server = moto_server.start()
    try:
        env = {"AWS_ENDPOINT_URL": server.url, "AWS_REGION": "us-east-1",
               "AWS_ACCESS_KEY_ID": "AKIAFAKE", "AWS_SECRET_ACCESS_KEY": "fake",
               "AWS_MAX_ATTEMPTS": "2"}
        import boto3

        client = boto3.client("s3", endpoint_url=server.url, region_name="us-east-1",
                              aws_access_key_id="AKIAFAKE", aws_secret_access_key="fake")
        client.create_bucket(Bucket="outage")
        go = tmp_path / "go"
        spec = make_specs(str(ds), "s3://outage/out", app_path,
                          env={"APP_WAIT_FOR": str(go)})[0]
        spec_path = write_spec(spec, tmp_path / "spec.json")
        proc = _start_worker(["--spec", str(spec_path), "--transfer-retries", "1",
                              "--scratch", str(tmp_path / "scratch")], env=env)
        _read_until(proc, "[app] app: ready")
    finally:
        server.stop()
    go.touch()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, out + err
    assert "cannot reach S3" in err
    assert "could not record the failure" in out
    assert list((tmp_path / "scratch").iterdir()) == []


def test_killed_mid_upload_leaves_no_marker_and_rerun_completes(
        aws, s3, ds: Path, app_path: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bucket = unique_bucket()
    s3.create_bucket(Bucket=bucket)
    spec = make_specs(str(ds), f"s3://{bucket}/out", app_path, env={"APP_BIG_FILES": "24"})[0]
    spec_path = write_spec(spec, tmp_path / "spec.json")
    proc = _start_worker(["--spec", str(spec_path), "--scratch", str(tmp_path / "scratch")])
    _read_until(proc, "stage-out:")
    # Wait for the first outputs to land, then kill: a worker really mid-upload.
    outputs_prefix = f"out/sub-{spec.participant}/"
    deadline = time.monotonic() + 30
    while "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix=outputs_prefix):
        assert time.monotonic() < deadline, "no output was ever uploaded"
        time.sleep(0.01)
    proc.kill()  # SIGKILL: no cleanup of any kind, as when a Spot host vanishes
    proc.wait()
    marker_key = f"out/.bidsbatch/done/{spec.scan_id}.json"
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix=marker_key)

    res = run_cli("worker", "--spec", str(spec_path), "--scratch", str(tmp_path / "scratch2"))
    assert res.returncode == 0, res.output
    marker = json.loads(s3.get_object(Bucket=bucket, Key=marker_key)["Body"].read())
    assert len([o for o in marker["outputs"] if "big-" in o["key"]]) == 24
    for o in marker["outputs"]:
        body = s3.get_object(Bucket=bucket, Key=f"out/{o['key']}")["Body"].read()
        assert o["checksum"] == sha256(body)


def test_sigterm_stops_the_app_and_leaves_no_marker(ds: Path, app_path: Path,
                                                    tmp_path: Path) -> None:
    out, pidfile = tmp_path / "out", tmp_path / "app.pid"
    spec = make_specs(str(ds), str(out), app_path,
                      env={"APP_SLEEP": "60", "APP_PIDFILE": str(pidfile)})[0]
    proc = _start_worker(["--spec", str(write_spec(spec, tmp_path / "spec.json")),
                          "--scratch", str(tmp_path / "scratch")])
    _read_until(proc, "[app] app: ready")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    assert not _alive(int(pidfile.read_text()))
    assert not (out / ".bidsbatch" / "done").exists()
    assert list((tmp_path / "scratch").iterdir()) == []


# --------------------------------------------------------------------------- in-process API


def test_run_worker_api_with_injected_clock(ds: Path, app_path: Path, tmp_path: Path) -> None:
    ticks = iter(datetime(2030, 1, 1, 0, 0, s, tzinfo=UTC) for s in range(60))
    stream = io.StringIO()
    spec = make_specs(str(ds), str(tmp_path / "out"), app_path)[1]
    code = run_worker(spec, options=WorkerOptions(scratch=tmp_path / "scratch", attempt=3),
                      stream=stream, clock=lambda: next(ticks), environ=dict(os.environ))
    assert code == 0, stream.getvalue()
    marker = json.loads((tmp_path / "out" / ".bidsbatch" / "done" /
                         f"{spec.scan_id}.json").read_text())
    assert marker["started_at"] == "2030-01-01T00:00:00.000Z"
    assert marker["attempt"] == 3
    first = stream.getvalue().splitlines()[0]
    assert first.startswith("2030-01-01T00:00:01.000Z [worker] bidsbatch"), first


def test_free_disk_check_says_what_is_needed(ds: Path, app_path: Path, tmp_path: Path) -> None:
    spec = make_specs(str(ds), str(tmp_path / "out"), app_path)[0]
    huge = replace(spec, inputs=[InputFile("sub-01/big.nii.gz", 2**60)])
    with pytest.raises(StorageError, match=r"needs .* GiB .* GiB free"):
        check_free_disk(tmp_path, huge, log=WorkerLog(io.StringIO()))
    check_free_disk(tmp_path, spec, log=WorkerLog(io.StringIO()))  # a small scan passes


def test_index_attempt_and_job_id_from_the_environment() -> None:
    assert array_index(None, {}) is None
    assert array_index(None, {"AWS_BATCH_JOB_ARRAY_INDEX": "4"}) == 4
    assert array_index(None, {"SLURM_ARRAY_TASK_ID": "5"}, base=1) == 4
    assert array_index(2, {"AWS_BATCH_JOB_ARRAY_INDEX": "4"}) == 2
    assert attempt_number(None, {"AWS_BATCH_JOB_ATTEMPT": "3"}) == 3
    assert attempt_number(None, {"SLURM_RESTART_COUNT": "1"}) == 2
    assert attempt_number(None, {}) == 1
    assert executor_job_id(None, {"SLURM_JOB_ID": "77"}) == "77"
    assert executor_job_id("x", {"AWS_BATCH_JOB_ID": "y"}) == "x"


def test_manifest_index_out_of_range_is_a_usage_error(ds: Path, app_path: Path,
                                                      tmp_path: Path) -> None:
    spec = make_specs(str(ds), str(tmp_path / "out"), app_path)[0]
    write_spec(spec, tmp_path / "run" / "specs" / f"{spec.scan_id}.json")
    manifest = tmp_path / "run" / "manifest.json"
    manifest.write_text(Manifest(spec.run_id, [f"specs/{spec.scan_id}.json"]).to_json())
    res = run_cli("worker", "--manifest", str(manifest), "--index", "3")
    assert res.returncode == 2 and "out of range" in res.stderr
    res = run_cli("worker", "--manifest", str(manifest))
    assert res.returncode == 2 and "needs an index" in res.stderr
    res = run_cli("worker", "--manifest", f"file://{manifest}",
                  env={"SLURM_ARRAY_TASK_ID": "1"}, cwd=tmp_path)
    assert res.returncode == 2 and "out of range" in res.stderr  # Slurm base 0 by default
    res = run_cli("worker", "--manifest", str(manifest), "--index-base", "1",
                  env={"SLURM_ARRAY_TASK_ID": "1"})
    assert res.returncode == 0, res.output


# --------------------------------------------------------------------------- helpers


def _start_worker(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    exe = shutil.which("bidsbatch", path=str(BIN)) or "bidsbatch"
    return subprocess.Popen([exe, "worker", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def _read_until(proc: subprocess.Popen[str], marker: str, timeout: float = 60) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if marker in line:
            return
    proc.kill()
    raise AssertionError(f"never saw {marker!r}; output:\n{''.join(seen)}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers signal 0; it is dead all the same.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] != "Z"
    except OSError:
        return False
