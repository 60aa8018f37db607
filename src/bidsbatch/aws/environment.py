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
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar
from urllib.parse import unquote

from ..config import EnvironmentSettings, remove_environment, save_environment
from ..errors import BidsbatchError, UsageError
from ..markers import STATE_PREFIX
from . import policies
from .network import resolve_network
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
#: Batch can change these in place only with these allocation strategies (and the SLR).
_UPDATABLE_STRATEGIES = {"BEST_FIT_PROGRESSIVE", "SPOT_CAPACITY_OPTIMIZED",
                         "SPOT_PRICE_CAPACITY_OPTIMIZED"}
_INSTANCE_TYPE = re.compile(r"optimal|[a-z][a-z0-9-]*(\.[a-z0-9-]+)?")

T = TypeVar("T")


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


# --------------------------------------------------------------------------- clients, errors


class AwsClients:
    """The AWS clients of one session, made on first use.

    Build the session from the standard configuration (profiles, AWS_REGION,
    AWS_ENDPOINT_URL) in the CLI; pass it here so tests can point it anywhere.
    """

    def __init__(self, session: Any) -> None:
        self.session = session
        self._clients: dict[str, Any] = {}

    @property
    def region(self) -> str | None:
        return self.session.region_name

    def client(self, service: str) -> Any:
        if service not in self._clients:
            from botocore.config import Config

            # Standard retries absorb throttling of the control-plane APIs.
            config = Config(retries={"mode": "standard", "max_attempts": 8})
            self._clients[service] = self.session.client(service, config=config)
        return self._clients[service]

    @property
    def iam(self) -> Any:
        return self.client("iam")

    @property
    def ec2(self) -> Any:
        return self.client("ec2")

    @property
    def batch(self) -> Any:
        return self.client("batch")

    @property
    def logs(self) -> Any:
        return self.client("logs")

    @property
    def sts(self) -> Any:
        return self.client("sts")

    @property
    def s3(self) -> Any:
        return self.client("s3")


@dataclass(frozen=True)
class Identity:
    """Who the caller is (STS GetCallerIdentity)."""

    account: str
    arn: str

    @property
    def partition(self) -> str:
        return self.arn.split(":")[1] if self.arn.startswith("arn:") else "aws"


def caller_identity(clients: AwsClients) -> Identity:
    """The caller's account and ARN; a clear error when there are no usable credentials."""
    with aws_errors("checking your AWS identity"):
        ident = clients.sts.get_caller_identity()
    return Identity(account=str(ident["Account"]), arn=str(ident["Arn"]))


_CREDENTIAL_CODES = {"InvalidClientTokenId", "UnrecognizedClientException", "ExpiredToken",
                     "ExpiredTokenException", "SignatureDoesNotMatch", "InvalidAccessKeyId",
                     "AuthFailure", "RequestExpired"}
_DENIED_CODES = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation",
                 "UnauthorizedAccess", "Forbidden", "403"}


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ClientError ('' for anything else)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return ""
    return str(response.get("Error", {}).get("Code", ""))


def error_message(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Message", "") or error_code(exc))
    return str(exc)


def translate_aws_error(exc: BaseException, what: str, *, hint: str | None = None
                        ) -> BidsbatchError:
    """One clear line for a botocore error met while doing ``what``.

    ``hint`` is what to do about errors that have no better hint of their own.
    """
    from botocore.exceptions import (
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
        ProfileNotFound,
        ReadTimeoutError,
        TokenRetrievalError,
    )

    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return BidsbatchError(
            f"no AWS credentials found while {what}",
            hint="configure them: `aws configure`, `aws sso login` or AWS_PROFILE=NAME",
        )
    if isinstance(exc, TokenRetrievalError):
        return BidsbatchError(
            f"your AWS SSO session has expired while {what}", hint="run `aws sso login`"
        )
    if isinstance(exc, ProfileNotFound):
        return UsageError(str(exc), hint="check AWS_PROFILE and ~/.aws/config")
    if isinstance(exc, NoRegionError):
        return UsageError(
            f"no AWS region is set while {what}", hint="pass --region or set AWS_REGION"
        )
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError | ReadTimeoutError):
        return BidsbatchError(
            f"cannot reach AWS while {what}: {exc}",
            hint="check your network (and AWS_ENDPOINT_URL if you set it)",
        )
    if isinstance(exc, ClientError):
        code, message = error_code(exc), error_message(exc)
        if code in _CREDENTIAL_CODES:
            return BidsbatchError(
                f"AWS rejected your credentials while {what} ({code})",
                hint="refresh them: `aws sso login`, or check the keys of your profile",
            )
        if code in _DENIED_CODES:
            return BidsbatchError(
                f"access denied while {what}: {message}",
                hint="your AWS identity needs the IAM, EC2, Batch and Logs permissions "
                "listed in the README; or deploy `bidsbatch aws template` with an admin",
            )
        return BidsbatchError(f"AWS error while {what}: {code}: {message}", hint=hint)
    return BidsbatchError(f"AWS error while {what}: {exc}", hint=hint)


@contextlib.contextmanager
def aws_errors(what: str, *, hint: str | None = None) -> Iterator[None]:
    """Turn botocore errors raised inside into :class:`BidsbatchError`."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise translate_aws_error(exc, what, hint=hint) from None


@dataclass
class Waiter:
    """Polls until something is true, with an injected sleep and clock."""

    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    interval: float = 5.0
    timeout: float = 1200.0

    def until(self, what: str, probe: Callable[[], T | None], *, timeout: float | None = None
              ) -> T:
        """Call ``probe`` until it returns something other than None; return that."""
        deadline = self.clock() + (self.timeout if timeout is None else timeout)
        while True:
            result = probe()
            if result is not None:
                return result
            if self.clock() >= deadline:
                raise BidsbatchError(
                    f"timed out waiting for {what}",
                    hint="AWS is slow today: run the same command again, it continues",
                )
            self.sleep(self.interval)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Change:
    """What happened (or would happen) to one resource."""

    kind: str
    name: str
    action: str  # created, updated, unchanged, deleted, must recreate; "would ..." in a dry run
    detail: str = ""

    @property
    def changed(self) -> bool:
        return self.action not in ("unchanged",)


@dataclass
class SetupResult:
    """The outcome of :func:`setup_environment`."""

    settings: EnvironmentSettings
    changes: list[Change]
    dry_run: bool = False

    @property
    def changed(self) -> bool:
        return any(c.changed for c in self.changes)

    @property
    def to_recreate(self) -> list[Change]:
        return [c for c in self.changes if c.action == "must recreate"]


@dataclass(frozen=True)
class Resource:
    """A resource of an environment as AWS describes it now."""

    kind: str
    name: str
    ident: str  # ARN or id
    state: str = ""  # ENABLED / DISABLED for queues and compute environments
    status: str = ""  # VALID / INVALID / CREATING ... for Batch resources
    detail: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name, "id": self.ident, "state": self.state,
                "status": self.status, "detail": self.detail}


@dataclass
class EnvironmentStatus:
    """The resources of an environment, and the expected ones that are missing."""

    name: str
    region: str
    resources: list[Resource]
    missing: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.missing and not any(
            r.status == "INVALID" or r.state == "DISABLED" for r in self.resources
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "region": self.region,
            "healthy": self.healthy,
            "missing": self.missing,
            "resources": [r.to_dict() for r in self.resources],
        }


@dataclass
class TeardownResult:
    """The outcome of :func:`teardown_environment`."""

    name: str
    changes: list[Change]
    forgotten: bool = False
    dry_run: bool = False


OnChange = Callable[[Change], None]


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
                if error_code(exc) != "InvalidInput":
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


# --------------------------------------------------------------------------- lookups


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
        if "NotFound" in error_code(exc):
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
            code = error_code(exc)
            if code == "InvalidGroup.NotFound":
                return True
            # Network interfaces of terminated instances linger for a few minutes.
            if code == "DependencyViolation":
                return None
            raise
        return True

    waiter.until(f"security group {group_id} to be free", attempt)
