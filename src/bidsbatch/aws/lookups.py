"""Finding an environment's resources in AWS by name, and reading their tags and policies.

Small read-only helpers that setup (:mod:`bidsbatch.aws.environment`) and
teardown (:mod:`bidsbatch.aws.teardown`) both use.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

from ..errors import aws_error_code
from .spec import SERVICE_LINKED_ROLE, SERVICE_LINKED_ROLE_PATH


def _tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def _tag_dict(tags: Any) -> dict[str, str]:
    if isinstance(tags, dict):
        return {str(k): str(v) for k, v in tags.items()}
    return {t["Key"]: t["Value"] for t in tags or []}


def _policy(document: Any) -> Any:
    """A policy document as a dict (IAM may return it URL-encoded)."""
    if isinstance(document, str):
        return json.loads(unquote(document))
    return document


def _pages(client: Any, method: str, key: str, **kwargs: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for page in client.get_paginator(method).paginate(**kwargs):
        out.extend(page.get(key, []))
    return out


def _find_service_linked_role(iam: Any) -> dict[str, Any] | None:
    roles = _pages(iam, "list_roles", "Roles", PathPrefix=SERVICE_LINKED_ROLE_PATH)
    for role in roles:
        if role["RoleName"] == SERVICE_LINKED_ROLE:
            return role
    # Some implementations spell the name differently; the path is what identifies it.
    return roles[0] if roles else None


def _find_launch_template(ec2: Any, name: str) -> dict[str, Any] | None:
    try:
        found = ec2.describe_launch_templates(LaunchTemplateNames=[name])["LaunchTemplates"]
    except Exception as exc:
        if "NotFound" in aws_error_code(exc):
            return None
        raise
    return found[0] if found else None


def _find_log_group(logs: Any, name: str) -> dict[str, Any] | None:
    for group in _pages(logs, "describe_log_groups", "logGroups", logGroupNamePrefix=name):
        if group["logGroupName"] == name:
            return group
    return None


def _log_group_tags(logs: Any, group: dict[str, Any]) -> dict[str, str]:
    arn = group.get("logGroupArn") or str(group.get("arn", "")).removesuffix(":*")
    return dict(logs.list_tags_for_resource(resourceArn=arn).get("tags", {}))


def _describe_ce(batch: Any, name: str) -> dict[str, Any] | None:
    found = batch.describe_compute_environments(computeEnvironments=[name])
    for ce in found.get("computeEnvironments", []):
        if ce.get("computeEnvironmentName") == name and ce.get("status") != "DELETED":
            return dict(ce)
    return None


def _describe_queue(batch: Any, name: str) -> dict[str, Any] | None:
    for q in batch.describe_job_queues(jobQueues=[name]).get("jobQueues", []):
        if q.get("jobQueueName") == name and q.get("status") != "DELETED":
            return dict(q)
    return None
