"""A scan's logs from CloudWatch Logs: every attempt's stream, in order, optionally followed.

Batch names each attempt's stream in ``attempts[].container.logStreamName``
(and the running attempt's in ``container.logStreamName``); the log group is
the job definition's ``awslogs-group`` (Batch's default ``/aws/batch/job``
when it names none). Streams are read with ``GetLogEvents`` from the head,
page after page, until the forward token stops changing; ``follow`` keeps
reading the last one until the job ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from .api import FINAL, BatchApi
from .settings import DEFAULT_LOG_GROUP

_ABSENT = frozenset({"ResourceNotFoundException"})


@dataclass
class _Stream:
    group: str
    name: str
    header: str
    token: str | None = None
    seen: bool = False


@dataclass
class StreamSet:
    """The streams of a list of jobs, in attempt order, remembered across reads."""

    streams: dict[tuple[str, str], _Stream] = field(default_factory=dict)

    def add(self, group: str, name: str, header: str) -> _Stream:
        key = (group, name)
        if key not in self.streams:
            self.streams[key] = _Stream(group, name, header)
        return self.streams[key]


class BatchLogs:
    """Reads the CloudWatch streams of Batch jobs."""

    def __init__(self, api: BatchApi, *, sleep: Callable[[float], None] = time.sleep,
                 interval: float = 2.0) -> None:
        self.api = api
        self.sleep = sleep
        self.interval = interval
        self.events = 0  # log events read so far
        self._groups: dict[str, str] = {}

    def log_group(self, job_definition_arn: str | None) -> str:
        """The log group of a job definition's containers."""
        if not job_definition_arn:
            return DEFAULT_LOG_GROUP
        if job_definition_arn not in self._groups:
            resp = self.api.call(self.api.batch, "describe_job_definitions",
                                 "reading the job definition's log configuration",
                                 jobDefinitions=[job_definition_arn])
            group = DEFAULT_LOG_GROUP
            for jd in resp.get("jobDefinitions", ()):
                conf = (jd.get("containerProperties") or {}).get("logConfiguration") or {}
                if conf.get("logDriver") == "awslogs":
                    group = (conf.get("options") or {}).get("awslogs-group") or group
            self._groups[job_definition_arn] = group
        return self._groups[job_definition_arn]

    def collect(self, job_ids: list[str], streams: StreamSet) -> bool:
        """Add the streams of ``job_ids`` (in order) to ``streams``; True when all jobs ended."""
        descs = self.api.describe_jobs(job_ids)
        ended = True
        attempt = 0
        for job_id in job_ids:
            desc = descs.get(job_id)
            if desc is None:
                continue
            group = self.log_group(desc.get("jobDefinition"))
            names = [(a.get("container") or {}).get("logStreamName")
                     for a in desc.get("attempts") or ()]
            current = (desc.get("container") or {}).get("logStreamName")
            if desc["status"] not in FINAL:
                ended = False
                if current and current not in names:
                    names.append(current)
            for name in names:
                attempt += 1
                if name:
                    streams.add(group, name, f"==> attempt {attempt} · job {job_id} · "
                                             f"{group} {name}")
        return ended

    def read(self, stream: _Stream) -> Iterator[str]:
        """The events of ``stream`` after its token; advances the token."""
        while True:
            kwargs: dict[str, Any] = {"logGroupName": stream.group,
                                      "logStreamName": stream.name, "startFromHead": True}
            if stream.token:
                kwargs["nextToken"] = stream.token
            page = self.api.call(self.api.logs, "get_log_events",
                                 f"reading log stream {stream.name}", absent=_ABSENT, **kwargs)
            if not page:
                return  # the stream does not exist (yet)
            for event in page.get("events", ()):
                self.events += 1
                yield str(event.get("message", "")).rstrip("\n")
            token = page.get("nextForwardToken")
            if not token or token == stream.token:
                return
            stream.token = token

    def lines(self, job_ids: list[str], *, follow: bool) -> Iterator[str]:
        """Every line of every attempt of ``job_ids``; with ``follow``, until they end."""
        streams = StreamSet()
        while True:
            ended = self.collect(job_ids, streams)
            for stream in streams.streams.values():
                if not stream.seen:
                    stream.seen = True
                    yield stream.header
                yield from self.read(stream)
            if not follow or ended:
                return
            self.sleep(self.interval)


def cloudwatch_url(*, region: str, group: str, stream: str) -> str:
    """The CloudWatch console page of one log stream."""

    def enc(text: str) -> str:
        # The console's own encoding: URL-encoded twice, with '$' for '%'.
        return quote(quote(text, safe=""), safe="").replace("%", "$")

    return (f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
            f"#logsV2:log-groups/log-group/{enc(group)}/log-events/{enc(stream)}")
