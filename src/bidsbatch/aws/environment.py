"""The AWS Batch environment of bidsbatch: set it up, show it, tear it down.

One environment NAME is a set of resources, each found by its name and
marked with the tag ``bidsbatch:environment=NAME``:

==========================  ==============================================
IAM role + instance profile ``bidsbatch-NAME-instance`` (ECS agent, path /bidsbatch/)
IAM role                    ``bidsbatch-NAME-job`` (least privilege, see policies.py)
launch template             ``bidsbatch-NAME`` (root volume size, gp3, IMDSv2)
compute environment(s)      ``bidsbatch-NAME-spot``, ``bidsbatch-NAME-on-demand``
job queue                   ``bidsbatch-NAME`` (Spot first, On-Demand as fallback)
log group                   ``/bidsbatch/NAME``
security group              ``bidsbatch-NAME`` (default VPC, no inbound rules)
==========================  ==============================================

The Batch service role is the service-linked role ``AWSServiceRoleForBatch``:
AWS keeps its permissions current, it is the only role with which Batch can
update a compute environment in place (infrastructure updates: instance
types, subnets, launch template...), and with ``SPOT_PRICE_CAPACITY_OPTIMIZED``
no Spot fleet role is needed. It is shared by the account, so it is found or
made, and never deleted.

Setup is idempotent: each resource is found or created, compared with what
the options ask for, and updated in place where AWS allows. A run that stops
midway leaves tagged resources that the next run finds and completes.
Teardown deletes only what carries the tag, in the order AWS requires.
Waiting uses an injected ``sleep`` and ``clock``.

This module holds setup. The rest lives beside it: the desired state in
:mod:`~bidsbatch.aws.spec`, clients and errors in :mod:`~bidsbatch.aws.clients`,
the reports in :mod:`~bidsbatch.aws.results`, shared lookups in
:mod:`~bidsbatch.aws.lookups`, status and teardown in :mod:`~bidsbatch.aws.teardown`.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

from ..config import EnvironmentSettings, save_environment
from ..errors import BidsbatchError, UsageError, aws_error_code
from ..markers import STATE_PREFIX
from . import policies
from .clients import (
    AwsClients,
    Identity,
    Waiter,
    aws_errors,
    caller_identity,
    error_message,
)
from .lookups import (
    _describe_ce,
    _describe_queue,
    _find_launch_template,
    _find_log_group,
    _find_service_linked_role,
    _log_group_tags,
    _pages,
    _policy,
    _tag_dict,
    _tag_list,
)
from .network import resolve_network
from .results import Change, OnChange, SetupResult
from .spec import (
    IAM_PATH,
    JOB_POLICY_NAME,
    ROOT_DEVICE,
    SERVICE_LINKED_ROLE,
    TAG_KEY,
    EnvironmentSpec,
    Market,
)
from .teardown import (
    _delete_compute_environment,
)

#: Batch can change these in place only with these allocation strategies (and the SLR).
_UPDATABLE_STRATEGIES = {"BEST_FIT_PROGRESSIVE", "SPOT_CAPACITY_OPTIMIZED",
                         "SPOT_PRICE_CAPACITY_OPTIMIZED"}

T = TypeVar("T")


# --------------------------------------------------------------------------- setup


def setup_environment(
    spec: EnvironmentSpec,
    *,
    clients: AwsClients,
    sleep: Callable[[float], None],
    clock: Callable[[], float] = time.monotonic,
    dry_run: bool = False,
    on_change: OnChange | None = None,
) -> SetupResult:
    """Create or update the environment ``spec`` describes, and save its settings.

    Idempotent: a second call with the same spec changes nothing and every
    change is ``unchanged``. With ``dry_run`` nothing is created, changed or
    saved; the changes say what would be done.
    """
    return _Setup(spec, clients, Waiter(sleep, clock), dry_run, on_change).run()


class _Setup:
    def __init__(self, spec: EnvironmentSpec, clients: AwsClients, waiter: Waiter,
                 dry_run: bool, on_change: OnChange | None) -> None:
        self.spec = spec
        self.names = spec.names
        self.clients = clients
        self.waiter = waiter
        self.dry_run = dry_run
        self.on_change = on_change
        self.changes: list[Change] = []
        self.created_iam = False

    # -- bookkeeping

    def record(self, kind: str, name: str, action: str, detail: str = "") -> None:
        if self.dry_run and action in ("created", "updated", "deleted"):
            action = {"created": "would create", "updated": "would update",
                      "deleted": "would delete"}[action]
        change = Change(kind, name, action, detail)
        self.changes.append(change)
        if self.on_change:
            self.on_change(change)

    def check_ours(self, kind: str, name: str, tags: dict[str, str]) -> None:
        if tags.get(TAG_KEY) != self.spec.name:
            owner = f"environment {tags[TAG_KEY]!r}" if TAG_KEY in tags else "something else"
            raise UsageError(
                f"{kind} {name} already exists and belongs to {owner}",
                hint="choose another environment name, or delete that resource first",
            )

    def errors(self, what: str) -> contextlib.AbstractContextManager[None]:
        # Every step finds what an earlier run made: rerunning is always the way on.
        return aws_errors(what, hint="fix the cause, then run the same command again: "
                          "it continues where it stopped")

    # -- the steps, in dependency order

    def run(self) -> SetupResult:
        spec = self.spec
        if not spec.region:
            raise UsageError("no AWS region is set", hint="pass --region or set AWS_REGION")
        ident = caller_identity(self.clients)
        with self.errors("finding the network"):
            network = resolve_network(
                self.clients.ec2,
                group_name=self.names.security_group,
                tags=self.names.tags,
                subnets=spec.subnets,
                security_groups=spec.security_groups,
                dry_run=self.dry_run,
                report=self.record,
            )
        with self.errors("setting up the IAM roles"):
            service_role = self.service_linked_role()
            self.role(
                kind="instance role",
                name=self.names.instance_role,
                trust=policies.trust_policy(policies.EC2),
                managed=(f"arn:{ident.partition}:iam::aws:policy/"
                         f"{policies.INSTANCE_ROLE_MANAGED_POLICY}",),
                description=f"bidsbatch {spec.name}: ECS agent on Batch instances",
            )
            profile_arn = self.instance_profile(ident)
            log_group_arn = policies.log_group_arn(
                partition=ident.partition, region=spec.region, account_id=ident.account,
                name=self.names.log_group,
            )
            job_role_arn = self.role(
                kind="job role",
                name=self.names.job_role,
                trust=policies.trust_policy(policies.ECS_TASKS, source_account=ident.account),
                inline=policies.job_role_policy(
                    datasets=spec.datasets,
                    output=spec.output,
                    log_group=log_group_arn,
                    partition=ident.partition,
                    requester_pays=spec.requester_pays,
                    deletable=STATE_PREFIX,
                ),
                description=f"bidsbatch {spec.name}: jobs read the datasets, write the output",
            )
        with self.errors("setting up the launch template"):
            lt_version = self.launch_template()
        with self.errors("setting up the log group"):
            self.log_group()
        ce_arns: list[str] = []
        for market in spec.markets:
            name = self.names.compute_environment(market)
            with self.errors(f"setting up compute environment {name}"):
                ce_arns.append(
                    self.compute_environment(
                        market,
                        service_role=service_role,
                        profile_arn=profile_arn,
                        subnets=network.subnets,
                        security_groups=network.security_groups,
                        lt_version=lt_version,
                    )
                )
        with self.errors(f"setting up job queue {self.names.job_queue}"):
            queue_arn = self.job_queue(ce_arns)
        for market in Market:
            if market not in spec.markets:
                name = self.names.compute_environment(market)
                with self.errors(f"removing compute environment {name}"):
                    self.drop_compute_environment(market)

        settings = EnvironmentSettings(
            name=spec.name,
            region=spec.region,
            account_id=ident.account,
            job_queue=self.names.job_queue,
            job_queue_arn=queue_arn,
            job_role_arn=job_role_arn,
            log_group=self.names.log_group,
            compute_environments=tuple(self.names.compute_environment(m) for m in spec.markets),
            datasets=tuple(d.uri for d in spec.datasets),
            output=spec.output.uri,
            requester_pays=spec.requester_pays,
            pipeline=spec.pipeline,
            markets=tuple(m.value for m in spec.markets),
            instance_types=spec.instance_types,
            max_vcpus=spec.max_vcpus,
            bid_percentage=spec.bid_percentage,
            root_volume_gib=spec.root_volume_gib,
            subnets=spec.subnets,
            security_groups=spec.security_groups,
            log_retention_days=spec.log_retention_days,
        )
        if not self.dry_run:
            save_environment(settings)
        return SetupResult(settings=settings, changes=self.changes, dry_run=self.dry_run)

    def service_linked_role(self) -> str:
        iam = self.clients.iam
        role = _find_service_linked_role(iam)
        if role is None:
            self.record("service role", SERVICE_LINKED_ROLE, "created",
                        "service-linked, shared by the account")
            if self.dry_run:
                return f"(new {SERVICE_LINKED_ROLE})"
            try:
                role = iam.create_service_linked_role(AWSServiceName="batch.amazonaws.com")["Role"]
            except Exception as exc:
                # Someone made it between our look and our call: use theirs.
                if aws_error_code(exc) != "InvalidInput":
                    raise
                role = _find_service_linked_role(iam)
                if role is None:
                    raise
            self.created_iam = True
        else:
            self.record("service role", role["RoleName"], "unchanged",
                        "service-linked, shared by the account")
        return str(role["Arn"])

    def role(self, *, kind: str, name: str, trust: dict[str, Any], description: str,
             managed: tuple[str, ...] = (), inline: dict[str, Any] | None = None) -> str:
        iam = self.clients.iam
        try:
            role = iam.get_role(RoleName=name)["Role"]
        except iam.exceptions.NoSuchEntityException:
            role = None
        if role is None:
            self.record(kind, name, "created", _role_detail(managed, inline))
            if self.dry_run:
                return f"(new role {name})"
            role = iam.create_role(
                RoleName=name,
                Path=IAM_PATH,
                AssumeRolePolicyDocument=json.dumps(trust),
                Description=description,
                Tags=_tag_list(self.names.tags),
            )["Role"]
            self.created_iam = True
            for arn in managed:
                iam.attach_role_policy(RoleName=name, PolicyArn=arn)
            if inline is not None:
                iam.put_role_policy(RoleName=name, PolicyName=JOB_POLICY_NAME,
                                    PolicyDocument=json.dumps(inline))
            return str(role["Arn"])

        self.check_ours(kind, name, _tag_dict(role.get("Tags")))
        updates: list[str] = []
        if _policy(role.get("AssumeRolePolicyDocument")) != trust:
            updates.append("trust policy")
            if not self.dry_run:
                iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(trust))
        attached = {p["PolicyArn"] for p in _pages(iam, "list_attached_role_policies",
                                                   "AttachedPolicies", RoleName=name)}
        for arn in managed:
            if arn not in attached:
                updates.append(f"attached {arn.rsplit('/', 1)[-1]}")
                if not self.dry_run:
                    iam.attach_role_policy(RoleName=name, PolicyArn=arn)
        if inline is not None:
            try:
                current = _policy(iam.get_role_policy(
                    RoleName=name, PolicyName=JOB_POLICY_NAME)["PolicyDocument"])
            except iam.exceptions.NoSuchEntityException:
                current = None
            if current != inline:
                updates.append("data access policy")
                if not self.dry_run:
                    iam.put_role_policy(RoleName=name, PolicyName=JOB_POLICY_NAME,
                                        PolicyDocument=json.dumps(inline))
        if updates:
            self.record(kind, name, "updated", ", ".join(updates))
        else:
            self.record(kind, name, "unchanged", _role_detail(managed, inline))
        return str(role["Arn"])

    def instance_profile(self, ident: Identity) -> str:
        iam = self.clients.iam
        name, role_name = self.names.instance_profile, self.names.instance_role
        kind = "instance profile"
        try:
            profile = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
        except iam.exceptions.NoSuchEntityException:
            profile = None
        if profile is None:
            self.record(kind, name, "created", f"holds role {role_name}")
            if self.dry_run:
                return (f"arn:{ident.partition}:iam::{ident.account}:"
                        f"instance-profile{IAM_PATH}{name}")
            profile = iam.create_instance_profile(
                InstanceProfileName=name, Path=IAM_PATH, Tags=_tag_list(self.names.tags)
            )["InstanceProfile"]
            self.created_iam = True
            iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=role_name)
            return str(profile["Arn"])
        self.check_ours(kind, name, _tag_dict(profile.get("Tags")))
        roles = [r["RoleName"] for r in profile.get("Roles", [])]
        if roles == [role_name]:
            self.record(kind, name, "unchanged", f"holds role {role_name}")
        else:
            # A run that stopped between creating the profile and adding the role.
            self.record(kind, name, "updated", f"now holds role {role_name}")
            if not self.dry_run:
                for other in roles:
                    iam.remove_role_from_instance_profile(InstanceProfileName=name,
                                                          RoleName=other)
                iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=role_name)
        return str(profile["Arn"])

    def launch_template(self) -> str:
        ec2 = self.clients.ec2
        name, kind = self.names.launch_template, "launch template"
        data = self.spec.launch_template_data()
        detail = f"root volume {self.spec.root_volume_gib} GiB gp3, encrypted, IMDSv2"
        template = _find_launch_template(ec2, name)
        if template is None:
            self.record(kind, name, "created", detail)
            if self.dry_run:
                return "1"
            created = ec2.create_launch_template(
                LaunchTemplateName=name,
                VersionDescription="bidsbatch",
                LaunchTemplateData=data,
                TagSpecifications=[
                    {"ResourceType": "launch-template", "Tags": _tag_list(self.names.tags)}
                ],
            )["LaunchTemplate"]
            return str(created["DefaultVersionNumber"])
        self.check_ours(kind, name, _tag_dict(template.get("Tags")))
        current = ec2.describe_launch_template_versions(
            LaunchTemplateId=template["LaunchTemplateId"], Versions=["$Default"]
        )["LaunchTemplateVersions"][0]
        if _contains(current.get("LaunchTemplateData", {}), data):
            self.record(kind, name, "unchanged", detail)
            return str(current["VersionNumber"])
        old = _root_volume(current.get("LaunchTemplateData", {}))
        self.record(kind, name, "updated",
                    f"new version: root volume {old} → {self.spec.root_volume_gib} GiB")
        if self.dry_run:
            return str(int(template["LatestVersionNumber"]) + 1)
        version = ec2.create_launch_template_version(
            LaunchTemplateId=template["LaunchTemplateId"],
            VersionDescription="bidsbatch",
            LaunchTemplateData=data,
        )["LaunchTemplateVersion"]["VersionNumber"]
        ec2.modify_launch_template(LaunchTemplateId=template["LaunchTemplateId"],
                                   DefaultVersion=str(version))
        return str(version)

    def log_group(self) -> None:
        logs = self.clients.logs
        name, kind = self.names.log_group, "log group"
        days = self.spec.log_retention_days
        group = _find_log_group(logs, name)
        if group is None:
            self.record(kind, name, "created", f"retention {days} days")
            if not self.dry_run:
                logs.create_log_group(logGroupName=name, tags=self.names.tags)
                logs.put_retention_policy(logGroupName=name, retentionInDays=days)
            return
        self.check_ours(kind, name, _log_group_tags(logs, group))
        if group.get("retentionInDays") != days:
            self.record(kind, name, "updated",
                        f"retention {group.get('retentionInDays', 'forever')} → {days} days")
            if not self.dry_run:
                logs.put_retention_policy(logGroupName=name, retentionInDays=days)
        else:
            self.record(kind, name, "unchanged", f"retention {days} days")

    def desired_resources(self, market: Market, *, profile_arn: str, subnets: tuple[str, ...],
                          security_groups: tuple[str, ...], lt_version: str) -> dict[str, Any]:
        spot = market is Market.SPOT
        resources: dict[str, Any] = {
            "type": "SPOT" if spot else "EC2",
            # Spot: the pools least likely to be interrupted, at the lowest price,
            # with no Spot fleet role. On-Demand: cheapest types first, growing.
            "allocationStrategy": "SPOT_PRICE_CAPACITY_OPTIMIZED" if spot
            else "BEST_FIT_PROGRESSIVE",
            "minvCpus": 0,
            "maxvCpus": self.spec.max_vcpus,
            "instanceTypes": list(self.spec.instance_types),
            "subnets": list(subnets),
            "securityGroupIds": list(security_groups),
            "instanceRole": profile_arn,
            # An explicit version: a new launch template version changes this
            # field, and that is what makes Batch replace the instances.
            "launchTemplate": {"launchTemplateName": self.names.launch_template,
                               "version": lt_version},
            "tags": {**self.names.tags, "Name": self.names.prefix},
        }
        if spot:
            resources["bidPercentage"] = self.spec.bid_percentage
        return resources

    def compute_environment(self, market: Market, *, service_role: str, profile_arn: str,
                            subnets: tuple[str, ...], security_groups: tuple[str, ...],
                            lt_version: str) -> str:
        batch = self.clients.batch
        name, kind = self.names.compute_environment(market), "compute environment"
        desired = self.desired_resources(market, profile_arn=profile_arn, subnets=subnets,
                                         security_groups=security_groups, lt_version=lt_version)
        current = _describe_ce(batch, name)
        if current is not None and current.get("status") == "DELETING":
            # A teardown in progress: let it finish, then create anew.
            self.waiter.until(f"compute environment {name} to be deleted",
                              lambda: True if _describe_ce(batch, name) is None else None)
            current = None
        summary = _ce_summary(desired)
        if current is None:
            self.record(kind, name, "created", summary)
            if self.dry_run:
                return f"(new compute environment {name})"
            arn = self.retry_iam_propagation(lambda: batch.create_compute_environment(
                computeEnvironmentName=name,
                type="MANAGED",
                state="ENABLED",
                computeResources=desired,
                serviceRole=service_role,
                tags=self.names.tags,
            ))["computeEnvironmentArn"]
            self.wait_valid_ce(name)
            return str(arn)

        self.check_ours(kind, name, current.get("tags") or {})
        arn = str(current["computeEnvironmentArn"])
        if current.get("status") in ("CREATING", "UPDATING"):
            current = self.wait_valid_ce(name, fail_invalid=False)
        have = current.get("computeResources") or {}
        scaling, infra = _ce_differences(have, desired)
        update: dict[str, Any] = {}
        notes: list[str] = []
        if infra:
            updatable = (
                _same_role(current.get("serviceRole"), service_role)
                and have.get("allocationStrategy") in _UPDATABLE_STRATEGIES
                and desired["allocationStrategy"] in _UPDATABLE_STRATEGIES
                and have.get("type") == desired["type"]
            )
            if not updatable:
                self.record(kind, name, "must recreate",
                            f"cannot change {', '.join(infra)} in place: run `bidsbatch aws "
                            f"teardown {self.spec.name}`, then this setup again")
                return arn
            update.update({k: desired[k] for k in infra})
            notes.append(", ".join(infra))
        for k in scaling:
            update[k] = desired[k]
            notes.append(f"{k} {have.get(k)} → {desired[k]}")
        invalid = current.get("status") == "INVALID"
        if invalid and not update:
            # Resending the same settings makes Batch validate them again (for
            # instance once a new IAM role has reached every region's endpoint).
            update = {k: desired[k] for k in ("instanceRole", "launchTemplate")}
            notes.append(f"revalidate (was INVALID: {current.get('statusReason', '')})")
        enable = current.get("state") != "ENABLED"
        if enable:
            notes.append("enabled")
        if not update and not enable:
            self.record(kind, name, "unchanged", summary)
            return arn
        self.record(kind, name, "updated", "; ".join(notes))
        if not self.dry_run:
            kwargs: dict[str, Any] = {"computeEnvironment": name}
            if update:
                kwargs["computeResources"] = update
            if enable:
                kwargs["state"] = "ENABLED"
            batch.update_compute_environment(**kwargs)
            self.wait_valid_ce(name)
        return arn

    def retry_iam_propagation(self, call: Callable[[], T]) -> T:
        """Call ``call``; while a role made in this run is not yet visible to Batch, retry.

        IAM is eventually consistent: a new instance profile can be refused by
        Batch for some seconds after it was made.
        """
        attempts = 6 if self.created_iam else 1
        for attempt in range(attempts):
            try:
                return call()
            except Exception as exc:
                message = error_message(exc).lower()
                transient = any(w in message for w in ("role", "instance profile", "passrole"))
                if attempt == attempts - 1 or not transient:
                    raise
                self.waiter.sleep(10)
        raise AssertionError("unreachable")

    def wait_valid_ce(self, name: str, *, fail_invalid: bool = True) -> dict[str, Any]:
        batch = self.clients.batch

        def settled() -> dict[str, Any] | None:
            ce = _describe_ce(batch, name)
            if ce is None:
                raise BidsbatchError(f"compute environment {name} disappeared")
            return None if ce.get("status") in ("CREATING", "UPDATING") else ce

        ce = self.waiter.until(f"compute environment {name} to be VALID", settled)
        if fail_invalid and ce.get("status") != "VALID":
            raise BidsbatchError(
                f"compute environment {name} is {ce.get('status')}: "
                f"{ce.get('statusReason', 'no reason given')}",
                hint=f"fix the cause, then run `bidsbatch aws setup {self.spec.name} ...` again "
                "(new IAM roles can take a minute to work)",
            )
        return ce

    def job_queue(self, ce_arns: list[str]) -> str:
        batch = self.clients.batch
        name, kind = self.names.job_queue, "job queue"
        order = [{"order": i + 1, "computeEnvironment": arn} for i, arn in enumerate(ce_arns)]
        summary = "order: " + " → ".join(m.value for m in self.spec.markets)
        current = _describe_queue(batch, name)
        if current is not None and current.get("status") == "DELETING":
            self.waiter.until(f"job queue {name} to be deleted",
                              lambda: True if _describe_queue(batch, name) is None else None)
            current = None
        if current is None:
            self.record(kind, name, "created", summary)
            if self.dry_run:
                return f"(new job queue {name})"
            arn = batch.create_job_queue(
                jobQueueName=name,
                state="ENABLED",
                priority=1,
                computeEnvironmentOrder=order,
                tags=self.names.tags,
            )["jobQueueArn"]
            self.wait_valid_queue(name)
            return str(arn)
        self.check_ours(kind, name, current.get("tags") or {})
        arn = str(current["jobQueueArn"])
        have = [o["computeEnvironment"] for o in
                sorted(current.get("computeEnvironmentOrder", []), key=lambda o: o["order"])]
        notes = []
        kwargs: dict[str, Any] = {"jobQueue": name}
        if have != ce_arns:
            notes.append(summary)
            kwargs["computeEnvironmentOrder"] = order
        if current.get("state") != "ENABLED":
            notes.append("enabled")
            kwargs["state"] = "ENABLED"
        if not notes:
            self.record(kind, name, "unchanged", summary)
            return arn
        self.record(kind, name, "updated", "; ".join(notes))
        if not self.dry_run:
            batch.update_job_queue(**kwargs)
            self.wait_valid_queue(name)
        return arn

    def wait_valid_queue(self, name: str) -> None:
        batch = self.clients.batch

        def settled() -> dict[str, Any] | None:
            q = _describe_queue(batch, name)
            if q is None:
                raise BidsbatchError(f"job queue {name} disappeared")
            return None if q.get("status") in ("CREATING", "UPDATING") else q

        q = self.waiter.until(f"job queue {name} to be VALID", settled)
        if q.get("status") != "VALID":
            raise BidsbatchError(
                f"job queue {name} is {q.get('status')}: {q.get('statusReason', '')}",
                hint=f"run `bidsbatch doctor --environment {self.spec.name}`",
            )

    def drop_compute_environment(self, market: Market) -> None:
        """Remove our compute environment of a market the options no longer ask for."""
        batch = self.clients.batch
        name = self.names.compute_environment(market)
        current = _describe_ce(batch, name)
        if current is None or (current.get("tags") or {}).get(TAG_KEY) != self.spec.name:
            return
        self.record("compute environment", name, "deleted",
                    f"no longer asked for (--{market.value} not given)")
        if not self.dry_run:
            _delete_compute_environment(batch, current, self.waiter)


def _role_detail(managed: tuple[str, ...], inline: dict[str, Any] | None) -> str:
    if managed:
        return "policy " + ", ".join(a.rsplit("/", 1)[-1] for a in managed)
    if inline is not None:
        return f"{len(inline['Statement'])} least-privilege statements"
    return ""


def _ce_summary(desired: dict[str, Any]) -> str:
    return (f"{desired['type']}, {','.join(desired['instanceTypes'])}, "
            f"0–{desired['maxvCpus']} vCPUs")


def _ce_differences(have: dict[str, Any], want: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The scaling fields and the infrastructure fields that differ."""
    scaling = [k for k in ("minvCpus", "maxvCpus") if have.get(k) != want[k]]
    infra: list[str] = []
    for key in ("type", "allocationStrategy", "bidPercentage"):
        if key in want and have.get(key) != want[key]:
            infra.append(key)
    for key in ("instanceTypes", "subnets", "securityGroupIds"):
        if sorted(have.get(key) or []) != sorted(want[key]):
            infra.append(key)
    if not _same_role(have.get("instanceRole"), want["instanceRole"]):
        infra.append("instanceRole")
    lt_have = have.get("launchTemplate") or {}
    lt_want = want["launchTemplate"]
    if (lt_have.get("launchTemplateName") != lt_want["launchTemplateName"]
            or str(lt_have.get("version")) != lt_want["version"]):
        infra.append("launchTemplate")
    if (have.get("tags") or {}) != want["tags"]:
        infra.append("tags")
    return scaling, infra


def _same_role(have: str | None, want: str) -> bool:
    if not have:
        return False
    return have.rsplit("/", 1)[-1].lower() == want.rsplit("/", 1)[-1].lower()


def _root_volume(data: dict[str, Any]) -> str:
    for mapping in data.get("BlockDeviceMappings", []):
        if mapping.get("DeviceName") == ROOT_DEVICE:
            return str(mapping.get("Ebs", {}).get("VolumeSize", "?"))
    return "default"


def _contains(have: Any, want: Any) -> bool:
    """Whether ``have`` holds everything ``want`` sets (AWS adds fields of its own)."""
    if isinstance(want, dict):
        return isinstance(have, dict) and all(_contains(have.get(k), v) for k, v in want.items())
    if isinstance(want, list):
        return (isinstance(have, list) and len(have) == len(want)
                and all(_contains(h, w) for h, w in zip(have, want, strict=True)))
    return have == want
