"""Planning over items from the command line (the item-source side of plan_from_options)."""

from __future__ import annotations

from pathlib import Path

from ..console import err_console
from ..containers.choose import ContainerChoice
from ..items.base import ItemSource
from ..pipelines import Pipeline
from ..planning import Plan
from ..runs import RunDir
from .options import Planning


def plan_items(source: ItemSource, output: str, *, pipe: Pipeline, planning: Planning,
               run_dir: Path | None, container: ContainerChoice | None,
               inside_image: bool) -> tuple[Plan, RunDir]:
    """List the items, select, plan one spec per item; write the run directory.

    ``pipe`` comes loaded and adjusted (``--resources-from``, ``--app-args``…) by
    ``plan_from_options``, which has checked the S3 options too.
    """
    from rich.markup import escape

    from ..containers.choose import container_spec
    from ..items.plan import make_item_plan

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
