"""What a run really cost: instances shared by the jobs packed on them, volumes, S3 requests.

:func:`packed_shares`: an EC2 instance is billed whole, whoever uses it. For
the attempts the engine placed on a known instance (AWS Batch reports it), the
instance's time from each attempt's start to its stop is split among the
attempts running on it at that moment, in proportion to their jobs' shape (the
larger of their vCPU and memory fractions). An attempt alone on an instance
pays all of it; two scans side by side each pay half. Only this run's attempts
are seen: an instance shared with other work is charged to this run's jobs
alone while they ran (said with the figures), and the time an instance idles
between jobs is not counted.

:func:`s3_requests`: the requests a scan's worker makes: one GET per input (and
one per 64 MiB part of a large one), one PUT per output (parts of a large one,
plus the create and complete of a multipart upload), and the few small
objects of the protocol (marker, log, lease). Counted from the spec and the
marker, so estimated; transfer between S3 and EC2 in one region is free.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from .cost import CostContext, RunCost, instance_share, parse_time, run_cost
from .ledger import AttemptRecord
from .storage.transfer import DEFAULT_PART_SIZE as PART_BYTES

#: Small objects per attempt: marker read twice, lease create/renew/delete, log, marker.
PROTOCOL_GETS = 3
PROTOCOL_PUTS = 4


def packed_shares(attempts: Iterable[AttemptRecord], ctx: CostContext, *,
                  now: datetime) -> dict[tuple[str, int], float]:
    """(scan, attempt) -> the part of its instance's hours it paid, for attempts on known hosts.

    The share is relative to the attempt's own wall time: 1 alone on the
    instance, 0.5 beside an equal job for all of its time.
    """
    by_host: dict[str, list[tuple[AttemptRecord, datetime, datetime]]] = defaultdict(list)
    for a in attempts:
        start = parse_time(a.started_at)
        if a.host is None or start is None:
            continue
        end = parse_time(a.finished_at) or now
        by_host[a.host].append((a, start, max(start, end)))
    out: dict[tuple[str, int], float] = {}
    for items in by_host.values():
        weights = {(a.scan_id, a.attempt): _weight(a, ctx) for a, _s, _e in items}
        paid = dict.fromkeys(weights, 0.0)
        # A sweep over the moments a job started or stopped on this instance.
        moments = sorted({t for _a, s, e in items for t in (s, e)})
        for t0, t1 in itertools.pairwise(moments):
            running = [(a.scan_id, a.attempt) for a, s, e in items if s <= t0 and e >= t1]
            total = sum(weights[k] for k in running)
            for k in running:
                paid[k] += (t1 - t0).total_seconds() * weights[k] / total
        for a, s, e in items:
            key = (a.scan_id, a.attempt)
            wall = (e - s).total_seconds()
            out[key] = paid[key] / wall if wall > 0 else 0.0
    return out


def _weight(a: AttemptRecord, ctx: CostContext) -> float:
    inst = ctx.instance_types.get(a.instance_type or "") or ctx.default_instance
    return instance_share(ctx.job, inst) if inst is not None else 1.0


@dataclass(frozen=True)
class S3Requests:
    """A scan's S3 requests and bytes (stage-in, stage-out and the protocol's objects)."""

    gets: int
    puts: int
    bytes_in: int
    bytes_out: int


def _parts(size: int) -> int:
    return max(1, -(-size // PART_BYTES))


def s3_requests(*, input_sizes: Iterable[int], output_sizes: Iterable[int] | None,
                dataset_on_s3: bool, output_on_s3: bool, attempts: int = 1) -> S3Requests:
    """The requests of one scan: ``output_sizes`` None when its outputs are unknown (failed)."""
    ins = list(input_sizes) if dataset_on_s3 else []
    outs = list(output_sizes or ()) if output_on_s3 else []
    gets = sum(_parts(n) for n in ins) * max(1, attempts)
    puts = sum(1 if _parts(n) == 1 else _parts(n) + 2 for n in outs)
    if output_on_s3:
        gets += PROTOCOL_GETS * max(1, attempts)
        puts += PROTOCOL_PUTS * max(1, attempts)
    return S3Requests(gets=gets, puts=puts, bytes_in=sum(ins) * max(1, attempts),
                      bytes_out=sum(outs))


def s3_dollars(requests: S3Requests, ctx: CostContext) -> float | None:
    rates = ctx.storage
    if rates.s3_get_per_1000 is None or rates.s3_put_per_1000 is None:
        return None
    return (requests.gets * rates.s3_get_per_1000 + requests.puts * rates.s3_put_per_1000) / 1000


def actual_run_cost(attempts: Iterable[AttemptRecord], ctx: CostContext, *, now: datetime,
                    scan_ids: Iterable[str] = (),
                    requests: Mapping[str, S3Requests] | None = None) -> RunCost:
    """The run's cost: attempts on known instances share them; S3 requests where counted."""
    attempts = list(attempts)
    packed = packed_shares(attempts, ctx, now=now) if ctx.priced else {}
    s3: dict[str, float] = {}
    if ctx.priced:
        for sid, req in (requests or {}).items():
            dollars = s3_dollars(req, ctx)
            if dollars is not None:
                s3[sid] = dollars
    return run_cost(attempts, ctx, now=now, scan_ids=scan_ids, packed=packed, s3=s3)
