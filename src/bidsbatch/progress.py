"""Watching a run: a live display on stderr, and the status table.

Shared by every executor (it reads only the ledger's snapshots): counts per
state as a coloured bar, scans finished per minute over the last minutes, an
ETA, failures and retries as they happen (scan and one-line reason), and a
final summary. On a terminal the display redraws in place; in a log (CI, a
pipe) it prints a plain line now and then instead, so logs stay readable.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from .console import err_console
from .cost import duration
from .ledger import ScanRecord
from .runner import Snapshot
from .states import ACTIVE, STATES, ScanState

if TYPE_CHECKING:
    from rich.live import Live

STATE_STYLE = {
    ScanState.PLANNED: "dim", ScanState.SUBMITTED: "cyan", ScanState.RUNNING: "blue",
    ScanState.SUCCEEDED: "green", ScanState.FAILED: "red", ScanState.CANCELLED: "yellow",
    ScanState.SKIPPED: "dim green",
}
#: Order and glyph of each state in the progress bar: finished work first, queued last.
BAR_ORDER = ((ScanState.SUCCEEDED, "█"), (ScanState.SKIPPED, "█"), (ScanState.FAILED, "█"),
             (ScanState.CANCELLED, "█"), (ScanState.RUNNING, "▓"), (ScanState.SUBMITTED, "░"),
             (ScanState.PLANNED, "░"))
#: Scans finished per minute are counted over this many recent seconds.
RATE_WINDOW_SECONDS = 300.0
BAR_WIDTH = 32


@lru_cache(maxsize=65536)
def _when(text: str) -> datetime:
    return datetime.fromisoformat(text)


def counts_line(counts: dict[str, int]) -> Text:
    text = Text()
    for state in STATES:
        if counts.get(state):
            if text:
                text.append("  ")
            text.append(f"{state} {counts[state]}", style=STATE_STYLE[state])
    return text


def state_bar(counts: dict[str, int], *, width: int = BAR_WIDTH) -> Text:
    """The scans of a run as one bar, a segment per state (largest remainder rounding)."""
    total = sum(counts.get(s, 0) for s, _g in BAR_ORDER)
    bar = Text()
    if not total:
        return bar.append("░" * width, style="dim")
    shares = [(s, g, counts.get(s, 0) * width / total) for s, g in BAR_ORDER]
    cells = {s: int(share) for s, _g, share in shares}
    left = width - sum(cells.values())
    for s, _g, _share in sorted(shares, key=lambda x: x[2] - int(x[2]), reverse=True)[:left]:
        cells[s] += 1
    for s, glyph, _share in shares:
        if cells[s]:
            bar.append(glyph * cells[s], style=STATE_STYLE[s])
    return bar


def throughput(records: list[ScanRecord], *, now: datetime,
               window: float = RATE_WINDOW_SECONDS) -> float:
    """Scans finished per minute over the last ``window`` seconds (or since work began)."""
    recent = 0
    first: datetime | None = None
    for rec in records:
        if rec.state in (ScanState.SUCCEEDED, ScanState.FAILED,
                         ScanState.CANCELLED) and rec.finished_at:
            end = _when(rec.finished_at)
            if (now - end).total_seconds() <= window:
                recent += 1
                if rec.started_at:
                    start = _when(rec.started_at)
                    first = start if first is None or start < first else first
        elif rec.state in ACTIVE and rec.started_at:
            start = _when(rec.started_at)
            first = start if first is None or start < first else first
    if not recent or first is None:
        return 0.0
    span = min(window, max(1.0, (now - first).total_seconds()))
    return recent / span * 60


class LiveProgress:
    """A live view of a run while ``runner.wait`` polls it; a summary when it ends."""

    def __init__(self, *, title: str, total: int, console: Console = err_console,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 log_every: float = 30.0) -> None:
        self.title = title
        self.total = total
        self.console = console
        self.clock = clock
        self.log_every = log_every
        self.seen_failures: set[str] = set()
        self.attempts: dict[str, int] = {}
        self.last: Snapshot | None = None
        self._last_logged = -1e9
        self._logged_counts: dict[str, int] | None = None
        self.interactive = console.is_terminal
        self.live: Live | None = None
        if self.interactive:
            from rich.live import Live  # a terminal's redraw; status's table needs none

            self.live = Live(console=console, refresh_per_second=4, transient=False,
                             redirect_stdout=False, redirect_stderr=False)

    def __enter__(self) -> LiveProgress:
        if self.live:
            self.live.__enter__()
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if self.live:
            if self.last is not None:
                self.live.update(self.render(self.last))
            self.live.__exit__(exc_type, *exc)
        elif self.last is not None and exc_type is None:
            self.console.print(self.render(self.last))
        if exc_type is None and self.last is not None:
            self.console.print(self.summary(self.last))

    def update(self, snap: Snapshot) -> None:
        """Take a new snapshot: print new failures and retries, redraw."""
        self.last = snap
        # Only what changed since the last snapshot can be a new failure or retry.
        for rec in snap.records if snap.changed is None else snap.changed:
            if rec.state == ScanState.FAILED and rec.scan_id not in self.seen_failures:
                self.seen_failures.add(rec.scan_id)
                reason = (rec.reason or "").strip().splitlines()[:1] or [""]
                self.console.print(
                    f"[red]✗ failed[/] {escape(rec.scan_id)}: {escape(reason[0][:160])}",
                    highlight=False,
                )
            seen = self.attempts.get(rec.scan_id)
            if rec.attempts and seen is not None and rec.attempts > seen \
                    and rec.state in ACTIVE and rec.attempts > 1:
                self.console.print(f"[yellow]↻ retrying[/] {escape(rec.scan_id)} "
                                   f"(attempt {rec.attempts})", highlight=False)
            if rec.state != ScanState.FAILED:
                self.seen_failures.discard(rec.scan_id)  # retried: report a new failure
            self.attempts[rec.scan_id] = rec.attempts
        if self.live:
            self.live.update(self.render(snap))
        elif snap.elapsed - self._last_logged >= self.log_every \
                and snap.counts != self._logged_counts:
            self._last_logged = snap.elapsed
            self._logged_counts = dict(snap.counts)
            self.console.print(self.render_line(snap))

    def _figures(self, snap: Snapshot) -> tuple[int, int, float, float | None]:
        c = snap.counts
        finished = c[ScanState.SUCCEEDED] + c[ScanState.FAILED] + c[ScanState.CANCELLED]
        todo = self.total - c[ScanState.SKIPPED]
        rate = throughput(snap.records, now=self.clock())
        left = todo - finished
        eta = (left / rate * 60) if rate > 0 and left > 0 else None
        return finished, todo, rate, eta

    def render_line(self, snap: Snapshot) -> Text:
        """One line: title, bar, done/total, elapsed, rate, ETA."""
        finished, todo, rate, eta = self._figures(snap)
        line = Text(f"{self.title}  ")
        line.append_text(state_bar(snap.counts))
        pct = f" {finished / todo:.0%}" if todo else ""
        line.append(f" {finished}/{todo}{pct}  {duration(snap.elapsed)}")
        if rate:
            line.append(f"  {rate:.1f} scans/min")
        if eta:
            line.append(f"  ETA {duration(eta)}")
        return line

    def render(self, snap: Snapshot) -> Group:
        parts: list[Any] = [self.render_line(snap), counts_line(snap.counts)]
        if snap.group_state:
            parts.append(Text(f"group step: {snap.group_state}",
                              style=STATE_STYLE.get(snap.group_state, "")))
        return Group(*parts)

    def summary(self, snap: Snapshot) -> Text:
        """The closing line: how long, how many, how fast, the typical and the slowest scan."""
        c = snap.counts
        durations = [(r.duration_seconds, r.scan_id) for r in snap.records
                     if r.state == ScanState.SUCCEEDED and r.duration_seconds is not None]
        text = Text("finished in " if not snap.busy else "watched for ", style="bold")
        text.append(duration(snap.elapsed), style="bold")
        parts = [f"{c[s]} {s}" for s in (ScanState.SUCCEEDED, ScanState.FAILED,
                                         ScanState.CANCELLED, ScanState.SKIPPED)
                 if c.get(s)]
        text.append(": " + ", ".join(parts) if parts else "")
        done_now = c[ScanState.SUCCEEDED] + c[ScanState.FAILED]
        if snap.elapsed > 1 and done_now:
            text.append(f" · {done_now / (snap.elapsed / 60):.1f} scans/min")
        if durations:
            median = statistics.median(d for d, _s in durations)
            slowest = max(durations)
            text.append(f" · median scan {duration(median)}, slowest "
                        f"{slowest[1]} {duration(slowest[0])}")
        if c.get(ScanState.FAILED):
            text.append(" · ")
            text.append(f"{c[ScanState.FAILED]} failed: bidsbatch retry", style="red")
        return text


def status_table(records: list[ScanRecord], *, title: str, max_rows: int = 200,
                 extra: tuple[str, dict[str, str]] | None = None) -> Table:
    """One row per scan (failed and active first); ``extra`` adds a column (name, text by scan)."""
    table = Table(title=title, title_justify="left")
    cols = ["scan", "state", "attempts", "duration", "exit"]
    if extra:
        cols.append(extra[0])
    cols += ["job", "reason"]
    for col in cols:
        table.add_column(col, overflow="fold",
                         justify="right" if col in ("attempts", "duration", "exit") or
                         (extra and col == extra[0]) else "left")
    shown = sorted(records, key=lambda r: (r.state not in (ScanState.FAILED, *ACTIVE), r.scan_id))
    for rec in shown[:max_rows]:
        row: list[Any] = [
            rec.scan_id,
            Text(rec.state, style=STATE_STYLE.get(rec.state, "")),
            str(rec.attempts or ""),
            duration(rec.duration_seconds),
            "" if rec.exit_code is None else str(rec.exit_code),
        ]
        if extra:
            row.append(extra[1].get(rec.scan_id, ""))
        row += [rec.job_id or "", (rec.reason or "")[:120]]
        table.add_row(*row)
    if len(shown) > max_rows:
        table.add_row(f"… {len(shown) - max_rows} more (--json for all)",
                      *[""] * (len(cols) - 1))
    return table
