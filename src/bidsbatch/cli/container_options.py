"""The container options (``plan``, ``run``): one :class:`ContainerChoice` per command."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from ..containers.choose import ContainerChoice
from .params import extend, parameter

ContainerOpt = Annotated[
    str | None, typer.Option(
        "--container", metavar="RUNTIME",
        help="Run the app with docker, podman, apptainer or none (a plain process). Default: "
             "the pipeline's, the user config's, else the first of apptainer/podman/docker "
             "that works here.")
]
ImageCacheOpt = Annotated[
    Path | None, typer.Option("--image-cache", metavar="DIR",
                              help="Apptainer: where SIFs are built, once per image digest "
                                   "(default: BIDSBATCH_HOME/images).")
]

_CONTAINER = [
    parameter("container_runtime", ContainerOpt, None),
    parameter("fs_license_file", Annotated[Path | None, typer.Option(
        "--fs-license-file", metavar="PATH",
        help="FreeSurfer license, bound read-only into every job.")], None),
    parameter("image_cache", ImageCacheOpt, None),
    parameter("container_user", Annotated[str | None, typer.Option(
        "--container-user", metavar="UID:GID",
        help="The user the app runs as in the container (default: you).")], None),
]


def container_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Give ``func`` the container options, as one :class:`ContainerChoice` in ``container``."""
    def build(v: dict[str, Any]) -> ContainerChoice:
        return ContainerChoice(runtime=v["container_runtime"],
                               fs_license_file=v["fs_license_file"],
                               image_cache=v["image_cache"], user=v["container_user"])

    return extend(func, into="container", params=_CONTAINER, build=build)
