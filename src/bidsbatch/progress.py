"""Watching a run: a live display on stderr, and the status table.

Shared by every executor: counts per state, scans finished per minute, an
ETA, failures as they happen (scan and one-line reason), a final summary.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from .console import err_console
from .ledger import ACTIVE, STATES, ScanRecord
from .runner import Snapshot

STATE_STYLE = {
    "planned": "dim", "submitted": "cyan", "running": "blue", "succeeded": "green",
    "failed": "red", "cancelled": "yellow", "skipped": "dim green",
}


def _fmt_seconds(s: float | None) -> str:
    if s is None:
        return ""
    s = int(round(s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def counts_line(counts: dict[str, int]) -> Text:
    text = Text()
    for state in STATES:
        if counts.get(state):
            if text:
                text.append("  ")
            text.append(f"{state} {counts[state]}", style=STATE_STYLE[state])
    return text


class LiveProgress:
    """A live view of a run while ``runner.wait`` polls it."""

    def __init__(self, *, title: str, total: int) -> None:
        self.title = title
        self.total = total
        self.seen_failures: set[str] = set()
        self.first_done: tuple[float, int] | None = None
        self.live = Live(console=err_console, refresh_per_second=4, transient=False,
                         redirect_stdout=False, redirect_stderr=False)

    def __enter__(self) -> LiveProgress:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.live.__exit__(*exc)

    def update(self, snap: Snapshot) -> None:
        for rec in snap.records:
            if rec.state == "failed" and rec.scan_id not in self.seen_failures:
                self.seen_failures.add(rec.scan_id)
                self.live.console.print(
                    f"[red]failed[/] {escape(rec.scan_id)}: {escape(rec.reason or '')}",
                    highlight=False,
                )
        self.live.update(self.render(snap))

    def render(self, snap: Snapshot) -> Group:
        c = snap.counts
        finished = c["succeeded"] + c["failed"] + c["cancelled"]
        todo = self.total - c["skipped"]
        rate = finished / (snap.elapsed / 60) if snap.elapsed > 1 and finished else 0.0
        left = todo - finished
        eta = (left / rate * 60) if rate > 0 and left > 0 else None
        width = 30
        frac = (finished / todo) if todo else 1.0
        bar = "█" * int(frac * width) + "░" * (width - int(frac * width))
        line = Text(f"{self.title}  ")
        line.append(bar, style="green")
        line.append(f" {finished}/{todo}  {_fmt_seconds(snap.elapsed)}")
        if rate:
            line.append(f"  {rate:.1f} scans/min")
        if eta:
            line.append(f"  ETA {_fmt_seconds(eta)}")
        parts: list[Any] = [line, counts_line(c)]
        if snap.group_state:
            parts.append(Text(f"group step: {snap.group_state}",
                              style=STATE_STYLE.get(snap.group_state, "")))
        return Group(*parts)


def status_table(records: list[ScanRecord], *, title: str, max_rows: int = 200) -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("scan", "state", "attempts", "duration", "exit", "job", "reason"):
        table.add_column(col, overflow="fold")
    shown = sorted(records, key=lambda r: (r.state not in ("failed", *ACTIVE), r.scan_id))
    for rec in shown[:max_rows]:
        table.add_row(
            rec.scan_id,
            Text(rec.state, style=STATE_STYLE.get(rec.state, "")),
            str(rec.attempts or ""),
            _fmt_seconds(rec.duration_seconds),
            "" if rec.exit_code is None else str(rec.exit_code),
            rec.job_id or "",
            (rec.reason or "")[:120],
        )
    if len(shown) > max_rows:
        table.add_row(f"… {len(shown) - max_rows} more (--json for all)", "", "", "", "", "", "")
    return table
