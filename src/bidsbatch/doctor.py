"""``bidsbatch doctor``: what is wrong with an AWS environment, and the command that fixes it.

Each check is independent and ends in one :class:`Check`: ok, failed (with
what is wrong and the fix) or skipped (when an earlier failure makes it
meaningless, e.g. no credentials). Nothing here raises for a failed check;
the caller decides the exit code from :attr:`DoctorReport.ok`.

The job role's S3 permissions are evaluated from its own policy documents
(see ``aws/policies.evaluate``): ``iam:SimulatePrincipalPolicy`` would need an
extra permission and is not implemented by moto, our test double.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from .aws import policies
from .aws.clients import (
    AwsClients,
    Identity,
    error_message,
    translate_aws_error,
)
from .aws.policies import S3Prefix
from .aws.spec import EnvironmentSpec
from .config import EnvironmentSettings, load_environment
from .errors import BidsbatchError, aws_error_code
from .markers import STATE_PREFIX

OK, FAIL, SKIP = "ok", "fail", "skip"


@dataclass(frozen=True)
class Check:
    """The outcome of one check."""

    name: str
    status: str  # ok, fail, skip
    detail: str
    fix: str = ""

    @property
    def failed(self) -> bool:
        return self.status == FAIL

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail, "fix": self.fix}


@dataclass
class DoctorReport:
    """Every check, in the order they ran."""

    environment: str | None
    region: str | None
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(c.failed for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.failed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "environment": self.environment,
            "region": self.region,
            "checks": [c.to_dict() for c in self.checks],
        }


def diagnose(
    *,
    clients_for: Callable[[str | None], AwsClients],
    environment: str | None = None,
    datasets: tuple[str, ...] = (),
    output: str | None = None,
) -> DoctorReport:
    """Run every check. ``clients_for(region)`` makes the AWS clients for a region
    (None: the default region of the standard configuration)."""
    return _Doctor(clients_for, environment, datasets, output).run()


class _Doctor:
    def __init__(self, clients_for: Callable[[str | None], AwsClients], environment: str | None,
                 datasets: tuple[str, ...], output: str | None) -> None:
        self.clients_for = clients_for
        self.environment = environment
        self.datasets = datasets
        self.output = output
        self.report = DoctorReport(environment=environment, region=None)
        self.settings: EnvironmentSettings | None = None
        self.spec: EnvironmentSpec | None = None

    def add(self, name: str, status: str, detail: str, fix: str = "") -> Check:
        check = Check(name, status, detail, fix)
        self.report.checks.append(check)
        return check

    def fix_command(self, *, datasets: tuple[str, ...] = (), output: str | None = None) -> str:
        if self.spec is None:
            name = self.environment or "NAME"
            return f"bidsbatch aws setup {name} --bucket BUCKET"
        return self.spec.command(datasets=datasets, output=output)

    def run(self) -> DoctorReport:
        self.check_environment()
        region = self.settings.region if self.settings else None
        clients = self.clients_for(region)
        self.report.region = clients.region
        if not clients.region:
            self.add("region", FAIL, "no AWS region is set",
                     "export AWS_REGION=us-east-1 (or the region of your data)")
            return self.report
        self.add("region", OK, clients.region)
        identity = self.check_identity(clients)
        if identity is None:
            return self.report
        if self.settings is not None:
            self.check_batch(clients)
            self.check_job_role(clients, identity)
            self.check_log_group(clients)
        self.check_data(clients)
        return self.report

    # -- the checks

    def check_environment(self) -> None:
        try:
            self.settings = load_environment(self.environment)
        except BidsbatchError as exc:
            self.add("environment", FAIL, exc.message, self.fix_command())
            return
        self.environment = self.report.environment = self.settings.name
        try:
            self.spec = EnvironmentSpec.from_settings(self.settings)
        except BidsbatchError as exc:
            self.add("environment", FAIL, f"saved settings are unusable: {exc.message}",
                     f"bidsbatch aws setup {self.settings.name} --bucket BUCKET")
            return
        self.add("environment", OK,
                 f"{self.settings.name} (queue {self.settings.job_queue}, "
                 f"{self.settings.region})")

    def check_identity(self, clients: AwsClients) -> Identity | None:
        try:
            ident = clients.sts.get_caller_identity()
        except Exception as exc:
            err = translate_aws_error(exc, "checking your identity")
            self.add("credentials", FAIL, err.message,
                     err.hint or "aws configure  (or: aws sso login, export AWS_PROFILE=NAME)")
            return None
        identity = Identity(account=str(ident["Account"]), arn=str(ident["Arn"]))
        self.add("credentials", OK, f"{identity.arn} (account {identity.account})")
        expected = self.settings.account_id if self.settings else ""
        if expected and expected != identity.account:
            self.add("account", FAIL,
                     f"environment {self.environment} is in account {expected}, "
                     f"your credentials are for {identity.account}",
                     "use the profile of that account: export AWS_PROFILE=NAME")
            return None
        return identity

    def check_batch(self, clients: AwsClients) -> None:
        assert self.settings is not None
        batch = clients.batch
        queue_name = self.settings.job_queue
        label = f"job queue {queue_name}"
        try:
            queues = batch.describe_job_queues(jobQueues=[queue_name]).get("jobQueues", [])
        except Exception as exc:
            self.add(label, FAIL, translate_aws_error(exc, "describing the job queue").message,
                     self.fix_command())
            return
        queue = next((q for q in queues if q.get("status") != "DELETED"), None)
        if queue is None:
            self.add(label, FAIL, "does not exist", self.fix_command())
            return
        problems = []
        if queue.get("status") != "VALID":
            problems.append(f"is {queue.get('status')}: {queue.get('statusReason', '')}".strip())
        if queue.get("state") != "ENABLED":
            problems.append(f"is {queue.get('state')}: it accepts no jobs")
        if problems:
            self.add(label, FAIL, "; ".join(problems), self.fix_command())
        else:
            self.add(label, OK, "VALID and ENABLED")

        order = sorted(queue.get("computeEnvironmentOrder", []), key=lambda o: o["order"])
        arns = [o["computeEnvironment"] for o in order]
        if not arns:
            self.add("compute environments", FAIL, f"{label} has none", self.fix_command())
            return
        found = {
            ce["computeEnvironmentArn"]: ce
            for ce in batch.describe_compute_environments(computeEnvironments=arns)
            .get("computeEnvironments", [])
        }
        for arn in arns:
            name = arn.rsplit("/", 1)[-1]
            ce = found.get(arn)
            clabel = f"compute environment {name}"
            if ce is None:
                self.add(clabel, FAIL, "does not exist", self.fix_command())
                continue
            problems = []
            if ce.get("status") != "VALID":
                problems.append(f"is {ce.get('status')}: {ce.get('statusReason', '')}".strip())
            if ce.get("state") != "ENABLED":
                problems.append(f"is {ce.get('state')}: it starts no instances")
            if problems:
                self.add(clabel, FAIL, "; ".join(problems), self.fix_command())
            else:
                cr = ce.get("computeResources") or {}
                self.add(clabel, OK, f"VALID and ENABLED ({cr.get('type', '?')}, "
                         f"{','.join(cr.get('instanceTypes', []))}, "
                         f"max {cr.get('maxvCpus', '?')} vCPUs)")

    def check_job_role(self, clients: AwsClients, identity: Identity) -> None:
        assert self.settings is not None
        iam = clients.iam
        role_name = self.settings.job_role_arn.rsplit("/", 1)[-1]
        label = f"job role {role_name}"
        try:
            role = iam.get_role(RoleName=role_name)["Role"]
            documents, boundary = _role_documents(iam, role)
        except Exception as exc:
            detail = ("does not exist" if aws_error_code(exc) == "NoSuchEntity"
                      else translate_aws_error(exc, "reading the job role").message)
            self.add(label, FAIL, detail, self.fix_command())
            return
        trust = _document(role.get("AssumeRolePolicyDocument"))
        if policies.trusts_service(trust, policies.ECS_TASKS):
            self.add(f"{label} trust", OK, f"assumable by {policies.ECS_TASKS}")
        else:
            self.add(f"{label} trust", FAIL,
                     f"its trust policy does not let {policies.ECS_TASKS} assume it: "
                     "jobs get no AWS access", self.fix_command())

        partition = identity.partition
        for uri in self.datasets or self.settings.datasets:
            self.check_permissions(
                label=f"{label} reads {uri}", uri=uri, documents=documents,
                boundary=boundary, actions=("s3:GetObject",), partition=partition,
                fix=self.fix_command(datasets=(uri,)),
            )
        out_uri = self.output or self.settings.output
        if out_uri:
            self.check_permissions(
                label=f"{label} writes {out_uri}", uri=out_uri, documents=documents,
                boundary=boundary, partition=partition,
                actions=("s3:GetObject", "s3:PutObject", "s3:DeleteObject"),
                fix=self.fix_command(output=out_uri),
            )

    def check_permissions(self, *, label: str, uri: str, documents: list[dict[str, Any]],
                          boundary: list[dict[str, Any]] | None, actions: tuple[str, ...],
                          partition: str, fix: str) -> None:
        try:
            loc = S3Prefix.parse(uri)
        except BidsbatchError as exc:
            self.add(label, FAIL, exc.message, "name an s3://BUCKET/PREFIX location")
            return

        def allowed(action: str, resource: str, context: dict[str, str] | None = None) -> bool:
            # A permissions boundary caps the role: both must allow.
            return all(
                policies.evaluate(docs, action=action, resource=resource, context=context).allowed
                for docs in (documents, boundary) if docs is not None
            )

        denied = []
        if not allowed("s3:ListBucket", loc.bucket_arn(partition),
                       {"s3:prefix": loc.listing_prefix}):
            denied.append("s3:ListBucket")
        # Outputs anywhere below the prefix; deletions only in the run state.
        output_key = loc.object_arn("sub-probe/probe.json", partition)
        state_key = loc.object_arn(f"{STATE_PREFIX}/done/probe.json", partition)
        denied += [a for a in actions
                   if not allowed(a, state_key if a == "s3:DeleteObject" else output_key)]
        if denied:
            self.add(label, FAIL, f"the job role lacks {', '.join(denied)} on {uri}", fix)
        else:
            self.add(label, OK, ", ".join(("s3:ListBucket", *actions)) + " allowed")

    def check_log_group(self, clients: AwsClients) -> None:
        assert self.settings is not None
        name = self.settings.log_group
        label = f"log group {name}"
        try:
            groups = clients.logs.describe_log_groups(logGroupNamePrefix=name).get("logGroups", [])
        except Exception as exc:
            self.add(label, FAIL, translate_aws_error(exc, "describing the log group").message,
                     self.fix_command())
            return
        if any(g["logGroupName"] == name for g in groups):
            self.add(label, OK, "exists")
        else:
            self.add(label, FAIL, "does not exist: job logs would be lost", self.fix_command())

    def check_data(self, clients: AwsClients) -> None:
        requester_pays = bool(self.settings and self.settings.requester_pays)
        extra = {"RequestPayer": "requester"} if requester_pays else {}
        s3 = clients.s3
        datasets = self.datasets or (self.settings.datasets if self.settings else ())
        for uri in datasets:
            label = f"read {uri}"
            try:
                loc = S3Prefix.parse(uri)
                found = s3.list_objects_v2(Bucket=loc.bucket, Prefix=loc.listing_prefix,
                                           MaxKeys=1, **extra)
            except BidsbatchError as exc:
                self.add(label, FAIL, exc.message, "name an s3://BUCKET/PREFIX location")
                continue
            except Exception as exc:
                self.add(label, FAIL, _s3_problem(exc, uri),
                         _s3_fix(exc, uri=uri, requester_pays=requester_pays))
                continue
            if found.get("KeyCount", len(found.get("Contents", []))) == 0:
                self.add(label, FAIL, f"no objects under {uri}",
                         "check the URI: `aws s3 ls " + uri.rstrip("/") + "/`")
            else:
                self.add(label, OK, f"listed {found['Contents'][0]['Key']}")
        out_uri = self.output or (self.settings.output if self.settings else None)
        if not out_uri:
            return
        label = f"write {out_uri}"
        try:
            loc = S3Prefix.parse(out_uri)
        except BidsbatchError as exc:
            self.add(label, FAIL, exc.message, "name an s3://BUCKET/PREFIX location")
            return
        key = f"{loc.listing_prefix}{STATE_PREFIX}/doctor-probe-{uuid.uuid4().hex}"
        try:
            s3.put_object(Bucket=loc.bucket, Key=key, Body=b"bidsbatch doctor probe\n", **extra)
        except Exception as exc:
            self.add(label, FAIL, _s3_problem(exc, out_uri),
                     _s3_fix(exc, uri=out_uri, requester_pays=requester_pays, write=True))
            return
        try:
            s3.delete_object(Bucket=loc.bucket, Key=key, **extra)
        except Exception as exc:
            self.add(label, FAIL,
                     f"wrote a probe but cannot delete it ({aws_error_code(exc)}): "
                     f"s3://{loc.bucket}/{key} is left behind",
                     f"aws s3 rm s3://{loc.bucket}/{key}")
            return
        self.add(label, OK, "wrote and deleted a probe object")


def _role_documents(iam: Any, role: dict[str, Any]
                    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """A role's identity policies (inline and attached), and its permissions boundary."""
    name = role["RoleName"]
    docs: list[dict[str, Any]] = []
    for page in iam.get_paginator("list_role_policies").paginate(RoleName=name):
        for policy_name in page["PolicyNames"]:
            doc = iam.get_role_policy(RoleName=name, PolicyName=policy_name)["PolicyDocument"]
            docs.append(_document(doc))
    for page in iam.get_paginator("list_attached_role_policies").paginate(RoleName=name):
        for attached in page["AttachedPolicies"]:
            docs.append(_managed_document(iam, attached["PolicyArn"]))
    boundary_arn = (role.get("PermissionsBoundary") or {}).get("PermissionsBoundaryArn")
    boundary = [_managed_document(iam, boundary_arn)] if boundary_arn else None
    return docs, boundary


def _managed_document(iam: Any, arn: str) -> dict[str, Any]:
    policy = iam.get_policy(PolicyArn=arn)["Policy"]
    version = iam.get_policy_version(PolicyArn=arn, VersionId=policy["DefaultVersionId"])
    return _document(version["PolicyVersion"]["Document"])


def _document(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        return dict(json.loads(unquote(value)))
    return dict(value or {})


def _s3_problem(exc: Exception, uri: str) -> str:
    code = aws_error_code(exc)
    if code in ("NoSuchBucket",):
        return f"the bucket of {uri} does not exist"
    if code in ("AccessDenied", "403", "AllAccessDisabled"):
        return f"access denied to {uri} with your credentials"
    if code:
        return f"{code}: {error_message(exc)}"
    return translate_aws_error(exc, f"reaching {uri}").message


def _s3_fix(exc: Exception, *, uri: str, requester_pays: bool, write: bool = False) -> str:
    code = aws_error_code(exc)
    if code == "NoSuchBucket":
        bucket = uri[5:].split("/", 1)[0]
        return f"check the bucket name (aws s3 ls), or create it: aws s3 mb s3://{bucket}"
    if code in ("AccessDenied", "403", "AllAccessDisabled"):
        need = "s3:PutObject and s3:DeleteObject" if write else "s3:ListBucket"
        fix = f"give your identity {need} there (IAM policy or bucket policy)"
        if not requester_pays and not write:
            fix += "; for a Requester Pays bucket set up with --requester-pays"
        return fix
    return "check your network and credentials, then run bidsbatch doctor again"
