"""Job definitions: one per pipeline and settings, named and tagged by a hash of its content.

The definition is built from the pipeline (image, vCPUs, memory, GPUs,
timeout, attempts) and the executor's settings (job role, log group,
platform). Its content hash is in its name and in a tag, so the same content
is registered once and reused by every run and every job: a new revision is
registered only when something in it changes.

The retry strategy is Spot-aware by default: a job whose host was reclaimed
(``statusReason`` ``Host EC2*``) or whose worker met a transient fault (exit
75) is tried again, up to the pipeline's attempts; anything else (the app's
own failure, a timeout) is final, because trying it again would fail the
same way and cost the same.
"""

from __future__ import annotations

import math
from typing import Any

from ...errors import EX_TEMPFAIL, UsageError
from ...pipelines import Pipeline, Resources
from ...specs import sha256_of
from .api import BatchApi
from .settings import BatchSettings

HASH_TAG = "bidsbatch:content-hash"
PIPELINE_TAG = "bidsbatch:pipeline"
MANAGED_TAG = "bidsbatch:managed-by"
#: The worker enforces the app's timeout itself; the attempt also stages data in and
#: out, so Batch's own limit leaves room for that (else a big scan is killed mid-upload).
STAGING_ALLOWANCE_SECONDS = 30 * 60
#: Fargate's vCPU sizes and the memory (MiB) each allows.
FARGATE_MEMORY: dict[float, tuple[int, ...]] = {
    0.25: (512, 1024, 2048),
    0.5: tuple(range(1024, 4097, 1024)),
    1.0: tuple(range(2048, 8193, 1024)),
    2.0: tuple(range(4096, 16385, 1024)),
    4.0: tuple(range(8192, 30721, 1024)),
    8.0: tuple(range(16384, 61441, 4096)),
    16.0: tuple(range(32768, 122881, 8192)),
}


def retry_strategy(attempts: int) -> dict[str, Any]:
    """Retry Spot reclaims and transient faults; exit on everything else."""
    return {
        "attempts": attempts,
        "evaluateOnExit": [
            {"onStatusReason": "Host EC2*", "action": "RETRY"},
            {"onExitCode": str(EX_TEMPFAIL), "action": "RETRY"},
            {"onReason": "*", "action": "EXIT"},
        ],
    }


def resource_requirements(resources: Resources, *, platform: str) -> list[dict[str, str]]:
    """vCPUs, memory and GPUs as ``resourceRequirements`` (strings, as Batch wants them)."""
    vcpus = float(resources.vcpus)
    memory = int(resources.memory_mib)
    gpus = int(resources.gpus)
    if platform == "fargate":
        allowed = FARGATE_MEMORY.get(vcpus)
        if allowed is None:
            raise UsageError(
                f"Fargate has no size of {vcpus:g} vCPUs",
                hint=f"use one of {', '.join(f'{v:g}' for v in FARGATE_MEMORY)} in the "
                     "pipeline's [resources], or --platform ec2",
            )
        if memory not in allowed:
            raise UsageError(
                f"Fargate does not pair {vcpus:g} vCPUs with {memory} MiB",
                hint=f"with {vcpus:g} vCPUs use one of {', '.join(map(str, allowed))} MiB, "
                     "or --platform ec2",
            )
        if gpus:
            raise UsageError("Fargate has no GPUs", hint="use --platform ec2 for this pipeline")
        cpu_text = f"{vcpus:g}"
    else:
        # On EC2 a job takes whole vCPUs.
        cpu_text = str(max(1, math.ceil(vcpus)))
    out = [{"type": "VCPU", "value": cpu_text}, {"type": "MEMORY", "value": str(memory)}]
    if gpus:
        out.append({"type": "GPU", "value": str(gpus)})
    return out


def job_definition(pipeline: Pipeline, settings: BatchSettings) -> dict[str, Any]:
    """The RegisterJobDefinition request for ``pipeline``, minus name and tags."""
    resources = pipeline.resources
    image = settings.image or pipeline.image
    container: dict[str, Any] = {
        "image": image,
        # Every job overrides the command; this default only says what the image is for.
        "command": ["bidsbatch", "--version"],
        "jobRoleArn": settings.job_role,
        "resourceRequirements": resource_requirements(resources, platform=settings.platform),
        "environment": [{"name": k, "value": v} for k, v in sorted(settings.job_env.items())],
    }
    if settings.log_group:
        container["logConfiguration"] = {
            "logDriver": "awslogs",
            "options": {"awslogs-group": settings.log_group,
                        "awslogs-stream-prefix": "bidsbatch"},
        }
    if settings.platform == "fargate":
        container["executionRoleArn"] = settings.execution_role or settings.job_role
        container["fargatePlatformConfiguration"] = {"platformVersion": "LATEST"}
        # Without a public IP (or a NAT) a Fargate task cannot pull its image.
        container["networkConfiguration"] = {"assignPublicIp": "ENABLED"}
        disk = int(resources.disk_gib)
        container["ephemeralStorage"] = {"sizeInGiB": min(200, max(21, disk))}
    else:
        container["privileged"] = False
    return {
        "type": "container",
        "containerProperties": container,
        "retryStrategy": retry_strategy(int(pipeline.attempts)),
        "timeout": {"attemptDurationSeconds":
                    int(resources.timeout_minutes) * 60 + STAGING_ALLOWANCE_SECONDS},
        "platformCapabilities": ["FARGATE" if settings.platform == "fargate" else "EC2"],
        "propagateTags": True,
    }


def definition_name(pipeline_name: str, content_hash: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in pipeline_name)[:80]
    return f"bidsbatch-{safe}-{content_hash[:16]}"


def ensure_job_definition(api: BatchApi, pipeline: Pipeline,
                          settings: BatchSettings) -> str:
    """The ARN of an active definition with exactly this content; registered if none."""
    request = job_definition(pipeline, settings)
    digest = sha256_of(request)
    name = definition_name(pipeline.name, digest)
    found = list(api.pages(api.batch, "describe_job_definitions", "jobDefinitions",
                           f"looking up job definition {name}",
                           jobDefinitionName=name, status="ACTIVE"))
    for jd in sorted(found, key=lambda d: -int(d.get("revision", 0))):
        if jd.get("status", "ACTIVE") == "ACTIVE" and jd.get("tags", {}).get(HASH_TAG) == digest:
            return str(jd["jobDefinitionArn"])
    tags = {HASH_TAG: digest, PIPELINE_TAG: pipeline.name[:256], MANAGED_TAG: "bidsbatch"}
    resp = api.call(api.batch, "register_job_definition",
                    f"registering job definition {name}", jobDefinitionName=name,
                    tags=tags, **request)
    return str(resp["jobDefinitionArn"])
