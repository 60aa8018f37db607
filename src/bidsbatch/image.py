"""The job image: a pipeline's image with bidsbatch added, so that Batch can run the worker.

A Batch job runs ``bidsbatch worker --manifest s3://…``; the worker stages
the scan in, runs the app's own command, and stages out. So the image needs
the app (the pipeline's image) and bidsbatch. :func:`dockerfile` writes a
Dockerfile that layers bidsbatch onto the pipeline's image without touching
the app's Python: bidsbatch gets its own Python (a standalone build fetched
by uv) and virtual environment under ``/opt/bidsbatch``, and only the
``bidsbatch`` command is linked onto ``PATH``. The app's entry point is
cleared (``ENTRYPOINT []``), else Batch's command would be passed to it as
arguments.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import __version__
from .pipelines import Pipeline

#: uv's image, for its static binary (it fetches a standalone Python for bidsbatch).
UV_IMAGE = "ghcr.io/astral-sh/uv:0.13.8"
PYTHON_VERSION = "3.12"
#: Pipelines whose app ships inside bidsbatch need no other image than Python's.
BUNDLED_APPS = {"bidsbatch-demo-app"}
BUNDLED_BASE = f"python:{PYTHON_VERSION}-slim"


@dataclass(frozen=True)
class ImagePlan:
    """What the Dockerfile builds: on which base, which version, which commands to link."""

    pipeline: str
    base: str
    version: str
    commands: tuple[str, ...]
    suggested_tag: str


def image_plan(pipeline: Pipeline, *, version: str = __version__,
               base: str | None = None) -> ImagePlan:
    """The image for ``pipeline``: its own image (or Python's for a bundled app) plus bidsbatch."""
    program = pipeline.command[0] if isinstance(pipeline.command[0], str) else ""
    bundled = program in BUNDLED_APPS
    chosen = base or (BUNDLED_BASE if bundled else pipeline.image)
    commands = ("bidsbatch", program) if bundled else ("bidsbatch",)
    app_tag = "app" if bundled else _tag_of(pipeline.image)
    return ImagePlan(pipeline=pipeline.name, base=chosen, version=version, commands=commands,
                     suggested_tag=f"bidsbatch-{pipeline.name}:{app_tag}-bb{version}")


def _tag_of(image: str) -> str:
    if "@" in image:
        return "pinned"
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else "latest"


def dockerfile(plan: ImagePlan) -> str:
    """The Dockerfile text for ``plan``."""
    links = " \\\n && ".join(
        f"ln -sf /opt/bidsbatch/venv/bin/{c} /usr/local/bin/{c}" for c in plan.commands
    )
    return f"""\
# syntax=docker/dockerfile:1
# The {plan.pipeline} pipeline's image with bidsbatch {plan.version} added, for AWS Batch.
# Made by: bidsbatch image dockerfile --pipeline {plan.pipeline}
#
# Build (from PyPI):       docker build -t {plan.suggested_tag} .
# Build (a local wheel):   put the wheel next to this Dockerfile, then
#   docker build --build-arg BIDSBATCH_WHEEL=bidsbatch-{plan.version}-py3-none-any.whl \\
#     -t {plan.suggested_tag} .
# Then push it to ECR and pass its URI to `bidsbatch run --image` (README: "Run on AWS Batch").
ARG BASE_IMAGE={plan.base}
ARG UV_IMAGE={UV_IMAGE}
FROM ${{UV_IMAGE}} AS uv

FROM ${{BASE_IMAGE}}
ARG BIDSBATCH_VERSION={plan.version}
ARG BIDSBATCH_WHEEL=
ARG PYTHON_VERSION={PYTHON_VERSION}
# bidsbatch gets a Python of its own (the app's may be older, or absent): the app's
# Python and packages are left exactly as they are.
ENV UV_PYTHON_INSTALL_DIR=/opt/bidsbatch/python \\
    UV_NO_CACHE=1
# Installing under /opt needs root; add `USER <name>` at the end if your app must not
# run as root (the worker needs only a writable $TMPDIR).
USER root
RUN --mount=from=uv,source=/uv,target=/usr/local/bin/uv \\
    --mount=type=bind,target=/tmp/context \\
    uv venv --python "$PYTHON_VERSION" --python-preference only-managed /opt/bidsbatch/venv \\
 && if [ -n "$BIDSBATCH_WHEEL" ]; then \\
        uv pip install --python /opt/bidsbatch/venv/bin/python "/tmp/context/$BIDSBATCH_WHEEL"; \\
    else \\
        uv pip install --python /opt/bidsbatch/venv/bin/python "bidsbatch==$BIDSBATCH_VERSION"; \\
    fi \\
 && {links} \\
 && chmod -R a+rX /opt/bidsbatch \\
 && bidsbatch --version
# Batch runs `bidsbatch worker ...` as the container's command, and the worker runs the
# app's own command: the app's entry point would swallow that command, so it goes.
ENTRYPOINT []
CMD ["bidsbatch", "--help"]
"""
