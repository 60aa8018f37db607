"""What scans used, what they ran on, and how old the prices are: ``cost suggest``,
``cost prices``, and the columns and lines ``cost RUN`` adds from them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..console import err_console, print_json
from ..cost import ON_DEMAND, SPOT, RunCost, dollars
from .options import JsonOpt, Planning, RunArg

if TYPE_CHECKING:
    from ..pipelines import Pipeline
    from ..pricing import PriceTable
    from ..rightsize import Suggestion
    from ..runs import RunDir
    from ..scan_usage import ScanUsage

MARKET_SHORT = {ON_DEMAND: "On-Demand", SPOT: "Spot"}
PricesFileOpt = Annotated[
    Path | None,
    typer.Option("--prices", metavar="FILE",
                 help="A price table (JSON, the format of bidsbatch/data/prices.json) laid "
                      "over the shipped one and $BIDSBATCH_CONFIG_DIR/prices.json."),
]


# --------------------------------------------------------------------------- cost RUN


def read_usage(run: RunDir, ledger: Any) -> dict[str, ScanUsage]:
    """The succeeded scans' usage from their markers; an unreachable output is a warning."""
    from ..errors import BidsbatchError
    from ..scan_usage import succeeded_usage

    try:
        return succeeded_usage(run, ledger)
    except BidsbatchError as exc:
        err_console.print(f"[yellow]warning:[/] the markers were not read: "
                          f"{escape(exc.message)}; no peak memory, no S3 request count",
                          highlight=False)
        return {}


def peak_column(usage: dict[str, ScanUsage]) -> dict[str, str]:
    """scan -> its app's peak memory, for the scans whose worker measured one."""
    out = {}
    for sid, u in usage.items():
        if u.usage is not None and u.usage.peak_memory_mib is not None:
            out[sid] = f"{u.usage.peak_memory_mib:,.0f} MiB"
    return out


def usage_json(usage: dict[str, ScanUsage]) -> dict[str, Any]:
    return {sid: None if u.usage is None else {
        "peak_memory_mib": u.usage.peak_memory_mib, "cpu_seconds": u.usage.cpu_seconds,
        "wall_seconds": u.usage.wall_seconds, "measured": u.usage.measured}
        for sid, u in sorted(usage.items())}


def ran_on(cost: RunCost) -> dict[str, str]:
    """scan -> the instance types and markets of its attempts (``r5.large Spot``), in order."""
    out: dict[str, list[str]] = {}
    for a in cost.attempts:
        if not a.instance_type:
            continue
        text = f"{a.instance_type} {MARKET_SHORT.get(a.market or '', '')}".strip()
        if not a.measured:
            text += "?"
        seen = out.setdefault(a.scan_id, [])
        if text not in seen:
            seen.append(text)
    return {sid: ", ".join(v) for sid, v in out.items()}


def basis_lines(cost: RunCost) -> list[Text]:
    """Which figures are measured and which estimated, and the volumes and S3 requests."""
    if not cost.priced or not cost.attempts:
        return []
    lines = []
    n = len(cost.attempts)
    m = cost.measured_attempts
    if m == n:
        lines.append(Text(f"measured: all {n} attempt(s) (instance type, market and Spot "
                          "price as AWS reported them)", style="dim"))
    else:
        lines.append(Text(f"measured: {m} of {n} attempt(s); the other {n - m} estimated "
                          "(marked ? in 'ran on')", style="dim"))
    extra = []
    if cost.volume_dollars is not None:
        extra.append(f"volumes {dollars(cost.volume_dollars)}")
    if cost.s3_dollars is not None:
        extra.append(f"S3 requests {dollars(cost.s3_dollars)}")
    if extra:
        lines.append(Text("in the cost: " + ", ".join(extra) + " (estimated: S3 requests "
                          "counted from the specs and markers)", style="dim"))
    lines += [Text(b, style="dim") for b in cost.basis]
    return lines


def warn_price_age(table: PriceTable) -> None:
    from ..price_age import age_warning

    warning = age_warning(table)
    if warning:
        err_console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)


# --------------------------------------------------------------------------- cost suggest


def suggest_command(run_ref: RunArg = None, prices: PricesFileOpt = None,
                    as_json: JsonOpt = False) -> None:
    """Resources for the next run from what this one's scans used, and what they would save."""
    from ..pricing import load_prices
    from ..rightsize import suggest_for_run
    from ..runs import find_run

    run = find_run(run_ref)
    table = load_prices(prices)
    sug = suggest_for_run(run, table=table)
    if as_json:
        print_json(json.dumps(suggestion_json(sug, run=run), indent=2))
        return
    t = Table(title=f"resources for the next {run.info().pipeline.name} run "
                    f"(from {sug.scans_measured} succeeded scan(s) of {run.path.name})",
              title_justify="left")
    t.add_column("")
    t.add_column("now", justify="right")
    t.add_column("used (p95)", justify="right")
    t.add_column("suggested", justify="right")
    t.add_row("memory", f"{sug.current.memory_mib:,} MiB",
              f"{sug.peak_memory_p95_mib:,.0f} MiB", f"{sug.suggested.memory_mib:,} MiB")
    t.add_row("vCPUs", f"{sug.current.vcpus:g}",
              "" if sug.cpu_use_p95 is None else f"{sug.cpu_use_p95:.2f}",
              f"{sug.suggested.vcpus:g}")
    t.add_row(f"per {sug.instance.name}", str(sug.per_instance_now), "",
              str(sug.per_instance_then))
    err_console.print(t)
    for line in suggestion_lines(sug, run=run):
        err_console.print(line, highlight=False)


def suggestion_lines(sug: Suggestion, *, run: RunDir) -> list[str]:
    out = []
    if not sug.changed:
        out.append("the resources fit what the scans used: nothing to change")
        return out
    parts = []
    for market in (ON_DEMAND, SPOT):
        now, then = sug.dollars.get(market, (None, None))
        if now is not None and then is not None:
            parts.append(f"{dollars(now)} → {dollars(then)} {MARKET_SHORT[market]}")
    money = ("; " + ", ".join(parts) + f" for {sug.scans} scan(s) of "
             f"{sug.hours_per_scan * 60:.1f} min on {sug.instance.name}") if parts else ""
    out.append(f"suggest {sug.suggested.vcpus:g} vCPU, {sug.suggested.memory_mib:,} MiB "
               f"(now {sug.current.vcpus:g} vCPU, {sug.current.memory_mib:,} MiB){money}")
    out.append(f"apply it: bidsbatch run DATASET OUTPUT --resources-from {run.path.name}")
    return out


def suggestion_json(sug: Suggestion, *, run: RunDir) -> dict[str, Any]:
    return {
        "run_id": run.info().run_id,
        "scans_measured": sug.scans_measured,
        "current": {"vcpus": sug.current.vcpus, "memory_mib": sug.current.memory_mib},
        "suggested": {"vcpus": sug.suggested.vcpus, "memory_mib": sug.suggested.memory_mib},
        "peak_memory_p95_mib": round(sug.peak_memory_p95_mib, 3),
        "cpu_use_p95": None if sug.cpu_use_p95 is None else round(sug.cpu_use_p95, 3),
        "instance_type": sug.instance.name,
        "per_instance": {"now": sug.per_instance_now, "suggested": sug.per_instance_then},
        "hours_per_scan": round(sug.hours_per_scan, 6),
        "scans": sug.scans,
        "dollars": {m: {"now": None if a is None else round(a, 6),
                        "suggested": None if b is None else round(b, 6),
                        "saving": None if a is None or b is None else round(a - b, 6)}
                    for m, (a, b) in sug.dollars.items()},
    }


def suggest_line(run: RunDir) -> str | None:
    """The one line at the end of ``run``: a suggestion when there is one to make."""
    from ..errors import BidsbatchError
    from ..pricing import load_prices
    from ..rightsize import suggest_for_run

    try:
        sug = suggest_for_run(run, table=load_prices())
    except BidsbatchError:
        return None  # nothing measured: nothing to say
    if not sug.changed:
        return None
    saving = sug.saving(ON_DEMAND)
    money = f", {dollars(saving)} less On-Demand" if saving else ""
    return (f"right-size: the scans used at most {sug.peak_memory_p95_mib:,.0f} MiB (p95): "
            f"{sug.suggested.memory_mib:,} MiB and {sug.suggested.vcpus:g} vCPU would do"
            f"{money}; see bidsbatch cost suggest {run.path.name}")


# --------------------------------------------------------------------------- cost prices


def prices_command(
    refresh: Annotated[bool, typer.Option(
        "--refresh", help="Fetch On-Demand (Price List API) and Spot prices from AWS and save "
        "them to $BIDSBATCH_CONFIG_DIR/prices.json.")] = False,
    region: Annotated[str | None, typer.Option(
        help="AWS region (default: AWS_REGION, else us-east-1).")] = None,
    prices: PricesFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Where the price table comes from, how old it is; --refresh reads AWS's prices now."""
    from ..price_age import table_date
    from ..pricing import default_region, load_prices
    from .cost import _refresh

    table = load_prices(prices)
    where = region or default_region()
    if refresh:
        table = _refresh(table, region=where, extra=None, prices=prices)
    when = table_date(table)
    if as_json:
        print_json(json.dumps({
            "date": when.isoformat() if when else None,
            "sources": [{"where": s.where, "source": s.source, "retrieved": s.retrieved}
                        for s in table.sources],
            "region": where, "instance_types": len(table.prices(where))}, indent=2))
    else:
        err_console.print(f"prices: {escape(table.describe_sources())}", highlight=False)
        err_console.print(f"{len(table.prices(where))} instance type(s) priced in {where}",
                          highlight=False)
    warn_price_age(table)


# --------------------------------------------------------------------------- --resources-from


def resources_from(pipe: Pipeline, planning: Planning) -> Pipeline:
    """``pipe`` with the resources ``--resources-from RUN`` suggests (as it is without it)."""
    from dataclasses import replace

    from ..errors import UsageError
    from ..pricing import load_prices
    from ..rightsize import suggest_for_run
    from ..runs import find_run

    if not planning.resources_from:
        return pipe
    run = find_run(planning.resources_from)
    theirs = run.info().pipeline.name
    if theirs != pipe.name:
        raise UsageError(f"--resources-from {planning.resources_from}: that run is of pipeline "
                         f"{theirs}, not {pipe.name}",
                         hint="give a run of the same pipeline")
    sug = suggest_for_run(run, table=load_prices())
    err_console.print(
        f"resources from run {run.path.name} ({sug.scans_measured} measured scan(s)): "
        f"{sug.suggested.vcpus:g} vCPU, {sug.suggested.memory_mib:,} MiB (the pipeline asks "
        f"{pipe.resources.vcpus:g} vCPU, {pipe.resources.memory_mib:,} MiB)", highlight=False)
    return replace(pipe, resources=replace(pipe.resources, vcpus=sug.suggested.vcpus,
                                           memory_mib=sug.suggested.memory_mib))
