"""The environment as a CloudFormation template, for users who deploy with IaC.

The same resources, names, tags and policies as ``bidsbatch aws setup``, from
the same :class:`EnvironmentSpec` and the same policy functions, so the two
cannot drift apart. Account, region and partition are CloudFormation pseudo
parameters; the default VPC cannot be looked up by a template, so subnets
(and the VPC of our security group) are parameters unless the options name
them. No ``ServiceRole`` on the compute environments: Batch then uses the
service-linked role, as setup does.
"""

from __future__ import annotations

import json
from typing import Any

from ..markers import STATE_PREFIX
from . import policies
from .spec import JOB_POLICY_NAME, TAG_KEY, EnvironmentSpec, Market

_PARTITION = "${AWS::Partition}"
_REGION = "${AWS::Region}"
_ACCOUNT = "${AWS::AccountId}"


def cloudformation_template(spec: EnvironmentSpec) -> dict[str, Any]:
    """The CloudFormation template (as a dict) of the environment ``spec`` describes."""
    names = spec.names
    tag_list = [{"Key": TAG_KEY, "Value": spec.name}]
    tag_map = {TAG_KEY: spec.name}
    params: dict[str, Any] = {}
    resources: dict[str, Any] = {}

    if spec.subnets:
        subnets: Any = list(spec.subnets)
    else:
        params["Subnets"] = {
            "Type": "List<AWS::EC2::Subnet::Id>",
            "Description": "Subnets for the Batch instances (with a route to the internet "
            "to pull images; e.g. the default VPC's)",
        }
        subnets = {"Ref": "Subnets"}
    if spec.security_groups:
        groups: Any = list(spec.security_groups)
    else:
        params["VpcId"] = {
            "Type": "AWS::EC2::VPC::Id",
            "Description": "The VPC of the subnets (for the instances' security group)",
        }
        resources["SecurityGroup"] = {
            "Type": "AWS::EC2::SecurityGroup",
            "Properties": {
                "GroupName": names.security_group,
                "GroupDescription": "bidsbatch: Batch instances; no inbound rules, "
                "outbound to pull images and S3",
                "VpcId": {"Ref": "VpcId"},
                "Tags": tag_list,
            },
        }
        groups = [{"Ref": "SecurityGroup"}]

    resources["InstanceRole"] = {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "RoleName": names.instance_role,
            "Path": "/bidsbatch/",
            "Description": f"bidsbatch {spec.name}: ECS agent on Batch instances",
            "AssumeRolePolicyDocument": policies.trust_policy(policies.EC2),
            "ManagedPolicyArns": [
                _sub(f"arn:{_PARTITION}:iam::aws:policy/{policies.INSTANCE_ROLE_MANAGED_POLICY}")
            ],
            "Tags": tag_list,
        },
    }
    resources["InstanceProfile"] = {
        "Type": "AWS::IAM::InstanceProfile",
        "Properties": {
            "InstanceProfileName": names.instance_profile,
            "Path": "/bidsbatch/",
            "Roles": [{"Ref": "InstanceRole"}],
        },
    }
    job_policy = policies.job_role_policy(
        datasets=[_escaped(d) for d in spec.datasets],
        output=_escaped(spec.output),
        log_group=policies.log_group_arn(
            partition=_PARTITION, region=_REGION, account_id=_ACCOUNT, name=names.log_group
        ),
        partition=_PARTITION,
        requester_pays=spec.requester_pays,
        deletable=STATE_PREFIX,
    )
    resources["JobRole"] = {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "RoleName": names.job_role,
            "Path": "/bidsbatch/",
            "Description": f"bidsbatch {spec.name}: jobs read the datasets, write the output",
            "AssumeRolePolicyDocument": _subs(
                policies.trust_policy(policies.ECS_TASKS, source_account=_ACCOUNT)
            ),
            "Policies": [{"PolicyName": JOB_POLICY_NAME, "PolicyDocument": _subs(job_policy)}],
            "Tags": tag_list,
        },
    }
    resources["LaunchTemplate"] = {
        "Type": "AWS::EC2::LaunchTemplate",
        "Properties": {
            "LaunchTemplateName": names.launch_template,
            "LaunchTemplateData": spec.launch_template_data(),
            "TagSpecifications": [{"ResourceType": "launch-template", "Tags": tag_list}],
        },
    }
    resources["LogGroup"] = {
        "Type": "AWS::Logs::LogGroup",
        "Properties": {
            "LogGroupName": names.log_group,
            "RetentionInDays": spec.log_retention_days,
            "Tags": tag_list,
        },
    }
    order = []
    for i, market in enumerate(spec.markets):
        spot = market is Market.SPOT
        logical = "SpotComputeEnvironment" if spot else "OnDemandComputeEnvironment"
        compute: dict[str, Any] = {
            "Type": "SPOT" if spot else "EC2",
            "AllocationStrategy": "SPOT_PRICE_CAPACITY_OPTIMIZED" if spot
            else "BEST_FIT_PROGRESSIVE",
            "MinvCpus": 0,
            "MaxvCpus": spec.max_vcpus,
            "InstanceTypes": list(spec.instance_types),
            "Subnets": subnets,
            "SecurityGroupIds": groups,
            "InstanceRole": {"Fn::GetAtt": ["InstanceProfile", "Arn"]},
            "LaunchTemplate": {
                "LaunchTemplateId": {"Ref": "LaunchTemplate"},
                "Version": {"Fn::GetAtt": ["LaunchTemplate", "LatestVersionNumber"]},
            },
            "Tags": {**tag_map, "Name": names.prefix},
        }
        if spot:
            compute["BidPercentage"] = spec.bid_percentage
        resources[logical] = {
            "Type": "AWS::Batch::ComputeEnvironment",
            "Properties": {
                "ComputeEnvironmentName": names.compute_environment(market),
                "Type": "MANAGED",
                "State": "ENABLED",
                # Update in place (infrastructure updates) rather than replace.
                "ReplaceComputeEnvironment": False,
                "ComputeResources": compute,
                "Tags": tag_map,
            },
        }
        order.append({"Order": i + 1, "ComputeEnvironment": {"Ref": logical}})
    resources["JobQueue"] = {
        "Type": "AWS::Batch::JobQueue",
        "Properties": {
            "JobQueueName": names.job_queue,
            "Priority": 1,
            "State": "ENABLED",
            "ComputeEnvironmentOrder": order,
            "Tags": tag_map,
        },
    }
    template: dict[str, Any] = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": (
            f"bidsbatch AWS Batch environment {spec.name} (made by `bidsbatch aws template`). "
            "Deploy with --capabilities CAPABILITY_NAMED_IAM."
        ),
    }
    if params:
        template["Parameters"] = params
    template["Resources"] = resources
    template["Outputs"] = {
        "JobQueueArn": {"Value": {"Ref": "JobQueue"}},
        "JobRoleArn": {"Value": {"Fn::GetAtt": ["JobRole", "Arn"]}},
        "LogGroupName": {"Value": {"Ref": "LogGroup"}},
    }
    return template


def render_template(spec: EnvironmentSpec) -> str:
    """The template as JSON text (CloudFormation reads JSON and YAML alike)."""
    return json.dumps(cloudformation_template(spec), indent=2) + "\n"


def _escaped(loc: policies.S3Prefix) -> policies.S3Prefix:
    # Fn::Sub reads "${" as a variable; "${!" is its escape for a literal "${".
    return policies.S3Prefix(loc.bucket, loc.prefix.replace("${", "${!"))


def _sub(text: str) -> Any:
    return {"Fn::Sub": text} if "${" in text else text


def _subs(value: Any) -> Any:
    """Wrap every string that uses a pseudo parameter in Fn::Sub."""
    if isinstance(value, dict):
        return {k: _subs(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_subs(v) for v in value]
    if isinstance(value, str):
        return _sub(value)
    return value
