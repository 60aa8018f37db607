"""``bidsbatch aws template``: a CloudFormation template equivalent to ``aws setup``,
which ``cfn-lint`` accepts without errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import boto3
import moto_server
import pytest
from conftest import BIN, run_cli

from bidsbatch.aws.spec import TAG_KEY

DATA = ("--dataset", "s3://bb-data/ds", "--dataset", "s3://open-data",
        "--output", "s3://bb-results/m2g")


@pytest.fixture(scope="module")
def moto(moto_iam: moto_server.MotoServer) -> moto_server.MotoServer:
    """This module's AWS calls need the managed policies: conftest's ``moto_iam``."""
    return moto_iam


def cfn_lint() -> str:
    exe = shutil.which("cfn-lint", path=str(BIN)) or shutil.which("cfn-lint")
    if exe is None:
        message = "cfn-lint is not installed (pip install -e '.[test]')"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return exe


def write_template(tmp_path: Path, name: str, *args: str) -> dict[str, Any]:
    out = tmp_path / f"{name}.json"
    res = run_cli("aws", "template", "lab", *args, "-o", str(out))
    assert res.returncode == 0, res.output
    assert "CAPABILITY_NAMED_IAM" in res.stderr
    return json.loads(out.read_text())


def test_templates_pass_cfn_lint(tmp_path) -> None:
    exe = cfn_lint()
    default = write_template(tmp_path, "default", *DATA, "--both", "--requester-pays")
    named = write_template(tmp_path, "named", "--bucket", "bb-data", "--on-demand",
                           "--subnets", "subnet-0123456789abcdef0,subnet-0fedcba9876543210",
                           "--security-groups", "sg-0123456789abcdef0",
                           "--pipeline", "fmriprep", "--log-retention-days", "90")

    # Without named subnets the template asks for them; with them it needs nothing.
    assert set(default["Parameters"]) == {"Subnets", "VpcId"}
    assert "SecurityGroup" in default["Resources"]
    assert "Parameters" not in named and "SecurityGroup" not in named["Resources"]
    res = named["Resources"]
    assert set(res) == {"InstanceRole", "InstanceProfile", "JobRole", "LaunchTemplate",
                        "LogGroup", "OnDemandComputeEnvironment", "JobQueue"}
    compute = res["OnDemandComputeEnvironment"]["Properties"]["ComputeResources"]
    assert compute["InstanceTypes"] == ["m5", "m6i", "r5"]  # fmriprep's default
    assert compute["AllocationStrategy"] == "BEST_FIT_PROGRESSIVE"
    data = res["LaunchTemplate"]["Properties"]["LaunchTemplateData"]
    assert data["BlockDeviceMappings"][0]["Ebs"]["VolumeSize"] == 100  # fmriprep's disk
    assert res["LogGroup"]["Properties"]["RetentionInDays"] == 90

    stdout = run_cli("aws", "template", "lab", *DATA)  # no -o: the template on stdout
    assert stdout.returncode == 0 and json.loads(stdout.stdout)["Resources"]

    lint = subprocess.run([exe, str(tmp_path / "default.json"), str(tmp_path / "named.json")],
                          capture_output=True, text=True, timeout=120)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def _resolve(value: Any, subs: dict[str, str]) -> Any:
    """The template's values with the pseudo parameters filled in, as CloudFormation would."""
    if isinstance(value, dict):
        if set(value) == {"Fn::Sub"}:
            text = value["Fn::Sub"]
            for k, v in subs.items():
                text = text.replace("${" + k + "}", v)
            return text
        return {k: _resolve(v, subs) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, subs) for v in value]
    return value


def test_template_is_equivalent_to_setup(aws, tmp_path) -> None:
    aws.configure({"batch": {"use_docker": False}})
    setup = run_cli("aws", "setup", "lab", *DATA, "--both", "--requester-pays")
    assert setup.returncode == 0, setup.output
    template = write_template(tmp_path, "lab", *DATA, "--both", "--requester-pays")
    resources = _resolve(template["Resources"], {
        "AWS::Partition": "aws", "AWS::Region": "us-east-1", "AWS::AccountId": "123456789012"})

    def client(service: str) -> Any:
        return boto3.client(service, endpoint_url=aws.url, region_name="us-east-1")

    iam, batch, ec2 = client("iam"), client("batch"), client("ec2")
    job = resources["JobRole"]["Properties"]
    made = iam.get_role(RoleName=job["RoleName"])["Role"]
    assert made["Path"] == job["Path"]
    assert made["AssumeRolePolicyDocument"] == job["AssumeRolePolicyDocument"]
    (policy,) = job["Policies"]
    assert iam.get_role_policy(RoleName=job["RoleName"], PolicyName=policy["PolicyName"])[
        "PolicyDocument"] == policy["PolicyDocument"]
    inst = resources["InstanceRole"]["Properties"]
    attached = iam.list_attached_role_policies(RoleName=inst["RoleName"])["AttachedPolicies"]
    assert [p["PolicyArn"] for p in attached] == inst["ManagedPolicyArns"]

    lt = resources["LaunchTemplate"]["Properties"]
    made_lt = ec2.describe_launch_template_versions(
        LaunchTemplateName=lt["LaunchTemplateName"], Versions=["$Default"]
    )["LaunchTemplateVersions"][0]["LaunchTemplateData"]
    assert made_lt["BlockDeviceMappings"] == lt["LaunchTemplateData"]["BlockDeviceMappings"]

    for logical in ("SpotComputeEnvironment", "OnDemandComputeEnvironment"):
        props = resources[logical]["Properties"]
        (ce,) = batch.describe_compute_environments(
            computeEnvironments=[props["ComputeEnvironmentName"]])["computeEnvironments"]
        want, have = props["ComputeResources"], ce["computeResources"]
        for key in ("Type", "AllocationStrategy", "MinvCpus", "MaxvCpus", "InstanceTypes",
                    "Tags"):
            assert have[key[0].lower() + key[1:]] == want[key], key
        assert have.get("bidPercentage") == want.get("BidPercentage")
        assert ce["tags"] == props["Tags"] == {TAG_KEY: "lab"}
    queue = resources["JobQueue"]["Properties"]
    (made_q,) = batch.describe_job_queues(jobQueues=[queue["JobQueueName"]])["jobQueues"]
    assert [o["computeEnvironment"].rsplit("/", 1)[-1] for o in
            sorted(made_q["computeEnvironmentOrder"], key=lambda o: o["order"])] == [
        resources[o["ComputeEnvironment"]["Ref"]]["Properties"]["ComputeEnvironmentName"]
        for o in queue["ComputeEnvironmentOrder"]]
    assert resources["LogGroup"]["Properties"]["LogGroupName"] == "/bidsbatch/lab"
