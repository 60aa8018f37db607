"""Talking to AWS: the clients of one session, who the caller is, errors, waiting.

Shared by setup, status, teardown, ``doctor`` and the executors: botocore
errors become one clear :class:`~bidsbatch.errors.BidsbatchError` here, and
:class:`Waiter` polls with an injected sleep and clock so that tests never wait.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from ..errors import BidsbatchError, UsageError, aws_error_code

T = TypeVar("T")


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




def error_message(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Message", "") or aws_error_code(exc))
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
        code, message = aws_error_code(exc), error_message(exc)
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
