"""The cost model: what a run will cost before it starts, and what it cost after.

Pure functions over typed values; no files, no network. Prices and
instance types come from :mod:`bidsbatch.pricing`, attempts from the ledger.

Before a run (:func:`estimate`): how many scans of a pipeline's shape fit on
one instance (vCPUs, memory less what the ECS agent and the OS keep, GPUs),
the instance-hours the dataset needs at an assumed time per scan, and what
they cost On-Demand and on Spot.

After a run (:func:`run_cost`): every attempt of every scan, from its start
to its stop, costs its share of its instance's hourly price, the share being
the larger of the job's fraction of the instance's vCPUs and of its memory
(the rest of the instance may hold other scans; if it does not, the idle
part is a packing loss that a per-job figure cannot see). Attempts lost to
Spot reclaims and failures are counted, and shown apart. Local runs have no
price: they report wall time and CPU time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from .ledger import AttemptRecord
from .pipelines import Resources

SPOT = "spot"
ON_DEMAND = "on-demand"
MARKETS = (ON_DEMAND, SPOT)

#: The part of an instance's memory that containers cannot have: the OS and the ECS
#: agent keep some, so Batch registers a little less than the nominal size
#: (an r5.large's 16 GiB take a 15,200 MiB job, not a 16,384 MiB one).
RESERVED_MEMORY_FRACTION = 0.05

# Outcomes of an attempt.
SUCCEEDED = "succeeded"
FAILED = "failed"
RECLAIMED = "reclaimed"  # a Spot instance taken back by EC2
CANCELLED = "cancelled"
RUNNING = "running"
OUTCOMES = (SUCCEEDED, FAILED, RECLAIMED, CANCELLED, RUNNING)
#: Attempts whose time bought nothing.
LOST = (FAILED, RECLAIMED, CANCELLED)

#: How AWS Batch says a Spot instance was reclaimed (statusReason of the attempt).
SPOT_RECLAIM_PREFIX = "Host EC2"


@dataclass(frozen=True)
class InstanceType:
    """An EC2 instance type: its name and size."""

    name: str
    vcpus: float
    memory_mib: int
    gpus: int = 0

    @property
    def family(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def usable_memory_mib(self) -> int:
        """What jobs can ask for on it (see RESERVED_MEMORY_FRACTION)."""
        return int(self.memory_mib * (1 - RESERVED_MEMORY_FRACTION))

    def describe(self) -> str:
        gib = self.memory_mib / 1024
        text = f"{self.name} ({self.vcpus:g} vCPU, {gib:g} GiB"
        return text + (f", {self.gpus} GPU)" if self.gpus else ")")


@dataclass(frozen=True)
class HourlyPrice:
    """USD per instance-hour, Linux, shared tenancy; None where the table has no price."""

    on_demand: float | None = None
    spot: float | None = None

    def for_market(self, market: str) -> float | None:
        return self.spot if market == SPOT else self.on_demand


# --------------------------------------------------------------------------- packing


def scans_per_instance(job: Resources, instance: InstanceType) -> int:
    """How many jobs of this shape fit on one instance at once (0 when one does not)."""
    fits = [
        int(instance.vcpus / job.vcpus + 1e-9),
        instance.usable_memory_mib // max(job.memory_mib, 1),
    ]
    if job.gpus:
        fits.append(instance.gpus // job.gpus)
    return max(0, min(fits))


def instance_share(job: Resources, instance: InstanceType) -> float:
    """The job's share of its instance: the larger of its vCPU, memory (and GPU) fractions.

    Memory is measured against the nominal size, as the price is. At most 1.
    """
    fractions = [job.vcpus / instance.vcpus, job.memory_mib / instance.memory_mib]
    if job.gpus and instance.gpus:
        fractions.append(job.gpus / instance.gpus)
    return min(1.0, max(fractions))


# --------------------------------------------------------------------------- before a run


@dataclass(frozen=True)
class MarketEstimate:
    """One market's figures in an estimate."""

    market: str
    price_per_hour: float | None
    per_scan: float | None
    total: float | None


@dataclass(frozen=True)
class Estimate:
    """What a run of ``scans`` scans is expected to cost on one instance type."""

    scans: int
    job: Resources
    instance: InstanceType
    scans_per_instance: int
    hours_per_scan: float
    instance_hours: float
    markets: dict[str, MarketEstimate]

    @property
    def spot_saving(self) -> float | None:
        """Spot's saving over On-Demand as a fraction (0.68 = 68% less)."""
        od, spot = self.markets[ON_DEMAND].total, self.markets[SPOT].total
        if od is None or spot is None or od == 0:
            return None
        return 1 - spot / od


def estimate(
    *, scans: int, job: Resources, instance: InstanceType, price: HourlyPrice,
    hours_per_scan: float,
) -> Estimate:
    """Instance-hours and dollars for ``scans`` jobs of shape ``job`` on ``instance``.

    Assumes instances are packed full (Batch places up to
    :func:`scans_per_instance` jobs on each) and billed for the time jobs run;
    start-up, idle tails and storage are not counted.
    Raises ValueError when one job does not fit on the instance.
    """
    per_instance = scans_per_instance(job, instance)
    if per_instance < 1:
        raise ValueError(f"a job of {job.vcpus:g} vCPU and {job.memory_mib} MiB does not fit "
                         f"on {instance.describe()}")
    if hours_per_scan <= 0:
        raise ValueError("hours per scan must be positive")
    instance_hours = scans * hours_per_scan / per_instance
    markets = {}
    for market in MARKETS:
        rate = price.for_market(market)
        per_scan = None if rate is None else hours_per_scan * rate / per_instance
        total = None if rate is None else instance_hours * rate
        markets[market] = MarketEstimate(market, rate, per_scan, total)
    return Estimate(scans=scans, job=job, instance=instance, scans_per_instance=per_instance,
                    hours_per_scan=hours_per_scan, instance_hours=instance_hours,
                    markets=markets)


def hours_for(dollars_per_scan: float, *, price_per_hour: float,
              scans_per_instance: int = 1) -> float:
    """The hours per scan that make a scan cost ``dollars_per_scan`` at this price."""
    return dollars_per_scan * scans_per_instance / price_per_hour


def cheapest_fits(
    job: Resources, *, instances: Iterable[InstanceType], prices: Mapping[str, HourlyPrice],
    hours_per_scan: float, market: str = ON_DEMAND,
) -> list[Estimate]:
    """One-scan estimates on every priced instance type the job fits on, cheapest first."""
    out = []
    for inst in instances:
        price = prices.get(inst.name)
        if price is None or price.for_market(market) is None:
            continue
        if scans_per_instance(job, inst) < 1:
            continue
        out.append(estimate(scans=1, job=job, instance=inst, price=price,
                            hours_per_scan=hours_per_scan))
    return sorted(out, key=lambda e: (round(e.markets[market].per_scan or math.inf, 9),
                                      e.instance.vcpus, e.instance.name))


# --------------------------------------------------------------------------- after a run


def parse_time(text: str | None) -> datetime | None:
    """An ISO 8601 time from the ledger (None stays None)."""
    return datetime.fromisoformat(text) if text else None


def outcome(attempt: AttemptRecord) -> str:
    """What became of an attempt: succeeded, failed, reclaimed, cancelled or running."""
    reason = attempt.reason or ""
    if attempt.finished_at is None:
        return RUNNING
    if attempt.exit_code == 0:
        return SUCCEEDED
    if reason.startswith(SPOT_RECLAIM_PREFIX):
        return RECLAIMED
    if "cancel" in reason.lower():
        return CANCELLED
    return FAILED


@dataclass(frozen=True)
class StorageRates:
    """What storage and requests cost (USD): EBS gp3 per GiB-month, S3 per 1,000 requests."""

    ebs_gp3_gib_month: float | None = None
    s3_get_per_1000: float | None = None
    s3_put_per_1000: float | None = None


@dataclass(frozen=True)
class CostContext:
    """What pricing a run needs: its jobs' shape, instance types, prices, the defaults.

    ``priced`` is False for engines without a bill (the local executor):
    attempts then have times and no dollars. ``assumptions`` are shown to the
    user next to the figures.
    """

    job: Resources
    priced: bool
    instance_types: Mapping[str, InstanceType] = field(default_factory=dict)
    prices: Mapping[str, HourlyPrice] = field(default_factory=dict)
    default_instance: InstanceType | None = None
    default_market: str = ON_DEMAND
    region: str = ""
    assumptions: tuple[str, ...] = ()
    #: The root volume of each instance (GiB, gp3: the launch template's), when known.
    volume_gib: int | None = None
    storage: StorageRates = field(default_factory=StorageRates)
    #: What was measured and what estimated, said next to the figures (not assumptions).
    basis: tuple[str, ...] = ()


@dataclass(frozen=True)
class AttemptCost:
    """One attempt, priced."""

    scan_id: str
    attempt: int
    outcome: str
    started_at: datetime | None
    finished_at: datetime | None
    wall_seconds: float
    cpu_seconds: float | None
    market: str | None
    instance_type: str | None
    share: float | None
    price_per_hour: float | None
    dollars: float | None
    #: The EC2 instance it ran on (None: not reported; its share is then assumed).
    instance_id: str | None = None
    #: Whether type, market, price and share were measured (reported by the engine).
    measured: bool = False
    #: The instance's root volume for the attempt's part of its hours (EBS gp3).
    volume_dollars: float | None = None

    @property
    def lost(self) -> bool:
        return self.outcome in LOST


@dataclass(frozen=True)
class ScanCost:
    """Every attempt of one scan, summed."""

    scan_id: str
    attempts: int
    wall_seconds: float
    cpu_seconds: float | None
    dollars: float | None
    lost_dollars: float | None
    lost_seconds: float


@dataclass(frozen=True)
class RunCost:
    """A run's cost: per attempt, per scan and in total."""

    priced: bool
    attempts: list[AttemptCost]
    scans: dict[str, ScanCost]
    wall_seconds: float
    cpu_seconds: float | None
    instance_hours: float | None
    dollars: float | None
    lost_dollars: float | None
    by_market: dict[str, float]
    by_outcome: dict[str, float]
    seconds_by_outcome: dict[str, float]
    succeeded_scans: int
    region: str
    assumptions: tuple[str, ...]
    #: The instances' root volumes (EBS gp3) and the S3 requests, in ``dollars`` too.
    volume_dollars: float | None = None
    s3_dollars: float | None = None
    #: Attempts whose instance type, market, price and share the engine reported.
    measured_attempts: int = 0
    basis: tuple[str, ...] = ()

    @property
    def per_succeeded_scan(self) -> float | None:
        """Dollars per succeeded scan, the lost attempts included."""
        if self.dollars is None or not self.succeeded_scans:
            return None
        return self.dollars / self.succeeded_scans

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready summary (per scan, no per-attempt detail)."""
        return {
            "priced": self.priced,
            "currency": "USD" if self.priced else None,
            "region": self.region or None,
            "dollars": _round(self.dollars),
            "lost_dollars": _round(self.lost_dollars),
            "per_succeeded_scan": _round(self.per_succeeded_scan),
            "instance_hours": _round(self.instance_hours),
            "wall_seconds": round(self.wall_seconds, 3),
            "cpu_seconds": None if self.cpu_seconds is None else round(self.cpu_seconds, 3),
            "by_market": {k: _round(v) for k, v in self.by_market.items()},
            "by_outcome": {k: _round(v) for k, v in self.by_outcome.items()},
            "seconds_by_outcome": {k: round(v, 3) for k, v in self.seconds_by_outcome.items()},
            "succeeded_scans": self.succeeded_scans,
            "volume_dollars": _round(self.volume_dollars),
            "s3_dollars": _round(self.s3_dollars),
            "measured_attempts": self.measured_attempts,
            "basis": list(self.basis),
            "assumptions": list(self.assumptions),
            "scans": [
                {"scan_id": s.scan_id, "attempts": s.attempts,
                 "wall_seconds": round(s.wall_seconds, 3),
                 "cpu_seconds": None if s.cpu_seconds is None else round(s.cpu_seconds, 3),
                 "dollars": _round(s.dollars), "lost_dollars": _round(s.lost_dollars)}
                for s in self.scans.values()
            ],
            "attempts": [
                {"scan_id": a.scan_id, "attempt": a.attempt, "outcome": a.outcome,
                 "wall_seconds": round(a.wall_seconds, 3), "market": a.market,
                 "instance_type": a.instance_type, "share": a.share,
                 "price_per_hour": a.price_per_hour, "dollars": _round(a.dollars),
                 "instance_id": a.instance_id, "measured": a.measured,
                 "volume_dollars": _round(a.volume_dollars)}
                for a in self.attempts
            ],
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 9)  # a Spot cent-fraction stays visible


def attempt_cost(attempt: AttemptRecord, ctx: CostContext, *, now: datetime,
                 packed_share: float | None = None) -> AttemptCost:
    """Price one attempt: its wall time × its instance's hourly price × its share.

    A running attempt is counted up to ``now``; one that never started costs nothing.
    ``packed_share`` is the part of its instance's hours it paid, worked out from
    the attempts that shared the instance (:mod:`bidsbatch.cost_actual`); without
    it the share is the job's fraction of the instance. On Spot, the price is the
    attempt's own Spot price when the engine recorded one.
    """
    start = parse_time(attempt.started_at)
    end = parse_time(attempt.finished_at)
    wall = max(0.0, ((end or now) - start).total_seconds()) if start else 0.0
    kind = outcome(attempt)
    if not ctx.priced:
        return AttemptCost(attempt.scan_id, attempt.attempt, kind, start, end, wall,
                           attempt.cpu_seconds, None, None, None, None, None)
    inst = ctx.instance_types.get(attempt.instance_type or "") or ctx.default_instance
    market = attempt.market if attempt.market in MARKETS else ctx.default_market
    share = rate = dollars = volume = None
    if inst is not None:
        share = instance_share(ctx.job, inst) if packed_share is None else packed_share
        rate = ctx.prices.get(inst.name, HourlyPrice()).for_market(market)
        if market == SPOT and attempt.spot_price is not None:
            rate = attempt.spot_price  # what it paid, from the Spot price history
        if rate is not None:
            dollars = wall / 3600 * rate * share
    if share is not None and ctx.volume_gib and ctx.storage.ebs_gp3_gib_month is not None:
        # EBS bills GiB-months of 730 hours; the volume lives as long as its instance.
        volume = wall / 3600 * share * ctx.volume_gib * ctx.storage.ebs_gp3_gib_month / 730
    measured = (attempt.host is not None and packed_share is not None
                and attempt.instance_type in ctx.instance_types and attempt.market in MARKETS
                and (market != SPOT or attempt.spot_price is not None))
    return AttemptCost(attempt.scan_id, attempt.attempt, kind, start, end, wall,
                       attempt.cpu_seconds, market,
                       attempt.instance_type or (inst.name if inst else None),
                       share, rate, dollars, instance_id=attempt.host,
                       measured=measured, volume_dollars=volume)


def run_cost(
    attempts: Iterable[AttemptRecord], ctx: CostContext, *, now: datetime,
    scan_ids: Iterable[str] = (), packed: Mapping[tuple[str, int], float] | None = None,
    s3: Mapping[str, float] | None = None,
) -> RunCost:
    """Price every attempt and sum per scan and per run.

    ``scan_ids`` lists scans to report even without attempts (zero cost).
    ``packed``: (scan, attempt) -> the part of its instance's hours the attempt
    paid (:func:`bidsbatch.cost_actual.packed_shares`); ``s3``: scan -> dollars of
    its S3 requests. Both are added to the scans' and the run's dollars.
    """
    packed = packed or {}
    s3 = s3 or {}
    priced = [attempt_cost(a, ctx, now=now, packed_share=packed.get((a.scan_id, a.attempt)))
              for a in attempts]
    scans: dict[str, list[AttemptCost]] = {s: [] for s in scan_ids}
    for a in priced:
        scans.setdefault(a.scan_id, []).append(a)
    per_scan = {sid: _scan_cost(sid, items, ctx.priced, s3=s3.get(sid))
                for sid, items in sorted(scans.items())}
    by_market: dict[str, float] = {}
    by_outcome: dict[str, float] = {}
    seconds: dict[str, float] = dict.fromkeys(OUTCOMES, 0.0)
    instance_hours = 0.0 if ctx.priced else None
    for a in priced:
        seconds[a.outcome] += a.wall_seconds
        if a.dollars is not None:
            by_market[a.market or ON_DEMAND] = by_market.get(a.market or ON_DEMAND, 0.0) + a.dollars
            by_outcome[a.outcome] = by_outcome.get(a.outcome, 0.0) + a.dollars
        if instance_hours is not None and a.share is not None:
            instance_hours += a.wall_seconds / 3600 * a.share
    cpu = [a.cpu_seconds for a in priced if a.cpu_seconds is not None]
    volume = [a.volume_dollars for a in priced if a.volume_dollars is not None]
    volume_dollars = sum(volume) if volume else None
    s3_dollars = sum(s3.values()) if s3 else None
    dollars = (sum(by_market.values()) + (volume_dollars or 0.0) + (s3_dollars or 0.0)
               if ctx.priced else None)
    lost = sum(v for k, v in by_outcome.items() if k in LOST) if ctx.priced else None
    if lost is not None:
        lost += sum(a.volume_dollars or 0.0 for a in priced if a.lost)
    return RunCost(
        priced=ctx.priced,
        attempts=priced,
        scans=per_scan,
        wall_seconds=sum(a.wall_seconds for a in priced),
        cpu_seconds=sum(cpu) if cpu else None,
        instance_hours=instance_hours,
        dollars=dollars,
        lost_dollars=lost,
        by_market=by_market,
        by_outcome=by_outcome,
        seconds_by_outcome=seconds,
        succeeded_scans=sum(1 for s in scans.values() if any(a.outcome == SUCCEEDED for a in s)),
        region=ctx.region,
        assumptions=ctx.assumptions,
        volume_dollars=volume_dollars,
        s3_dollars=s3_dollars,
        measured_attempts=sum(1 for a in priced if a.measured),
        basis=ctx.basis,
    )


def _scan_cost(scan_id: str, attempts: list[AttemptCost], priced: bool, *,
               s3: float | None = None) -> ScanCost:
    cpu = [a.cpu_seconds for a in attempts if a.cpu_seconds is not None]
    dollars = [(a.dollars or 0.0) + (a.volume_dollars or 0.0) for a in attempts
               if a.dollars is not None]
    if s3:
        dollars.append(s3)
    lost = [(a.dollars or 0.0) + (a.volume_dollars or 0.0) for a in attempts
            if a.dollars is not None and a.lost]
    return ScanCost(
        scan_id=scan_id,
        attempts=len(attempts),
        wall_seconds=sum(a.wall_seconds for a in attempts),
        cpu_seconds=sum(cpu) if cpu else None,
        dollars=sum(dollars) if priced else None,
        lost_dollars=sum(lost) if priced else None,
        lost_seconds=sum(a.wall_seconds for a in attempts if a.lost),
    )


# --------------------------------------------------------------------------- formatting


def dollars(value: float | None, *, places: int | None = None) -> str:
    """$1,234.56 and $2.91 for sums, $0.126 and $0.0403 for small ones; '' for None."""
    if value is None:
        return ""
    if places is None:
        places = 2 if abs(value) >= 1 else 3 if abs(value) >= 0.1 else 4
    return f"${value:,.{places}f}"


def duration(seconds: float | None) -> str:
    """Compact: 2.5s, 45s, 12m03s, 3h07m, 2d04h."""
    if seconds is None:
        return ""
    if seconds == 0:
        return "0s"
    if seconds < 9.95:
        return f"{seconds:.1f}s"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"
