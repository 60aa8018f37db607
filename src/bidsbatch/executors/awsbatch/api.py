"""The AWS Batch and CloudWatch Logs calls of the executor, with throttling handled once.

Clients are built lazily from the standard AWS configuration (profiles,
``AWS_REGION``, ``AWS_ENDPOINT_URL``) or injected. botocore's own retries are
off for these clients: every call goes through :meth:`BatchApi.call`, which
retries throttling and transient faults with exponential backoff through an
injected ``sleep``, and turns any other error into one clear line.

``SubmitJob`` is the one call that must never be repeated blindly: a request
that timed out may have created the job. Before submitting again,
:meth:`BatchApi.submit_job` looks the job up by its (unique) name.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ...errors import BidsbatchError, UsageError, aws_error_code

THROTTLE_CODES = frozenset({
    "TooManyRequestsException", "ThrottlingException", "Throttling", "ThrottledException",
    "RequestLimitExceeded", "TooManyRequests", "RequestThrottled", "SlowDown",
})
#: Server faults worth another try (the request was not understood as wrong).
TRANSIENT_CODES = frozenset({"ServerException", "InternalError", "InternalFailure",
                             "ServiceUnavailable", "ServiceUnavailableException"})
#: DescribeJobs takes at most 100 job ids a call.
DESCRIBE_BATCH = 100
#: Batch's final job states; everything else is still queued or running.
FINAL = frozenset({"SUCCEEDED", "FAILED"})




def _status(exc: BaseException) -> int:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return 0
    return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def is_throttle(exc: BaseException) -> bool:
    return aws_error_code(exc) in THROTTLE_CODES or _status(exc) == 429


def is_transient(exc: BaseException) -> bool:
    """A fault that may pass: a 5xx, a dropped connection, a timeout."""
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import ReadTimeoutError

    if isinstance(exc, BotoConnectionError | ReadTimeoutError):
        return True
    return aws_error_code(exc) in TRANSIENT_CODES or _status(exc) >= 500


class AmbiguousSubmit(Exception):
    """A SubmitJob whose outcome is unknown (the response was lost)."""


class BatchApi:
    """Batch and Logs clients for one region, with backoff and clear errors."""

    def __init__(
        self,
        *,
        region: str | None = None,
        batch: Any = None,
        logs: Any = None,
        ecs: Any = None,
        ec2: Any = None,
        sleep: Callable[[float], None] = time.sleep,
        max_tries: int = 8,
        first_delay: float = 1.0,
        max_delay: float = 30.0,
    ) -> None:
        self.region = region
        self._batch = batch
        self._logs = logs
        self._ecs = ecs
        self._ec2 = ec2
        self.sleep = sleep
        self.max_tries = max_tries
        self.first_delay = first_delay
        self.max_delay = max_delay

    # -- clients

    def _client(self, service: str) -> Any:
        import boto3
        from botocore.config import Config

        # No botocore retries: call() retries with the injected sleep, and must decide
        # itself whether a failed SubmitJob may be sent again.
        config = Config(retries={"total_max_attempts": 1, "mode": "standard"},
                        user_agent_extra="bidsbatch")
        session = boto3.session.Session(region_name=self.region)
        if not session.region_name:
            raise UsageError("no AWS region is set for AWS Batch",
                             hint="set AWS_REGION (or a profile's region), or pass "
                                  "--environment NAME: an environment knows its region")
        with self.errors(f"connecting to AWS {service}"):
            return session.client(service, config=config)

    @property
    def batch(self) -> Any:
        if self._batch is None:
            self._batch = self._client("batch")
        return self._batch

    @property
    def logs(self) -> Any:
        if self._logs is None:
            self._logs = self._client("logs")
        return self._logs

    @property
    def ecs(self) -> Any:
        """For the container instances jobs ran on (``instances``)."""
        if self._ecs is None:
            self._ecs = self._client("ecs")
        return self._ecs

    @property
    def ec2(self) -> Any:
        """For the instances jobs ran on and their Spot prices (``instances``)."""
        if self._ec2 is None:
            self._ec2 = self._client("ec2")
        return self._ec2

    # -- calls

    def call(self, client: Any, operation: str, what: str, *, retry_transient: bool = True,
             absent: frozenset[str] = frozenset(), **kwargs: Any) -> dict[str, Any]:
        """``client.operation(**kwargs)`` with backoff on throttling (and transient faults).

        An error whose code is in ``absent`` ("no such thing") returns ``{}``.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        delay = self.first_delay
        for attempt in range(1, self.max_tries + 1):
            try:
                return getattr(client, operation)(**kwargs)
            except (ClientError, BotoCoreError) as exc:
                if aws_error_code(exc) in absent:
                    return {}
                again = is_throttle(exc) or (retry_transient and is_transient(exc))
                if not again and is_transient(exc):
                    raise AmbiguousSubmit(str(exc)) from exc
                if not again or attempt == self.max_tries:
                    raise translate(exc, what) from None
                self.sleep(delay)
                delay = min(self.max_delay, delay * 2)
        raise AssertionError("unreachable")  # pragma: no cover

    def errors(self, what: str) -> _Errors:
        return _Errors(what)

    def pages(self, client: Any, operation: str, key: str, what: str,
              **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Every item under ``key`` of every page (``nextToken``)."""
        token = None
        while True:
            page = self.call(client, operation, what, **kwargs,
                             **({"nextToken": token} if token else {}))
            yield from page.get(key, ())
            token = page.get("nextToken")
            if not token:
                return

    # -- Batch

    def describe_jobs(self, job_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Job id -> description, at most 100 ids a call. Unknown ids are left out."""
        ids = list(dict.fromkeys(job_ids))
        out: dict[str, dict[str, Any]] = {}
        for i in range(0, len(ids), DESCRIBE_BATCH):
            resp = self.call(self.batch, "describe_jobs", "describing Batch jobs",
                             jobs=ids[i:i + DESCRIBE_BATCH])
            for job in resp.get("jobs", ()):
                out[job["jobId"]] = job
        return out

    def children(self, array_job_id: str, status: str) -> list[dict[str, Any]]:
        """The children of an array job in ``status`` (ListJobs pages of 1,000)."""
        return list(self.pages(self.batch, "list_jobs", "jobSummaryList",
                               f"listing the children of array job {array_job_id}",
                               arrayJobId=array_job_id, jobStatus=status, maxResults=1000))

    def jobs_named(self, queue: str, prefix: str) -> list[dict[str, Any]]:
        """Jobs of ``queue`` whose name starts with ``prefix``, any status (not children)."""
        found = self.pages(self.batch, "list_jobs", "jobSummaryList",
                           f"listing the jobs of queue {queue}", jobQueue=queue,
                           filters=[{"name": "JOB_NAME", "values": [prefix + "*"]}],
                           maxResults=100)
        # Array children carry their parent's name; the parent stands for them.
        return [j for j in found if ":" not in j["jobId"] and j["jobName"].startswith(prefix)]

    def submit_job(self, request: dict[str, Any]) -> str:
        """Submit once: throttling is retried; a lost response is resolved by the job's name."""
        name, queue = request["jobName"], request["jobQueue"]
        delay = self.first_delay
        for attempt in range(1, self.max_tries + 1):
            try:
                resp = self.call(self.batch, "submit_job", f"submitting Batch job {name}",
                                 retry_transient=False, **request)
                return str(resp["jobId"])
            except AmbiguousSubmit:
                existing = [j for j in self.jobs_named(queue, name) if j["jobName"] == name]
                if existing:
                    return str(existing[0]["jobId"])
                if attempt == self.max_tries:
                    raise BidsbatchError(f"AWS Batch did not answer while submitting {name}",
                                         hint="check your network, then run again: nothing "
                                         "already submitted is submitted twice") from None
                self.sleep(delay)
                delay = min(self.max_delay, delay * 2)
        raise AssertionError("unreachable")  # pragma: no cover


class _Errors:
    """``with api.errors(what):`` turns botocore errors into one clear line."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, _tb: Any) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(exc, ClientError | BotoCoreError):
            raise translate(exc, self.what) from None
        return False


def translate(exc: BaseException, what: str) -> BidsbatchError:
    """One clear line for a botocore error met while doing ``what``."""
    from ...aws.clients import translate_aws_error

    code = aws_error_code(exc)
    message = str(getattr(exc, "response", {}).get("Error", {}).get("Message", "")) or str(exc)
    if is_throttle(exc):
        return BidsbatchError(f"AWS Batch kept throttling while {what} ({code or 429})",
                              hint="wait a minute and run the same command again")
    if code == "ClientException":
        low = message.lower()
        if "job queue" in low and ("does not exist" in low or "not found" in low):
            return UsageError(f"{message} (while {what})",
                              hint="check --job-queue or --environment; "
                                   "`bidsbatch aws status NAME` shows an environment")
        return BidsbatchError(f"AWS Batch refused {what}: {message}")
    return translate_aws_error(exc, what)
