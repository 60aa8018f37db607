"""What the report adds from measured usage: peak memory, what attempts ran on, and which
cost figures are measured and which estimated."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from .cost import ON_DEMAND, SPOT, RunCost, dollars
from .errors import BidsbatchError
from .ledger import Ledger
from .runs import RunDir
from .scan_usage import ScanUsage, s3_requests_of, succeeded_usage

if TYPE_CHECKING:
    from .cost_actual import S3Requests
    from .executors import Executor

MARKET = {ON_DEMAND: "On-Demand", SPOT: "Spot"}
#: Markers read for the report (and the end of ``run``): enough for percentiles.
SAMPLE = 1000


def measured_usage(run: RunDir, ledger: Ledger, *, executor: Executor | None
                   ) -> tuple[dict[str, ScanUsage], dict[str, S3Requests]]:
    """The succeeded scans' usage and every scan's S3 requests; nothing when the output
    cannot be read (the report is still written, from the ledger alone)."""
    try:
        usage = succeeded_usage(run, ledger, sample=SAMPLE)
    except BidsbatchError:
        return {}, {}
    if executor is None:
        return usage, {}
    return usage, s3_requests_of(run, ledger, usage, run.info().scans)


def usage_rows(usage: dict[str, ScanUsage]) -> list[tuple[str, str]]:
    """Peak memory and CPU use of the succeeded scans (the largest and the median)."""
    peaks = sorted(u.usage.peak_memory_mib for u in usage.values()
                   if u.usage is not None and u.usage.peak_memory_mib is not None)
    if not peaks:
        return []
    return [("peak memory", f"{peaks[len(peaks) // 2]:,.0f} MiB median, {peaks[-1]:,.0f} "
                            f"MiB at most ({len(peaks)} scans measured)")]


def cost_rows(cost: RunCost) -> list[tuple[str, str]]:
    """What the attempts ran on, and the parts of the cost that are not instance-hours."""
    kinds = Counter(f"{a.instance_type} {MARKET.get(a.market or '', '')}".strip()
                    for a in cost.attempts if a.instance_type)
    rows = []
    if kinds:
        rows.append(("ran on", ", ".join(f"{k} ×{n}" for k, n in kinds.most_common())))
    rows.append(("measured", f"{cost.measured_attempts} of {len(cost.attempts)} attempts "
                             "(the rest estimated)"))
    if cost.volume_dollars is not None:
        rows.append(("volumes (EBS gp3)", dollars(cost.volume_dollars) + " (estimated)"))
    if cost.s3_dollars is not None:
        rows.append(("S3 requests", dollars(cost.s3_dollars) + " (estimated)"))
    return rows
