"""What the AWS Batch executor needs to know: queue, job role, region, log group, image.

Given on the command line (``--job-queue``, ``--job-role``), or taken from a
bidsbatch AWS environment (``--environment NAME``, or the default one when
nothing is given), then saved in the run's ledger so that ``status``,
``logs``, ``retry`` and ``cancel`` rebuild the same executor without flags.
Names and ARNs only: no field can hold a credential.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import UsageError
from ..pipelines import check_no_credentials

#: AWS Batch takes 2 to 10,000 children per array job.
MAX_ARRAY_SIZE = 10_000
PLATFORMS = ("ec2", "fargate")
#: Where Batch sends container logs when a job definition names no log group.
DEFAULT_LOG_GROUP = "/aws/batch/job"

_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
_SETUP_HINT = "`bidsbatch aws setup NAME --bucket BUCKET` creates a job queue and a " \
    "least-privilege job role; then pass --environment NAME"


@dataclass(frozen=True)
class BatchSettings:
    """The executor's settings. Build with :meth:`from_options`."""

    job_queue: str
    job_role: str
    region: str | None = None
    environment: str | None = None
    log_group: str | None = None
    image: str | None = None  # None: the pipeline's image
    platform: str = "ec2"
    array_size: int = MAX_ARRAY_SIZE
    #: Fargate only: the role ECS uses to pull the image and write logs (default: job role).
    execution_role: str | None = None
    #: Extra variables for every job's container (never AWS keys).
    job_env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> BatchSettings:
        """Settings from CLI options or saved settings; UsageError when something is missing.

        ``environment`` fills what the options leave out; with neither queue,
        role nor environment, the default environment (if one is set up) is used.
        """
        from ..config import default_environment_name, load_environment

        queue = options.get("job_queue")
        role = options.get("job_role")
        region = options.get("region")
        log_group = options.get("log_group")
        env_name = options.get("environment")
        if env_name is None and not queue and not role:
            env_name = default_environment_name()
        if env_name and None in (queue, role, region, log_group):
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
        platform = str(options.get("platform") or "ec2").lower()
        if platform not in PLATFORMS:
            raise UsageError(f"--platform {platform!r} is not one of {', '.join(PLATFORMS)}")
        size = int(options.get("array_size") or MAX_ARRAY_SIZE)
        if not 2 <= size <= MAX_ARRAY_SIZE:
            raise UsageError(f"--array-size must be from 2 to {MAX_ARRAY_SIZE}, not {size}")
        job_env = dict(options.get("job_env") or {})
        check_no_credentials(job_env, where="the job environment")
        return cls(
            job_queue=str(queue), job_role=str(role), region=region, environment=env_name,
            log_group=log_group, image=options.get("image") or None, platform=platform,
            array_size=size, execution_role=options.get("execution_role") or None,
            job_env=job_env,
        )

    @property
    def effective_log_group(self) -> str:
        return self.log_group or DEFAULT_LOG_GROUP

    def to_dict(self) -> dict[str, Any]:
        """Plain values for the ledger (what :meth:`from_options` reads back)."""
        return asdict(self)
