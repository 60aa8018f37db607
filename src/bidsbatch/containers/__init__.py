"""Container runtimes: the app runs through one of these, on every executor.

One module per runtime behind :class:`~.base.ContainerRuntime`; this
registry is the only list of them. ``none`` runs the argv as a plain
process (the demo; AWS Batch, whose job already is the image).
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import import_module
from pathlib import Path

from ..errors import UsageError
from .base import ContainerRuntime

#: Each runtime's ``module:class``, imported when that runtime is used (reading a spec's
#: container settings imports this package, and needs no runtime).
RUNTIMES: dict[str, str] = {
    "docker": "docker:DockerRuntime",
    "podman": "podman:PodmanRuntime",
    "apptainer": "apptainer:ApptainerRuntime",
    "none": "none:NoRuntime",
}
#: The order the default is looked for in: HPC sites have Apptainer, workstations the others.
DETECTION_ORDER = ("apptainer", "podman", "docker")


def make_runtime(name: str, *, command: list[str] | None = None,
                 environ: Mapping[str, str] | None = None,
                 image_cache: Path | None = None) -> ContainerRuntime:
    """The runtime called ``name``, with its client ``command`` and base environment."""
    import os

    cls = runtime_class(name)
    env = dict(os.environ if environ is None else environ)
    if name == "apptainer":
        return cls(command=command, base_env=env, image_cache=image_cache)  # type: ignore[call-arg]
    return cls(command=command, base_env=env)


def runtime_class(name: str) -> type[ContainerRuntime]:
    """The class of the runtime called ``name`` (its module imported now)."""
    where = RUNTIMES.get(name)
    if where is None:
        raise UsageError(f"unknown container runtime {name!r}",
                         hint=f"use one of {', '.join(RUNTIMES)}")
    module, _, cls = where.partition(":")
    return getattr(import_module(f"{__package__}.{module}"), cls)


def detect_runtime(commands: Mapping[str, list[str]] | None = None,
                   environ: Mapping[str, str] | None = None) -> tuple[str | None, list[str]]:
    """The first runtime of :data:`DETECTION_ORDER` that answers; and why each other did not."""
    reasons = []
    for name in DETECTION_ORDER:
        runtime = make_runtime(name, command=(commands or {}).get(name), environ=environ)
        why = runtime.probe()
        if why is None:
            return name, reasons
        reasons.append(f"{name}: {why}")
    return None, reasons
