"""The desired state of an AWS environment: what ``bidsbatch aws setup`` is asked to build.

:class:`EnvironmentSpec` validates the options and fills the defaults from the
pipeline preset; :class:`ResourceNames` derives every resource's name from the
environment's name in one place. Pure data: nothing here talks to AWS, so the
CLI, ``doctor`` and the CloudFormation template share it cheaply.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ..config import EnvironmentSettings
from ..errors import UsageError
from .policies import S3Prefix

TAG_KEY = "bidsbatch:environment"
IAM_PATH = "/bidsbatch/"
LOG_GROUP_PREFIX = "/bidsbatch/"
SERVICE_LINKED_ROLE_PATH = "/aws-service-role/batch.amazonaws.com/"
SERVICE_LINKED_ROLE = "AWSServiceRoleForBatch"
JOB_POLICY_NAME = "bidsbatch-data-access"
ROOT_DEVICE = "/dev/xvda"  # the root device of the ECS-optimized Amazon Linux AMIs

#: Names end up in IAM role names (64 characters at most) with a prefix and suffix.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")
#: The only values CloudWatch Logs accepts.
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096,
                      1827, 2192, 2557, 2922, 3288, 3653)
#: Instance types per preset. m2g is sized like the seed setup (2 vCPU, 15,200 MiB:
#: one job per r5.large); the others need more memory than their nominal instance
#: leaves to containers, so whole families let Batch pick the size (and give Spot
#: more capacity pools to draw from).
DEFAULT_INSTANCE_TYPES: dict[str, tuple[str, ...]] = {
    "m2g": ("r5.large",),
    "fmriprep": ("m5", "m6i", "r5"),
    "mriqc": ("m5", "m6i", "r5"),
    "demo": ("m5.large",),
}
DEFAULT_MAX_VCPUS = 256
DEFAULT_BID_PERCENTAGE = 100
DEFAULT_LOG_RETENTION_DAYS = 30
DEFAULT_PIPELINE = "m2g"
_INSTANCE_TYPE = re.compile(r"optimal|[a-z][a-z0-9-]*(\.[a-z0-9-]+)?")


class Market(StrEnum):
    """How instances are bought."""

    SPOT = "spot"
    ON_DEMAND = "on-demand"


@dataclass(frozen=True)
class ResourceNames:
    """The names of an environment's resources, derived from its name in one place."""

    environment: str

    @property
    def prefix(self) -> str:
        return f"bidsbatch-{self.environment}"

    @property
    def job_queue(self) -> str:
        return self.prefix

    def compute_environment(self, market: Market) -> str:
        return f"{self.prefix}-{market.value}"

    @property
    def launch_template(self) -> str:
        return self.prefix

    @property
    def instance_role(self) -> str:
        return f"{self.prefix}-instance"

    @property
    def instance_profile(self) -> str:
        return f"{self.prefix}-instance"

    @property
    def job_role(self) -> str:
        return f"{self.prefix}-job"

    @property
    def log_group(self) -> str:
        return f"{LOG_GROUP_PREFIX}{self.environment}"

    @property
    def security_group(self) -> str:
        return self.prefix

    @property
    def tags(self) -> dict[str, str]:
        return {TAG_KEY: self.environment}


# --------------------------------------------------------------------------- the spec


@dataclass(frozen=True)
class EnvironmentSpec:
    """What ``bidsbatch aws setup`` is asked to build. Make one with :meth:`create`."""

    name: str
    region: str
    datasets: tuple[S3Prefix, ...]
    output: S3Prefix
    markets: tuple[Market, ...] = (Market.SPOT,)
    instance_types: tuple[str, ...] = DEFAULT_INSTANCE_TYPES[DEFAULT_PIPELINE]
    max_vcpus: int = DEFAULT_MAX_VCPUS
    bid_percentage: int = DEFAULT_BID_PERCENTAGE
    root_volume_gib: int = 100
    subnets: tuple[str, ...] = ()
    security_groups: tuple[str, ...] = ()
    requester_pays: bool = False
    pipeline: str = DEFAULT_PIPELINE
    log_retention_days: int = DEFAULT_LOG_RETENTION_DAYS

    @property
    def names(self) -> ResourceNames:
        return ResourceNames(self.name)

    @classmethod
    def create(
        cls,
        *,
        name: str,
        region: str,
        bucket: str | None = None,
        datasets: tuple[str, ...] = (),
        output: str | None = None,
        markets: tuple[Market, ...] = (Market.SPOT,),
        instance_types: tuple[str, ...] = (),
        max_vcpus: int | None = None,
        bid_percentage: int | None = None,
        root_volume_gib: int | None = None,
        subnets: tuple[str, ...] = (),
        security_groups: tuple[str, ...] = (),
        requester_pays: bool = False,
        pipeline: str | None = None,
        log_retention_days: int | None = None,
    ) -> EnvironmentSpec:
        """Validate the options and fill the defaults (from the pipeline preset).

        ``bucket`` is a shorthand for ``s3://BUCKET`` as the dataset and the
        output when those are not named: the job role may then read and write
        the whole bucket.
        """
        from ..pipelines import load_pipeline

        if not NAME_PATTERN.fullmatch(name):
            raise UsageError(
                f"invalid environment name {name!r}",
                hint="use 1 to 32 letters, digits, '-' or '_', starting with a letter or digit",
            )
        if bucket is not None and (bucket.startswith("s3://") or "/" in bucket):
            raise UsageError(
                f"--bucket takes a bucket name, not {bucket!r}",
                hint="write --bucket NAME, or --dataset s3://BUCKET/PREFIX",
            )
        dataset_uris = list(datasets) or ([f"s3://{bucket}"] if bucket else [])
        output_uri = output or (f"s3://{bucket}" if bucket else None)
        if not dataset_uris or not output_uri:
            raise UsageError(
                "name the data the jobs may use",
                hint="--bucket BUCKET, or --dataset s3://BUCKET/PREFIX --output s3://BUCKET/PREFIX",
            )
        parsed = tuple(sorted({S3Prefix.parse(u) for u in dataset_uris}))
        out = S3Prefix.parse(output_uri)
        if not markets:
            markets = (Market.SPOT,)
        markets = tuple(m for m in (Market.SPOT, Market.ON_DEMAND) if m in markets)

        pipeline_name = pipeline or DEFAULT_PIPELINE
        pipe = load_pipeline(pipeline_name)
        types = tuple(instance_types) or default_instance_types(pipeline_name, pipe.resources)
        for t in types:
            if not _INSTANCE_TYPE.fullmatch(t):
                raise UsageError(
                    f"invalid instance type {t!r}",
                    hint="write types or families separated by commas, e.g. r5.large,m5",
                )
        vcpus = DEFAULT_MAX_VCPUS if max_vcpus is None else max_vcpus
        if not 1 <= vcpus <= 100_000:
            raise UsageError(f"--max-vcpus must be from 1 to 100000, not {vcpus}")
        if vcpus < pipe.resources.vcpus:
            raise UsageError(
                f"--max-vcpus {vcpus} is less than one {pipe.name} job needs "
                f"({pipe.resources.vcpus:g} vCPUs)",
                hint=f"use at least --max-vcpus {int(pipe.resources.vcpus + 0.999)}",
            )
        bid = DEFAULT_BID_PERCENTAGE if bid_percentage is None else bid_percentage
        if not 1 <= bid <= 100:
            raise UsageError(f"--bid-percentage must be from 1 to 100, not {bid}")
        disk = pipe.resources.disk_gib if root_volume_gib is None else root_volume_gib
        # The ECS-optimized AMI itself needs 30 GiB; below that instances fail to launch.
        disk = max(disk, 30) if root_volume_gib is None else disk
        if not 30 <= disk <= 16_384:
            raise UsageError(
                f"--root-volume-gib must be from 30 to 16384, not {disk}",
                hint="the ECS-optimized AMI's own snapshot takes 30 GiB",
            )
        retention = DEFAULT_LOG_RETENTION_DAYS if log_retention_days is None else log_retention_days
        if retention not in LOG_RETENTION_DAYS:
            raise UsageError(
                f"--log-retention-days {retention} is not a value CloudWatch Logs accepts",
                hint="one of " + ", ".join(str(d) for d in LOG_RETENTION_DAYS),
            )
        for sid in subnets:
            if not sid.startswith("subnet-"):
                raise UsageError(f"{sid!r} is not a subnet id", hint="write subnet-…")
        for gid in security_groups:
            if not gid.startswith("sg-"):
                raise UsageError(f"{gid!r} is not a security group id", hint="write sg-…")
        return cls(
            name=name,
            region=region,
            datasets=parsed,
            output=out,
            markets=markets,
            instance_types=types,
            max_vcpus=vcpus,
            bid_percentage=bid,
            root_volume_gib=disk,
            subnets=tuple(sorted(set(subnets))),
            security_groups=tuple(sorted(set(security_groups))),
            requester_pays=requester_pays,
            pipeline=pipeline_name,
            log_retention_days=retention,
        )

    @classmethod
    def from_settings(cls, settings: EnvironmentSettings) -> EnvironmentSpec:
        """The spec a saved environment was set up with."""
        return cls(
            name=settings.name,
            region=settings.region,
            datasets=tuple(S3Prefix.parse(u) for u in settings.datasets),
            output=S3Prefix.parse(settings.output),
            markets=tuple(Market(m) for m in settings.markets) or (Market.SPOT,),
            instance_types=settings.instance_types,
            max_vcpus=settings.max_vcpus,
            bid_percentage=settings.bid_percentage,
            root_volume_gib=settings.root_volume_gib,
            subnets=settings.subnets,
            security_groups=settings.security_groups,
            requester_pays=settings.requester_pays,
            pipeline=settings.pipeline,
            log_retention_days=settings.log_retention_days,
        )

    def command(self, *, datasets: tuple[str, ...] = (), output: str | None = None) -> str:
        """The ``bidsbatch aws setup`` command that builds this spec (plus more data).

        ``doctor`` prints it as the fix: setup converges, so rerunning it
        repairs whatever drifted.
        """
        uris = sorted({d.uri for d in self.datasets} | set(datasets))
        args = ["bidsbatch", "aws", "setup", self.name]
        for uri in uris:
            args += ["--dataset", uri]
        args += ["--output", output or self.output.uri]
        if self.markets == (Market.SPOT, Market.ON_DEMAND):
            args.append("--both")
        elif self.markets == (Market.ON_DEMAND,):
            args.append("--on-demand")
        if self.pipeline != DEFAULT_PIPELINE:
            args += ["--pipeline", self.pipeline]
        pipe_defaults = _pipeline_defaults(self.pipeline)
        if pipe_defaults is None or self.instance_types != pipe_defaults[0]:
            args += ["--instance-types", ",".join(self.instance_types)]
        if pipe_defaults is None or self.root_volume_gib != pipe_defaults[1]:
            args += ["--root-volume-gib", str(self.root_volume_gib)]
        if self.max_vcpus != DEFAULT_MAX_VCPUS:
            args += ["--max-vcpus", str(self.max_vcpus)]
        if Market.SPOT in self.markets and self.bid_percentage != DEFAULT_BID_PERCENTAGE:
            args += ["--bid-percentage", str(self.bid_percentage)]
        if self.subnets:
            args += ["--subnets", ",".join(self.subnets)]
        if self.security_groups:
            args += ["--security-groups", ",".join(self.security_groups)]
        if self.requester_pays:
            args.append("--requester-pays")
        if self.log_retention_days != DEFAULT_LOG_RETENTION_DAYS:
            args += ["--log-retention-days", str(self.log_retention_days)]
        if self.region:
            args += ["--region", self.region]
        return shlex.join(args)

    def launch_template_data(self) -> dict[str, Any]:
        """What the launch template gives each instance: its root disk, and IMDSv2 only."""
        return {
            "BlockDeviceMappings": [
                {
                    "DeviceName": ROOT_DEVICE,
                    "Ebs": {
                        "VolumeSize": self.root_volume_gib,
                        "VolumeType": "gp3",
                        "Encrypted": True,
                        "DeleteOnTermination": True,
                    },
                }
            ],
            # IMDSv2 only; a hop limit of 2 keeps the metadata service reachable
            # from containers on the bridge network, as the ECS agent expects.
            "MetadataOptions": {"HttpTokens": "required", "HttpPutResponseHopLimit": 2},
        }


def default_instance_types(pipeline: str, resources: Any) -> tuple[str, ...]:
    """The instance types for a pipeline: its preset's, or families that fit its memory."""
    if pipeline in DEFAULT_INSTANCE_TYPES:
        return DEFAULT_INSTANCE_TYPES[pipeline]
    gib_per_vcpu = resources.memory_mib / 1024 / max(resources.vcpus, 0.25)
    if gib_per_vcpu > 4:
        return ("r5", "r6i")
    if gib_per_vcpu > 2:
        return ("m5", "m6i")
    return ("c5", "c6i")


def _pipeline_defaults(pipeline: str) -> tuple[tuple[str, ...], int] | None:
    from ..errors import PipelineError
    from ..pipelines import load_pipeline

    try:
        pipe = load_pipeline(pipeline)
    except PipelineError:
        return None
    return default_instance_types(pipeline, pipe.resources), max(pipe.resources.disk_gib, 30)
