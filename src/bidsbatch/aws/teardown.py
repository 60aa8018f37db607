"""The inventory of an AWS environment (status) and its teardown.

Resources are found by the tag ``bidsbatch:environment=NAME``, never by name
alone, and deleted in the order AWS requires. See
:mod:`bidsbatch.aws.environment` for the resources an environment holds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..config import remove_environment
from ..errors import aws_error_code
from .clients import AwsClients, Waiter, aws_errors
from .lookups import _describe_ce, _describe_queue, _log_group_tags, _pages, _tag_dict
from .results import Change, EnvironmentStatus, OnChange, Resource, TeardownResult
from .spec import IAM_PATH, LOG_GROUP_PREFIX, TAG_KEY, ResourceNames

# --------------------------------------------------------------------------- inventory


_EXPECTED = ("job queue", "compute environment", "launch template", "instance profile",
             "instance role", "job role", "log group")


def find_resources(name: str, *, clients: AwsClients) -> list[Resource]:
    """Every resource tagged ``bidsbatch:environment=name``, in the order teardown deletes.

    Found by tag, not by name, so that resources of an older layout or of a
    changed set of options are found too; untagged resources are never listed.
    """
    names = ResourceNames(name)
    out: list[Resource] = []
    batch, ec2, iam, logs = clients.batch, clients.ec2, clients.iam, clients.logs

    with aws_errors("listing the job queues"):
        for q in _pages(batch, "describe_job_queues", "jobQueues"):
            if (q.get("tags") or {}).get(TAG_KEY) == name and q.get("status") != "DELETED":
                order = sorted(q.get("computeEnvironmentOrder", []), key=lambda o: o["order"])
                out.append(Resource(
                    "job queue", q["jobQueueName"], q["jobQueueArn"], q.get("state", ""),
                    q.get("status", ""),
                    q.get("statusReason") or "order: " + " → ".join(
                        o["computeEnvironment"].rsplit("/", 1)[-1] for o in order),
                ))
    with aws_errors("listing the compute environments"):
        for ce in _pages(batch, "describe_compute_environments", "computeEnvironments"):
            if (ce.get("tags") or {}).get(TAG_KEY) == name and ce.get("status") != "DELETED":
                cr = ce.get("computeResources") or {}
                detail = (f"{cr.get('type', '?')}, {','.join(cr.get('instanceTypes', []))}, "
                          f"{cr.get('minvCpus', 0)}–{cr.get('maxvCpus', '?')} vCPUs")
                if ce.get("status") != "VALID" and ce.get("statusReason"):
                    detail = str(ce["statusReason"])
                out.append(Resource(
                    "compute environment", ce["computeEnvironmentName"],
                    ce["computeEnvironmentArn"], ce.get("state", ""), ce.get("status", ""),
                    detail,
                ))
    with aws_errors("listing the job definitions"):
        for jd in _pages(batch, "describe_job_definitions", "jobDefinitions", status="ACTIVE"):
            if (jd.get("tags") or {}).get(TAG_KEY) == name:
                out.append(Resource(
                    "job definition", f"{jd['jobDefinitionName']}:{jd['revision']}",
                    jd["jobDefinitionArn"], status=jd.get("status", ""),
                ))
    with aws_errors("listing the launch templates"):
        for lt in _pages(ec2, "describe_launch_templates", "LaunchTemplates",
                         Filters=[{"Name": f"tag:{TAG_KEY}", "Values": [name]}]):
            out.append(Resource(
                "launch template", lt["LaunchTemplateName"], lt["LaunchTemplateId"],
                detail=f"default version {lt.get('DefaultVersionNumber')}",
            ))
    with aws_errors("listing the IAM instance profiles"):
        for p in _pages(iam, "list_instance_profiles", "InstanceProfiles", PathPrefix=IAM_PATH):
            # ListInstanceProfiles does not return tags; GetInstanceProfile does.
            full = iam.get_instance_profile(InstanceProfileName=p["InstanceProfileName"])
            profile = full["InstanceProfile"]
            if _tag_dict(profile.get("Tags")).get(TAG_KEY) == name:
                roles = ", ".join(r["RoleName"] for r in profile.get("Roles", [])) or "no role"
                out.append(Resource("instance profile", profile["InstanceProfileName"],
                                    profile["Arn"], detail=f"holds {roles}"))
    with aws_errors("listing the IAM roles"):
        roles = sorted(_pages(iam, "list_roles", "Roles", PathPrefix=IAM_PATH),
                       key=lambda r: r["RoleName"])
        for r in roles:
            role = iam.get_role(RoleName=r["RoleName"])["Role"]
            if _tag_dict(role.get("Tags")).get(TAG_KEY) == name:
                kind = {names.instance_role: "instance role", names.job_role: "job role"}.get(
                    role["RoleName"], "role")
                out.append(Resource(kind, role["RoleName"], role["Arn"]))
    with aws_errors("listing the log groups"):
        for g in _pages(logs, "describe_log_groups", "logGroups",
                        logGroupNamePrefix=LOG_GROUP_PREFIX):
            if _log_group_tags(logs, g).get(TAG_KEY) == name:
                days = g.get("retentionInDays")
                out.append(Resource("log group", g["logGroupName"],
                                    g.get("logGroupArn") or g.get("arn", ""),
                                    detail=f"retention {days} days" if days else "kept forever"))
    with aws_errors("listing the security groups"):
        for sg in _pages(ec2, "describe_security_groups", "SecurityGroups",
                         Filters=[{"Name": f"tag:{TAG_KEY}", "Values": [name]}]):
            inbound = len(sg.get("IpPermissions") or [])
            out.append(Resource("security group", sg["GroupName"], sg["GroupId"],
                                detail=f"{sg.get('VpcId')}, {inbound} inbound rule(s)"))
    return out


def environment_status(name: str, *, clients: AwsClients) -> EnvironmentStatus:
    """The resources of environment ``name`` and their states; which expected ones are missing."""
    resources = find_resources(name, clients=clients)
    kinds = {r.kind for r in resources}
    missing = [k for k in _EXPECTED if k not in kinds]
    return EnvironmentStatus(name=name, region=clients.region or "", resources=resources,
                             missing=missing)


# --------------------------------------------------------------------------- teardown


def teardown_environment(
    name: str,
    *,
    clients: AwsClients,
    sleep: Callable[[float], None],
    clock: Callable[[], float] = time.monotonic,
    dry_run: bool = False,
    on_change: OnChange | None = None,
    resources: list[Resource] | None = None,
) -> TeardownResult:
    """Delete every resource tagged with environment ``name`` and forget its settings.

    In the order AWS requires: disable each job queue, wait, delete it, wait;
    disable each compute environment, wait, delete it, wait (its instances
    still use the roles, launch template and security group); then the job
    definitions, launch templates, instance profiles, roles, log groups and
    security groups. Stopping midway is safe: a rerun finds what is left.
    ``resources`` is what :func:`find_resources` returned, when the caller
    already has it (to show the plan before asking).
    """
    waiter = Waiter(sleep, clock)
    if resources is None:
        resources = find_resources(name, clients=clients)
    changes: list[Change] = []
    for res in resources:
        change = Change(res.kind, res.name, "would delete" if dry_run else "deleted", res.ident)
        if not dry_run:
            with aws_errors(f"deleting {res.kind} {res.name}"):
                _delete(res, clients, waiter)
        changes.append(change)
        if on_change:
            on_change(change)
    forgotten = False
    if not dry_run:
        forgotten = remove_environment(name)
    return TeardownResult(name=name, changes=changes, forgotten=forgotten, dry_run=dry_run)


def _delete(res: Resource, clients: AwsClients, waiter: Waiter) -> None:
    batch, ec2, iam, logs = clients.batch, clients.ec2, clients.iam, clients.logs
    if res.kind == "job queue":
        _delete_job_queue(batch, res.ident, waiter)
    elif res.kind == "compute environment":
        current = _describe_ce(batch, res.name)
        if current is not None:
            _delete_compute_environment(batch, current, waiter)
    elif res.kind == "job definition":
        batch.deregister_job_definition(jobDefinition=res.ident)
    elif res.kind == "launch template":
        ec2.delete_launch_template(LaunchTemplateId=res.ident)
    elif res.kind == "instance profile":
        profile = iam.get_instance_profile(InstanceProfileName=res.name)["InstanceProfile"]
        for role in profile.get("Roles", []):
            iam.remove_role_from_instance_profile(InstanceProfileName=res.name,
                                                  RoleName=role["RoleName"])
        iam.delete_instance_profile(InstanceProfileName=res.name)
    elif res.kind in ("instance role", "job role", "role"):
        for p in _pages(iam, "list_attached_role_policies", "AttachedPolicies",
                        RoleName=res.name):
            iam.detach_role_policy(RoleName=res.name, PolicyArn=p["PolicyArn"])
        for policy_name in _pages(iam, "list_role_policies", "PolicyNames", RoleName=res.name):
            iam.delete_role_policy(RoleName=res.name, PolicyName=policy_name)
        for p in _pages(iam, "list_instance_profiles_for_role", "InstanceProfiles",
                        RoleName=res.name):
            iam.remove_role_from_instance_profile(
                InstanceProfileName=p["InstanceProfileName"], RoleName=res.name)
        iam.delete_role(RoleName=res.name)
    elif res.kind == "log group":
        logs.delete_log_group(logGroupName=res.name)
    elif res.kind == "security group":
        _delete_security_group(ec2, res.ident, waiter)


def _delete_job_queue(batch: Any, arn: str, waiter: Waiter) -> None:
    name = arn.rsplit("/", 1)[-1]
    current = _describe_queue(batch, name)
    if current is not None and current.get("status") != "DELETING":
        # A queue must be DISABLED, and not in the middle of an update, to be deleted.
        current = waiter.until(f"job queue {name} to settle", lambda: _settled_queue(batch, name))
        if current and current.get("state") != "DISABLED":
            batch.update_job_queue(jobQueue=arn, state="DISABLED")
            current = waiter.until(f"job queue {name} to be disabled",
                                   lambda: _settled_queue(batch, name))
        if current:
            batch.delete_job_queue(jobQueue=arn)
    waiter.until(f"job queue {name} to be deleted",
                 lambda: True if _describe_queue(batch, name) is None else None)


def _settled_queue(batch: Any, name: str) -> dict[str, Any] | None:
    """The queue once no update is under way; {} when it is gone; None meanwhile."""
    q = _describe_queue(batch, name)
    if q is None:
        return {}
    return None if q.get("status") in ("CREATING", "UPDATING") else q


def _settled_ce(batch: Any, name: str) -> dict[str, Any] | None:
    """The compute environment once no update is under way; {} when gone; None meanwhile."""
    ce = _describe_ce(batch, name)
    if ce is None:
        return {}
    return None if ce.get("status") in ("CREATING", "UPDATING") else ce


def _delete_compute_environment(batch: Any, current: dict[str, Any], waiter: Waiter) -> None:
    name = current["computeEnvironmentName"]
    if current.get("status") != "DELETING":
        settled = waiter.until(f"compute environment {name} to settle",
                               lambda: _settled_ce(batch, name))
        if settled and settled.get("state") != "DISABLED":
            batch.update_compute_environment(computeEnvironment=name, state="DISABLED")
            settled = waiter.until(f"compute environment {name} to be disabled",
                                   lambda: _settled_ce(batch, name))
        if settled:
            batch.delete_compute_environment(computeEnvironment=name)
    # Its instances use the roles, launch template and security group: wait until gone.
    waiter.until(f"compute environment {name} to be deleted",
                 lambda: True if _describe_ce(batch, name) is None else None)


def _delete_security_group(ec2: Any, group_id: str, waiter: Waiter) -> None:
    def attempt() -> bool | None:
        try:
            ec2.delete_security_group(GroupId=group_id)
        except Exception as exc:
            code = aws_error_code(exc)
            if code == "InvalidGroup.NotFound":
                return True
            # Network interfaces of terminated instances linger for a few minutes.
            if code == "DependencyViolation":
                return None
            raise
        return True

    waiter.until(f"security group {group_id} to be free", attempt)
