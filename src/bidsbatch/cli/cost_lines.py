"""A run's cost in a few lines, and ``status``'s cost column (``cost RUN`` and ``status``).

Apart from ``cost.py`` (the cost commands) so that ``status`` imports neither
the estimate nor the price refresh.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text

from ..cost import CANCELLED, FAILED, ON_DEMAND, RECLAIMED, SPOT, RunCost, dollars, duration

if TYPE_CHECKING:
    from ..executors import Executor
    from ..ledger import Ledger
    from ..runs import RunDir

MARKET_NAME = {ON_DEMAND: "On-Demand", SPOT: "Spot"}


def cost_lines(cost: RunCost) -> list[Text]:
    """The cost of a run in a few lines (for ``cost RUN`` and ``status``)."""
    lines: list[Text] = []
    if not cost.attempts:
        return [Text("no attempt yet: nothing spent", style="dim")]
    if not cost.priced:
        cpu = cost.cpu_seconds
        line = Text(f"CPU time {duration(cpu) or '0s'} over {duration(cost.wall_seconds) or '0s'}"
                    f" of scan time ({len(cost.attempts)} attempts); no dollars: this "
                    "engine has no bill (CPU time is the measure)")
        lines.append(line)
        return lines
    line = Text("cost ")
    line.append(dollars(cost.dollars) or "$0", style="bold")
    if cost.per_succeeded_scan is not None:
        line.append(f" · {dollars(cost.per_succeeded_scan)} per succeeded scan")
    line.append(f" · {cost.instance_hours or 0:,.2f} instance-hours")
    markets = [f"{MARKET_NAME[m]} {dollars(cost.by_market[m])}" for m in (SPOT, ON_DEMAND)
               if cost.by_market.get(m)]
    if markets:
        line.append(" · " + ", ".join(markets))
    lines.append(line)
    lost = []
    for kind, label in ((RECLAIMED, "Spot reclaims"), (FAILED, "failures"),
                        (CANCELLED, "cancelled attempts")):
        n = sum(1 for a in cost.attempts if a.outcome == kind)
        if n:
            lost.append(f"{dollars(cost.by_outcome.get(kind, 0.0))} to {label} ({n})")
    if lost:
        lines.append(Text("lost: " + ", ".join(lost), style="red"))
    from .cost_usage import basis_lines

    lines += basis_lines(cost)
    lines += [Text(f"assuming {a}", style="dim") for a in cost.assumptions]
    return lines


def status_cost(run: RunDir, ledger: Ledger,
                executor: Executor | None) -> tuple[str, dict[str, str], list[Text]]:
    """For ``status``: a column (its name, its text per scan) and a few lines of cost.

    Dollars for priced executors (AWS Batch), CPU time for local runs. ``status``
    does not read per-attempt details (see ``Executor.fetch_details``): scans that
    ended without them are said to be priced by ``cost RUN``.
    """
    from ..pricing import run_cost_for
    from ..states import ScanState

    cost = run_cost_for(run, ledger, executor=executor)
    if cost.priced:
        column = {s: dollars(c.dollars) for s, c in cost.scans.items() if c.attempts}
        lines = cost_lines(cost)
        ended = [r.scan_id for r in ledger.scans(states=(ScanState.SUCCEEDED, ScanState.FAILED))]
        unread = sum(1 for s in ended if s not in cost.scans or not cost.scans[s].attempts)
        if unread:
            lines.append(Text(f"{unread:,} ended scan(s) not priced yet: status reads no "
                              f"per-attempt details; `bidsbatch cost {run.path.name}` "
                              "reads them", style="dim"))
        return "cost", column, lines
    column = {s: duration(c.cpu_seconds) for s, c in cost.scans.items()
              if c.cpu_seconds is not None}
    return "CPU time", column, cost_lines(cost)
