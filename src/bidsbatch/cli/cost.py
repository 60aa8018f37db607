"""The cost commands and the report: ``cost estimate``, ``cost RUN``, ``report RUN``.

``bidsbatch cost estimate DATASET --pipeline P`` prices a run before it
starts; ``bidsbatch cost RUN`` (the same as ``bidsbatch cost show RUN``)
prices one after, from its ledger; ``bidsbatch report RUN`` writes the HTML
report. Tables and chatter on stderr, ``--json`` on stdout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import click
import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from ..console import err_console, print_json
from ..cost import (
    ON_DEMAND,
    SPOT,
    Estimate,
    RunCost,
    cheapest_fits,
    dollars,
    duration,
    estimate,
    scans_per_instance,
)
from ..errors import UsageError
from .cost_lines import MARKET_NAME, cost_lines
from .options import JsonOpt, PipelineOpt, Planning, RunArg, planning_options

if TYPE_CHECKING:
    from ..pricing import PriceTable
    from ..runs import RunDir

PricesOpt = Annotated[
    Path | None,
    typer.Option("--prices", metavar="FILE",
                 help="A price table (JSON, the format of bidsbatch/data/prices.json) laid "
                      "over the shipped one and $BIDSBATCH_CONFIG_DIR/prices.json."),
]


class _CostGroup(TyperGroup):
    """``bidsbatch cost RUN`` is ``bidsbatch cost show RUN``.

    A group with an optional argument of its own cannot work in click: the
    argument would swallow the name ``estimate``. So anything that is not a
    subcommand name (or help) is handed to ``show``.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("-h", "--help")):
            args = ["show", *args]
        return super().parse_args(ctx, args)


cost_app = typer.Typer(
    name="cost",
    cls=_CostGroup,
    help="What a run will cost (cost estimate DATASET) and what it cost (cost RUN, or "
    "cost show RUN).",
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _register_more(group: typer.Typer) -> None:
    from .cost_usage import prices_command, suggest_command

    group.command("suggest")(suggest_command)
    group.command("prices")(prices_command)


def register(app: typer.Typer) -> None:
    """Add the ``cost`` command group and the ``report`` command to ``app``."""
    app.add_typer(cost_app, name="cost")
    app.command("report")(report_command)


# --------------------------------------------------------------------------- estimate


def estimate_command(
    dataset: Annotated[str, typer.Argument(help="BIDS dataset: a folder or s3:// URI.")],
    planning: Planning,
    pipeline: PipelineOpt = "demo",
    spot: Annotated[bool | None, typer.Option(
        "--spot/--on-demand", help="Price one market only (default: both).")] = None,
    instance_type: Annotated[str | None, typer.Option(
        "--instance-type", "-t",
        help="EC2 instance type or family (default: the AWS environment's, else the "
             "pipeline's usual one).")] = None,
    hours_per_scan: Annotated[float | None, typer.Option(
        "--hours-per-scan", help="Assumed run time of one scan, in hours (default: the "
        "median of earlier runs of the pipeline, else 1).")] = None,
    region: Annotated[str | None, typer.Option(
        help="AWS region to price (default: AWS_REGION, else us-east-1).")] = None,
    prices: PricesOpt = None,
    refresh_prices: Annotated[bool, typer.Option(
        "--refresh-prices", help="Fetch current On-Demand and Spot prices from AWS first "
        "(saved to $BIDSBATCH_CONFIG_DIR/prices.json).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Estimate what running PIPELINE over DATASET costs, On-Demand and on Spot."""
    from ..bids import crawl
    from ..pipelines import load_pipeline
    from ..pricing import default_region, estimate_instance, load_prices
    from .cost_usage import resources_from, warn_price_age
    from .render import crawl_with_progress

    if hours_per_scan is not None and not hours_per_scan > 0:
        raise UsageError(f"--hours-per-scan must be positive, not {hours_per_scan:g}")
    pipe = resources_from(load_pipeline(pipeline), planning)
    hours_per_scan, hours_origin = _hours_per_scan(hours_per_scan, pipe.name)
    selection = planning.selection()
    table = load_prices(prices)  # a bad price file fails before any listing
    ds = crawl_with_progress(dataset, s3=planning.s3, crawl=crawl,
                             follow_symlinks=planning.follow_symlinks)
    scans = selection.apply(ds.scans)
    asked_region = region or default_region()
    if refresh_prices:
        table = _refresh(table, region=asked_region, extra=instance_type, prices=prices)
    region_used, assumptions = table.region_or_default(asked_region)
    job = pipe.resources
    inst, origin = estimate_instance(instance_type, pipe=pipe, table=table, region=region_used)
    if scans_per_instance(job, inst) < 1:
        fits = [e.instance.name for e in _one_per_family(cheapest_fits(
            job, instances=table.instance_types.values(), prices=table.prices(region_used),
            hours_per_scan=hours_per_scan))[:5]]
        raise UsageError(
            f"one {pipe.name} job ({job.vcpus:g} vCPU, {job.memory_mib:,} MiB) does not fit "
            f"on {inst.describe()}",
            hint=f"types it fits on: {', '.join(fits)}" if fits else "no type in the table fits",
        )
    price = table.prices(region_used).get(inst.name)
    if price is None:
        raise UsageError(f"no price for {inst.name} in {region_used}",
                         hint="give one with --prices FILE, or --refresh-prices")
    est = estimate(scans=len(scans), job=job, instance=inst, price=price,
                   hours_per_scan=hours_per_scan)
    market = None if spot is None else (SPOT if spot else ON_DEMAND)
    alternatives = _one_per_family(cheapest_fits(
        job, instances=table.instance_types.values(), prices=table.prices(region_used),
        hours_per_scan=hours_per_scan, market=market or ON_DEMAND))
    assumptions = [
        f"{hours_per_scan:.3g} h per scan ({hours_origin}), billed from start to stop",
        f"{inst.name} from {origin}, instances kept full",
        *assumptions,
    ]
    if as_json:
        print_json(json.dumps(_estimate_dict(est, dataset=ds.uri, pipeline=pipe.name,
                                             region=region_used, market=market,
                                             assumptions=assumptions, table=table,
                                             alternatives=alternatives[:5]), indent=2))
        warn_price_age(table)
        return
    _render_estimate(est, dataset=ds.name, pipeline=pipe.name, region=region_used,
                     market=market, assumptions=assumptions, table=table,
                     alternatives=alternatives[:5])
    warn_price_age(table)


def _hours_per_scan(given: float | None, pipeline: str) -> tuple[float, str]:
    """The hours per scan to price, and where they come from."""
    from ..runtime_history import runtime_history

    if given is not None:
        return given, "--hours-per-scan"
    history = runtime_history(pipeline)
    if history.median_hours:
        return history.median_hours, (f"the median of {len(history.seconds)} scan(s) of "
                                      f"{history.runs} earlier {pipeline} run(s)")
    return 1.0, (f"no earlier {pipeline} run here: the default; give --hours-per-scan "
                 "to say better")


def _one_per_family(estimates: list[Estimate]) -> list[Estimate]:
    """The first (cheapest) estimate of each instance family, in order."""
    seen: set[str] = set()
    out = []
    for e in estimates:
        if e.instance.family not in seen:
            seen.add(e.instance.family)
            out.append(e)
    return out


def _refresh(table: PriceTable, *, region: str, extra: str | None,
             prices: Path | None) -> PriceTable:
    import boto3

    from ..pricing import PRICING_API_REGION, load_prices, refresh_prices, save_user_prices

    names = set(table.instance_types) | ({extra} if extra and "." in extra else set())
    session = boto3.session.Session()
    with err_console.status(f"fetching {len(names)} instance prices for {region} from AWS…"):
        doc = refresh_prices(pricing=session.client("pricing", region_name=PRICING_API_REGION),
                             ec2=session.client("ec2", region_name=region), region=region,
                             instance_types=names)
    path = save_user_prices(doc)
    n = len(doc["regions"][region])
    err_console.print(f"refreshed {n} prices for {region} from AWS → {escape(str(path))}",
                      highlight=False)
    return load_prices(prices)  # --prices still has the last word


def _estimate_dict(est: Estimate, *, dataset: str, pipeline: str, region: str,
                   market: str | None, assumptions: list[str], table: PriceTable,
                   alternatives: list[Estimate]) -> dict[str, Any]:
    def r(v: float | None) -> float | None:
        return None if v is None else round(v, 6)

    return {
        "dataset": dataset,
        "pipeline": pipeline,
        "scans": est.scans,
        "job": {"vcpus": est.job.vcpus, "memory_mib": est.job.memory_mib,
                "gpus": est.job.gpus},
        "region": region,
        "instance_type": {"name": est.instance.name, "vcpus": est.instance.vcpus,
                          "memory_mib": est.instance.memory_mib, "gpus": est.instance.gpus},
        "scans_per_instance": est.scans_per_instance,
        "hours_per_scan": est.hours_per_scan,
        "instance_hours": r(est.instance_hours),
        "market": market,
        "markets": {m: {"price_per_hour": v.price_per_hour, "per_scan": r(v.per_scan),
                        "total": r(v.total)} for m, v in est.markets.items()},
        "spot_saving": r(est.spot_saving),
        "assumptions": assumptions,
        "prices": [{"where": s.where, "source": s.source, "retrieved": s.retrieved}
                   for s in table.sources],
        "alternatives": [
            {"instance_type": a.instance.name, "scans_per_instance": a.scans_per_instance,
             "per_scan": {m: r(v.per_scan) for m, v in a.markets.items()}}
            for a in alternatives
        ],
    }


def _render_estimate(est: Estimate, *, dataset: str, pipeline: str, region: str,
                     market: str | None, assumptions: list[str], table: PriceTable,
                     alternatives: list[Estimate]) -> None:
    job = est.job
    err_console.print(
        f"[bold]cost estimate[/]: {est.scans:,} scan(s) of {escape(dataset)} with pipeline "
        f"[bold]{escape(pipeline)}[/] ({job.vcpus:g} vCPU, {job.memory_mib:,} MiB per scan)",
        highlight=False)
    err_console.print(
        f"on {escape(est.instance.describe())} in {region}: {est.scans_per_instance} scan(s) "
        f"per instance, {est.instance_hours:,.2f} instance-hours", highlight=False)
    t = Table(title_justify="left", show_edge=False, pad_edge=False, box=None,
              padding=(0, 3, 0, 0))
    t.add_column("market")
    t.add_column("$/instance-hour", justify="right")
    t.add_column("per scan", justify="right")
    t.add_column(f"total ({est.scans:,} scans)", justify="right")
    for m in ((market,) if market else (ON_DEMAND, SPOT)):
        v = est.markets[m]
        t.add_row(MARKET_NAME[m], dollars(v.price_per_hour, places=4) or "no price",
                  dollars(v.per_scan, places=4), Text(dollars(v.total), style="bold"))
    err_console.print(t)
    if market is None and est.spot_saving is not None:
        err_console.print(f"Spot saves {est.spot_saving:.0%} if no instance is reclaimed "
                          "(reclaimed attempts are paid and run again)", highlight=False)
    for a in assumptions:
        err_console.print(f"[dim]assuming[/] {escape(a)}", highlight=False)
    others = [a for a in alternatives if a.instance.family != est.instance.family]
    if others:
        m = market or ON_DEMAND
        err_console.print(
            f"[dim]cheapest per scan ({MARKET_NAME[m]}):[/] " + ", ".join(
                f"{a.instance.name} {dollars(a.markets[m].per_scan, places=4)}"
                f" ({a.scans_per_instance}/instance)" for a in others[:4]), highlight=False)
    err_console.print(f"[dim]prices: {escape(table.describe_sources())}[/]", highlight=False)


# --------------------------------------------------------------------------- a run's cost


def show_command(run_ref: RunArg = None, prices: PricesOpt = None,
                 as_json: JsonOpt = False) -> None:
    """What a run cost: per scan and in total, lost attempts included (from its ledger)."""
    from ..ledger import Ledger
    from ..pricing import load_prices, run_cost_for
    from ..runner import submitted_executor
    from ..runs import find_run
    from ..scan_usage import s3_requests_of
    from .cost_usage import peak_column, read_usage, usage_json, warn_price_age

    run = find_run(run_ref)
    info = run.info()
    table = load_prices(prices)
    fetch_details(run)
    with Ledger.open(run.ledger_path) as ledger:
        ledger.add_scans(info.scans)
        executor = submitted_executor(run, ledger)
        usage = read_usage(run, ledger)
        requests = s3_requests_of(run, ledger, usage, info.scans) if executor else {}
        cost = run_cost_for(run, ledger, executor=executor, table=table, requests=requests)
        records = ledger.scans()
        counts = ledger.counts()
    if as_json:
        out = {"run_id": info.run_id, "run_dir": str(run.path),
               "executor": executor.name if executor else None,
               "pipeline": info.pipeline.name, "counts": counts,
               "prices": table.describe_sources() if cost.priced else None,
               **cost.to_dict(), "usage": usage_json(usage)}
        print_json(json.dumps(out, indent=2))
        if cost.priced:
            warn_price_age(table)
        return
    states = {r.scan_id: r.state for r in records}
    err_console.print(_cost_table(cost, states, title=f"cost of run {info.run_id} "
                                  f"({info.pipeline.name} on "
                                  f"{executor.describe() if executor else 'nothing yet'})",
                                  peaks=peak_column(usage)))
    for line in cost_lines(cost):
        err_console.print(line)
    if cost.priced:
        err_console.print(f"[dim]prices: {escape(table.describe_sources())}[/]",
                          highlight=False)
        warn_price_age(table)


def _cost_table(cost: RunCost, states: dict[str, str], *, title: str,
                max_rows: int = 40, peaks: dict[str, str] | None = None) -> Table:
    from ..progress import STATE_STYLE
    from .cost_usage import ran_on

    t = Table(title=title, title_justify="left")
    t.add_column("scan")
    t.add_column("state")
    t.add_column("attempts", justify="right")
    t.add_column("scan time", justify="right")
    if cost.priced:
        t.add_column("ran on")
        t.add_column("cost", justify="right")
        t.add_column("lost", justify="right")
    else:
        t.add_column("CPU time", justify="right")
    if peaks:
        t.add_column("peak memory", justify="right")
    hosts = ran_on(cost) if cost.priced else {}
    rows = sorted(cost.scans.values(),
                  key=lambda s: (-(s.dollars or s.cpu_seconds or 0.0), s.scan_id))
    for s in rows[:max_rows]:
        state = states.get(s.scan_id, "")
        cells = [s.scan_id, Text(state, style=STATE_STYLE.get(state, "")), str(s.attempts),
                 duration(s.wall_seconds) if s.attempts else ""]
        if cost.priced:
            cells += [hosts.get(s.scan_id, ""), dollars(s.dollars),
                      Text(dollars(s.lost_dollars) if s.lost_dollars else "", style="red")]
        else:
            cells.append(duration(s.cpu_seconds))
        if peaks:
            cells.append(peaks.get(s.scan_id, ""))
        t.add_row(*cells)
    if len(rows) > max_rows:
        t.add_row(f"… {len(rows) - max_rows} more (--json for all)", *[""] * (len(t.columns) - 1))
    return t


def fetch_details(run: RunDir) -> None:
    """Record every attempt's details before pricing or reporting (``runner.fetch_details``).

    Failing to reach the engine (no network, no credentials) is a warning: the
    cost and the report are then of what the ledger already has.
    """
    from .. import runner
    from ..errors import BidsbatchError

    try:
        runner.fetch_details(run)
    except BidsbatchError as exc:
        err_console.print(f"[yellow]warning:[/] per-attempt details not read: "
                          f"{escape(exc.message)}; showing what the ledger has",
                          highlight=False)


# --------------------------------------------------------------------------- report


def report_command(
    run_ref: RunArg = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "--out", "-o", help="Where to write it (default: report.html in the run "
        "directory).")] = None,
    prices: PricesOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write a run's report: one self-contained HTML file (summary, charts, every scan)."""
    from ..pricing import load_prices
    from ..report import write_report
    from ..runs import find_run

    run = find_run(run_ref)
    table = load_prices(prices)
    fetch_details(run)
    try:
        path = write_report(run, output, table=table)
    except OSError as exc:
        from ..errors import BidsbatchError

        raise BidsbatchError(f"cannot write the report to {output or run.path}: "
                             f"{exc.strerror or exc}",
                             hint="give -o a path in a folder you can write") from None
    if as_json:
        print_json(json.dumps({"run_id": run.info().run_id, "report": str(path)}))
    err_console.print(f"report: {escape(str(path))}", highlight=False)


cost_app.command("estimate")(planning_options(estimate_command))
cost_app.command("show")(show_command)
_register_more(cost_app)
