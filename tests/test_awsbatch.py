"""The AWS Batch executor against real moto servers, through the CLI where a user would.

Three moto servers: conftest's (Batch without Docker: jobs succeed at once), one
started with ``MOTO_SIMPLE_BATCH_FAIL_AFTER=0`` (jobs fail at once), and one whose
jobs stay queued (moto's state manager holds them in SUBMITTED), for the paths
that need live jobs: cancel, and a rerun while jobs are still queued. moto does
not run our worker, so one test runs the submitted container command locally,
with the variables a Batch child gets, to prove the whole chain.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import moto_server
import pytest
from conftest import (
    BIN,
    FAKE_KEY_ID,
    FAKE_SECRET,
    FAKE_TOKEN,
    moto_running,
    run_cli,
    unique_bucket,
    upload_tree,
)

from bidsbatch.errors import BidsbatchError, UsageError
from bidsbatch.synth import make_dataset

ROLE_NAME = "bidsbatch-test-job"
QUEUE = "bb-test-queue"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def ds(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    """6 scans (3 subjects x 2 sessions), small enough for the demo app to run fast."""
    return make_dataset(tmp_path_factory.mktemp("ds") / "ds", subjects=3, sessions=("1", "2"),
                        shape=(10, 10, 8), n_volumes=6)


@pytest.fixture(scope="module")
def big_ds(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    """105 scans: more children than one DescribeJobs call takes."""
    return make_dataset(tmp_path_factory.mktemp("big") / "ds", subjects=105, sessions=None,
                        modalities=("anat",), shape=(4, 4, 4))


def _post(url: str, data: dict[str, Any]) -> None:
    req = urllib.request.Request(url, method="POST", data=json.dumps(data).encode(),
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req).read()


@pytest.fixture(scope="module")
def failing_server() -> Iterator[moto_server.MotoServer]:
    with moto_running(MOTO_SIMPLE_BATCH_FAIL_AFTER="0") as server:
        yield server


@pytest.fixture(scope="module")
def queued_server() -> Iterator[moto_server.MotoServer]:
    # moto's Docker-backed Batch moves a job only when its state manager says so: with
    # a "manual" progression that never comes, jobs stay SUBMITTED (a queue with no
    # capacity), and no Docker is ever reached.
    with moto_running() as server:
        yield server


def _use(server: moto_server.MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", FAKE_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET)


class Batch:
    """A moto server with a job queue and a job role, and helpers to look at what we sent."""

    def __init__(self, server: moto_server.MotoServer) -> None:
        self.server = server
        self.url = server.url
        iam = self.client("iam")
        trust = json.dumps({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"},
            "Action": "sts:AssumeRole"}]})
        self.role = iam.create_role(RoleName=ROLE_NAME, AssumeRolePolicyDocument=trust,
                                    Path="/bidsbatch/")["Role"]["Arn"]
        service = iam.create_role(RoleName="bb-batch-service",
                                  AssumeRolePolicyDocument=trust)["Role"]["Arn"]
        batch = self.client("batch")
        ce = batch.create_compute_environment(computeEnvironmentName="bb-test-ce",
                                              type="UNMANAGED", serviceRole=service)
        batch.create_job_queue(jobQueueName=QUEUE, state="ENABLED", priority=1,
                               computeEnvironmentOrder=[{
                                   "order": 1,
                                   "computeEnvironment": ce["computeEnvironmentArn"]}])
        self.s3 = self.client("s3")
        server.reset_requests()

    def client(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.url, region_name="us-east-1")

    @property
    def batch(self) -> Any:
        return self.client("batch")

    def calls(self, operation: str) -> list[dict[str, Any]]:
        """The requests for one Batch operation (e.g. 'submitjob'), bodies parsed."""
        out = []
        for r in self.server.requests():
            if r["path"] == f"/v1/{operation}":
                out.append(json.loads(r.get("body") or "{}"))
        return out

    def batch_requests(self) -> list[dict[str, str]]:
        return [r for r in self.server.requests() if r["path"].startswith("/v1/")]

    def dataset(self, local: Path) -> tuple[str, str, str]:
        """Upload ``local`` to a new bucket: (bucket, dataset URI, output URI)."""
        bucket = unique_bucket()
        upload_tree(self.s3, local, bucket, "bids/ds")
        self.server.reset_requests()
        return bucket, f"s3://{bucket}/bids/ds", f"s3://{bucket}/derivatives/demo"

    def flags(self, *extra: str) -> list[str]:
        return ["--executor", "aws-batch", "--job-queue", QUEUE, "--job-role", self.role,
                *extra]


@pytest.fixture
def batch(aws: moto_server.MotoServer) -> Batch:
    aws.configure({"batch": {"use_docker": False}})
    return Batch(aws)


@pytest.fixture
def failing_batch(failing_server: moto_server.MotoServer, monkeypatch) -> Batch:  # type: ignore[no-untyped-def]
    _use(failing_server, monkeypatch)
    failing_server.reset()
    failing_server.configure({"batch": {"use_docker": False}})
    return Batch(failing_server)


@pytest.fixture
def queued_batch(queued_server: moto_server.MotoServer, monkeypatch) -> Batch:  # type: ignore[no-untyped-def]
    _use(queued_server, monkeypatch)
    queued_server.reset()
    _post(f"{queued_server.url}/moto-api/state-manager/set-transition",
          {"model_name": "batch::job", "transition": {"progression": "manual",
                                                       "times": 10**9}})
    return Batch(queued_server)


@pytest.fixture
def moving_batch(queued_server: moto_server.MotoServer, monkeypatch) -> Batch:  # type: ignore[no-untyped-def]
    """Jobs that move on each look; children then fail (moto finds no Docker) while their
    array parent stays RUNNING: a live array with ended children."""
    _use(queued_server, monkeypatch)
    queued_server.reset()
    _post(f"{queued_server.url}/moto-api/state-manager/set-transition",
          {"model_name": "batch::job", "transition": {"progression": "time", "seconds": 0}})
    return Batch(queued_server)


def _json(res: Any) -> dict[str, Any]:
    assert res.returncode in (0, 1), res.stderr
    return json.loads(res.stdout)


def _status(run_id: str) -> dict[str, Any]:
    res = run_cli("status", run_id, "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def _ledger_jobs(run_id: str) -> list[Any]:
    from bidsbatch.ledger import Ledger
    from bidsbatch.runs import runs_root

    with Ledger.open(runs_root() / run_id / "ledger.sqlite") as ledger:
        return ledger.jobs()


def _drop_ledger(run_id: str) -> None:
    from bidsbatch.runs import runs_root

    for path in (runs_root() / run_id).glob("ledger.sqlite*"):
        path.unlink()


def _s3_json(s3: Any, uri: str) -> Any:
    bucket, _, key = uri[len("s3://"):].partition("/")
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def _pack_specs(s3: Any, uri: str) -> dict[str, bytes]:
    """Scan id -> spec bytes of a spec pack, in index order, read here from its layout:
    a 256-byte JSON header, 40-byte records "index offset length", then the specs."""
    bucket, _, key = uri[len("s3://"):].partition("/")
    data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    header = json.loads(data[:256])
    assert header["format"] == "bidsbatch-spec-pack/1" and data[255:256] == b"\n"
    out = {}
    for i in range(header["count"]):
        index, offset, length = map(int, data[256 + 40 * i:256 + 40 * (i + 1)].split())
        assert index == i
        raw = data[offset:offset + length]
        out[json.loads(raw)["scan_id"]] = raw
    return out


# --------------------------------------------------------------------------- end to end


def test_run_is_one_array_job_and_a_group_job(batch: Batch, ds: Path) -> None:
    _bucket, dataset, output = batch.dataset(ds)
    res = run_cli("run", "--pipeline", "demo", dataset, output, *batch.flags(), "--json")
    assert res.returncode == 0, res.stderr
    status = json.loads(res.stdout)
    assert status["counts"]["succeeded"] == 6 and status["group_state"] == "succeeded"
    run_id = status["run_id"]

    submits = batch.calls("submitjob")
    assert len(submits) == 2  # one array for the six scans, one group step
    array, group = submits
    assert array["arrayProperties"] == {"size": 6}
    manifest_uri = f"{output}/.bidsbatch/runs/{run_id}/manifest-1.json"
    pack_uri = f"{output}/.bidsbatch/runs/{run_id}/specs-1.pack"
    assert array["containerOverrides"]["command"] == ["bidsbatch", "worker", "--pack",
                                                      pack_uri]
    assert array["jobName"] == f"bidsbatch-{run_id}-a1-bidsbatch-synthetic-dataset"
    assert array["tags"]["bidsbatch:run-id"] == run_id
    assert array["tags"]["bidsbatch:dataset"] == dataset
    assert group["containerOverrides"]["command"] == [
        "bidsbatch", "group-step", "--run", f"{output}/.bidsbatch/runs/{run_id}/run.json"]
    jobs = {j.kind: j for j in _ledger_jobs(run_id)}
    assert set(jobs) == {"array", "group"}
    assert group["dependsOn"] == [{"jobId": jobs["array"].job_id}]

    # the manifest lists the scans by index; the pack holds their specs, byte for byte
    # those of the run directory; run.json is beside them, and nothing else (no per-scan
    # object)
    manifest = _s3_json(batch.s3, manifest_uri)
    assert manifest["run_id"] == run_id
    assert manifest["specs"] == [f"specs/{s}.json" for s in jobs["array"].scans]
    from bidsbatch.runs import runs_root

    packed = _pack_specs(batch.s3, pack_uri)
    assert list(packed) == jobs["array"].scans
    for scan, raw in packed.items():
        assert raw == (runs_root() / run_id / "specs" / f"{scan}.json").read_bytes()
    assert json.loads(packed["sub-02_ses-1"])["run_id"] == run_id
    assert _s3_json(batch.s3, f"{output}/.bidsbatch/runs/{run_id}/run.json")["run_id"] == run_id
    bucket = output[len("s3://"):].split("/")[0]
    run_keys = batch.s3.list_objects_v2(
        Bucket=bucket, Prefix=f"derivatives/demo/.bidsbatch/runs/{run_id}/")["Contents"]
    assert sorted(o["Key"].rsplit("/", 1)[-1] for o in run_keys) == [
        "manifest-1.json", "run.json", "specs-1.pack"]
    # `show` prints a scan's spec: the same bytes
    shown = run_cli("show", run_id, "sub-02_ses-1")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.encode() == packed["sub-02_ses-1"]

    # each scan points at its array child; every attempt is recorded
    by_scan = {s["scan_id"]: s for s in status["scans"]}
    for i, scan in enumerate(jobs["array"].scans):
        assert by_scan[scan]["job_id"] == f"{jobs['array'].job_id}:{i}"
        assert by_scan[scan]["attempts"] == 1 and by_scan[scan]["log"]
    from bidsbatch.ledger import Ledger
    from bidsbatch.runs import runs_root

    with Ledger.open(runs_root() / run_id / "ledger.sqlite") as ledger:
        attempts = ledger.attempts()
    assert len(attempts) == 6 and all(a.started_at and a.finished_at for a in attempts)

    # the job definition: content-addressed, role, resources, Spot-aware retries
    assert len(batch.calls("registerjobdefinition")) == 1
    jd = batch.batch.describe_job_definitions(status="ACTIVE")["jobDefinitions"]
    assert len(jd) == 1
    jd = jd[0]
    digest = jd["tags"]["bidsbatch:content-hash"]
    assert jd["jobDefinitionName"] == f"bidsbatch-demo-{digest[:16]}"
    props = jd["containerProperties"]
    assert props["image"] == "bidsbatch/demo:0.1.0"
    assert props["jobRoleArn"] == batch.role
    assert props["privileged"] is False
    assert {r["type"]: r["value"] for r in props["resourceRequirements"]} == {
        "VCPU": "1", "MEMORY": "512"}
    assert jd["timeout"] == {"attemptDurationSeconds": 10 * 60 + 30 * 60}
    assert jd["platformCapabilities"] == ["EC2"]
    sent = batch.calls("registerjobdefinition")[0]
    assert sent["retryStrategy"] == {"attempts": 3, "evaluateOnExit": [
        {"onStatusReason": "Host EC2*", "action": "RETRY"},
        {"onExitCode": "75", "action": "RETRY"},
        {"onReason": "*", "action": "EXIT"}]}
    assert sent["tags"]["bidsbatch:content-hash"] == digest

    # a status when nothing changed asks Batch nothing
    batch.server.reset_requests()
    assert _status(run_id)["counts"]["succeeded"] == 6
    assert batch.batch_requests() == []


def test_submitted_command_runs_the_right_scan_as_a_batch_child(batch: Batch, ds: Path) -> None:
    bucket, dataset, output = batch.dataset(ds)
    res = run_cli("run", "--pipeline", "demo", dataset, output, *batch.flags(), "--no-wait",
                  "--json")
    assert res.returncode == 0, res.stderr
    run_id = json.loads(res.stdout)["run_id"]
    jobs = {j.kind: j for j in _ledger_jobs(run_id)}
    array, group = jobs["array"], jobs["group"]
    desc = {j["jobId"]: j for j in batch.batch.describe_jobs(
        jobs=[array.job_id, group.job_id])["jobs"]}
    child_env = {
        **os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "AWS_BATCH_JOB_ATTEMPT": "1",
    }
    command = desc[array.job_id]["container"]["command"]
    assert command[0] == "bidsbatch"
    for index in (1, 4):
        env = {**child_env, "AWS_BATCH_JOB_ARRAY_INDEX": str(index),
               "AWS_BATCH_JOB_ID": f"{array.job_id}:{index}"}
        proc = subprocess.run([str(BIN / "bidsbatch"), *command[1:]], env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        scan = array.scans[index]
        assert f"scan {scan} of run {run_id}" in proc.stdout
        marker = batch.s3.get_object(Bucket=bucket,
                                     Key=f"derivatives/demo/.bidsbatch/done/{scan}.json")
        marker = json.loads(marker["Body"].read())
        assert marker["executor_job_id"] == f"{array.job_id}:{index}"
        assert marker["run_id"] == run_id
    group_cmd = desc[group.job_id]["container"]["command"]
    proc = subprocess.run([str(BIN / "bidsbatch"), *group_cmd[1:]], env=child_env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    batch.s3.head_object(Bucket=bucket, Key=f"derivatives/demo/.bidsbatch/group/{run_id}.json")
    # moto keeps no CloudWatch stream of these children: logs shows the worker's own log
    logs = run_cli("logs", run_id, array.scans[4])
    assert logs.returncode == 0, logs.stderr
    assert f"==> the worker's log {output}/.bidsbatch/done/{array.scans[4]}.log" in logs.stdout
    assert f"scan {array.scans[4]} of run {run_id}" in logs.stdout
    # the same run again: the two scans with a marker are skipped, not submitted
    again = run_cli("run", "--pipeline", "demo", dataset, output, *batch.flags(), "--no-wait",
                    "--json")
    assert again.returncode == 0, again.stderr
    assert sorted(json.loads(again.stdout)["skipped"]) == sorted(array.scans[i] for i in (1, 4))


def test_job_definition_is_reused_and_image_changes_only_it(batch: Batch, ds: Path) -> None:
    _bucket, dataset, output = batch.dataset(ds)
    first = _json(run_cli("run", "--pipeline", "demo", dataset, output, "-p", "01",
                          *batch.flags(), "--json"))
    second = _json(run_cli("run", "--pipeline", "demo", dataset, output, "-p", "02",
                           *batch.flags(), "--json"))
    assert first["run_id"] != second["run_id"]
    assert len(batch.calls("registerjobdefinition")) == 1
    arns = {b["jobDefinition"] for b in batch.calls("submitjob")}
    assert len(arns) == 1
    # --image: a new job definition, the same plan (run id, config hashes) and run
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/bidsbatch-demo:app-bb0.1.0"
    third = _json(run_cli("run", "--pipeline", "demo", dataset, output, "-p", "01",
                          *batch.flags("--image", image),
                          "--force", "--json"))
    assert third["run_id"] == first["run_id"] and third["counts"]["succeeded"] == 2
    assert len(batch.calls("registerjobdefinition")) == 2
    images = {d["containerProperties"]["image"] for d in
              batch.batch.describe_job_definitions(status="ACTIVE")["jobDefinitions"]}
    assert images == {"bidsbatch/demo:0.1.0", image}
    last = batch.calls("submitjob")[-2]  # the array (the group step comes last)
    assert last["containerOverrides"]["command"][-1] == "--force"


def test_failed_scans_then_retry_submits_only_those(failing_batch: Batch, ds: Path) -> None:
    batch = failing_batch
    bucket, dataset, output = batch.dataset(ds)
    # sub-01's scans are done already: their completion markers are there
    plan = json.loads(run_cli("plan", dataset, output, "--json").stdout)
    for spec in plan["specs"]:
        if spec["participant"] == "01":
            marker = {"run_id": "earlier", "scan_id": spec["scan_id"],
                      "config_hash": spec["config_hash"], "attempt": 1, "exit_code": 0,
                      "started_at": "2024-01-01T00:00:00Z",
                      "finished_at": "2024-01-01T00:01:00Z", "outputs": []}
            batch.s3.put_object(Bucket=bucket, Body=json.dumps(marker).encode(),
                                Key=f"derivatives/demo/.bidsbatch/done/{spec['scan_id']}.json")
    batch.server.reset_requests()
    res = run_cli("run", "--pipeline", "demo", dataset, output, *batch.flags(), "--json")
    assert res.returncode == 1
    status = json.loads(res.stdout)
    assert status["counts"]["skipped"] == 2 and status["counts"]["failed"] == 4
    assert status["group_state"] == "skipped"
    assert "failed sub-02_ses-1" in res.stderr
    failed = sorted(s["scan_id"] for s in status["scans"] if s["state"] == "failed")
    first_array = batch.calls("submitjob")[0]
    assert first_array["arrayProperties"] == {"size": 4}

    batch.server.reset_requests()
    retry = run_cli("retry", status["run_id"])
    assert retry.returncode == 1  # the retry fails too on this server
    assert "retrying 4 scan(s)" in retry.stderr
    submits = batch.calls("submitjob")
    assert len(submits) == 2  # a new array of the failed scans, and the group step
    command = submits[0]["containerOverrides"]["command"]
    assert command[2] == "--pack" and command[3] != first_array["containerOverrides"]["command"][3]
    retried = list(_pack_specs(batch.s3, command[3]))  # the retry's own index -> scan
    assert sorted(retried) == failed
    folder, _, name = command[3].rpartition("/")
    manifest = _s3_json(batch.s3, f"{folder}/{name.replace('specs-', 'manifest-')[:-5]}.json")
    assert manifest["specs"] == [f"specs/{s}.json" for s in retried]
    assert submits[0]["arrayProperties"] == {"size": 4}
    after = _status(status["run_id"])
    attempts = {s["scan_id"]: s["attempts"] for s in after["scans"]}
    assert {s: attempts[s] for s in failed} == dict.fromkeys(failed, 2)
    arrays = [j for j in _ledger_jobs(status["run_id"]) if j.kind == "array"]
    assert len(arrays) == 2 and sorted(arrays[1].scans) == failed


@pytest.fixture(scope="module")
def wide_ds(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    """200 scans of one tiny T1w each: some hundreds of specs to submit."""
    return make_dataset(tmp_path_factory.mktemp("wide") / "ds", subjects=200, sessions=None,
                        modalities=("anat",), shape=(4, 4, 4))


def test_submit_of_hundreds_of_scans_is_a_few_s3_requests(batch: Batch, wide_ds: Path) -> None:
    _bucket, dataset, output = batch.dataset(wide_ds)
    res = run_cli("run", dataset, output, "--pipeline", "demo", *batch.flags(), "--no-wait",
                  "--json")
    assert res.returncode == 0, res.stderr
    run_id = json.loads(res.stdout)["run_id"]
    s3_calls = [r for r in batch.server.requests() if not r["path"].startswith("/v1/")
                and r["target"] == "" and "bids%2Fds" not in r["query"]
                and "/bids/ds" not in r["path"]]
    submit = [r for r in s3_calls if f".bidsbatch%2Fruns%2F{run_id}" in r["query"]
              or f".bidsbatch/runs/{run_id}" in r["path"]]
    # run.json (HEAD, PUT), the run folder listed once, the manifest's HEAD and PUT, the
    # pack's PUT: never one request per scan
    assert len(submit) <= 10, [(r["method"], r["path"], r["query"]) for r in submit]
    assert len([r for r in submit if r["method"] == "PUT"]) == 3
    # and the whole run, crawl of the dataset aside (markers, leases, ...): still a few
    assert len(s3_calls) <= 15, [(r["method"], r["path"], r["query"]) for r in s3_calls]
    arrays = [b for b in batch.calls("submitjob") if "arrayProperties" in b]
    assert [a["arrayProperties"]["size"] for a in arrays] == [200]


def test_status_reads_summaries_and_batches_describe_jobs(batch: Batch, big_ds: Path) -> None:
    _bucket, dataset, output = batch.dataset(big_ds)
    res = run_cli("run", "--pipeline", "demo", dataset, output, *batch.flags("--array-size",
                  "50"), "--no-wait",
                  "--json")
    assert res.returncode == 0, res.stderr
    run_id = json.loads(res.stdout)["run_id"]
    arrays = [b for b in batch.calls("submitjob") if "arrayProperties" in b]
    assert [a["arrayProperties"]["size"] for a in arrays] == [50, 50, 5]
    batch.server.reset_requests()
    status = _status(run_id)
    assert status["counts"]["succeeded"] == 105
    assert all(s["exit_code"] == 0 for s in status["scans"])
    # a status summary: the parents' statusSummary in one call; every array SUCCEEDED,
    # so no child is listed or described
    assert len(batch.batch_requests()) <= 3
    describes = batch.calls("describejobs")
    assert len(describes) == 1 and not any(":" in j for j in describes[0]["jobs"])
    assert batch.calls("listjobs") == []
    batch.server.reset_requests()
    _status(run_id)
    assert batch.batch_requests() == []  # nothing changed: nothing asked
    # per-attempt details, for cost: the 105 children by id, 100 a call, once
    cost = run_cli("cost", run_id, "--json")
    assert cost.returncode == 0, cost.stderr
    describes = batch.calls("describejobs")
    assert len(describes) == 2 and all(len(d["jobs"]) <= 100 for d in describes)
    assert sorted(len(d["jobs"]) for d in describes) == [5, 100]
    assert len(batch.batch_requests()) == 2
    assert len(json.loads(cost.stdout)["attempts"]) == 105
    scans = _status(run_id)["scans"]
    assert all(s["attempts"] == 1 and s["log"] for s in scans)
    batch.server.reset_requests()
    assert run_cli("cost", run_id, "--json").returncode == 0
    assert run_cli("report", run_id).returncode == 0
    assert batch.batch_requests() == []  # all recorded: nothing asked


def test_children_of_a_live_array_are_listed_by_state(moving_batch: Batch, ds: Path) -> None:
    batch = moving_batch
    _bucket, dataset, output = batch.dataset(ds)
    res = run_cli("run", "--pipeline", "demo", dataset, output, *batch.flags(), "--no-wait",
                  "--json")
    assert res.returncode == 0, res.stderr
    run_id = json.loads(res.stdout)["run_id"]
    parent = next(j for j in _ledger_jobs(run_id) if j.kind == "array").job_id
    batch.server.reset_requests()
    deadline = time.monotonic() + 30
    while (status := _status(run_id))["counts"]["failed"] < 6:
        assert time.monotonic() < deadline, status["counts"]
        time.sleep(0.3)
    listed = batch.calls("listjobs")
    assert {"arrayJobId": parent, "jobStatus": "FAILED", "maxResults": 1000} in listed
    assert all(b.get("arrayJobId") == parent for b in listed)
    # the listing says what status needs (state, exit code, reason): no child described
    assert not any(":" in j for b in batch.calls("describejobs") for j in b["jobs"])
    assert all(s["reason"] for s in status["scans"])
    assert batch.batch.describe_jobs(jobs=[parent])["jobs"][0]["status"] == "RUNNING"
    # the parent is still live, its summary unchanged: one DescribeJobs, no listing
    batch.server.reset_requests()
    _status(run_id)
    assert batch.calls("listjobs") == [] and len(batch.calls("describejobs")) == 1
    # cost reads each ended child's attempts once, in one call
    batch.server.reset_requests()
    assert run_cli("cost", run_id).returncode == 0
    children = [b for b in batch.calls("describejobs") if any(":" in j for j in b["jobs"])]
    assert len(children) == 1 and len(children[0]["jobs"]) == 6


# --------------------------------------------------------------------------- idempotence


def _crash_after_first_array(dataset: str, output: str, batch: Batch) -> str:
    """Submit in this process, dying (as on SIGKILL) right after the first SubmitJob."""
    from bidsbatch import runner
    from bidsbatch.cli.options import Planning
    from bidsbatch.cli.plan import plan_from_options
    from bidsbatch.executors.awsbatch.api import BatchApi
    from bidsbatch.executors.awsbatch.executor import AwsBatchExecutor
    from bidsbatch.executors.awsbatch.settings import BatchSettings

    class DiesAfterOneSubmit:
        def __init__(self, real: Any) -> None:
            self.real, self.submits = real, 0

        def submit_job(self, **kwargs: Any) -> Any:
            if self.submits == 1:
                raise KeyboardInterrupt("the client died")
            self.submits += 1
            return self.real.submit_job(**kwargs)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.real, name)

    settings = BatchSettings.from_options({"job_queue": QUEUE, "job_role": batch.role,
                                           "array_size": 2})
    api = BatchApi(region="us-east-1", batch=DiesAfterOneSubmit(batch.batch))
    plan, run = plan_from_options(
        dataset=dataset, output=output, pipeline="demo", run_dir=None,
        planning=Planning(participant_label=[], session_label=[], exclude_participant=[],
                          labels_file=None, requester_pays=False, no_sign_request=False))
    with pytest.raises(KeyboardInterrupt):
        runner.start(plan, executor=AwsBatchExecutor(settings, api=api), run_dir=run.path)
    assert len(batch.calls("submitjob")) == 1
    return plan.run_id


def _scans_by_live_job(batch: Batch, run_id: str) -> list[str]:
    """Every scan of every array job of the run, as its manifest says (duplicates kept)."""
    found = batch.batch.list_jobs(jobQueue=QUEUE, filters=[
        {"name": "JOB_NAME", "values": [f"bidsbatch-{run_id}-a*"]}])["jobSummaryList"]
    scans = []
    for job in found:
        if ":" in job["jobId"]:
            continue
        desc = batch.batch.describe_jobs(jobs=[job["jobId"]])["jobs"][0]
        command = desc["container"]["command"]
        scans += list(_pack_specs(batch.s3, command[command.index("--pack") + 1]))
    return scans


def test_rerun_after_a_crash_submits_only_the_rest(queued_batch: Batch, ds: Path) -> None:
    batch = queued_batch
    _bucket, dataset, output = batch.dataset(ds)
    run_id = _crash_after_first_array(dataset, output, batch)
    status = _status(run_id)
    assert status["counts"]["submitted"] == 2 and status["counts"]["planned"] == 4
    # the same command again, ledger intact: the first array's scans are left alone
    batch.server.reset_requests()
    res = run_cli("run", "--pipeline", "demo", dataset, output, *batch.flags("--array-size", "2"),
                  "--no-wait",
                  "--json")
    assert res.returncode == 0, res.stderr
    assert len(batch.calls("submitjob")) == 3  # two arrays for the four others, the group
    scans = _scans_by_live_job(batch, run_id)
    assert len(scans) == 6 and len(set(scans)) == 6  # every scan in exactly one job
    group = batch.calls("submitjob")[-1]
    assert len(group["dependsOn"]) == 3
    # and again, the ledger lost: every job is found by name, nothing is submitted
    _drop_ledger(run_id)
    batch.server.reset_requests()
    res = run_cli("run", "--pipeline", "demo", dataset, output, *batch.flags("--array-size", "2"),
                  "--no-wait",
                  "--json")
    assert res.returncode == 0, res.stderr
    assert batch.calls("submitjob") == []
    assert len(batch.calls("registerjobdefinition")) == 0
    status = _status(run_id)
    assert status["counts"]["submitted"] == 6 and status["group_state"] == "submitted"
    assert {j.kind for j in _ledger_jobs(run_id)} == {"array", "group"}


def test_crash_and_lost_ledger_then_rerun_submits_only_the_rest(queued_batch: Batch,
                                                               ds: Path) -> None:
    batch = queued_batch
    _bucket, dataset, output = batch.dataset(ds)
    run_id = _crash_after_first_array(dataset, output, batch)
    _drop_ledger(run_id)
    batch.server.reset_requests()
    res = run_cli("run", "--pipeline", "demo", dataset, output, *batch.flags("--array-size", "2"),
                  "--no-wait",
                  "--json")
    assert res.returncode == 0, res.stderr
    assert len(batch.calls("submitjob")) == 3
    scans = _scans_by_live_job(batch, run_id)
    assert len(scans) == 6 and len(set(scans)) == 6
    listed = batch.calls("listjobs")
    assert any(b.get("filters") for b in listed)  # found the first array by its name


def test_cancel_terminates_each_live_job_once(queued_batch: Batch, ds: Path) -> None:
    batch = queued_batch
    _bucket, dataset, output = batch.dataset(ds)
    res = run_cli("run", "--pipeline", "demo", dataset, output, *batch.flags("--array-size", "4"),
                  "--no-wait",
                  "--json")
    assert res.returncode == 0, res.stderr
    run_id = json.loads(res.stdout)["run_id"]
    status = _status(run_id)
    assert status["counts"]["submitted"] == 6 and status["group_state"] == "submitted"
    batch.server.reset_requests()
    cancel = run_cli("cancel", run_id)
    assert cancel.returncode == 0, cancel.stderr
    terminated = batch.calls("terminatejob")
    assert len(terminated) == 3  # two array parents and the group job; no child
    assert all(":" not in t["jobId"] for t in terminated)
    status = _status(run_id)
    assert status["counts"]["cancelled"] == 6 and status["group_state"] == "cancelled"
    # nothing is left to wait for
    watch = run_cli("status", run_id, "--watch", timeout=30)
    assert watch.returncode == 0, watch.stderr


def test_a_job_batch_forgot_is_settled_by_the_markers(batch: Batch, ds: Path) -> None:
    from bidsbatch.ledger import Ledger
    from bidsbatch.runs import runs_root

    bucket, dataset, output = batch.dataset(ds)
    res = run_cli("run", "--pipeline", "demo", dataset, output, "-p", "01", *batch.flags(),
                  "--no-wait", "--json")
    assert res.returncode == 0, res.stderr
    run_id = json.loads(res.stdout)["run_id"]
    scans = ["sub-01_ses-1", "sub-01_ses-2"]
    # Batch forgets jobs some days after they end; this one it never knew
    with Ledger.open(runs_root() / run_id / "ledger.sqlite") as ledger:
        ledger.add_job("gone-1", kind="array", executor="aws-batch", scans=scans,
                       details={"submission": 9})
        for i, scan in enumerate(scans):
            ledger.update(scan, job_id=f"gone-1:{i}", state="running")
    spec = json.loads((runs_root() / run_id / "specs" / f"{scans[0]}.json").read_text())
    marker = {"run_id": run_id, "scan_id": scans[0], "config_hash": spec["config_hash"],
              "attempt": 1, "exit_code": 0, "started_at": "2024-01-01T00:00:00Z",
              "finished_at": "2024-01-01T00:01:00Z", "outputs": []}
    batch.s3.put_object(Bucket=bucket, Body=json.dumps(marker).encode(),
                        Key=f"derivatives/demo/.bidsbatch/done/{scans[0]}.json")
    states = {s["scan_id"]: s for s in _status(run_id)["scans"]}
    assert states[scans[0]]["state"] == "succeeded" and "marker" in states[scans[0]]["reason"]
    assert states[scans[1]]["state"] == "failed"
    assert "no longer reports job gone-1" in states[scans[1]]["reason"]


# --------------------------------------------------------------------------- logs


def test_logs_read_every_attempt_from_cloudwatch(batch: Batch, ds: Path) -> None:
    _bucket, dataset, output = batch.dataset(ds)
    res = run_cli("run", "--pipeline", "demo", dataset, output, "-p", "03", *batch.flags(),
                  "--json")
    assert res.returncode == 0, res.stderr
    status = json.loads(res.stdout)
    rec = next(s for s in status["scans"] if s["scan_id"] == "sub-03_ses-2")
    logs = batch.client("logs")
    logs.create_log_group(logGroupName="/aws/batch/job")
    logs.create_log_stream(logGroupName="/aws/batch/job", logStreamName=rec["log"])
    logs.put_log_events(logGroupName="/aws/batch/job", logStreamName=rec["log"], logEvents=[
        {"timestamp": int(time.time() * 1000) + i, "message": f"line {i}"} for i in range(3)])
    out = run_cli("logs", status["run_id"], "sub-03_ses-2")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("==> attempt 1 · job " + rec["job_id"])
    assert lines[1:] == ["line 0", "line 1", "line 2"]
    assert run_cli("logs", status["run_id"], "sub-03_ses-2", "--follow").stdout == out.stdout
    # a scan whose stream has no events yet: just the header; an unknown scan: usage error
    other = run_cli("logs", status["run_id"], "sub-03_ses-1")
    assert other.returncode == 0 and other.stdout.startswith("==> attempt 1")
    assert run_cli("logs", status["run_id"], "sub-09").returncode == 2
    group = run_cli("logs", status["run_id"], "group")
    assert group.returncode == 0 and group.stdout.startswith("==> attempt 1 · job ")


# --------------------------------------------------------------------------- security


def test_no_credentials_in_any_request_and_environment_settings(
        batch: Batch, ds: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from bidsbatch.config import EnvironmentSettings, save_environment

    monkeypatch.setenv("AWS_SESSION_TOKEN", FAKE_TOKEN)
    save_environment(EnvironmentSettings(
        name="lab", region="us-east-1", account_id="123456789012", job_queue=QUEUE,
        job_queue_arn=f"arn:aws:batch:us-east-1:123456789012:job-queue/{QUEUE}",
        job_role_arn=batch.role, log_group="/bidsbatch/lab"))
    bucket, dataset, output = batch.dataset(ds)
    res = run_cli("run", "--pipeline", "demo", dataset, output, "--executor", "aws-batch",
                  "--environment", "lab",
                  "--json")
    assert res.returncode == 0, res.stderr
    run_id = json.loads(res.stdout)["run_id"]
    secrets = (FAKE_KEY_ID, FAKE_SECRET, FAKE_TOKEN)
    batch_calls = batch.batch_requests()
    assert len(batch_calls) >= 4
    for r in batch.server.requests():
        assert not any(s in (r.get("body") or "") for s in secrets), r["path"]
    for obj in batch.s3.list_objects_v2(Bucket=bucket,
                                        Prefix="derivatives/demo/.bidsbatch/")["Contents"]:
        body = batch.s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read().decode()
        assert not any(s in body for s in secrets), obj["Key"]
    jd = batch.batch.describe_job_definitions(status="ACTIVE")["jobDefinitions"][0]
    props = jd["containerProperties"]
    assert not any(e["name"].startswith("AWS_") for e in props["environment"])
    assert props["logConfiguration"]["options"]["awslogs-group"] == "/bidsbatch/lab"
    # the environment's settings are saved with the run: later commands need no flags
    saved = json.loads(run_cli("status", run_id, "--json").stdout)
    assert saved["counts"]["succeeded"] == 6


@pytest.mark.parametrize("case", ["no-role", "bad-role", "no-queue", "local-output",
                                  "local-dataset", "keys-in-pipeline"])
def test_refusals_are_one_clear_line(batch: Batch, ds: Path, tmp_path: Path,
                                     case: str) -> None:
    _bucket, dataset, output = batch.dataset(ds)
    flags = batch.flags()
    args = [dataset, output]
    expect = ""
    if case == "no-role":
        flags = ["--executor", "aws-batch", "--job-queue", QUEUE]
        expect = "need an IAM job role"
    elif case == "bad-role":
        flags = [*batch.flags()[:-1], "bidsbatch-job"]
        expect = "is not an IAM role ARN"
    elif case == "no-queue":
        flags = ["--executor", "aws-batch"]
        expect = "AWS Batch needs a job queue"
    elif case == "local-output":
        args = [dataset, str(tmp_path / "out")]
        expect = "cannot reach the local output"
    elif case == "local-dataset":
        args = [str(ds), output]
        expect = "cannot reach the local dataset"
    else:
        preset = (Path(__import__("bidsbatch").__file__).parent / "presets/demo.toml")
        bad = tmp_path / "keys.toml"
        bad.write_text(preset.read_text() + '\n[env]\nAWS_SECRET_ACCESS_KEY = "x"\n')
        flags = [*flags, "--pipeline", str(bad)]
        expect = "refusing to pass AWS_SECRET_ACCESS_KEY"
    res = run_cli("run", "--pipeline", "demo", *args, *flags)
    assert res.returncode == 2, res.output
    assert expect in res.stderr
    assert "Traceback" not in res.stderr
    if case in ("no-role", "no-queue"):
        assert "bidsbatch aws setup" in res.stderr
    assert batch.calls("submitjob") == [] and batch.calls("registerjobdefinition") == []
    if case == "local-output":
        # nothing is left looking submitted
        run_id = json.loads(run_cli("status", "--json").stdout)["run_id"]
        assert _status(run_id)["counts"]["planned"] == 6


# --------------------------------------------------------------------------- in-process parts


def test_throttling_is_retried_with_backoff_and_a_lost_answer_is_not_resubmitted(
        batch: Batch) -> None:
    from botocore.awsrequest import AWSResponse
    from botocore.exceptions import ReadTimeoutError

    from bidsbatch.executors.awsbatch.api import BatchApi

    slept: list[float] = []
    api = BatchApi(region="us-east-1", sleep=slept.append)
    client = api.batch  # built as the product builds it: botocore's own retries off
    batch.batch.register_job_definition(
        jobDefinitionName="plain", type="container", containerProperties={
            "image": "x", "resourceRequirements": [{"type": "VCPU", "value": "1"},
                                                   {"type": "MEMORY", "value": "512"}]})
    throttled = {"n": 0}

    def throttle(**_kw: Any) -> Any:
        if throttled["n"] < 2:
            throttled["n"] += 1
            return AWSResponse("http://x", 429, {}, _Raw(
                b'{"__type": "TooManyRequestsException", "message": "slow down"}'))
        return None

    client.meta.events.register("before-send.batch.SubmitJob", throttle)
    batch.server.reset_requests()
    job_id = api.submit_job({"jobName": "bb-throttled", "jobQueue": QUEUE,
                             "jobDefinition": "plain"})
    assert slept == [1.0, 2.0]
    assert len(batch.calls("submitjob")) == 1 and job_id

    # the job was made but the answer was lost: found by name, not submitted again
    lost = {"n": 0}

    def lose_answer(**_kw: Any) -> None:
        if lost["n"] == 0:
            lost["n"] += 1
            raise ReadTimeoutError(endpoint_url="http://moto")

    client.meta.events.unregister("before-send.batch.SubmitJob", throttle)
    client.meta.events.register("after-call.batch.SubmitJob", lose_answer)
    batch.server.reset_requests()
    again = api.submit_job({"jobName": "bb-lost-answer", "jobQueue": QUEUE,
                            "jobDefinition": "plain"})
    assert len(batch.calls("submitjob")) == 1
    assert batch.batch.describe_jobs(jobs=[again])["jobs"][0]["jobName"] == "bb-lost-answer"
    # anything else is one clear line
    with pytest.raises(UsageError, match="does not exist"):
        api.submit_job({"jobName": "bb-x", "jobQueue": "no-such-queue",
                        "jobDefinition": "plain"})


class _Raw:
    """The raw body botocore reads from an HTTP response."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_kw: Any) -> Iterator[bytes]:
        yield self.data


def test_more_than_20_dependencies_are_chained(batch: Batch, ds: Path) -> None:
    from bidsbatch.cli.options import Planning
    from bidsbatch.cli.plan import plan_from_options
    from bidsbatch.executors.awsbatch.api import BatchApi
    from bidsbatch.executors.awsbatch.runfiles import RunFiles
    from bidsbatch.executors.awsbatch.settings import BatchSettings
    from bidsbatch.executors.awsbatch.states import PollState
    from bidsbatch.executors.awsbatch.submit import MAX_DEPENDS, Submitter
    from bidsbatch.ledger import Ledger
    from bidsbatch.storage import open_location

    _bucket, dataset, output = batch.dataset(ds)
    plan, run = plan_from_options(
        dataset=dataset, output=output, pipeline="demo", run_dir=None,
        planning=Planning(participant_label=["01"], session_label=[], exclude_participant=[],
                          labels_file=None, requester_pays=False, no_sign_request=False))
    settings = BatchSettings.from_options({"job_queue": QUEUE, "job_role": batch.role})
    with Ledger.open(run.ledger_path) as ledger:
        sub = Submitter(api=BatchApi(region="us-east-1"), settings=settings, run=run,
                        info=run.info(), ledger=ledger, state=PollState(ledger),
                        files=RunFiles(open_location(output), plan.run_id))
        top = sub._dependencies([f"job-{i}" for i in range(401)], [])
        barriers = ledger.jobs(kind="barrier")
    assert len(top) == 2  # 401 -> 21 barriers -> 2 barriers
    assert len(barriers) == 23
    for body in batch.calls("submitjob"):
        assert 1 <= len(body["dependsOn"]) <= MAX_DEPENDS
        assert body["containerOverrides"]["command"] == ["bidsbatch", "--version"]


def test_status_mapping_of_a_spot_reclaim_and_retry(tmp_path: Path) -> None:
    """What Batch reports for one child across a Spot reclaim, into the ledger."""
    from bidsbatch.executors.awsbatch.states import apply_job
    from bidsbatch.ledger import Ledger

    reclaimed = {"container": {"logStreamName": "bidsbatch/default/t1", "exitCode": None},
                 "startedAt": 1_700_000_000_000, "stoppedAt": 1_700_000_060_000,
                 "statusReason": "Host EC2 (instance i-0abc) terminated."}
    with Ledger.open(tmp_path / "ledger.sqlite") as ledger:
        ledger.add_scans(["sub-01"])
        apply_job(ledger, "sub-01", "J:0", {"status": "RUNNABLE", "attempts": [reclaimed]},
                  cancelled=False)
        rec = ledger.scan("sub-01")
        assert rec.state == "submitted" and rec.attempts == 1
        assert "Host EC2" in rec.reason and "retrying" in rec.reason
        apply_job(ledger, "sub-01", "J:0", {
            "status": "RUNNING", "attempts": [reclaimed], "startedAt": 1_700_000_100_000,
            "container": {"logStreamName": "bidsbatch/default/t2"}}, cancelled=False)
        rec = ledger.scan("sub-01")
        assert rec.state == "running" and rec.attempts == 2
        assert rec.log == "bidsbatch/default/t2"
        second = {"container": {"logStreamName": "bidsbatch/default/t2", "exitCode": 0},
                  "startedAt": 1_700_000_100_000, "stoppedAt": 1_700_000_200_000}
        apply_job(ledger, "sub-01", "J:0", {
            "status": "SUCCEEDED", "attempts": [reclaimed, second],
            "startedAt": 1_700_000_000_000, "stoppedAt": 1_700_000_200_000,
            "container": {"exitCode": 0, "logStreamName": "bidsbatch/default/t2"}},
            cancelled=False)
        rec = ledger.scan("sub-01")
        assert (rec.state, rec.attempts, rec.exit_code) == ("succeeded", 2, 0)
        assert rec.duration_seconds == 100.0
        attempts = ledger.attempts("sub-01")
        assert [(a.attempt, a.reason) for a in attempts] == [
            (1, "Host EC2 (instance i-0abc) terminated."), (2, None)]
        assert attempts[1].finished_at and attempts[1].exit_code == 0
        # a later job of the same scan numbers its attempts after these
        apply_job(ledger, "sub-01", "K:3", {
            "status": "FAILED", "attempts": [{"container": {"exitCode": 3},
                                              "startedAt": 1, "stoppedAt": 2}],
            "container": {"exitCode": 3}, "statusReason": "Essential container in task exited"},
            cancelled=False)
        rec = ledger.scan("sub-01")
        assert (rec.state, rec.attempts, rec.reason) == ("failed", 3, "exit 3")


def test_job_definition_for_fargate_and_gpus() -> None:
    from bidsbatch.executors.awsbatch.jobdef import job_definition
    from bidsbatch.executors.awsbatch.settings import BatchSettings
    from bidsbatch.pipelines import Pipeline

    def typed(record: dict[str, Any]) -> Pipeline:
        return Pipeline.from_record({"command": ["app"], **record})

    role = "arn:aws:iam::123456789012:role/bidsbatch-lab-job"
    pipeline = {"name": "p", "image": "me/app:1", "attempts": 2,
                "resources": {"vcpus": 2, "memory_mib": 8192, "gpus": 0, "disk_gib": 50,
                              "timeout_minutes": 60}}
    fargate = BatchSettings.from_options({"job_queue": "q", "job_role": role,
                                          "platform": "fargate"})
    jd = job_definition(typed(pipeline), fargate)
    props = jd["containerProperties"]
    assert jd["platformCapabilities"] == ["FARGATE"] and "privileged" not in props
    assert props["executionRoleArn"] == role
    assert props["ephemeralStorage"] == {"sizeInGiB": 50}
    assert jd["retryStrategy"]["attempts"] == 2
    with pytest.raises(UsageError, match="does not pair 2 vCPUs with 3000 MiB"):
        job_definition(typed({**pipeline, "resources": {**pipeline["resources"],
                                                        "memory_mib": 3000}}), fargate)
    ec2 = BatchSettings.from_options({"job_queue": "q", "job_role": role})
    gpu = job_definition(typed({**pipeline, "resources": {**pipeline["resources"], "gpus": 1,
                                                          "vcpus": 1.5}}), ec2)
    reqs = {r["type"]: r["value"] for r in gpu["containerProperties"]["resourceRequirements"]}
    assert reqs == {"VCPU": "2", "MEMORY": "8192", "GPU": "1"}
    with pytest.raises(UsageError, match="no GPUs"):
        job_definition(typed({**pipeline, "resources": {**pipeline["resources"], "gpus": 1}}),
                       fargate)
    with pytest.raises(BidsbatchError, match="refusing to pass AWS_ACCESS_KEY_ID"):
        BatchSettings.from_options({"job_queue": "q", "job_role": role,
                                    "job_env": {"AWS_ACCESS_KEY_ID": "x"}})
