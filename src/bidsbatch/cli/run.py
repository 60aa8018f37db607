"""The commands that execute runs: run, retry, cancel, demo (status and logs: ``status.py``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from ..console import err_console, print_json
from ..containers.choose import ContainerChoice
from ..customise import PipelineOverrides
from ..executors.registry import DEFAULT_EXECUTOR
from .container_options import container_options
from .options import (
    DatasetArg,
    ExecutorChoice,
    JsonOpt,
    OutputArg,
    Planning,
    RequiredPipelineOpt,
    RunArg,
    RunDirOpt,
    executor_options,
    planning_options,
    retry_options,
)
from .pipeline_options import pipeline_options
from .plan import plan_from_options
from .render import render_plan, status_dict


def register(app: typer.Typer) -> None:
    """Add the execution commands to ``app``."""
    app.command("run")(executor_options(planning_options(container_options(
        pipeline_options(run_command)))))
    app.command("retry")(retry_options(retry_command))
    app.command("cancel")(cancel_command)
    app.command("demo")(demo_command)


def run_command(
    *,
    dataset: DatasetArg = None,
    output: OutputArg = None,
    planning: Planning,
    executor: ExecutorChoice,
    container: ContainerChoice,
    pipeline: RequiredPipelineOpt,
    adjust: PipelineOverrides | None = None,
    run_dir: RunDirOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Redo scans that are done.")] = False,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Submit and return.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Plan DATASET, skip the scans already done, run the rest, and watch them.

    Example: bidsbatch run ds000114 derivatives/mriqc --pipeline mriqc --participant-label 01 02
    """
    from .. import runner
    from ..containers.images import prepare_images
    from ..executors import make_executor

    exe = make_executor(executor.name, executor.options)
    plan, run = plan_from_options(dataset=dataset, output=output, pipeline=pipeline,
                                  planning=planning, run_dir=run_dir, container=container,
                                  inside_image=exe.runs_in_image, adjust=adjust)
    if not as_json:
        render_plan(plan, run, max_rows=0 if len(plan.specs) > 20 else 20)
    elif plan.info.left_out:  # stdout is for the machine; the user still learns what is left out
        left = [f"{sid} ({why})" for sid, why in plan.info.left_out.items()]
        err_console.print(f"left out {len(left)} scan(s) pipeline {plan.pipeline.name} cannot "
                          f"process: {escape(', '.join(left[:10]))}"
                          + (" …" if len(left) > 10 else ""), highlight=False)
    # The image is had once, here: a missing one is one error, not one per scan.
    for line in prepare_images(plan.specs):
        err_console.print(line, highlight=False)
    started = runner.start(plan, executor=exe, run_dir=run.path, force=force)
    msg = f"run {plan.run_id}: {len(started.submitted)} scan(s) submitted to {exe.name}"
    if started.skipped:
        msg += f", {len(started.skipped)} already done (skipped)"
    err_console.print(msg, highlight=False)
    if no_wait:
        if as_json:
            print_json(json.dumps({"run_id": plan.run_id, "run_dir": str(run.path),
                                   "submitted": started.submitted,
                                   "skipped": started.skipped}, indent=2))
        else:
            err_console.print(f"follow it with: bidsbatch status {plan.run_id} --watch")
        return
    final = _watch(run, title=plan.run_id, total=len(plan.specs))
    _finish(run, final, as_json=as_json)


def _watch(run, *, title: str, total: int):  # type: ignore[no-untyped-def]
    """Wait with a live display; Ctrl-C cancels the run cleanly."""
    from .. import runner
    from ..progress import LiveProgress

    try:
        with LiveProgress(title=title, total=total) as live:
            final = runner.wait(run, on_update=live.update, interval=0.2, max_interval=2.0)
        if not err_console.is_terminal:
            err_console.print()
        return final
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted: cancelling the run…[/]")
        runner.cancel(run)
        raise


def _finish(run, final, *, as_json: bool) -> None:  # type: ignore[no-untyped-def]
    from ..progress import counts_line, status_table

    final = _with_details(run, final)
    info = run.info()
    if as_json:
        print_json(json.dumps(status_dict(run, final.records, final.counts,
                                          final.group), indent=2))
    else:
        err_console.print(status_table(final.records, title=f"run {info.run_id}",
                                       max_rows=40))
        err_console.print(counts_line(final.counts))
        if final.group.state:
            err_console.print(f"group step: {final.group.state}")
        err_console.print(f"outputs: {escape(info.output)}", highlight=False)
        err_console.print(f"run directory: {escape(str(run.path))}", highlight=False)
    if final.failed:
        from ..states import ScanState
        from .crash_output import say_debugging

        say_debugging(run, [r.scan_id for r in final.records if r.state == ScanState.FAILED])
    _report(run)
    if not as_json:
        from .cost_usage import suggest_line

        if (line := suggest_line(run)) is not None:
            err_console.print(escape(line), highlight=False)
    if final.failed:
        raise typer.Exit(1)


def _with_details(run, final):  # type: ignore[no-untyped-def]
    """The final snapshot after every attempt's details are read (the report needs them)."""
    from dataclasses import replace

    from ..ledger import Ledger
    from .cost import fetch_details

    fetch_details(run)
    with Ledger.open(run.ledger_path) as ledger:
        group = ledger.group()
        return replace(final, records=ledger.scans(), counts=ledger.counts(), group=group,
                       group_state=group.state)


def _report(run) -> None:  # type: ignore[no-untyped-def]
    """Write the run's HTML report and say where; a failure to write it fails nothing."""
    from ..errors import BidsbatchError
    from ..report import write_report

    try:
        path = write_report(run)
    except (BidsbatchError, OSError) as exc:
        err_console.print(f"[yellow]warning:[/] no report written: {escape(str(exc))}",
                          highlight=False)
        return
    err_console.print(f"report: {escape(str(path))}", highlight=False)


def retry_command(
    run_ref: RunArg = None,
    *,
    overrides: dict[str, Any],
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Submit and return.")] = False,
) -> None:
    """Run the failed scans of a run again (and only those)."""
    from .. import runner
    from ..runs import find_run

    run = find_run(run_ref)
    again = runner.retry_failed(run, overrides=overrides)
    if not again:
        err_console.print("nothing to retry: no failed scans")
        return
    err_console.print(f"retrying {len(again)} scan(s): {', '.join(again[:6])}"
                      + (" …" if len(again) > 6 else ""), highlight=False)
    if no_wait:
        return
    final = _watch(run, title=run.info().run_id, total=len(run.info().scans))
    _finish(run, final, as_json=False)


def cancel_command(run_ref: RunArg = None) -> None:
    """Stop every queued and running scan of a run."""
    from .. import runner
    from ..progress import counts_line
    from ..runs import find_run

    run = find_run(run_ref)
    counts = runner.cancel(run)
    err_console.print(f"run {run.path.name} cancelled")
    err_console.print(counts_line(counts))


def demo_command(
    workdir: Annotated[Path, typer.Option(help="Where the demo keeps its dataset and outputs.")]
    = Path("demo-work"),
    subjects: Annotated[int, typer.Option(help="Synthetic subjects (2 sessions each).")] = 8,
    jobs: Annotated[int | None, typer.Option(
        "--jobs", "-j", help="Scans at once (default: as many as the CPUs and memory fit).")]
    = None,
) -> None:
    """The main job: a synthetic dataset, the demo pipeline over every scan, locally."""
    from ..synth import make_dataset

    dataset = workdir / "dataset"
    output = workdir / "derivatives"
    if not (dataset / "dataset_description.json").exists():
        err_console.print(f"writing a synthetic BIDS dataset to {escape(str(dataset))}")
        make_dataset(dataset, subjects=subjects, sessions=("1", "2"))
    else:
        err_console.print(f"using the synthetic dataset in {escape(str(dataset))}")
    os.environ.setdefault("BIDSBATCH_HOME", str((workdir / "state").absolute()))
    run_command(
        dataset=str(dataset), output=str(output), pipeline="demo",
        planning=Planning(participant_label=[], session_label=[], exclude_participant=[],
                          labels_file=None, requester_pays=False, no_sign_request=False),
        executor=ExecutorChoice(DEFAULT_EXECUTOR, {"jobs": jobs} if jobs else {}),
        container=ContainerChoice(),
        run_dir=None, force=False, no_wait=False, as_json=False,
    )
    group_tsv = output / "group_brainvolume.tsv"
    if group_tsv.exists():
        from rich.table import Table

        rows = [ln.split("\t") for ln in group_tsv.read_text().splitlines() if ln]
        table = Table(*rows[0], title="group result (group_brainvolume.tsv)",
                      title_justify="left")
        for row in rows[1:]:
            table.add_row(*row)
        err_console.print(table)
    err_console.print(f"[bold]done.[/] derivatives in {escape(str(output.absolute()))}; "
                      "run the same command again and every scan is skipped.")
