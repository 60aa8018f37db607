"""The HTML report of a run: one self-contained file a person would rather look at than read.

``bidsbatch report RUN`` (and ``run`` at its end) writes ``report.html``:
inline CSS, inline SVG charts and a few lines of inline JS, no network, opens
from disk and prints. It holds the run's summary (dataset, pipeline,
executor, scans per state, time, cost), a timeline of every attempt
(Gantt-like, coloured by outcome, with the number of scans running above
it), a histogram of scan run times, the cost breakdown, a sortable, filterable
and paged table of every scan (rendered by the script from a JSON blob, so
10,000 scans stay light), and the tail of each failed scan's log.

Everything from the run (scan ids, reasons, log lines) is escaped: HTML
text with :func:`html.escape`, the JSON blob with ``<``, ``>`` and ``&``
written as JSON escapes, and the script sets ``textContent`` only.
"""

from __future__ import annotations

import html
import json
import math
import os
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from . import __version__
from .cost import (
    CANCELLED,
    FAILED,
    ON_DEMAND,
    RECLAIMED,
    RUNNING,
    SPOT,
    SUCCEEDED,
    AttemptCost,
    RunCost,
    dollars,
    duration,
)
from .executors import Executor
from .ledger import GroupRecord, Ledger, ScanRecord
from .pricing import PriceTable, job_resources, load_prices, run_cost_for
from .report_assets import CSS, JS
from .report_scans import details_section, failure_extras
from .report_usage import cost_rows, measured_usage, usage_rows
from .runner import executor_for
from .runs import RunDir
from .scan_usage import ScanUsage
from .specs import RunInfo
from .states import STATES, ScanState
from .storage import atomic_write

REPORT_FILE = "report.html"
#: Above this many attempts (or rows) the timeline bins scans and time into cells.
MAX_BARS = 2000
MAX_ROWS = 400
#: How many failed scans get the tail of their log in the report.
MAX_FAILURE_TAILS = 25
#: Scan table rows per page (the rest are a click away; all of them print).
ROWS_PER_PAGE = 100

OUTCOME_LABEL = {SUCCEEDED: "succeeded", FAILED: "failed", RECLAIMED: "Spot reclaimed",
                 CANCELLED: "cancelled", RUNNING: "running"}
CHART_WIDTH = 960


@dataclass(frozen=True)
class ReportData:
    """Everything the report shows, read from a run directory."""

    run: RunDir
    info: RunInfo
    #: The executor the run was submitted to (None: planned, never submitted).
    executor: Executor | None
    scans: list[ScanRecord]
    cost: RunCost
    group: GroupRecord
    prices: str
    generated_at: datetime
    usage: dict[str, ScanUsage] = field(default_factory=dict)


def collect(run: RunDir, *, table: PriceTable | None = None,
            now: datetime | None = None) -> ReportData:
    """Read a run's record and price it."""
    info = run.info()
    now = now or datetime.now(UTC)
    table = table or load_prices()
    with Ledger.open(run.ledger_path) as ledger:
        ledger.add_scans(info.scans)
        scans = ledger.scans()
        executor = executor_for(run, ledger) if ledger.executor_name else None
        usage, requests = measured_usage(run, ledger, executor=executor)
        cost = run_cost_for(run, ledger, executor=executor, table=table, now=now,
                            requests=requests)
        group = ledger.group()
    return ReportData(run=run, info=info, executor=executor, scans=scans,
                      cost=cost, group=group, usage=usage,
                      prices=table.describe_sources() if cost.priced else "",
                      generated_at=now)


def write_report(run: RunDir, output: Path | None = None, *,
                 table: PriceTable | None = None) -> Path:
    """Write the run's report (default: ``report.html`` in the run directory); return its path."""
    out = (output or run.path / REPORT_FILE).expanduser().absolute()
    data = collect(run, table=table)
    text = render(data, out_dir=out.parent)
    atomic_write(out, text)
    return out


# --------------------------------------------------------------------------- page


def render(data: ReportData, *, out_dir: Path) -> str:
    """The whole HTML page."""
    info = data.info
    e = html.escape
    title = f"{info.run_id} · bidsbatch report"
    body = [
        _header(data),
        _cards(data),
        _state_bar(data),
        _timeline_section(data),
        '<section class="grid2">',
        _histogram_section(data),
        _cost_section(data),
        "</section>",
        _table_section(data, out_dir=out_dir),
        details_section(data, out_dir=out_dir),
        _failures_section(data),
        _footer(data),
    ]
    return "".join([
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="color-scheme" content="light dark">',
        f'<meta name="generator" content="bidsbatch {e(__version__)}">',
        # An empty icon: the browser asks for no favicon, the page makes no request at all.
        '<link rel="icon" href="data:,">',
        f"<title>{e(title)}</title><style>{CSS}</style></head>\n<body><main>",
        "\n".join(body),
        f"</main><script>{JS}</script></body></html>\n",
    ])


def _header(data: ReportData) -> str:
    e = html.escape
    info = data.info
    pipe = info.pipeline.name
    res = job_resources(info)
    where = data.executor.describe() if data.executor else "not submitted"
    if data.cost.region:
        where += f" · {data.cost.region}"
    return (
        '<header><p class="eyebrow">bidsbatch run report</p>'
        f"<h1>{e(info.run_id)}</h1>"
        f'<p class="sub"><b>{e(info.dataset_name)}</b> · pipeline <b>{e(pipe)}</b> '
        f"({res.vcpus:g} vCPU, {res.memory_mib:,} MiB per scan) · executor <b>{e(where)}</b>"
        f" · {len(info.scans):,} scans · <span style=\"white-space:nowrap\">generated "
        f"{e(data.generated_at.astimezone(UTC).strftime('%Y-%m-%d %H:%M UTC'))}</span></p>"
        "</header>"
    )


def _span(data: ReportData) -> tuple[datetime | None, datetime | None]:
    starts = [a.started_at for a in data.cost.attempts if a.started_at]
    ends = [a.finished_at or data.generated_at for a in data.cost.attempts if a.started_at]
    return (min(starts) if starts else None, max(ends) if ends else None)


def _counts(data: ReportData) -> dict[str, int]:
    counts = dict.fromkeys(STATES, 0)
    for rec in data.scans:
        counts[rec.state] = counts.get(rec.state, 0) + 1
    return counts


def _card(label: str, value: str, detail: str = "", *, cls: str = "") -> str:
    e = html.escape
    return (f'<div class="card {cls}"><div class="label">{e(label)}</div>'
            f'<div class="value">{e(value)}</div>'
            + (f'<div class="detail">{e(detail)}</div>' if detail else "") + "</div>")


def _cards(data: ReportData) -> str:
    counts = _counts(data)
    total = len(data.scans)
    ok = counts[ScanState.SUCCEEDED] + counts[ScanState.SKIPPED]
    start, end = _span(data)
    span = (end - start).total_seconds() if start and end else None
    cost = data.cost
    durations = [r.duration_seconds for r in data.scans
                 if r.state == ScanState.SUCCEEDED and r.duration_seconds is not None]
    cards = [
        _card("Scans", f"{total:,}",
              f"{counts[ScanState.SKIPPED]:,} already done"
              if counts[ScanState.SKIPPED] else ""),
        _card("Succeeded", f"{ok:,}", f"{ok / total:.0%} of the run" if total else "",
              cls="good"),
        _card("Failed", f"{counts[ScanState.FAILED]:,}",
              f"{counts[ScanState.CANCELLED]:,} cancelled"
              if counts[ScanState.CANCELLED] else "",
              cls="bad" if counts[ScanState.FAILED] else ""),
        _card("Wall time", duration(span) or "–",
              f"{counts[ScanState.SUCCEEDED] / (span / 60):.1f} scans/min"
              if span and counts[ScanState.SUCCEEDED] else ""),
        _card("Median scan", duration(statistics.median(durations)) if durations else "–",
              f"slowest {duration(max(durations))}" if durations else ""),
    ]
    if cost.priced:
        cards.append(_card("Cost", dollars(cost.dollars) or "–",
                           f"{dollars(cost.per_succeeded_scan)} per succeeded scan"
                           if cost.per_succeeded_scan is not None else ""))
    else:
        cards.append(_card("CPU time", duration(cost.cpu_seconds) or "–",
                           f"over {duration(cost.wall_seconds)} of scan time"
                           if cost.wall_seconds else "no dollars (local run)"))
    return '<section class="cards" style="margin-top:24px">' + "".join(cards) + "</section>"


def _state_bar(data: ReportData) -> str:
    counts = _counts(data)
    total = max(1, len(data.scans))
    order = (ScanState.SUCCEEDED, ScanState.SKIPPED, ScanState.FAILED, ScanState.CANCELLED,
             ScanState.RUNNING, ScanState.SUBMITTED, ScanState.PLANNED)
    bar = "".join(
        f'<span class="bg-{s}" style="width:{counts[s] / total * 100:.3f}%" '
        f'title="{s} {counts[s]:,}"></span>' for s in order if counts.get(s))
    legend = "".join(f'<li><i class="bg-{s}"></i>{s} <b>{counts[s]:,}</b></li>'
                     for s in order if counts.get(s))
    group = ""
    if data.group.state:
        group = (f'<li class="muted">group step: <b>{html.escape(str(data.group.state))}'
                 "</b></li>")
    return (f'<div class="statebar" role="img" aria-label="scans per state">{bar}</div>'
            f'<ul class="legend">{legend}{group}</ul>')


# --------------------------------------------------------------------------- charts


def _nice_step(span: float, target: int, steps: Sequence[float]) -> float:
    """The smallest step from ``steps`` giving at most ``target`` intervals over ``span``."""
    for step in steps:
        if span / step <= target:
            return step
    # Beyond the table: powers of ten times 1, 2, 5.
    raw = span / target
    mag = 10 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)


TIME_STEPS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200,
              10800, 21600, 43200, 86400, 172800, 604800)


def _tick_label(seconds: float) -> str:
    if 0 < seconds < 10 and abs(seconds - round(seconds)) > 1e-6:
        return f"{seconds:.1f}s"
    s = round(seconds)
    if s == 0:
        return "0"
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m" + (f"{s % 60:02d}s" if s % 60 else "")
    if s < 86400:
        return f"{s // 3600}h" + (f"{(s % 3600) // 60:02d}m" if s % 3600 else "")
    return f"{s // 86400}d" + (f"{(s % 86400) // 3600}h" if s % 86400 else "")


def _svg(width: int, height: int, label: str, body: Iterable[str]) -> str:
    return (f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="{html.escape(label)}" '
            f'preserveAspectRatio="xMinYMin meet">' + "".join(body) + "</svg>")


def _f(x: float) -> str:
    """Short coordinates: the file stays small with thousands of shapes."""
    return f"{x:.1f}".rstrip("0").rstrip(".")


def _timeline_section(data: ReportData) -> str:
    attempts = [a for a in data.cost.attempts if a.started_at]
    if not attempts:
        return ('<section><h2>Timeline</h2><p class="empty">No scan has started yet.</p>'
                "</section>")
    svg, note = timeline_svg(attempts, now=data.generated_at)
    present = {a.outcome for a in attempts}
    legend = "".join(f'<li><i class="bg-{o}"></i>{OUTCOME_LABEL[o]}</li>'
                     for o in OUTCOME_LABEL if o in present)
    legend += '<li><i class="bg-busy" style="opacity:.5"></i>scans running</li>'
    return (f'<section><h2>Timeline<span class="note">{html.escape(note)}</span></h2>'
            f'{svg}<ul class="legend">{legend}</ul></section>')


def timeline_svg(attempts: Sequence[AttemptCost], *, now: datetime,
                 max_bars: int = MAX_BARS, max_rows: int = MAX_ROWS) -> tuple[str, str]:
    """The timeline: scans running over time, then one bar per attempt (or binned cells).

    Returns the SVG and a one-line note saying how it is drawn.
    """
    t0 = min(a.started_at for a in attempts if a.started_at)
    spans = [((a.started_at - t0).total_seconds(),
              ((a.finished_at or now) - t0).total_seconds(), a)
             for a in attempts if a.started_at]
    t_end = max(1.0, max(end for _s, end, _a in spans))
    first: dict[str, float] = {}
    for start, _end, a in spans:
        first[a.scan_id] = min(first.get(a.scan_id, start), start)
    order = sorted(first, key=lambda s: (first[s], s))
    row_of = {s: i for i, s in enumerate(order)}
    n_rows = len(order)
    detailed = len(spans) <= max_bars and n_rows <= max_rows
    labels = detailed and n_rows <= 40
    left = 116 if labels else 44
    right = 12
    plot_w = CHART_WIDTH - left - right
    conc_h = 64
    top = 22
    gantt_top = top + conc_h + 14
    row_h = max(2.0, min(16.0, 420 / max(n_rows, 1))) if detailed else 4.0
    n_groups = n_rows if detailed else min(n_rows, 100)
    gantt_h = row_h * n_groups
    axis_y = gantt_top + gantt_h + 6
    height = int(axis_y + 22)

    def x(t: float) -> float:
        return left + t / t_end * plot_w

    out: list[str] = []
    step = _nice_step(t_end, 8, TIME_STEPS)
    tick = 0.0
    while tick <= t_end + 1e-9:
        px = _f(x(tick))
        out.append(f'<line class="grid" x1="{px}" x2="{px}" y1="{top}" y2="{_f(axis_y)}"/>'
                   f'<text x="{px}" y="{_f(axis_y + 14)}" text-anchor="middle">'
                   f"{_tick_label(tick)}</text>")
        tick += step
    out.append(f'<line class="axis" x1="{left}" x2="{left + plot_w}" y1="{_f(axis_y)}" '
               f'y2="{_f(axis_y)}"/>')

    # Scans running over time: the mean number in each of `cols` columns (exact overlaps).
    cols = 240
    width_s = t_end / cols
    busy = [0.0] * cols
    for start, end, _a in spans:
        _spread(busy, start, end, width_s)
    running = [b / width_s for b in busy]
    peak = max(running) or 1.0
    pts = [f"{_f(x(i * width_s))},{_f(top + conc_h - v / peak * conc_h)} "
           f"{_f(x((i + 1) * width_s))},{_f(top + conc_h - v / peak * conc_h)}"
           for i, v in enumerate(running)]
    base = _f(top + conc_h)
    out.append(f'<path class="area" d="M{left},{base} L{" ".join(pts)} '
               f'L{_f(left + plot_w)},{base} Z"/>')
    out.append(f'<polyline class="areaLine" points="{" ".join(pts)}"/>')
    out.append(f'<text x="{left - 6}" y="{top + 9}" text-anchor="end">{peak:.0f}</text>'
               f'<text x="{left - 6}" y="{top + conc_h}" text-anchor="end">0</text>'
               f'<text class="title" x="{left}" y="{top - 8}">'
               f"scans running (peak {peak:.0f})</text>")

    bars: list[str] = []
    if detailed:
        # Succeeded bars first: the lost attempts (few, thin) are drawn over them.
        for start, end, a in sorted(spans, key=lambda s: (s[2].outcome != SUCCEEDED,
                                                           row_of[s[2].scan_id], s[0])):
            y = gantt_top + row_of[a.scan_id] * row_h
            h = row_h * 0.72 if row_h >= 4 else row_h - 0.4
            w = max(0.8, (end - start) / t_end * plot_w)
            tip = (f"{a.scan_id} · attempt {a.attempt} · {OUTCOME_LABEL[a.outcome]} · "
                   f"{duration(end - start)}")
            bars.append(f'<rect class="o-{a.outcome}" x="{_f(x(start))}" y="{_f(y)}" '
                        f'width="{_f(w)}" height="{_f(h)}"><title>{html.escape(tip)}</title>'
                        "</rect>")
        if labels:
            for s, i in row_of.items():
                y = gantt_top + i * row_h + row_h * 0.62
                bars.append(f'<text x="{left - 6}" y="{_f(y)}" text-anchor="end" '
                            f'class="mono">{html.escape(s)}</text>')
        note = f"{len(spans):,} attempts of {n_rows:,} scans, from the first start"
    else:
        bars, note = _binned_rows(spans, order=order, row_of=row_of, n_groups=n_groups,
                                  t_end=t_end, x=x, top=gantt_top, row_h=row_h,
                                  plot_w=plot_w)
    out.append('<g class="bars">' + "".join(bars) + "</g>")
    label = f"timeline of {len(spans)} attempts over {duration(t_end)}"
    return _svg(CHART_WIDTH, height, label, out), note


def _spread(acc: list[float], start: float, end: float, width: float) -> None:
    """Add the interval [start, end) to equal-width bins by overlap (seconds)."""
    if end <= start:
        return
    n = len(acc)
    i, j = int(start // width), min(n - 1, int(end // width))
    if i >= n:
        return
    if i == j:
        acc[i] += end - start
        return
    acc[i] += (i + 1) * width - start
    for k in range(i + 1, j):
        acc[k] += width
    acc[j] += end - j * width


def _binned_rows(spans: list[tuple[float, float, AttemptCost]], *, order: list[str],
                 row_of: dict[str, int], n_groups: int, t_end: float, x: Any, top: float,
                 row_h: float, plot_w: float, max_marks: int = MAX_BARS // 2
                 ) -> tuple[list[str], str]:
    """Too many bars to draw: rows of scans × columns of time.

    Each cell is coloured by the outcome that took most of its time, darker
    the busier it is (relative to the busiest cell); neighbouring cells that
    look alike merge into one rectangle. The attempts that were lost (failed,
    reclaimed, cancelled) are few and are what one looks for: up to
    ``max_marks`` of them are drawn one by one over the cells.
    """
    per_group = math.ceil(len(order) / n_groups)
    cols = 160
    width_s = t_end / cols
    outcomes = list(OUTCOME_LABEL)
    lost = [sp for sp in spans if sp[2].outcome not in (SUCCEEDED, RUNNING)]
    marks = lost if len(lost) <= max_marks else []
    binned = [sp for sp in spans if not marks or sp[2].outcome in (SUCCEEDED, RUNNING)]
    cells = [[[0.0] * len(outcomes) for _ in range(cols)] for _ in range(n_groups)]
    for start, end, a in binned:
        if end <= start:
            continue
        row = cells[min(n_groups - 1, row_of[a.scan_id] // per_group)]
        k = outcomes.index(a.outcome)
        i, j = int(start // width_s), min(cols - 1, int(end // width_s))
        for c in range(i, j + 1):
            lo, hi = max(start, c * width_s), min(end, (c + 1) * width_s)
            if hi > lo:
                row[c][k] += hi - lo
    densest = max((sum(cell) for row in cells for cell in row), default=0.0) or 1.0
    rects: list[str] = []
    for g, row in enumerate(cells):
        y = _f(top + g * row_h)
        run_start, run_key = 0, None
        members = order[g * per_group:(g + 1) * per_group]
        for c in range(cols + 1):
            key = None
            if c < cols:
                total = sum(row[c])
                if total > 0:
                    level = min(4, math.ceil(total / densest * 4))  # 1..4
                    key = (outcomes[max(range(len(outcomes)), key=lambda i: row[c][i])], level)
            if key != run_key:
                if run_key is not None:
                    x0, x1 = x(run_start * width_s), x(c * width_s)
                    rects.append(f'<rect class="o-{run_key[0]}" x="{_f(x0)}" y="{y}" '
                                 f'width="{_f(x1 - x0)}" height="{_f(row_h - 0.6)}" '
                                 f'opacity="{0.2 + 0.2 * run_key[1]:.1f}"/>')
                run_start, run_key = c, key
        if members:
            rects.append(f'<rect x="{x(0):.0f}" y="{y}" width="{plot_w:.0f}" '
                         f'height="{_f(row_h)}" fill="transparent"><title>'
                         f"{html.escape(members[0])} … {html.escape(members[-1])} "
                         f"({len(members)} scans)</title></rect>")
    for start, end, a in marks:
        g = min(n_groups - 1, row_of[a.scan_id] // per_group)
        w = max(1.5, (end - start) / t_end * plot_w)
        tip = (f"{a.scan_id} · attempt {a.attempt} · {OUTCOME_LABEL[a.outcome]} · "
               f"{duration(end - start)}")
        rects.append(f'<rect class="o-{a.outcome}" x="{_f(x(start))}" '
                     f'y="{_f(top + g * row_h + row_h * 0.25)}" width="{_f(w)}" '
                     f'height="{_f(row_h * 0.5)}"><title>{html.escape(tip)}</title></rect>')
    note = (f"{len(spans):,} attempts of {len(order):,} scans, binned: each row is "
            f"{per_group} scans, each cell {duration(width_s)}, darker = busier"
            + (f"; the {len(marks):,} lost attempts drawn one by one" if marks else ""))
    return rects, note


def histogram_svg(by_outcome: dict[str, Sequence[float]]) -> str:
    """Run times of attempts stacked by outcome, with the median and 90th centile of the
    succeeded ones."""
    values = [v for vs in by_outcome.values() for v in vs]
    lo, hi = min(values), max(values)
    step = _nice_step(max(hi - lo, 1.0), 36, TIME_STEPS)
    start = math.floor(lo / step) * step
    n_bins = max(1, math.ceil((hi - start) / step + 1e-9))
    if start + n_bins * step <= hi:
        n_bins += 1
    kinds = [k for k in OUTCOME_LABEL if by_outcome.get(k)]
    counts = {k: [0] * n_bins for k in kinds}
    for k in kinds:
        for v in by_outcome[k]:
            counts[k][min(n_bins - 1, int((v - start) // step))] += 1
    peak = max(sum(counts[k][i] for k in kinds) for i in range(n_bins)) or 1
    width, height = 560, 250
    left, right, top, bottom = 40, 10, 22, 30
    pw, ph = width - left - right, height - top - bottom
    bw = pw / n_bins

    def y(v: float) -> float:
        return top + ph - v / peak * ph

    out: list[str] = []
    ystep = _nice_step(peak, 4, (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000))
    v = 0.0
    while v <= peak + 1e-9:
        out.append(f'<line class="grid" x1="{left}" x2="{left + pw}" y1="{_f(y(v))}" '
                   f'y2="{_f(y(v))}"/><text x="{left - 6}" y="{_f(y(v) + 4)}" '
                   f'text-anchor="end">{v:.0f}</text>')
        v += ystep
    bars = []
    for i in range(n_bins):
        x0 = left + i * bw
        tip = (f"{_tick_label(start + i * step)}–{_tick_label(start + (i + 1) * step)}: "
               + ", ".join(f"{counts[k][i]} {OUTCOME_LABEL[k]}" for k in kinds if counts[k][i]))
        below = 0
        for k in kinds:
            n = counts[k][i]
            if n:
                bars.append(f'<rect class="o-{k}" x="{_f(x0 + 0.5)}" y="{_f(y(below + n))}" '
                            f'width="{_f(max(0.5, bw - 1))}" '
                            f'height="{_f(y(below) - y(below + n))}"><title>{tip}</title>'
                            "</rect>")
                below += n
    out.append('<g class="bars">' + "".join(bars) + "</g>")
    out.append(f'<line class="axis" x1="{left}" x2="{left + pw}" y1="{_f(y(0))}" '
               f'y2="{_f(y(0))}"/>')
    tick_every = max(1, math.ceil(n_bins / 6))
    for i in range(0, n_bins + 1, tick_every):
        px = _f(left + i * bw)
        out.append(f'<text x="{px}" y="{height - 12}" text-anchor="middle">'
                   f"{_tick_label(start + i * step)}</text>")

    def xv(t: float) -> float:
        return left + (t - start) / (n_bins * step) * pw

    succeeded = sorted(by_outcome.get(SUCCEEDED) or ())
    if succeeded:
        med = statistics.median(succeeded)
        p90 = succeeded[min(len(succeeded) - 1, int(0.9 * len(succeeded)))]
        for name, val, anchor in (("median", med, "end"), ("p90", p90, "start")):
            px = _f(xv(val))
            dx = -4 if anchor == "end" else 4
            out.append(f'<line class="mark" x1="{px}" x2="{px}" y1="{top - 4}" '
                       f'y2="{_f(y(0))}"/><text x="{_f(xv(val) + dx)}" y="{top - 8}" '
                       f'text-anchor="{anchor}">{name} {duration(val)}</text>')
    return _svg(width, height, "histogram of attempt run times", out)


def _histogram_section(data: ReportData) -> str:
    done = [a for a in data.cost.attempts if a.finished_at and a.started_at]
    head = '<div><h2>Run time per attempt<span class="note">'
    if not done:
        return head + '</span></h2><p class="empty">No attempt has finished yet.</p></div>'
    by: dict[str, list[float]] = {}
    for a in done:
        by.setdefault(a.outcome, []).append(a.wall_seconds)
    note = ", ".join(f"{len(by[k]):,} {OUTCOME_LABEL[k]}" for k in OUTCOME_LABEL if k in by)
    legend = "".join(f'<li><i class="bg-{k}"></i>{OUTCOME_LABEL[k]}</li>'
                     for k in OUTCOME_LABEL if k in by)
    return (f"{head}{html.escape(note)}</span></h2>{histogram_svg(by)}"
            f'<ul class="legend">{legend}</ul></div>')


def _cost_section(data: ReportData) -> str:
    e = html.escape
    c = data.cost
    if not c.priced:
        res = job_resources(data.info)
        cpu = c.cpu_seconds or 0.0
        eff = cpu / (c.wall_seconds * res.vcpus) if c.wall_seconds else None
        meter = ""
        if eff is not None:
            meter = (f'<div class="meter" title="CPU time / (scan time × {res.vcpus:g} vCPU)">'
                     f'<span class="bg-succeeded" style="width:{min(1.0, eff) * 100:.1f}%">'
                     "</span></div>")
        return (
            '<div><h2>Compute<span class="note">local run: no dollars</span></h2>'
            f'<div class="big">{e(duration(cpu) or "0s")}</div>'
            f'<div class="muted">CPU time over {e(duration(c.wall_seconds) or "0s")} of scan '
            f"time ({len(c.attempts):,} attempts)</div>{meter}"
            '<dl class="kv">'
            f"<dt>CPU use</dt><dd>{'' if eff is None else f'{eff:.0%}'} of the "
            f"{res.vcpus:g} vCPU asked per scan</dd>"
            f"<dt>Lost to failures</dt><dd>{e(duration(_lost_seconds(c)) or '0s')}</dd>"
            + "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in usage_rows(data.usage))
            + f"</dl>{_assumptions(c.assumptions)}</div>"
        )
    total = c.dollars or 0.0
    parts = [(SUCCEEDED, c.by_outcome.get(SUCCEEDED, 0.0)),
             (RECLAIMED, c.by_outcome.get(RECLAIMED, 0.0)),
             (FAILED, c.by_outcome.get(FAILED, 0.0)),
             (CANCELLED, c.by_outcome.get(CANCELLED, 0.0)),
             (RUNNING, c.by_outcome.get(RUNNING, 0.0))]
    meter = "".join(
        f'<span class="bg-{k}" style="width:{v / total * 100:.2f}%" '
        f'title="{OUTCOME_LABEL[k]} {dollars(v)}"></span>' for k, v in parts if v and total)
    n_by = {k: sum(1 for a in c.attempts if a.outcome == k) for k in OUTCOME_LABEL}
    rows = [("Spot", dollars(c.by_market.get(SPOT, 0.0))),
            ("On-Demand", dollars(c.by_market.get(ON_DEMAND, 0.0)))]
    for k in (RECLAIMED, FAILED, CANCELLED):
        if n_by[k]:
            rows.append((f"lost: {OUTCOME_LABEL[k]}",
                         f"{dollars(c.by_outcome.get(k, 0.0))} ({n_by[k]} attempts)"))
    if n_by[RUNNING]:
        rows.append(("still running", f"{dollars(c.by_outcome.get(RUNNING, 0.0))} so far"))
    rows += [("per succeeded scan", dollars(c.per_succeeded_scan) or "–"),
             ("instance-hours", f"{c.instance_hours or 0:,.2f}"),
             ("region", c.region), *cost_rows(c), *usage_rows(data.usage)]
    kv = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in rows)
    legend = "".join(f'<li><i class="bg-{k}"></i>{OUTCOME_LABEL[k]}</li>'
                     for k, v in parts if v)
    return (
        '<div><h2>Cost<span class="note">each attempt × its share of its instance</span></h2>'
        f'<div class="big">{e(dollars(total))}</div>'
        f'<div class="meter" role="img" aria-label="cost by outcome">{meter}</div>'
        f'<ul class="legend" style="margin:-6px 0 10px">{legend}</ul>'
        f'<dl class="kv">{kv}</dl>{_assumptions((*c.basis, *c.assumptions))}'
        f'<p class="assume" style="padding:0">prices: {e(data.prices)}</p></div>'
    )


def _lost_seconds(c: RunCost) -> float:
    return sum(s.lost_seconds for s in c.scans.values())


def _assumptions(items: Iterable[str]) -> str:
    items = list(items)
    if not items:
        return ""
    return ('<ul class="assume">' + "".join(f"<li>{html.escape(a)}</li>" for a in items)
            + "</ul>")


# --------------------------------------------------------------------------- table


def log_link(rec: ScanRecord, data: ReportData, *, out_dir: Path) -> str:
    """Where a scan's log is: a path relative to the report, or a web page of the engine's."""
    log = rec.log or ""
    if log.startswith(("https://", "http://")):
        return log
    if data.executor is None:
        return ""
    local = data.executor.log_file(data.run, rec)
    if local is not None:
        try:
            return quote(os.path.relpath(local, out_dir))
        except ValueError:  # another drive (Windows)
            return local.absolute().as_uri()
    return data.executor.log_link(data.run, rec) or ""


def _table_section(data: ReportData, *, out_dir: Path) -> str:
    e = html.escape
    c = data.cost
    money = c.priced
    columns = [
        {"key": "scan", "label": "Scan", "type": "id", "cls": "scan"},
        {"key": "state", "label": "State", "type": "state"},
        {"key": "attempts", "label": "Attempts", "type": "int", "cls": "num"},
        {"key": "duration", "label": "Duration", "type": "duration", "cls": "num"},
        {"key": "exit", "label": "Exit", "type": "int", "cls": "num"},
        ({"key": "cost", "label": "Cost", "type": "money", "cls": "num"} if money else
         {"key": "cpu", "label": "CPU time", "type": "duration", "cls": "num"}),
        {"key": "log", "label": "Log", "type": "link"},
        {"key": "reason", "label": "Reason", "type": "text", "cls": "reason"},
    ]
    rows = []
    for rec in data.scans:
        sc = c.scans.get(rec.scan_id)
        value = (sc.dollars if money else sc.cpu_seconds) if sc else None
        rows.append([
            rec.scan_id, rec.state, rec.attempts or 0,
            None if rec.duration_seconds is None else round(rec.duration_seconds, 1),
            rec.exit_code,
            None if value is None else round(value, 6 if money else 1),
            log_link(rec, data, out_dir=out_dir),
            (rec.reason or "")[:300],
        ])
    # Links share a long prefix (logs/…, the CloudWatch console's URL): keep it once.
    links = [r[6] for r in rows if r[6]]
    prefix = _common_prefix(links) if len(links) > 1 else ""
    packed = [[*r[:6], r[6][len(prefix):] if r[6] else "", r[7]] for r in rows]
    blob = json.dumps({"columns": columns, "rows": packed, "perPage": ROWS_PER_PAGE,
                       "linkPrefix": prefix}, separators=(",", ":"), ensure_ascii=False)
    # Nothing in the blob can close the script element or start markup.
    blob = blob.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    num = ' class="num"'
    head = "".join(
        f'<th data-col="{i}" scope="col"{num if col.get("cls") == "num" else ""}>'
        f'{e(col["label"])}</th>' for i, col in enumerate(columns))
    # The first page is in the HTML too: the table reads without the script (and in print).
    first = "".join(_static_row(r, columns) for r in rows[:ROWS_PER_PAGE])
    present = [s for s in STATES if any(r[1] == s for r in rows)]
    options = "".join(f'<option value="{s}">{s}</option>' for s in present)
    return (
        f'<section><h2>Scans<span class="note">{len(rows):,} · click a column to sort'
        "</span></h2>"
        '<div class="controls noprint">'
        '<input id="q" type="search" placeholder="Filter by scan or reason…" '
        'aria-label="filter scans">'
        f'<select id="state-filter" aria-label="state"><option value="">all states</option>'
        f"{options}</select></div>"
        f'<div class="tablewrap"><table id="scans"><thead><tr>{head}</tr></thead>'
        f"<tbody>{first}</tbody></table></div>"
        '<div class="pager noprint"><span id="pager-info">'
        f"1–{min(len(rows), ROWS_PER_PAGE)} of {len(rows):,}</span>"
        '<button id="prev" type="button">‹ prev</button>'
        '<button id="next" type="button">next ›</button></div>'
        f'<script type="application/json" id="scan-data">{blob}</script></section>'
    )


def _common_prefix(items: list[str]) -> str:
    """The longest string every item starts with (the first and last in order suffice)."""
    lo, hi = min(items), max(items)
    n = 0
    while n < len(lo) and lo[n] == hi[n]:
        n += 1
    return lo[:n]


def _static_row(row: list[Any], columns: list[dict[str, str]]) -> str:
    e = html.escape
    cells = []
    for col, v in zip(columns, row, strict=True):
        cls = f' class="{col["cls"]}"' if col.get("cls") else ""
        if col["type"] == "state":
            cells.append(f'<td><span class="badge s-{e(v)}">{e(v)}</span></td>')
        elif col["type"] == "link":
            cells.append(f'<td><a href="{e(v)}">log</a></td>' if v else "<td></td>")
        elif col["type"] == "duration":
            cells.append(f"<td{cls}>{duration(v)}</td>")
        elif col["type"] == "money":
            cells.append(f"<td{cls}>{dollars(v)}</td>")
        else:
            text = "" if v is None else str(v)
            title = f' title="{e(text)}"' if col["type"] == "text" and text else ""
            cells.append(f"<td{cls}{title}>{e(text)}</td>")
    return "<tr>" + "".join(cells) + "</tr>"


# --------------------------------------------------------------------------- failures


def _failures_section(data: ReportData) -> str:
    e = html.escape
    failed = [r for r in data.scans if r.state == ScanState.FAILED]
    if not failed:
        return ('<section><h2>Failures</h2><p class="empty">No failed scans.</p>'
                "</section>")
    parts = []
    for rec in failed[:MAX_FAILURE_TAILS]:
        tail = data.executor.log_tail(data.run, rec) if data.executor else None
        if tail:
            where = f"<pre>{e(chr(10).join(tail))}</pre>"
        else:
            missing = data.executor.log_missing(data.run, rec) if data.executor else "no log"
            where = f'<pre class="muted">{e(missing)}</pre>'
        code = "" if rec.exit_code is None else f"exit {rec.exit_code}"
        attempts = f"{rec.attempts} attempt{'s' if rec.attempts != 1 else ''}"
        parts.append(
            f'<details class="failure"{" open" if len(parts) < 3 else ""}><summary>'
            f'<span class="mono">{e(rec.scan_id)}</span>'
            f'<span class="muted">{e(code)} · {e(attempts)}</span>'
            f'<span class="why">{e((rec.reason or "")[:300])}</span></summary>{where}'
            f"{failure_extras(data, rec)}"
            "</details>")
    rest = failed[MAX_FAILURE_TAILS:]
    more = ""
    if rest:
        names = ", ".join(e(r.scan_id) for r in rest[:300])
        more = (f'<p class="muted">{len(rest):,} more failed scans (filter the table by '
                f'"failed"): <span class="mono">{names}'
                f"{' …' if len(rest) > 300 else ''}</span></p>")
    tail_note = data.executor.log_note() if data.executor else ""
    return (f'<section><h2>Failures<span class="note">{len(failed):,} scans'
            f'{" · " + tail_note if tail_note else ""}</span></h2>{"".join(parts)}{more}'
            "</section>")


def _footer(data: ReportData) -> str:
    e = html.escape
    info = data.info
    res = job_resources(info)
    rows = [
        ("dataset", info.dataset),
        ("output", info.output),
        ("run directory", str(data.run.path)),
        ("pipeline", f"{info.pipeline.name} · {info.pipeline.image} · "
                     f"{res.vcpus:g} vCPU, {res.memory_mib:,} MiB, "
                     f"{info.pipeline.attempts} attempts"),
        ("executor", data.executor.describe() if data.executor else "–"),
        ("bidsbatch", info.bidsbatch_version),
    ]
    if data.group.state:
        rows.append(("group step", str(data.group.state)))
    kv = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in rows)
    return f'<footer><dl class="kv">{kv}</dl></footer>'
