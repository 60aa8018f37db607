"""The options that adjust a pipeline (``plan``, ``run``): one :class:`PipelineOverrides`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from ..customise import PipelineOverrides
from .params import extend, parameter

_OVERRIDES = [
    parameter("app_args", Annotated[str | None, typer.Option(
        "--app-args", metavar="'ARGS'",
        help="More arguments for the app, appended to its command (split like a shell "
             "would, never run by one), e.g. --app-args \"--fs-no-reconall\". They are "
             "part of each scan's config hash.")], None),
    parameter("vcpus", Annotated[float | None, typer.Option(
        "--vcpus", metavar="N", help="vCPUs per scan, instead of the pipeline's.")], None),
    parameter("memory", Annotated[str | None, typer.Option(
        "--memory", metavar="SIZE",
        help="Memory per scan, instead of the pipeline's: 16G, 7500M, or MiB.")], None),
]


def pipeline_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Give ``func`` the pipeline adjustments, as one :class:`PipelineOverrides` in
    ``adjust``."""
    def build(v: dict[str, Any]) -> PipelineOverrides:
        return PipelineOverrides.parse(app_args=v["app_args"], vcpus=v["vcpus"],
                                       memory=v["memory"])

    return extend(func, into="adjust", params=_OVERRIDES, build=build)
