"""Where Batch instances run: subnets and a security group.

By default the default VPC's subnets (public, with a route to the internet,
so instances can pull images and reach S3 without a NAT gateway) and a
security group of our own with no inbound rules; or the ones the user names,
which are used as they are and never modified or deleted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import UsageError

#: report(kind, name, action, detail): how network steps tell the caller what they did.
Report = Callable[[str, str, str, str], None]

SECURITY_GROUP_KIND = "security group"


@dataclass(frozen=True)
class Network:
    """The subnets and security groups a compute environment uses."""

    vpc_id: str
    subnets: tuple[str, ...]
    security_groups: tuple[str, ...]


def resolve_network(
    ec2: Any,
    *,
    group_name: str,
    tags: dict[str, str],
    subnets: tuple[str, ...] = (),
    security_groups: tuple[str, ...] = (),
    dry_run: bool = False,
    report: Report,
) -> Network:
    """Find (or, for the security group, make) the network of an environment.

    ``tags`` mark the security group as ours; a group of that name without
    them is not touched and the user is asked to name one.
    """
    if subnets:
        vpc_id, subnet_ids = _named_subnets(ec2, subnets)
    else:
        vpc_id, subnet_ids = _default_subnets(ec2)
    if security_groups:
        _check_groups(ec2, security_groups, vpc_id)
        return Network(vpc_id, subnet_ids, tuple(sorted(security_groups)))
    group_id = _own_group(
        ec2, vpc_id=vpc_id, name=group_name, tags=tags, dry_run=dry_run, report=report
    )
    return Network(vpc_id, subnet_ids, (group_id,))


def _default_subnets(ec2: Any) -> tuple[str, tuple[str, ...]]:
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
    if not vpcs:
        raise UsageError(
            "this region has no default VPC",
            hint="name the network: --subnets subnet-…,subnet-… "
            "(and optionally --security-groups sg-…)",
        )
    vpc_id = vpcs[0]["VpcId"]
    filters = [{"Name": "vpc-id", "Values": [vpc_id]}]
    found = _subnets(ec2, [*filters, {"Name": "default-for-az", "Values": ["true"]}])
    if not found:
        found = _subnets(ec2, filters)
    if not found:
        raise UsageError(
            f"the default VPC {vpc_id} has no subnets",
            hint="name the network: --subnets subnet-…,subnet-…",
        )
    return vpc_id, tuple(sorted(s["SubnetId"] for s in found))


def _subnets(ec2: Any, filters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for page in ec2.get_paginator("describe_subnets").paginate(Filters=filters):
        out.extend(page["Subnets"])
    return out


def _named_subnets(ec2: Any, subnets: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    found = _subnets(ec2, [{"Name": "subnet-id", "Values": list(subnets)}])
    missing = sorted(set(subnets) - {s["SubnetId"] for s in found})
    if missing:
        raise UsageError(
            f"no such subnet: {', '.join(missing)}",
            hint="list them with `aws ec2 describe-subnets`",
        )
    vpcs = sorted({s["VpcId"] for s in found})
    if len(vpcs) > 1:
        raise UsageError(
            f"the subnets are in several VPCs ({', '.join(vpcs)})",
            hint="name subnets of one VPC",
        )
    return vpcs[0], tuple(sorted(subnets))


def _check_groups(ec2: Any, groups: tuple[str, ...], vpc_id: str) -> None:
    found = ec2.describe_security_groups(
        Filters=[{"Name": "group-id", "Values": list(groups)}]
    )["SecurityGroups"]
    missing = sorted(set(groups) - {g["GroupId"] for g in found})
    if missing:
        raise UsageError(
            f"no such security group: {', '.join(missing)}",
            hint="list them with `aws ec2 describe-security-groups`",
        )
    elsewhere = sorted(g["GroupId"] for g in found if g.get("VpcId") != vpc_id)
    if elsewhere:
        raise UsageError(
            f"security group {', '.join(elsewhere)} is not in the subnets' VPC {vpc_id}",
            hint="name security groups of the same VPC as the subnets",
        )


def _own_group(
    ec2: Any, *, vpc_id: str, name: str, tags: dict[str, str], dry_run: bool, report: Report
) -> str:
    found = ec2.describe_security_groups(
        Filters=[
            {"Name": "vpc-id", "Values": [vpc_id]},
            {"Name": "group-name", "Values": [name]},
        ]
    )["SecurityGroups"]
    if found:
        group = found[0]
        have = {t["Key"]: t["Value"] for t in group.get("Tags", [])}
        if any(have.get(k) != v for k, v in tags.items()):
            raise UsageError(
                f"security group {name} ({group['GroupId']}) exists but bidsbatch did not make it",
                hint="name the network yourself with --security-groups, or delete that group",
            )
        inbound = group.get("IpPermissions") or []
        if inbound:
            # Nothing needs to reach the instances: jobs only call out.
            report(SECURITY_GROUP_KIND, name, "updated", f"removed {len(inbound)} inbound rule(s)")
            if not dry_run:
                ec2.revoke_security_group_ingress(GroupId=group["GroupId"], IpPermissions=inbound)
        else:
            report(SECURITY_GROUP_KIND, name, "unchanged", f"{group['GroupId']}, no inbound rules")
        return str(group["GroupId"])
    report(SECURITY_GROUP_KIND, name, "created", f"in {vpc_id}, no inbound rules")
    if dry_run:
        return f"(new security group {name})"
    created = ec2.create_security_group(
        GroupName=name,
        Description="bidsbatch: Batch instances; no inbound rules, outbound to pull images and S3",
        VpcId=vpc_id,
        TagSpecifications=[
            {
                "ResourceType": "security-group",
                "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
            }
        ],
    )
    return str(created["GroupId"])
