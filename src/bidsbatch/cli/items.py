"""Planning over items from the command line (the item-source side of plan_from_options)."""

from __future__ import annotations

from pathlib import Path

from ..console import err_console
from ..containers.choose import ContainerChoice
from ..customise import PipelineOverrides
from ..items.base import ItemSource
from ..planning import Plan
from ..runs import RunDir
from .options import Planning


def plan_items(source: ItemSource, output: str, *, pipeline: str, planning: Planning,
               run_dir: Path | None, container: ContainerChoice | None,
               inside_image: bool, adjust: PipelineOverrides | None = None
               ) -> tuple[Plan, RunDir]:
    """List the items, select, plan one spec per item; write the run directory."""
    from rich.markup import escape

    from ..containers.choose import container_spec
    from ..items.plan import make_item_plan
    from ..pipelines import load_pipeline
    from ..safety import check_s3_options

    check_s3_options(requester_pays=planning.requester_pays,
                     no_sign_request=planning.no_sign_request)
    from .cost_usage import resources_from

    pipe = resources_from(load_pipeline(pipeline), planning)
    if adjust is not None:
        pipe = adjust.apply(pipe)  # --app-args, --vcpus, --memory
    how = container_spec(pipe.container, pipeline_name=pipe.name,
                         choice=container or ContainerChoice(), inside_image=inside_image,
                         warn=lambda text: err_console.print(
                             f"[yellow]warning:[/] {escape(text)}", highlight=False))
    selection = planning.item_selection()
    err_console.print(f"listing {escape(source.describe())}", highlight=False)
    plan = make_item_plan(source, output, pipeline=pipe, selection=selection, s3=planning.s3,
                          container=how)
    for warning in plan.info.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    return plan, plan.write(run_dir)
