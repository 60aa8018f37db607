"""Rendering shared by several commands: the plan table, sizes, a run's status as JSON."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from ..console import err_console

if TYPE_CHECKING:  # types only: status --json renders without importing the planner
    from ..bids import Dataset
    from ..ledger import GroupRecord, ScanRecord
    from ..planning import Plan
    from ..runs import RunDir
    from ..states import ScanState
    from ..storage import S3Options


def crawl_with_progress(dataset: str, *, s3: S3Options, crawl: Callable[..., Dataset],
                        follow_symlinks: bool = False) -> Dataset:
    """Crawl with a progress bar on stderr once there are many subjects to list."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    progress = Progress(
        "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=err_console, transient=True,
    )
    task = None

    def on_progress(done: int, total: int) -> None:
        nonlocal task
        if total < 50:
            return
        if task is None:
            progress.start()
            task = progress.add_task("listing subjects", total=total)
        progress.update(task, completed=done)

    try:
        return crawl(dataset, s3=s3, progress=on_progress, follow_symlinks=follow_symlinks)
    finally:
        if task is not None:
            progress.stop()


def render_plan(plan: Plan, run: RunDir, *, max_rows: int = 40) -> None:
    """The plan table (scan, files, bytes) and a summary, on stderr."""
    from rich.table import Table

    table = Table("scan", "files", "size", title=f"plan {plan.run_id}", title_justify="left")
    for spec in plan.specs[:max_rows]:
        table.add_row(spec.scan_id, str(len(spec.inputs)), human_bytes(spec.input_bytes))
    if len(plan.specs) > max_rows:
        table.add_row(f"… {len(plan.specs) - max_rows} more", "", "")
    err_console.print(table)
    if plan.info.left_out:
        rows = max_rows or 20
        left = Table("scan", "why", title=f"left out: {len(plan.info.left_out)} scan(s) "
                     f"pipeline {plan.pipeline.name} cannot process", title_justify="left")
        for sid, why in list(plan.info.left_out.items())[:rows]:
            left.add_row(sid, why)
        if len(plan.info.left_out) > rows:
            left.add_row(f"… {len(plan.info.left_out) - rows} more", "")
        err_console.print(left)
    total = plan.input_bytes  # a large plan's specs are made when read: not for a sum
    ds = plan.dataset
    n_parts = plan.participant_count
    err_console.print(
        f"{len(plan.specs)} scan(s) of {n_parts} participant(s) from "
        f"{escape(ds.uri)} ({human_bytes(total)} of inputs), pipeline {plan.pipeline.name}, "
        f"output {escape(plan.info.output)}",
        highlight=False,
    )
    err_console.print(f"run directory: {escape(str(run.path))}", highlight=False)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def status_dict(run: RunDir, records: list[ScanRecord], counts: dict[ScanState, int],
                group: GroupRecord | None) -> dict[str, Any]:
    """A run's status as ``status --json`` prints it."""
    info = run.info()
    return {
        "run_id": info.run_id,
        "run_dir": str(run.path),
        "dataset": info.dataset,
        "output": info.output,
        "pipeline": info.pipeline.name,
        "counts": counts,
        "group_state": group.state if group else None,
        "scans": [r.__dict__ for r in records],
    }
