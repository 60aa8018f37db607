"""What ``bidsbatch runs`` does, without typer (``runs.py`` and ``fastpath.py`` call it)."""

from __future__ import annotations

import json
from datetime import UTC, datetime


def show_runs(*, as_json: bool = False) -> None:
    """The runs this machine knows, newest first (``runs``)."""
    from rich.markup import escape
    from rich.table import Table

    from ..console import err_console, print_json
    from ..progress import counts_line
    from ..runlist import list_runs

    runs = list_runs()
    if as_json:
        print_json(json.dumps([r.to_dict() for r in runs], indent=2))
        return
    if not runs:
        err_console.print("no runs yet: bidsbatch run DATASET OUTPUT --pipeline NAME")
        return
    now = datetime.now(UTC)
    table = Table("", "run", "dataset", "pipeline", "executor", "scans", "last activity",
                  title=f"{len(runs)} run(s), newest first (* the latest started)",
                  title_justify="left")
    for r in runs:
        scans = counts_line({str(s): n for s, n in r.counts.items()})
        if r.problem:
            scans.append(f"  {r.problem}", style="red")
        table.add_row("*" if r.latest else "", escape(r.run_id), escape(r.dataset),
                      escape(r.pipeline), escape(r.executor or "(planned)"), scans,
                      _ago(r.last_activity, now))
    err_console.print(table)



def _ago(when: datetime, now: datetime) -> str:
    seconds = max(0.0, (now - when).total_seconds())
    local = when.astimezone().strftime("%Y-%m-%d %H:%M")
    if seconds < 90:
        return f"{local} (just now)"
    if seconds < 5400:
        return f"{local} ({seconds / 60:.0f} min ago)"
    if seconds < 2 * 86400:
        return f"{local} ({seconds / 3600:.0f} h ago)"
    return f"{local} ({seconds / 86400:.0f} days ago)"
