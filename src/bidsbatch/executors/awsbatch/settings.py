"""What the AWS Batch executor needs to know: queue, job role, region, log group, image.

Given on the command line (``--job-queue``, ``--job-role``), or taken from a
bidsbatch AWS environment (``--environment NAME``, or the default one when
nothing is given), then saved in the run's ledger so that ``status``,
``logs``, ``retry`` and ``cancel`` rebuild the same executor without flags.
Names and ARNs only: no field can hold a credential.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ...errors import UsageError
from ...pipelines import check_no_credentials
from ..settings import ExecutorSettings, option

#: AWS Batch takes 2 to 10,000 children per array job.
MAX_ARRAY_SIZE = 10_000
PLATFORMS = ("ec2", "fargate")
#: Where Batch sends container logs when a job definition names no log group.
DEFAULT_LOG_GROUP = "/aws/batch/job"

_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
_SETUP_HINT = "`bidsbatch aws setup NAME --bucket BUCKET` creates a job queue and a " \
    "least-privilege job role; then pass --environment NAME"


@dataclass(frozen=True)
class BatchSettings(ExecutorSettings):
    """The executor's settings; :meth:`resolved` completes and checks them."""

    job_queue: str = option("", help="AWS Batch job queue (name or ARN).")
    job_role: str = option("", help="AWS Batch job role ARN.")
    environment: str | None = option(
        help="A bidsbatch AWS environment (bidsbatch aws setup): its queue, role, region "
             "and log group.")
    image: str | None = option(
        help="AWS Batch: the image jobs run (the pipeline's image with bidsbatch added, "
             "see bidsbatch image dockerfile); default: the pipeline's image.")
    platform: str = option("ec2", help="AWS Batch: ec2 (default) or fargate.")
    array_size: int = option(MAX_ARRAY_SIZE, hidden=True,
                             help="AWS Batch: scans per array job (at most 10,000).")
    region: str | None = None
    log_group: str | None = None
    #: Fargate only: the role ECS uses to pull the image and write logs (default: job role).
    execution_role: str | None = None
    #: Extra variables for every job's container (never AWS keys).
    job_env: dict[str, str] = field(default_factory=dict)
    #: The instance types (or families) attempts ran on, for pricing attempts whose type
    #: Batch did not report (default: the AWS environment's).
    instance_types: tuple[str, ...] = ()

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> BatchSettings:
        """Resolved settings from plain values (CLI options, saved settings)."""
        return cls.from_json(options).resolved()

    def resolved(self) -> BatchSettings:
        """These settings completed and checked; UsageError when something is missing.

        ``environment`` fills what the options leave out; with neither queue,
        role nor environment, the default environment (if one is set up) is used.
        """
        from ...config import default_environment_name, load_environment

        queue, role, region, log_group = self.job_queue, self.job_role, self.region, \
            self.log_group
        env_name = self.environment
        if env_name is None and not queue and not role:
            env_name = default_environment_name()
        if env_name and not (queue and role and region and log_group):
            env = load_environment(env_name)
            queue = queue or env.job_queue_arn or env.job_queue
            role = role or env.job_role_arn
            region = region or env.region
            log_group = log_group or env.log_group
        if not queue:
            raise UsageError("AWS Batch needs a job queue",
                             hint=f"pass --job-queue QUEUE, or: {_SETUP_HINT}")
        if not role:
            raise UsageError(
                "AWS Batch jobs need an IAM job role (bidsbatch never hands AWS keys to jobs)",
                hint=f"pass --job-role ROLE_ARN, or: {_SETUP_HINT}",
            )
        if not _ROLE_ARN.match(role):
            raise UsageError(f"--job-role {role!r} is not an IAM role ARN",
                             hint="give the whole ARN: arn:aws:iam::ACCOUNT:role/NAME")
        platform = str(self.platform or "ec2").lower()
        if platform not in PLATFORMS:
            raise UsageError(f"--platform {platform!r} is not one of {', '.join(PLATFORMS)}")
        size = int(self.array_size or MAX_ARRAY_SIZE)
        if not 2 <= size <= MAX_ARRAY_SIZE:
            raise UsageError(f"--array-size must be from 2 to {MAX_ARRAY_SIZE}, not {size}")
        job_env = dict(self.job_env or {})
        check_no_credentials(job_env, where="the job environment")
        return replace(
            self, job_queue=str(queue), job_role=str(role), region=region,
            environment=env_name, log_group=log_group, image=self.image or None,
            platform=platform, array_size=size, execution_role=self.execution_role or None,
            job_env=job_env,
        )

    @property
    def effective_log_group(self) -> str:
        return self.log_group or DEFAULT_LOG_GROUP

