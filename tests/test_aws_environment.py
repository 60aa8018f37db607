"""``bidsbatch aws setup|status|teardown`` against a real moto server, through the CLI.

Also the pure parts: the job role's policy document statement by statement,
the policy evaluator, the waiting loop (with a fake clock) and the config file.
"""

from __future__ import annotations

import json
import re
from typing import Any

import boto3
import moto_server
import pytest
from conftest import FAKE_KEY_ID, FAKE_SECRET, run_cli

from bidsbatch.aws import policies
from bidsbatch.aws.clients import Waiter
from bidsbatch.aws.spec import TAG_KEY, EnvironmentSpec, Market
from bidsbatch.errors import BidsbatchError, UsageError

ENV = "lab"
DATA = ("--dataset", "s3://bb-data/ds", "--output", "s3://bb-results/m2g")
#: The first test also reads a whole public bucket, Requester Pays.
MORE_DATA = ("--dataset", "s3://open-data", "--requester-pays")


@pytest.fixture(scope="module")
def moto(moto_iam: moto_server.MotoServer) -> moto_server.MotoServer:
    """This module's AWS calls need the managed policies: conftest's ``moto_iam``."""
    return moto_iam


@pytest.fixture
def batch_aws(aws: moto_server.MotoServer) -> moto_server.MotoServer:
    aws.configure({"batch": {"use_docker": False}})
    return aws


def client(server: moto_server.MotoServer, service: str) -> Any:
    return boto3.client(service, endpoint_url=server.url, region_name="us-east-1")


def setup(*extra: str) -> Any:
    return run_cli("aws", "setup", ENV, *DATA, *extra)


_MUTATING = re.compile(
    r"Action=(Create|Update|Put|Attach|Delete|Modify|Add|Remove|Revoke|Tag|Detach)"
    r"|/v1/(create|update|delete|register|deregister|tag)"
    r"|Logs_\d+\.(Create|Put|Delete|Tag)"
)


def mutating_calls(server: moto_server.MotoServer) -> list[str]:
    out = []
    for r in server.requests():
        text = f"{r.get('path', '')} {r.get('target', '')} {r.get('body', '')[:200]}"
        if _MUTATING.search(text):
            out.append(text[:120])
    return out


def tagged(server: moto_server.MotoServer, name: str = ENV) -> list[str]:
    """Everything carrying our tag, found with plain boto3 (not with our code)."""
    batch, ec2, iam, logs = (client(server, s) for s in ("batch", "ec2", "iam", "logs"))
    found = []
    for q in batch.describe_job_queues()["jobQueues"]:
        if q.get("tags", {}).get(TAG_KEY) == name:
            found.append(f"queue {q['jobQueueName']}")
    for ce in batch.describe_compute_environments()["computeEnvironments"]:
        if ce.get("tags", {}).get(TAG_KEY) == name:
            found.append(f"ce {ce['computeEnvironmentName']}")
    flt = [{"Name": f"tag:{TAG_KEY}", "Values": [name]}]
    found += [f"lt {t['LaunchTemplateName']}"
              for t in ec2.describe_launch_templates(Filters=flt)["LaunchTemplates"]]
    found += [f"sg {g['GroupName']}"
              for g in ec2.describe_security_groups(Filters=flt)["SecurityGroups"]]
    for r in iam.list_roles()["Roles"]:
        tags = iam.get_role(RoleName=r["RoleName"])["Role"].get("Tags", [])
        if {"Key": TAG_KEY, "Value": name} in tags:
            found.append(f"role {r['RoleName']}")
    for p in iam.list_instance_profiles()["InstanceProfiles"]:
        tags = iam.get_instance_profile(
            InstanceProfileName=p["InstanceProfileName"])["InstanceProfile"].get("Tags", [])
        if {"Key": TAG_KEY, "Value": name} in tags:
            found.append(f"profile {p['InstanceProfileName']}")
    for g in logs.describe_log_groups()["logGroups"]:
        if logs.list_tags_log_group(logGroupName=g["logGroupName"])["tags"].get(TAG_KEY) == name:
            found.append(f"log group {g['logGroupName']}")
    return sorted(found)


def saved_environments(tmp_path: Any) -> dict[str, Any]:
    path = tmp_path / "bidsbatch-config" / "environments.json"
    return json.loads(path.read_text())["environments"] if path.exists() else {}


def assert_least_privilege(iam: Any) -> None:
    """The job role's policy, statement by statement; the instance role's one policy."""
    role = iam.get_role(RoleName="bidsbatch-lab-job")["Role"]
    assert role["Path"] == "/bidsbatch/"
    assert role["AssumeRolePolicyDocument"] == {
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": "ecs-tasks.amazonaws.com"},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"aws:SourceAccount": "123456789012"}},
        }],
    }
    assert iam.list_attached_role_policies(RoleName="bidsbatch-lab-job")["AttachedPolicies"] == []
    assert iam.list_role_policies(RoleName="bidsbatch-lab-job")["PolicyNames"] == [
        "bidsbatch-data-access"]
    doc = iam.get_role_policy(RoleName="bidsbatch-lab-job",
                              PolicyName="bidsbatch-data-access")["PolicyDocument"]
    st = doc["Statement"]
    assert [s["Sid"] for s in st] == ["ListDatasets1", "ListDatasets2",
                                      "ReadDatasetsRequesterPays", "ListOutput",
                                      "ReadWriteOutput", "DeleteRunState", "WriteLogs"]
    assert st[0] == {"Sid": "ListDatasets1", "Effect": "Allow", "Action": "s3:ListBucket",
                     "Resource": "arn:aws:s3:::bb-data",
                     "Condition": {"StringLike": {"s3:prefix": ["ds", "ds/*"]}}}
    # A whole-bucket dataset needs no prefix condition, and still names its bucket.
    assert st[1] == {"Sid": "ListDatasets2", "Effect": "Allow", "Action": "s3:ListBucket",
                     "Resource": "arn:aws:s3:::open-data"}
    assert st[2] == {"Sid": "ReadDatasetsRequesterPays", "Effect": "Allow",
                     "Action": "s3:GetObject",
                     "Resource": ["arn:aws:s3:::bb-data/ds/*", "arn:aws:s3:::open-data/*"]}
    assert st[3] == {"Sid": "ListOutput", "Effect": "Allow", "Action": "s3:ListBucket",
                     "Resource": "arn:aws:s3:::bb-results",
                     "Condition": {"StringLike": {"s3:prefix": ["m2g", "m2g/*"]}}}
    assert st[4] == {"Sid": "ReadWriteOutput", "Effect": "Allow",
                     "Action": ["s3:GetObject", "s3:PutObject"],
                     "Resource": "arn:aws:s3:::bb-results/m2g/*"}
    assert st[5] == {"Sid": "DeleteRunState", "Effect": "Allow", "Action": "s3:DeleteObject",
                     "Resource": "arn:aws:s3:::bb-results/m2g/.bidsbatch/*"}
    assert st[6] == {"Sid": "WriteLogs", "Effect": "Allow",
                     "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                     "Resource": "arn:aws:logs:us-east-1:123456789012:log-group:/bidsbatch/lab:*"}
    for s in st:
        actions = [s["Action"]] if isinstance(s["Action"], str) else s["Action"]
        resources = [s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"]
        assert s["Effect"] == "Allow"
        assert not any("*" in a for a in actions), s
        if any(a.startswith("s3:") for a in actions):
            assert "*" not in resources and all(r.startswith("arn:aws:s3:::") for r in resources)

    # The instance role: only the ECS agent's managed policy, trusted by EC2.
    attached = iam.list_attached_role_policies(RoleName="bidsbatch-lab-instance")
    assert [p["PolicyName"] for p in attached["AttachedPolicies"]] == [
        "AmazonEC2ContainerServiceforEC2Role"]


# --------------------------------------------------------------------------- setup


def test_setup_from_nothing_then_again_changes_nothing(batch_aws, tmp_path) -> None:
    dry = setup(*MORE_DATA, "--dry-run")
    assert dry.returncode == 0, dry.output
    assert "would create" in dry.stderr and "dry run: nothing was changed" in dry.stderr
    assert tagged(batch_aws) == [] and saved_environments(tmp_path) == {}

    res = setup(*MORE_DATA)
    assert res.returncode == 0, res.output
    assert "environment lab is ready" in res.stderr

    batch, ec2, logs = (client(batch_aws, s) for s in ("batch", "ec2", "logs"))
    (queue,) = batch.describe_job_queues(jobQueues=["bidsbatch-lab"])["jobQueues"]
    assert (queue["state"], queue["status"]) == ("ENABLED", "VALID")
    (ce,) = batch.describe_compute_environments(
        computeEnvironments=["bidsbatch-lab-spot"])["computeEnvironments"]
    cr = ce["computeResources"]
    assert cr["type"] == "SPOT"
    assert cr["allocationStrategy"] == "SPOT_PRICE_CAPACITY_OPTIMIZED"
    assert cr["bidPercentage"] == 100 and cr["minvCpus"] == 0 and cr["maxvCpus"] == 256
    assert cr["instanceTypes"] == ["r5.large"]  # m2g's default
    assert "spotIamFleetRole" not in cr  # not needed with SPOT_PRICE_CAPACITY_OPTIMIZED
    assert "/aws-service-role/batch.amazonaws.com/" in ce["serviceRole"]
    assert queue["computeEnvironmentOrder"] == [
        {"order": 1, "computeEnvironment": ce["computeEnvironmentArn"]}]

    version = ec2.describe_launch_template_versions(
        LaunchTemplateName="bidsbatch-lab", Versions=["$Default"])["LaunchTemplateVersions"][0]
    (ebs,) = [m["Ebs"] for m in version["LaunchTemplateData"]["BlockDeviceMappings"]]
    assert (ebs["VolumeSize"], ebs["VolumeType"]) == (100, "gp3")  # m2g's disk_gib
    assert cr["launchTemplate"] == {"launchTemplateName": "bidsbatch-lab",
                                    "version": str(version["VersionNumber"])}
    (group,) = logs.describe_log_groups(logGroupNamePrefix="/bidsbatch/lab")["logGroups"]
    assert group["retentionInDays"] == 30
    (sg,) = ec2.describe_security_groups(GroupIds=cr["securityGroupIds"])["SecurityGroups"]
    assert sg["IpPermissions"] == []

    assert tagged(batch_aws) == sorted([
        "queue bidsbatch-lab", "ce bidsbatch-lab-spot", "lt bidsbatch-lab", "sg bidsbatch-lab",
        "role bidsbatch-lab-instance", "role bidsbatch-lab-job",
        "profile bidsbatch-lab-instance", "log group /bidsbatch/lab",
    ])

    saved = saved_environments(tmp_path)[ENV]
    assert saved["job_queue_arn"] == queue["jobQueueArn"]
    assert saved["job_role_arn"].endswith(":role/bidsbatch/bidsbatch-lab-job")
    assert (saved["region"], saved["log_group"]) == ("us-east-1", "/bidsbatch/lab")
    assert saved["datasets"] == ["s3://bb-data/ds", "s3://open-data"]
    assert saved["output"] == "s3://bb-results/m2g" and saved["requester_pays"] is True
    assert_least_privilege(client(batch_aws, "iam"))

    # No credentials anywhere: not in what we saved, printed or sent.
    config_text = (tmp_path / "bidsbatch-config" / "environments.json").read_text()
    sent = json.dumps(batch_aws.requests())
    for secret in (FAKE_KEY_ID, FAKE_SECRET):
        assert secret not in config_text and secret not in res.output
        assert secret not in sent.replace(f"Credential={FAKE_KEY_ID}", "")

    # The same options again: nothing changes, and it says so.
    batch_aws.reset_requests()
    again = setup(*MORE_DATA)
    assert again.returncode == 0, again.output
    assert "nothing to change" in again.stderr
    assert "created" not in again.stderr and "updated" not in again.stderr
    assert mutating_calls(batch_aws) == []

    # Status: each resource and its state.
    status = run_cli("aws", "status", ENV, "--json")
    assert status.returncode == 0, status.output
    data = json.loads(status.stdout)
    assert data["healthy"] is True and data["missing"] == []
    states = {(r["kind"], r["name"]): (r["state"], r["status"]) for r in data["resources"]}
    assert states[("job queue", "bidsbatch-lab")] == ("ENABLED", "VALID")
    assert states[("compute environment", "bidsbatch-lab-spot")] == ("ENABLED", "VALID")
    assert sorted(k for k, _ in states) == sorted([
        "job queue", "compute environment", "launch template", "instance profile",
        "instance role", "job role", "log group", "security group"])

    batch.update_job_queue(jobQueue="bidsbatch-lab", state="DISABLED")
    table = run_cli("aws", "status", ENV)
    assert table.returncode == 0, table.output
    assert "DISABLED" in table.stderr and "VALID" in table.stderr
    assert "needs attention" in table.stderr and "bidsbatch doctor" in table.stderr
    missing = run_cli("aws", "status", "nosuch")
    assert missing.returncode == 1 and "no resources tagged" in missing.stderr


def test_changed_options_update_in_place(batch_aws, tmp_path) -> None:
    assert setup().returncode == 0
    res = setup("--both", "--max-vcpus", "64", "--root-volume-gib", "200",
                "--log-retention-days", "90")
    assert res.returncode == 0, res.output
    out = res.stderr
    assert re.search(r"updated\s+launch template bidsbatch-lab .*100 → 200 GiB", out)
    assert re.search(r"updated\s+compute environment bidsbatch-lab-spot .*maxvCpus 256 → 64", out)
    assert re.search(r"created\s+compute environment bidsbatch-lab-on-demand", out)
    assert re.search(r"updated\s+job queue bidsbatch-lab .*spot → on-demand", out)
    assert re.search(r"updated\s+log group /bidsbatch/lab .*30 → 90 days", out)

    batch, ec2 = client(batch_aws, "batch"), client(batch_aws, "ec2")
    (od,) = batch.describe_compute_environments(
        computeEnvironments=["bidsbatch-lab-on-demand"])["computeEnvironments"]
    assert od["computeResources"]["type"] == "EC2"
    assert od["computeResources"]["allocationStrategy"] == "BEST_FIT_PROGRESSIVE"
    assert "bidPercentage" not in od["computeResources"]
    (queue,) = batch.describe_job_queues(jobQueues=["bidsbatch-lab"])["jobQueues"]
    order = [o["computeEnvironment"].rsplit("/", 1)[-1] for o in
             sorted(queue["computeEnvironmentOrder"], key=lambda o: o["order"])]
    assert order == ["bidsbatch-lab-spot", "bidsbatch-lab-on-demand"]  # Spot first
    (lt,) = ec2.describe_launch_templates(LaunchTemplateNames=["bidsbatch-lab"])["LaunchTemplates"]
    assert lt["DefaultVersionNumber"] == 2
    saved = saved_environments(tmp_path)[ENV]
    assert saved["markets"] == ["spot", "on-demand"] and saved["max_vcpus"] == 64

    # Dropping Spot removes our Spot compute environment after the queue stops using it.
    res = setup("--on-demand", "--max-vcpus", "64", "--root-volume-gib", "200",
                "--log-retention-days", "90")
    assert res.returncode == 0, res.output
    assert re.search(r"deleted\s+compute environment bidsbatch-lab-spot", res.stderr)
    names = [c["computeEnvironmentName"]
             for c in batch.describe_compute_environments()["computeEnvironments"]]
    assert names == ["bidsbatch-lab-on-demand"]

    # What AWS cannot change in place gets one clear line: a Spot compute
    # environment with the BEST_FIT strategy (as an older setup might have made).
    (od,) = batch.describe_compute_environments(
        computeEnvironments=["bidsbatch-lab-on-demand"])["computeEnvironments"]
    batch.create_compute_environment(
        computeEnvironmentName="bidsbatch-lab-spot", type="MANAGED", state="ENABLED",
        serviceRole=od["serviceRole"], tags={TAG_KEY: ENV},
        computeResources={**od["computeResources"], "type": "SPOT",
                          "allocationStrategy": "BEST_FIT", "bidPercentage": 100},
    )
    res = setup("--both", "--max-vcpus", "64", "--root-volume-gib", "200",
                "--log-retention-days", "90")
    assert res.returncode == 0, res.output
    assert re.search(r"must recreate: compute environment bidsbatch-lab-spot: cannot change "
                     r"allocationStrategy in place: run `bidsbatch aws teardown lab`", res.stderr)


def test_setup_interrupted_midway_then_rerun_completes(batch_aws, tmp_path) -> None:
    # A broken option makes the compute environment fail after IAM, the launch
    # template and the log group were made: the state of a crashed run.
    broken = setup("--instance-types", "nonexistent.type")
    assert broken.returncode == 1, broken.output
    assert "compute environment bidsbatch-lab-spot" in broken.stderr
    assert "nonexistent.type" in broken.stderr
    assert "Traceback" not in broken.output
    assert saved_environments(tmp_path) == {}
    assert "queue bidsbatch-lab" not in tagged(batch_aws)
    assert "role bidsbatch-lab-job" in tagged(batch_aws)

    # And a run that stopped between making the instance profile and adding its role.
    iam = client(batch_aws, "iam")
    iam.remove_role_from_instance_profile(InstanceProfileName="bidsbatch-lab-instance",
                                          RoleName="bidsbatch-lab-instance")

    res = setup()
    assert res.returncode == 0, res.output
    out = res.stderr
    assert re.search(r"unchanged\s+job role bidsbatch-lab-job", out)
    assert re.search(r"unchanged\s+launch template bidsbatch-lab", out)
    assert re.search(r"updated\s+instance profile bidsbatch-lab-instance", out)
    assert re.search(r"created\s+compute environment bidsbatch-lab-spot", out)
    assert re.search(r"created\s+job queue bidsbatch-lab", out)
    assert ENV in saved_environments(tmp_path)
    assert setup().returncode == 0  # and now it is complete


def test_setup_usage_errors() -> None:
    res = run_cli("aws", "setup", ENV, "--region", "us-east-1")
    assert res.returncode == 2 and "name the data the jobs may use" in res.stderr
    assert "hint: --bucket BUCKET" in res.stderr

    def create(**kw: Any) -> EnvironmentSpec:
        return EnvironmentSpec.create(name=kw.pop("name", ENV), region="us-east-1", **kw)

    for kw, message in [
        ({"name": "bad name!", "bucket": "b1b"}, "invalid environment name"),
        ({"datasets": ("/local/ds",), "output": "s3://b1b/o"}, "is not an s3:// location"),
        ({"bucket": "s3://b1b"}, "--bucket takes a bucket name"),
        ({"bucket": "b1b", "max_vcpus": 1}, "less than one m2g job needs"),
        ({"bucket": "b1b", "root_volume_gib": 8}, "--root-volume-gib must be from 30"),
        ({"bucket": "b1b", "log_retention_days": 31}, "not a value CloudWatch Logs accepts"),
        ({"bucket": "b1b", "instance_types": ("r5.large;rm",)}, "invalid instance type"),
        ({"bucket": "b1b", "pipeline": "nosuch"}, "unknown pipeline"),
    ]:
        with pytest.raises(UsageError, match=re.escape(message)):
            create(**kw)
    spec = create(bucket="b1b", pipeline="fmriprep", markets=(Market.ON_DEMAND, Market.SPOT))
    assert spec.markets == (Market.SPOT, Market.ON_DEMAND)  # Spot always first
    assert spec.instance_types == ("m5", "m6i", "r5") and spec.root_volume_gib == 100
    assert spec.command() == ("bidsbatch aws setup lab --dataset s3://b1b --output s3://b1b "
                              "--both --pipeline fmriprep --region us-east-1")


def test_policy_evaluator_decides_like_iam() -> None:
    ds = policies.S3Prefix.parse("s3://bkt/ds/")
    out = policies.S3Prefix.parse("s3://bkt/out")
    doc = policies.job_role_policy(datasets=[ds], output=out, log_group="arn:aws:logs:r:1:x",
                                   partition="aws", deletable=".bidsbatch")
    docs = [doc]

    def ok(action: str, resource: str, prefix: str | None = None) -> bool:
        ctx = {"s3:prefix": prefix} if prefix is not None else None
        return policies.evaluate(docs, action=action, resource=resource, context=ctx).allowed

    assert ok("s3:GetObject", "arn:aws:s3:::bkt/ds/sub-01/anat/T1w.nii.gz")
    assert not ok("s3:GetObject", "arn:aws:s3:::bkt/dsx/file")
    assert not ok("s3:PutObject", "arn:aws:s3:::bkt/ds/sub-01/x")
    assert ok("S3:putobject", "arn:aws:s3:::bkt/out/sub-01/x")  # actions ignore case
    assert ok("s3:ListBucket", "arn:aws:s3:::bkt", "ds/")
    assert ok("s3:ListBucket", "arn:aws:s3:::bkt", "ds/sub-01/")
    assert not ok("s3:ListBucket", "arn:aws:s3:::bkt", "")
    assert not ok("s3:ListBucket", "arn:aws:s3:::bkt")  # HeadBucket: no prefix
    assert ok("s3:DeleteObject", "arn:aws:s3:::bkt/out/.bidsbatch/done/sub-01.json")
    assert not ok("s3:DeleteObject", "arn:aws:s3:::bkt/out/sub-01/anat/x.nii.gz")
    deny = {"Statement": [{"Effect": "Deny", "Action": "s3:*", "Resource": "*",
                           "Condition": {"StringNotLike": {"s3:prefix": "ds/*"}}}]}
    docs.append(deny)
    assert not ok("s3:ListBucket", "arn:aws:s3:::bkt", "other/")
    assert ok("s3:ListBucket", "arn:aws:s3:::bkt", "ds/")
    decision = policies.evaluate(docs, action="s3:GetObject", resource="arn:aws:s3:::bkt/x")
    assert decision.reason.startswith("s3:GetObject is explicitly denied")
    assert policies.trusts_service(policies.trust_policy(policies.ECS_TASKS, source_account="1"),
                                   policies.ECS_TASKS)
    assert not policies.trusts_service(policies.trust_policy(policies.EC2), policies.ECS_TASKS)


# --------------------------------------------------------------------------- teardown


def test_teardown_deletes_exactly_what_it_made(batch_aws, tmp_path) -> None:
    """And leaves the user's own resources alone, even with our names."""
    assert setup("--both").returncode == 0
    iam, logs = client(batch_aws, "iam"), client(batch_aws, "logs")
    # The user's own things, in our path and prefix but without our tag: never touched.
    iam.create_role(RoleName="users-own-role", Path="/bidsbatch/",
                    AssumeRolePolicyDocument=json.dumps(policies.trust_policy(policies.EC2)))
    iam.create_role(RoleName="other-env-role", Path="/bidsbatch/",
                    AssumeRolePolicyDocument=json.dumps(policies.trust_policy(policies.EC2)),
                    Tags=[{"Key": TAG_KEY, "Value": "other"}])
    logs.create_log_group(logGroupName="/bidsbatch/users-own")
    slr = [r["RoleName"] for r in iam.list_roles(
        PathPrefix="/aws-service-role/batch.amazonaws.com/")["Roles"]]
    assert len(slr) == 1

    dry = run_cli("aws", "teardown", ENV, "--dry-run")
    assert dry.returncode == 0, dry.output
    assert "would delete" in dry.stderr and "nothing was deleted" in dry.stderr
    assert len(tagged(batch_aws)) == 9
    assert ENV in saved_environments(tmp_path)

    refused = run_cli("aws", "teardown", ENV)  # no tty and no --yes
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert len(tagged(batch_aws)) == 9

    res = run_cli("aws", "teardown", ENV, "--yes")
    assert res.returncode == 0, res.output
    lines = [ln for ln in res.stderr.splitlines() if "deleted " in ln]
    kinds = [re.sub(r"^- deleted\s+", "", ln).split(" bidsbatch")[0].split(" /")[0]
             for ln in lines]
    # The order AWS requires: queue, compute environments, then what they use.
    assert kinds == ["job queue", "compute environment", "compute environment",
                     "launch template", "instance profile", "instance role", "job role",
                     "log group", "security group"]
    assert tagged(batch_aws) == []
    roles = {r["RoleName"] for r in iam.list_roles()["Roles"]}
    assert {"users-own-role", "other-env-role", *slr} <= roles
    assert [g["logGroupName"] for g in logs.describe_log_groups()["logGroups"]] == [
        "/bidsbatch/users-own"]
    assert saved_environments(tmp_path) == {}

    again = run_cli("aws", "teardown", ENV, "--yes")
    assert again.returncode == 0 and "nothing tagged" in again.stderr

    # Setup never adopts what it did not make: a role of our name, without our tag.
    iam.create_role(RoleName="bidsbatch-lab-job", AssumeRolePolicyDocument=json.dumps(
        policies.trust_policy(policies.ECS_TASKS)))
    refused = setup()
    assert refused.returncode == 2, refused.output
    assert "job role bidsbatch-lab-job already exists and belongs to something else" in (
        refused.stderr)
    assert "hint:" in refused.stderr


# --------------------------------------------------------------------------- pure parts


def test_waiter_polls_with_the_injected_clock() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    answers = iter([None, None, "VALID"])
    waiter = Waiter(sleep=sleep, clock=lambda: now[0], interval=5, timeout=60)
    assert waiter.until("the queue", lambda: next(answers)) == "VALID"
    assert slept == [5, 5]
    with pytest.raises(BidsbatchError, match="timed out waiting for the queue"):
        waiter.until("the queue", lambda: None)
    assert now[0] >= 70  # 60 s of virtual time, no real waiting


def test_config_file_round_trip(tmp_path, monkeypatch) -> None:
    from bidsbatch import config

    monkeypatch.delenv("BIDSBATCH_CONFIG_DIR")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert config.config_dir() == tmp_path / "xdg" / "bidsbatch"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert config.config_dir() == tmp_path / "home" / ".config" / "bidsbatch"
    monkeypatch.setenv("BIDSBATCH_CONFIG_DIR", str(tmp_path / "cfg"))

    with pytest.raises(UsageError, match="no AWS environment is set up") as err:
        config.load_environment()
    assert "bidsbatch aws setup" in (err.value.hint or "")

    def env(name: str) -> config.EnvironmentSettings:
        return config.EnvironmentSettings(
            name=name, region="eu-west-1", account_id="123456789012", job_queue=f"q-{name}",
            job_queue_arn=f"arn:aws:batch:eu-west-1:123456789012:job-queue/q-{name}",
            job_role_arn="arn:aws:iam::123456789012:role/r", log_group=f"/bidsbatch/{name}",
            datasets=("s3://b/ds",), output="s3://b/out/x",
        )

    config.save_environment(env("a"))
    assert config.load_environment() == env("a")  # the only one is the default
    assert config.load_environment().output_prefix == "out/x"
    config.save_environment(env("b"))
    assert config.load_environment().name == "a"  # the first stays the default
    assert [e.name for e in config.list_environments()] == ["a", "b"]
    with pytest.raises(UsageError, match="no AWS environment named 'c'"):
        config.load_environment("c")
    assert config.remove_environment("a") and not config.remove_environment("a")
    assert config.load_environment().name == "b"
    with pytest.raises(UsageError, match="access key"):
        config.save_environment(env("c").__class__(**{**env("c").__dict__,
                                                      "job_queue": "AKIAABCDEFGHIJKLMNOP"}))
