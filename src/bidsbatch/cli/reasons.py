"""``plan``'s account of what a run would do: which scans run, and why (reasons.py)."""

from __future__ import annotations

from collections import Counter

from rich.markup import escape
from rich.table import Table

from ..console import err_console
from ..errors import BidsbatchError
from ..planning import Plan
from ..reasons import Reason, Why, explain


def reasons_or_none(plan: Plan, *, force: bool) -> list[Reason] | None:
    """Every scan's reason; None (and a warning) when the output's markers cannot be read."""
    try:
        return explain(plan.info.open_output(), plan.specs, force=force)
    except BidsbatchError as exc:
        err_console.print(f"[yellow]warning:[/] cannot read the output's completion markers "
                          f"({escape(str(exc))}): which scans are done is not known",
                          highlight=False)
        return None


def render_reasons(reasons: list[Reason], *, explain: bool, max_rows: int = 200) -> None:
    """``will run N of M scan(s): 2 new, 1 inputs changed; 6 done`` and, with --explain, a table."""
    running = [r for r in reasons if r.runs]
    counts = Counter(r.why for r in running)
    parts = ", ".join(f"{n} {why.value}" for why, n in sorted(
        counts.items(), key=lambda kv: list(Why).index(kv[0])))
    done = len(reasons) - len(running)
    line = f"will run {len(running)} of {len(reasons)} scan(s)"
    line += (f": {parts}" if parts else "") + (f"; {done} done" if done else "")
    if explain and running:
        table = Table("scan", "why it runs", title="why", title_justify="left")
        for r in running[:max_rows]:
            table.add_row(r.scan_id, escape(r.text()))
        if len(running) > max_rows:
            table.add_row(f"… {len(running) - max_rows} more", "")
        err_console.print(table)
    err_console.print(line, highlight=False)
