"""The commands of the core flow: synth, pipelines, plan (run and friends register too)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .console import err_console, print_json
from .locations import S3Options

# Options shared by every command that plans (plan, run, cost estimate): one definition.
ParticipantOpt = Annotated[
    list[str] | None,
    typer.Option("--participant-label", "-p",
                 help="Participant(s) to process, with or without 'sub-'. Repeat or use commas."),
]
SessionOpt = Annotated[
    list[str] | None,
    typer.Option("--session-label", "-s", help="Session(s) to process, with or without 'ses-'."),
]
ExcludeOpt = Annotated[
    list[str] | None,
    typer.Option("--exclude-participant", help="Participant(s) to leave out."),
]
LabelsFileOpt = Annotated[
    Path | None,
    typer.Option("--labels-file",
                 help="File of participant labels or scan ids, one a line (or a TSV with "
                      "participant_id)."),
]
PipelineOpt = Annotated[
    str, typer.Option("--pipeline", help="A preset (demo, m2g, fmriprep, mriqc) or a TOML file.")
]
RequesterPaysOpt = Annotated[
    bool, typer.Option("--requester-pays", help="Pay for reading a Requester Pays bucket.")
]
NoSignOpt = Annotated[
    bool, typer.Option("--no-sign-request",
                       help="Read public buckets (such as OpenNeuro's) without credentials.")
]
RunDirOpt = Annotated[
    Path | None, typer.Option("--run-dir", help="Where to keep the run (default: runs home).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
ContainerOpt = Annotated[
    str | None, typer.Option(
        "--container", metavar="RUNTIME",
        help="Run the app with docker, podman, apptainer or none (a plain process). Default: "
             "the pipeline's, the user config's, else the first of apptainer/podman/docker "
             "that works here.")
]
FsLicenseOpt = Annotated[
    Path | None, typer.Option("--fs-license-file", metavar="PATH",
                              help="FreeSurfer license, bound read-only into every job.")
]
ImageCacheOpt = Annotated[
    Path | None, typer.Option("--image-cache", metavar="DIR",
                              help="Apptainer: where SIFs are built, once per image digest "
                                   "(default: BIDSBATCH_HOME/images).")
]
ContainerUserOpt = Annotated[
    str | None, typer.Option("--container-user", metavar="UID:GID",
                             help="The user the app runs as in the container (default: you).")
]


def register(app: typer.Typer) -> None:
    """Add the core commands to ``app``."""
    app.command("synth")(synth_command)
    app.command("pipelines")(pipelines_command)
    app.command("plan")(plan_command)
    from . import cli_run

    cli_run.register(app)


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
    from .errors import UsageError
    from .synth import make_dataset

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
    name: Annotated[str | None, typer.Argument(help="Show this pipeline in full.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List the pipeline presets, or show one."""
    from rich.table import Table

    from .pipelines import load_pipeline, preset_names

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
    dataset: Annotated[str, typer.Argument(help="BIDS dataset: a folder, file:// or s3:// URI.")],
    output: Annotated[str, typer.Argument(help="Where outputs go: a folder or s3:// URI.")],
    pipeline: PipelineOpt = "demo",
    participant_label: ParticipantOpt = None,
    session_label: SessionOpt = None,
    exclude_participant: ExcludeOpt = None,
    labels_file: LabelsFileOpt = None,
    requester_pays: RequesterPaysOpt = False,
    no_sign_request: NoSignOpt = False,
    run_dir: RunDirOpt = None,
    container: ContainerOpt = None,
    fs_license_file: FsLicenseOpt = None,
    image_cache: ImageCacheOpt = None,
    container_user: ContainerUserOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Crawl DATASET and write one JSON spec per scan into a run directory (a dry run)."""
    from .containers.choose import ContainerChoice

    plan, run = plan_from_options(
        dataset=dataset, output=output, pipeline=pipeline,
        participant_label=participant_label, session_label=session_label,
        exclude_participant=exclude_participant, labels_file=labels_file,
        requester_pays=requester_pays, no_sign_request=no_sign_request, run_dir=run_dir,
        container=ContainerChoice(runtime=container, fs_license_file=fs_license_file,
                                  image_cache=image_cache, user=container_user),
    )
    if as_json:
        print_json(json.dumps({
            "run_id": plan.run_id,
            "run_dir": str(run.path),
            "run": json.loads(plan.info.to_json()),
            "specs": [s.to_dict() for s in plan.specs],
        }, indent=2, sort_keys=True))
    render_plan(plan, run)


def plan_from_options(
    *, dataset: str, output: str, pipeline: str, participant_label: list[str] | None,
    session_label: list[str] | None, exclude_participant: list[str] | None,
    labels_file: Path | None, requester_pays: bool, no_sign_request: bool,
    run_dir: Path | None, container=None, inside_image: bool = False,
):  # type: ignore[no-untyped-def]
    """Crawl, select and plan from CLI values; write the run directory.

    ``container`` (a :class:`~bidsbatch.containers.choose.ContainerChoice`): what the
    command line said about containers; ``inside_image``: the executor's job is the
    image (AWS Batch), so the app runs without a container in it.
    """
    from .bids import crawl
    from .containers.choose import ContainerChoice, container_spec
    from .pipelines import load_pipeline
    from .plan import make_plan
    from .selection import Selection

    s3 = S3Options(requester_pays=requester_pays, no_sign_request=no_sign_request)
    pipe = load_pipeline(pipeline)  # a bad pipeline fails before any listing
    # A missing license or runtime is one clear line before any listing, too.
    how = container_spec(pipe.container, pipeline_name=pipe.name,
                         choice=container or ContainerChoice(), inside_image=inside_image,
                         warn=lambda text: err_console.print(f"[yellow]warning:[/] {_esc(text)}",
                                                             highlight=False))
    selection = Selection.build(
        participants=participant_label or [], sessions=session_label or [],
        exclude=exclude_participant or [], labels_file=labels_file,
    )
    ds = crawl_with_progress(dataset, s3=s3, crawl=crawl)
    for warning in ds.warnings:
        err_console.print(f"[yellow]warning:[/] {_esc(warning)}", highlight=False)
    plan = make_plan(ds, output, pipeline=pipe, selection=selection, s3=s3, container=how)
    run = plan.write(run_dir)
    return plan, run


def crawl_with_progress(dataset: str, *, s3: S3Options, crawl):  # type: ignore[no-untyped-def]
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
        return crawl(dataset, s3=s3, progress=on_progress)
    finally:
        if task is not None:
            progress.stop()


def render_plan(plan, run, *, max_rows: int = 40) -> None:  # type: ignore[no-untyped-def]
    """The plan table (scan, files, bytes) and a summary, on stderr."""
    from rich.table import Table

    table = Table("scan", "files", "size", title=f"plan {plan.run_id}", title_justify="left")
    for spec in plan.specs[:max_rows]:
        table.add_row(spec.scan_id, str(len(spec.inputs)), human_bytes(spec.input_bytes))
    if len(plan.specs) > max_rows:
        table.add_row(f"… {len(plan.specs) - max_rows} more", "", "")
    err_console.print(table)
    total = sum(s.input_bytes for s in plan.specs)
    ds = plan.dataset
    n_parts = len({s.participant for s in plan.specs})
    err_console.print(
        f"{len(plan.specs)} scan(s) of {n_parts} participant(s) from "
        f"{_esc(ds.uri)} ({human_bytes(total)} of inputs), pipeline {plan.pipeline.name}, "
        f"output {_esc(plan.info.output)}",
        highlight=False,
    )
    err_console.print(f"run directory: {_esc(str(run.path))}", highlight=False)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _esc(text: str) -> str:
    from rich.markup import escape

    return escape(text)
