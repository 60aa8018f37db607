"""``bidsbatch doctor`` against a real moto server, through the CLI: it passes on a good
environment, names each broken piece on a bad one, and its fix commands fix them."""

from __future__ import annotations

import json
import shlex
from typing import Any

import boto3
import moto_server
import pytest
from conftest import run_cli

ENV = "lab"
DATASET = "s3://bb-data/ds"
OUTPUT = "s3://bb-results/m2g"


@pytest.fixture(scope="module")
def moto(moto_iam: moto_server.MotoServer) -> moto_server.MotoServer:
    """This module's AWS calls need the managed policies: conftest's ``moto_iam``."""
    return moto_iam


@pytest.fixture
def environment(aws: moto_server.MotoServer) -> moto_server.MotoServer:
    """A good environment: data in the dataset, an output bucket, ``aws setup`` done."""
    aws.configure({"batch": {"use_docker": False}})
    s3 = client(aws, "s3")
    for bucket in ("bb-data", "bb-results"):
        s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket="bb-data", Key="ds/dataset_description.json", Body=b"{}")
    s3.put_object(Bucket="bb-data", Key="ds/sub-01/anat/sub-01_T1w.nii.gz", Body=b"x")
    res = run_cli("aws", "setup", ENV, "--dataset", DATASET, "--output", OUTPUT)
    assert res.returncode == 0, res.output
    return aws


def client(server: moto_server.MotoServer, service: str) -> Any:
    return boto3.client(service, endpoint_url=server.url, region_name="us-east-1")


def doctor(*args: str) -> tuple[Any, dict[str, Any]]:
    res = run_cli("doctor", "--json", *args)
    assert "Traceback" not in res.output
    return res, json.loads(res.stdout)


def checks(report: dict[str, Any], status: str) -> list[str]:
    return [c["name"] for c in report["checks"] if c["status"] == status]


def fixes(report: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["fix"] for c in report["checks"] if c["status"] == "fail"}


def test_doctor_passes_then_names_a_disabled_queue_and_its_fix_works(environment) -> None:
    res, report = doctor()
    assert res.returncode == 0, res.output
    assert report["ok"] is True and checks(report, "fail") == []
    assert checks(report, "ok") == [
        "environment", "region", "credentials",
        "job queue bidsbatch-lab", "compute environment bidsbatch-lab-spot",
        "job role bidsbatch-lab-job trust",
        f"job role bidsbatch-lab-job reads {DATASET}",
        f"job role bidsbatch-lab-job writes {OUTPUT}",
        "log group /bidsbatch/lab",
        f"read {DATASET}", f"write {OUTPUT}",
    ]
    assert "all checks passed" in res.stderr
    # The probe object is gone again.
    listing = client(environment, "s3").list_objects_v2(Bucket="bb-results")
    assert listing.get("KeyCount", 0) == 0

    batch = client(environment, "batch")
    batch.update_job_queue(jobQueue="bidsbatch-lab", state="DISABLED")
    batch.update_compute_environment(computeEnvironment="bidsbatch-lab-spot", state="DISABLED")

    res, report = doctor()
    assert res.returncode == 1, res.output
    assert checks(report, "fail") == ["job queue bidsbatch-lab",
                                      "compute environment bidsbatch-lab-spot"]
    details = {c["name"]: c["detail"] for c in report["checks"]}
    assert "DISABLED" in details["job queue bidsbatch-lab"]
    assert "DISABLED" in details["compute environment bidsbatch-lab-spot"]
    fix = fixes(report)["job queue bidsbatch-lab"]
    assert fix.startswith(f"bidsbatch aws setup {ENV} --dataset {DATASET} --output {OUTPUT}")
    # Human output: the table, then each failure with its fix, then one error line.
    assert "To fix:" in res.stderr and fix in res.stderr
    assert "error: 2 of 11 checks failed" in res.stderr

    repaired = run_cli(*shlex.split(fix)[1:])
    assert repaired.returncode == 0, repaired.output
    assert "enabled" in repaired.stderr
    res, report = doctor()
    assert res.returncode == 0, res.output


def test_doctor_names_missing_output_write_permission(environment) -> None:
    iam = client(environment, "iam")
    doc = iam.get_role_policy(RoleName="bidsbatch-lab-job",
                              PolicyName="bidsbatch-data-access")["PolicyDocument"]
    for st in doc["Statement"]:
        if st["Sid"] == "ReadWriteOutput":
            st["Action"] = ["s3:GetObject"]  # someone took PutObject away
    iam.put_role_policy(RoleName="bidsbatch-lab-job", PolicyName="bidsbatch-data-access",
                        PolicyDocument=json.dumps(doc))

    res, report = doctor()
    assert res.returncode == 1, res.output
    name = f"job role bidsbatch-lab-job writes {OUTPUT}"
    assert checks(report, "fail") == [name]
    detail = next(c["detail"] for c in report["checks"] if c["name"] == name)
    assert detail == f"the job role lacks s3:PutObject on {OUTPUT}"

    # An output the environment was not set up for: the fix names it.
    other = "s3://bb-results/other"
    res, report = doctor("--output", other)
    assert res.returncode == 1
    name = f"job role bidsbatch-lab-job writes {other}"
    assert name in checks(report, "fail")
    assert f"--output {other}" in fixes(report)[name]
    assert f"write {other}" in checks(report, "ok")  # your own credentials can write there

    repaired = run_cli(*shlex.split(fixes(report)[name])[1:])
    assert repaired.returncode == 0, repaired.output
    res, report = doctor()
    assert res.returncode == 0, res.output
    assert report["checks"][-1]["name"] == f"write {other}"


def test_doctor_without_an_environment_or_credentials() -> None:
    res, report = doctor("--environment", "nosuch")
    assert res.returncode == 1
    assert checks(report, "fail") == ["environment", "region"]
    assert fixes(report)["environment"] == "bidsbatch aws setup nosuch --bucket BUCKET"

    # No credentials: botocore refuses before sending anything (no network).
    env = {"AWS_REGION": "us-east-1"}
    res = run_cli("doctor", "--json", "--dataset", "s3://bb-data/ds", env=env)
    report = json.loads(res.stdout)
    assert res.returncode == 1
    assert checks(report, "fail") == ["environment", "credentials"]
    fix = fixes(report)
    assert fix["environment"].startswith("bidsbatch aws setup")
    assert "aws configure" in fix["credentials"]
    assert "no AWS environment is set up" in res.stderr
    assert "no AWS credentials found" in res.stderr

    res = run_cli("doctor")
    assert res.returncode == 1
    assert "no AWS region is set" in res.stderr and "export AWS_REGION" in res.stderr
