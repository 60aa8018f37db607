"""Right-sizing: the resources a pipeline's next run should ask for, from what this one used.

The succeeded scans' markers carry the app's peak memory and CPU time
(:mod:`bidsbatch.usage`). The suggestion takes the 95th percentile of each,
adds a margin (:data:`MEMORY_MARGIN` of the peak, at least
:data:`MEMORY_FLOOR_MIB`; CPU rounded up to a whole vCPU), and then rounds
memory up to what packs well on the instance type: the smallest slot of
``usable memory / k`` that holds it, so that ``k`` such jobs fill the
instance's memory with none left idle. The saving is priced on that instance type,
at the run's median time per scan, for as many scans as the run had.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from .cost import ON_DEMAND, SPOT, HourlyPrice, InstanceType, estimate, scans_per_instance
from .errors import UsageError
from .pipelines import Resources
from .scan_usage import ScanUsage

if TYPE_CHECKING:
    from .pricing import PriceTable
    from .runs import RunDir

#: Headroom over the 95th-percentile peak: a scan a little bigger than the others
#: must not be killed for memory.
MEMORY_MARGIN = 0.2
MEMORY_FLOOR_MIB = 256
#: Memory is suggested in steps of this (Batch and Slurm take MiB; round numbers read better).
MEMORY_STEP_MIB = 64
PERCENTILE = 95
#: Markers read for a suggestion: a p95 of 1,000 scans is as good as of 10,000.
SAMPLE = 1000


def percentile(values: Sequence[float], pct: float = PERCENTILE) -> float:
    """The nearest-rank percentile (of 20 scans, the 19th largest for p95)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Suggestion:
    """Resources for the next run, why, and what they would save."""

    current: Resources
    suggested: Resources
    scans_measured: int
    peak_memory_p95_mib: float
    cpu_use_p95: float | None
    instance: InstanceType
    per_instance_now: int
    per_instance_then: int
    hours_per_scan: float
    scans: int
    #: market -> (dollars now, dollars with the suggestion) for ``scans`` scans.
    dollars: dict[str, tuple[float | None, float | None]]

    @property
    def changed(self) -> bool:
        return (self.suggested.memory_mib, self.suggested.vcpus) != \
            (self.current.memory_mib, self.current.vcpus)

    def saving(self, market: str = ON_DEMAND) -> float | None:
        now, then = self.dollars.get(market, (None, None))
        return None if now is None or then is None else now - then


def fit_memory(need_mib: float, *, instance: InstanceType) -> int:
    """The memory to ask for: the smallest slot ``usable / k`` of ``instance`` that holds ``need``.

    Jobs of that size fill the instance's memory exactly ``k`` at a time;
    stepped down to :data:`MEMORY_STEP_MIB` where that still holds ``need``.
    """
    usable = instance.usable_memory_mib
    if need_mib > usable:
        # Bigger than the instance: the nearest step up (the user needs a larger type).
        return int(math.ceil(need_mib / MEMORY_STEP_MIB) * MEMORY_STEP_MIB)
    k = max(1, int(usable // need_mib))
    slot = usable // k
    stepped = slot // MEMORY_STEP_MIB * MEMORY_STEP_MIB
    return stepped if stepped >= need_mib else slot


def suggest(usage: dict[str, ScanUsage], *, current: Resources, instance: InstanceType,
            price: HourlyPrice | None, scans: int) -> Suggestion:
    """The resources that fit what the succeeded scans used (UsageError if none measured)."""
    measured = [u.usage for u in usage.values()
                if u.usage is not None and u.usage.peak_memory_mib is not None]
    if not measured:
        raise UsageError("no succeeded scan of this run has a measured peak memory",
                         hint="markers written by bidsbatch before 0.x, or apps in a "
                              "container whose cgroup was not found, carry none")
    peaks = [u.peak_memory_mib for u in measured if u.peak_memory_mib is not None]
    p95 = percentile(peaks)
    uses = [c for u in measured if (c := u.cpu_use) is not None]
    cpu_p95 = percentile(uses) if uses else None
    # A job held to N vCPUs cannot use more than N: only a clear excess asks for one more.
    vcpus = current.vcpus if cpu_p95 is None else float(max(1, math.ceil(cpu_p95 - 0.1)))
    need = max(p95 * (1 + MEMORY_MARGIN), p95 + MEMORY_FLOOR_MIB)
    memory = fit_memory(need, instance=instance)
    suggested = replace(current, vcpus=vcpus, memory_mib=memory)
    hours = statistics.median(u.wall_seconds for u in measured) / 3600
    now_fit = scans_per_instance(current, instance)
    then_fit = scans_per_instance(suggested, instance)
    dollars: dict[str, tuple[float | None, float | None]] = {}
    for market in (ON_DEMAND, SPOT):
        pair: list[float | None] = []
        for res, fit in ((current, now_fit), (suggested, then_fit)):
            if price is None or price.for_market(market) is None or fit < 1 or hours <= 0:
                pair.append(None)
                continue
            est = estimate(scans=scans, job=res, instance=instance, price=price,
                           hours_per_scan=hours)
            pair.append(est.markets[market].total)
        dollars[market] = (pair[0], pair[1])
    return Suggestion(current=current, suggested=suggested, scans_measured=len(measured),
                      peak_memory_p95_mib=p95, cpu_use_p95=cpu_p95, instance=instance,
                      per_instance_now=now_fit, per_instance_then=then_fit,
                      hours_per_scan=hours, scans=scans, dollars=dollars)


def suggest_for_run(run: RunDir, *, table: PriceTable) -> Suggestion:
    """The suggestion from a finished (or running) run: its markers, its instance type.

    The instance type is the one the run's executor prices with (AWS Batch: its
    environment's); for an engine without a bill, the pipeline's usual type in
    the price table, so that the saving still has a price.
    """
    from .ledger import Ledger
    from .pricing import default_region, estimate_instance
    from .runner import submitted_executor
    from .scan_usage import succeeded_usage

    info = run.info()
    with Ledger.open(run.ledger_path) as ledger:
        ledger.add_scans(info.scans)
        usage = succeeded_usage(run, ledger, sample=SAMPLE)
        executor = submitted_executor(run, ledger)
        ctx = None
        if executor is not None:
            ctx = executor.cost_context(info=info, table=table, attempts=ledger.attempts())
    region, _ = table.region_or_default(ctx.region if ctx and ctx.region else default_region())
    instance = ctx.default_instance if ctx is not None and ctx.priced else None
    if instance is None or instance.name not in table.instance_types:
        instance, _origin = estimate_instance(None, pipe=info.pipeline, table=table,
                                              region=region)
    return suggest(usage, current=info.pipeline.resources, instance=instance,
                   price=table.prices(region).get(instance.name), scans=len(info.scans))
