"""What a Batch run cost: its attempts on EC2 instances (On-Demand or Spot) or Fargate.

Each attempt is priced on its instance type and market as Batch reported
them, else on what the run's settings and AWS environment say it used, and
every assumption made is said next to the figures (``CostContext``).
"""

from __future__ import annotations

from typing import Any

from ...cost import ON_DEMAND, SPOT, CostContext, HourlyPrice, InstanceType
from ...errors import BidsbatchError
from ...ledger import AttemptRecord
from ...pipelines import Resources
from ...pricing import (
    DEFAULT_REGION,
    FALLBACK_INSTANCE_TYPE,
    PriceTable,
    default_region,
    job_resources,
    pick_instance,
)
from ...specs import RunInfo
from .settings import BatchSettings


def batch_cost_context(
    settings: BatchSettings, *, info: RunInfo, table: PriceTable,
    attempts: list[AttemptRecord],
) -> CostContext:
    """How to price a Batch run: its jobs' shape, instance types and markets, the assumptions.

    Instance type of an attempt: the ledger's, else the settings' first
    (``instance_types``), else the environment's first, else r5.large.
    Market: the ledger's, else On-Demand (the higher price).
    """
    job = job_resources(info)
    env = _environment(settings)
    region = str(settings.region or (env.region if env else "") or default_region())
    if settings.platform == "fargate":
        return _fargate_context(job, table=table, region=region, attempts=attempts)
    region, assumptions = table.region_or_default(region)
    candidates = list(settings.instance_types) + list(
        env.instance_types if env else ())
    default = None
    origin = ""
    for name in candidates:
        default = pick_instance(str(name), job=job, table=table, region=region)
        if default:
            origin = "the run's environment" if env and name in env.instance_types else \
                "the run's settings"
            break
    if default is None:
        default = table.instance_types.get(FALLBACK_INSTANCE_TYPE)
        origin = "bidsbatch's fallback"
    unknown_type = [a for a in attempts if not a.instance_type]
    if unknown_type and default is not None:
        assumptions.append(f"{len(unknown_type)} attempt(s) without an instance type: "
                           f"priced as {default.name} ({origin})")
    strange = sorted({a.instance_type for a in attempts
                      if a.instance_type and a.instance_type not in table.instance_types})
    if strange and default is not None:
        assumptions.append(f"{', '.join(strange)} not in the price table: priced as "
                           f"{default.name} (add them with --prices or --refresh-prices)")
    no_market = [a for a in attempts if a.market not in (SPOT, ON_DEMAND)]
    if no_market:
        assumptions.append(f"{len(no_market)} attempt(s) without a market: priced On-Demand "
                           "(the higher price)")
    basis = []
    on_hosts = [a for a in attempts if a.host]
    if on_hosts:
        spot_priced = sum(1 for a in on_hosts if a.market == SPOT and a.spot_price is not None)
        basis.append(
            f"{len(on_hosts)} attempt(s) measured: instance type and market from EC2, "
            f"{spot_priced} at the Spot price of their zone and hour; each instance's hours "
            "shared by this run's jobs on it (other work on it, and its idle time, not seen)")
    volume = env.root_volume_gib if env else None
    if volume:
        basis.append(f"root volume {volume} GiB gp3 per instance (the launch template), "
                     "for the instance's hours: estimated")
    return CostContext(
        job=job, priced=True, instance_types=table.instance_types,
        prices=table.prices(region), default_instance=default, default_market=ON_DEMAND,
        region=region, assumptions=tuple(assumptions), volume_gib=volume or None,
        storage=table.storage_rates(region), basis=tuple(basis),
    )


def _fargate_context(job: Resources, *, table: PriceTable, region: str,
                     attempts: list[AttemptRecord]) -> CostContext:
    """Fargate bills each task for its own size: a share of 1 of a job-sized 'instance'."""
    assumptions = []
    priced = table.fargate_price(job, region)
    if priced is None:
        assumptions.append(f"no Fargate prices for {region}: priced as {DEFAULT_REGION}")
        region = DEFAULT_REGION
        priced = table.fargate_price(job, region)
    price, how = priced or (HourlyPrice(), "Fargate: no prices in the table")
    assumptions.append(how)
    if any(a.market not in (SPOT, ON_DEMAND) for a in attempts):
        assumptions.append("attempts without a market: priced as Fargate (not Spot)")
    task = InstanceType("fargate", job.vcpus, job.memory_mib, job.gpus)
    return CostContext(job=job, priced=True, prices={"fargate": price},
                       default_instance=task, default_market=ON_DEMAND, region=region,
                       assumptions=tuple(assumptions))


def _environment(settings: BatchSettings) -> Any:
    name = settings.environment
    try:
        from ...config import default_environment_name, load_environment

        if not name and not settings.job_queue:
            name = default_environment_name()
        return load_environment(name) if name else None
    except BidsbatchError:
        return None  # a deleted or unreadable environment: price with the fallbacks
