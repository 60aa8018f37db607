"""The commands of the core flow: synth, pipelines, plan (run and friends register too)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from ..console import err_console, print_json
from ..containers.choose import ContainerChoice
from ..customise import PipelineOverrides
from ..planning import Plan
from ..runs import RunDir
from .container_options import container_options
from .options import (
    DatasetArg,
    JsonOpt,
    OutputArg,
    PipelineOpt,
    Planning,
    RunDirOpt,
    planning_options,
)
from .pipeline_options import pipeline_options
from .render import crawl_with_progress, render_plan


def register(app: typer.Typer) -> None:
    """Add the planning commands to ``app``."""
    app.command("synth")(synth_command)
    app.command("pipelines")(pipelines_command)
    app.command("plan")(planning_options(container_options(pipeline_options(plan_command))))


def synth_command(
    path: Annotated[Path, typer.Argument(help="Folder to write the dataset into (new or empty).")],
    subjects: Annotated[int, typer.Option(help="Number of subjects.")] = 8,
    sessions: Annotated[str, typer.Option(help="Session labels, comma-separated; '' for none.")]
    = "1,2",
    runs: Annotated[int, typer.Option(help="BOLD runs per session.")] = 1,
    modalities: Annotated[str, typer.Option(help="Datatypes to write.")] = "anat,func,dwi",
    inherited: Annotated[bool, typer.Option(help="Put shared metadata in root sidecars.")]
    = True,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same bytes).")] = 0,
) -> None:
    """Write a synthetic BIDS dataset with real tiny NIfTI images."""
    from ..errors import UsageError
    from ..synth import make_dataset

    if path.exists() and any(path.iterdir()):
        raise UsageError(f"{path} is not empty", hint="name a new or empty folder")
    if subjects < 1:
        raise UsageError("--subjects must be at least 1")
    labels = [s.strip() for s in sessions.split(",") if s.strip()]
    try:
        out = make_dataset(
            path,
            subjects=subjects,
            sessions=labels or None,
            runs=runs,
            modalities=[m.strip() for m in modalities.split(",") if m.strip()],
            inherited_sidecars=inherited,
            seed=seed,
        )
    except (ValueError, FileExistsError) as exc:
        raise UsageError(f"cannot write the dataset: {exc}") from None
    err_console.print(f"wrote a BIDS dataset of {subjects} subject(s) to {out}")


def pipelines_command(
    name: Annotated[str | None, typer.Argument(
        help="Show this pipeline (a preset, or a TOML file) in full.")] = None,
    as_json: JsonOpt = False,
    as_toml: Annotated[bool, typer.Option(
        "--toml", help="Print NAME as a commented TOML file to start your own from.")]
    = False,
) -> None:
    """List the pipeline presets, or show one.

    Example: bidsbatch pipelines fmriprep --toml > my-fmriprep.toml
    """
    from rich.table import Table

    from ..errors import UsageError
    from ..pipelines import load_pipeline, preset_names

    if as_toml:
        from ..pipeline_toml import pipeline_toml

        if not name:
            raise UsageError("--toml needs a pipeline NAME", hint="e.g. bidsbatch pipelines "
                             "fmriprep --toml > my-fmriprep.toml")
        sys.stdout.write(pipeline_toml(name))
        return
    if name:
        p = load_pipeline(name)
        if as_json:
            print_json(json.dumps(p.to_dict(), indent=2))
            return
        err_console.print_json(json.dumps(p.to_dict()))
        return
    rows = [load_pipeline(n) for n in preset_names()]
    if as_json:
        print_json(json.dumps([p.to_dict() for p in rows], indent=2))
        return
    table = Table("name", "image", "vCPUs", "memory MiB", "group step", "description")
    for p in rows:
        table.add_row(p.name, p.image, f"{p.resources.vcpus:g}", str(p.resources.memory_mib),
                      "yes" if p.group else "", p.description)
    err_console.print(table)


def plan_command(
    *,
    dataset: DatasetArg = None,
    output: OutputArg = None,
    planning: Planning,
    container: ContainerChoice,
    adjust: PipelineOverrides,
    pipeline: PipelineOpt = "demo",
    run_dir: RunDirOpt = None,
    explain: Annotated[bool, typer.Option(
        "--explain", help="List, per scan, why it will run (new, inputs changed, ...).")]
    = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Plan as run --force would: done scans run again.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Crawl DATASET and write one JSON spec per scan into a run directory (a dry run)."""
    from .reasons import reasons_or_none, render_reasons

    plan, run = plan_from_options(dataset=dataset, output=output, pipeline=pipeline,
                                  planning=planning, run_dir=run_dir, container=container,
                                  adjust=adjust)
    reasons = reasons_or_none(plan, force=force)
    if as_json:
        print_json(json.dumps({
            "run_id": plan.run_id,
            "run_dir": str(run.path),
            "run": json.loads(plan.info.to_json()),
            "specs": [s.to_dict() for s in plan.specs],
            "will_run": None if reasons is None else {
                r.scan_id: {"why": r.why.value, "files": list(r.files)}
                for r in reasons if r.runs},
        }, indent=2, sort_keys=True))
    render_plan(plan, run)
    if reasons is not None:
        render_reasons(reasons, explain=explain)


def plan_from_options(
    *, dataset: str | None, output: str | None, pipeline: str, planning: Planning,
    run_dir: Path | None, container: ContainerChoice | None = None, inside_image: bool = False,
    adjust: PipelineOverrides | None = None,
) -> tuple[Plan, RunDir]:
    """Crawl, select and plan from CLI values; write the run directory.

    ``container``: what the command line said about containers; ``inside_image``: the
    executor's job is the image (AWS Batch), so the app runs without a container in it.
    """
    from ..bids import crawl
    from ..containers.choose import container_spec
    from ..pipelines import load_pipeline
    from ..planning import make_plan
    from ..safety import check_output_apart, check_s3_options
    from .cost_usage import resources_from

    source, dataset, output = _source(dataset, output, planning)
    check_s3_options(requester_pays=planning.requester_pays,
                     no_sign_request=planning.no_sign_request)
    pipe = resources_from(load_pipeline(pipeline), planning)  # fails before any listing
    if adjust is not None:
        pipe = adjust.apply(pipe)  # --app-args, --vcpus, --memory
    if source is None and pipe.kind != "bids":
        # A CWL tool or a command per scan over a BIDS dataset: the crawl as an item source.
        from ..items.bids import BidsSource

        source = BidsSource(dataset, follow_symlinks=planning.follow_symlinks)
    if source is not None:
        from .items import plan_items

        return plan_items(source, output, pipe=pipe, planning=planning, run_dir=run_dir,
                          container=container, inside_image=inside_image)
    check_output_apart(dataset, output)  # before any listing: nothing is read or written
    s3 = planning.s3
    # A missing license or runtime is one clear line before any listing, too.
    how = container_spec(pipe.container, pipeline_name=pipe.name,
                         choice=container or ContainerChoice(), inside_image=inside_image,
                         warn=lambda text: err_console.print(f"[yellow]warning:[/] {_esc(text)}",
                                                             highlight=False))
    selection = planning.selection()
    ds = crawl_with_progress(dataset, s3=s3, crawl=crawl,
                             follow_symlinks=planning.follow_symlinks)
    for warning in ds.warnings:
        err_console.print(f"[yellow]warning:[/] {_esc(warning)}", highlight=False)
    plan = make_plan(ds, output, pipeline=pipe, selection=selection, s3=s3, container=how)
    run = plan.write(run_dir)
    return plan, run


def _source(dataset: str | None, output: str | None, planning: Planning
            ) -> tuple[object | None, str, str]:
    """The item source the options name (None: a BIDS dataset), the dataset, the output."""
    from ..items.registry import item_source

    if output is None and planning.items.given:
        dataset, output = None, dataset  # plan --items-glob … OUTPUT
    if output is None or (dataset is None and not planning.items.given):
        # click's own message (usage line, then the missing argument), as before
        # DATASET could be left out for --items. The click typer runs on: its own copy
        # from typer 0.29 on, click itself before.
        import importlib

        import typer

        click = typer.Context.__mro__[1].__module__.rsplit(".", 1)[0]
        missing = importlib.import_module(f"{click}.exceptions").MissingParameter
        context = importlib.import_module(f"{click}.globals").get_current_context
        raise missing(ctx=context(silent=True), param_type="argument",
                      param_hint="'DATASET'" if dataset is None else "'OUTPUT'")
    source = item_source(planning.items, dataset)
    return source, dataset or "", output


def _esc(text: str) -> str:
    from rich.markup import escape

    return escape(text)
