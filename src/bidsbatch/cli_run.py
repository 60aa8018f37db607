"""The commands that execute and watch runs: run, worker, status, logs, retry, cancel, demo."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from .cli_commands import (
    ContainerOpt,
    ContainerUserOpt,
    ExcludeOpt,
    FsLicenseOpt,
    ImageCacheOpt,
    JsonOpt,
    LabelsFileOpt,
    NoSignOpt,
    ParticipantOpt,
    PipelineOpt,
    RequesterPaysOpt,
    RunDirOpt,
    SessionOpt,
    plan_from_options,
    render_plan,
)
from .console import err_console, print_json

ExecutorOpt = Annotated[
    str, typer.Option("--executor", "-e", help="Where scans run: local or aws-batch.")
]
JobsOpt = Annotated[
    int | None,
    typer.Option("--jobs", "-j", help="Local executor: scans at once (default: as many as "
                 "the CPUs and memory fit for the pipeline's resources)."),
]
RunArg = Annotated[
    str | None, typer.Argument(help="Run id or run directory (default: the latest run).")
]


def register(app: typer.Typer) -> None:
    """Add the execution commands to ``app``."""
    from . import cli_image, cli_worker

    cli_worker.register(app)
    cli_image.register(app)
    from . import cli_cost; cli_cost.register(app)  # noqa: E702, I001 (cost, report)
    app.command("run")(run_command)
    app.command("status")(status_command)
    app.command("logs")(logs_command)
    app.command("retry")(retry_command)
    app.command("cancel")(cancel_command)
    app.command("demo")(demo_command)
    app.command("group-step", hidden=False)(group_step_command)


def _executor_options(**kw: object) -> dict[str, object]:
    return {k: v for k, v in kw.items() if v is not None}


def run_command(
    dataset: Annotated[str, typer.Argument(help="BIDS dataset: a folder or s3:// URI.")],
    output: Annotated[str, typer.Argument(help="Where outputs go: a folder or s3:// URI.")],
    pipeline: PipelineOpt = "demo",
    participant_label: ParticipantOpt = None,
    session_label: SessionOpt = None,
    exclude_participant: ExcludeOpt = None,
    labels_file: LabelsFileOpt = None,
    requester_pays: RequesterPaysOpt = False,
    no_sign_request: NoSignOpt = False,
    run_dir: RunDirOpt = None,
    executor: ExecutorOpt = "local",
    jobs: JobsOpt = None,
    scratch: Annotated[str | None, typer.Option(help="Local scratch folder for workers.")]
    = None,
    job_queue: Annotated[str | None, typer.Option(help="AWS Batch job queue (name or ARN).")]
    = None,
    job_role: Annotated[str | None, typer.Option(help="AWS Batch job role ARN.")] = None,
    environment: Annotated[str | None, typer.Option(
        help="A bidsbatch AWS environment (bidsbatch aws setup).")] = None,
    image: Annotated[str | None, typer.Option(
        help="AWS Batch: the image jobs run (the pipeline's image with bidsbatch added, "
             "see bidsbatch image dockerfile); default: the pipeline's image.")] = None,
    platform: Annotated[str | None, typer.Option(
        help="AWS Batch: ec2 (default) or fargate.")] = None,
    array_size: Annotated[int | None, typer.Option(
        hidden=True, help="AWS Batch: scans per array job (at most 10,000).")] = None,
    container: ContainerOpt = None,
    fs_license_file: FsLicenseOpt = None,
    image_cache: ImageCacheOpt = None,
    container_user: ContainerUserOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Redo scans that are done.")] = False,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Submit and return.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Plan DATASET, skip the scans already done, run the rest, and watch them."""
    from . import runner
    from .containers.choose import ContainerChoice
    from .containers.images import prepare_images
    from .executors import make_executor

    exe = make_executor(executor, _executor_options(
        jobs=jobs, scratch=scratch, job_queue=job_queue, job_role=job_role,
        environment=environment, image=image, platform=platform, array_size=array_size,
    ))
    plan, run = plan_from_options(
        dataset=dataset, output=output, pipeline=pipeline,
        participant_label=participant_label, session_label=session_label,
        exclude_participant=exclude_participant, labels_file=labels_file,
        requester_pays=requester_pays, no_sign_request=no_sign_request, run_dir=run_dir,
        container=ContainerChoice(runtime=container, fs_license_file=fs_license_file,
                                  image_cache=image_cache, user=container_user),
        inside_image=exe.runs_in_image,
    )
    if not as_json:
        render_plan(plan, run, max_rows=0 if len(plan.specs) > 20 else 20)
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
    from . import runner
    from .progress import LiveProgress

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
    from .progress import counts_line, status_table

    final = _with_details(run, final)
    info = run.info()
    if as_json:
        print_json(json.dumps(_status_dict(run, final.records, final.counts,
                                           final.group_state), indent=2))
    else:
        err_console.print(status_table(final.records, title=f"run {info.run_id}",
                                       max_rows=40))
        err_console.print(counts_line(final.counts))
        if final.group_state:
            err_console.print(f"group step: {final.group_state}")
        err_console.print(f"outputs: {escape(info.output)}", highlight=False)
        err_console.print(f"run directory: {escape(str(run.path))}", highlight=False)
    _report(run)
    if final.counts["failed"] or final.counts["cancelled"] or final.group_state == "failed":
        raise typer.Exit(1)


def _with_details(run, final):  # type: ignore[no-untyped-def]
    """The final snapshot after every attempt's details are read (the report needs them)."""
    from dataclasses import replace

    from .cli_cost import fetch_details
    from .ledger import Ledger

    fetch_details(run)
    with Ledger.open(run.ledger_path) as ledger:
        return replace(final, records=ledger.scans(), counts=ledger.counts())


def _report(run) -> None:  # type: ignore[no-untyped-def]
    """Write the run's HTML report and say where; a failure to write it fails nothing."""
    from .errors import BidsbatchError
    from .report import write_report

    try:
        path = write_report(run)
    except (BidsbatchError, OSError) as exc:
        err_console.print(f"[yellow]warning:[/] no report written: {escape(str(exc))}",
                          highlight=False)
        return
    err_console.print(f"report: {escape(str(path))}", highlight=False)


def _status_dict(run, records, counts, group_state) -> dict:  # type: ignore[no-untyped-def]
    info = run.info()
    return {
        "run_id": info.run_id,
        "run_dir": str(run.path),
        "dataset": info.dataset,
        "output": info.output,
        "pipeline": info.pipeline["name"],
        "counts": counts,
        "group_state": group_state,
        "scans": [r.__dict__ for r in records],
    }


def status_command(
    run_ref: RunArg = None,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Follow until it ends.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Show the state of every scan of a run, and the counts."""
    from . import runner
    from .cli_cost import status_cost
    from .ledger import Ledger
    from .progress import counts_line, status_table
    from .runs import find_run

    run = find_run(run_ref)
    info = run.info()
    if watch:
        final = _watch(run, title=info.run_id, total=len(info.scans))
        records, counts, group = final.records, final.counts, final.group_state
    else:
        with Ledger.open(run.ledger_path) as ledger:
            if ledger.get_meta("executor"):
                runner.executor_for(run, ledger).poll(run, ledger)
            else:
                ledger.add_scans(info.scans)
            records, counts = ledger.scans(), ledger.counts()
            group = ledger.get_meta("group_state")
    if as_json:
        print_json(json.dumps(_status_dict(run, records, counts, group), indent=2))
        return
    with Ledger.open(run.ledger_path) as ledger:
        cost_column, cost_values, cost_lines = status_cost(run, ledger)
    err_console.print(status_table(records, title=f"run {info.run_id} · {info.dataset_name} · "
                                   f"{info.pipeline['name']}",
                                   extra=(cost_column, cost_values)))
    err_console.print(counts_line(counts))
    if group:
        err_console.print(f"group step: {group}")
    for line in cost_lines:
        err_console.print(line)


def logs_command(
    run_ref: Annotated[str, typer.Argument(help="Run id or run directory.")],
    scan: Annotated[str, typer.Argument(help="Scan id, e.g. sub-01_ses-1 (or 'group').")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines.")]
    = False,
) -> None:
    """Print a scan's log (every attempt)."""
    from . import runner
    from .ledger import Ledger
    from .runs import find_run

    run = find_run(run_ref)
    if scan == "group":
        path = run.logs_dir / "group.log"
        if path.exists():
            print(path.read_text(), end="")
            return
    else:
        run.spec(scan)  # an unknown scan is a clear error
    with Ledger.open(run.ledger_path) as ledger:
        # The local group step logs to the run directory; a remote one has its own logs.
        remote = ledger.get_meta("executor") not in (None, "local")
        executor = runner.executor_for(run, ledger) if scan != "group" or remote else None
    if executor is None:
        from .errors import BidsbatchError

        raise BidsbatchError(f"no group step log in run {run.path.name}")
    for line in executor.logs(run, scan, follow=follow):
        print(line, flush=follow)


def retry_command(
    run_ref: RunArg = None,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Submit and return.")] = False,
    jobs: JobsOpt = None,
) -> None:
    """Run the failed scans of a run again (and only those)."""
    from . import runner
    from .runs import find_run

    run = find_run(run_ref)
    again = runner.retry_failed(run, overrides={"jobs": jobs})
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
    from . import runner
    from .progress import counts_line
    from .runs import find_run

    run = find_run(run_ref)
    counts = runner.cancel(run)
    err_console.print(f"run {run.path.name} cancelled")
    err_console.print(counts_line(counts))


def demo_command(
    workdir: Annotated[Path, typer.Option(help="Where the demo keeps its dataset and outputs.")]
    = Path("demo-work"),
    subjects: Annotated[int, typer.Option(help="Synthetic subjects (2 sessions each).")] = 8,
    jobs: JobsOpt = None,
) -> None:
    """The main job: a synthetic dataset, the demo pipeline over every scan, locally."""
    from .synth import make_dataset

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
        participant_label=None, session_label=None, exclude_participant=None,
        labels_file=None, requester_pays=False, no_sign_request=False, run_dir=None,
        executor="local", jobs=jobs, scratch=None, job_queue=None, job_role=None,
        environment=None, image=None, platform=None, array_size=None, container=None,
        fs_license_file=None, image_cache=None, container_user=None, force=False,
        no_wait=False, as_json=False,
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


def group_step_command(
    run: Annotated[str, typer.Option("--run", metavar="URI",
                                     help="The run: a run directory or a run.json URI.")],
    scratch: Annotated[Path | None, typer.Option(help="Folder for the scratch space.")] = None,
) -> None:
    """Run the pipeline's group step over a run's output (what the group job runs)."""
    from .group import run_group_step

    code = run_group_step(run, scratch=scratch)
    if code:
        raise typer.Exit(code)
