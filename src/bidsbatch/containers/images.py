"""Images, had once before any scan runs: found locally, pulled, or built into a SIF."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from . import make_runtime
from .base import ImageError, ImageInfo
from .settings import ContainerSpec


def ensure(image: str, container: ContainerSpec, *, pull: bool = True) -> ImageInfo:
    """Make ``image`` runnable by the spec's runtime; :class:`ImageError` when it cannot be."""
    runtime = make_runtime(container.runtime, command=container.command or None,
                           image_cache=Path(container.image_cache) if container.image_cache
                           else None)
    if container.runtime != "none":
        why = runtime.probe()
        if why is not None:
            raise ImageError(f"container runtime {container.runtime} does not work here: {why}",
                             hint="pick another with --container, or fix this one")
    return runtime.ensure_image(image, pull=pull)


def describe(info: ImageInfo, runtime: str) -> str:
    """One line: what will run, and whether it was found, pulled or built."""
    if runtime == "none":
        return f"image: none, the command runs on this machine ({info.reference} not used)"
    digest = f" ({info.digest[:19]})" if info.digest else ""
    runs = "" if info.runs == info.reference else f" -> {info.runs}"
    return f"image: {runtime} {info.reference}{runs}{digest}, {info.action}"


def prepare_images(specs: Iterable[object]) -> list[str]:
    """Ensure each distinct (runtime, image) of the specs once; a line on each."""
    seen: set[tuple[str, str]] = set()
    lines = []
    for spec in specs:
        container: ContainerSpec | None = getattr(spec, "container", None)
        image: str = getattr(spec, "image", "")
        if container is None or container.runtime == "none" or getattr(spec, "cwl", None):
            continue  # a CWL tool's image is cwltool's to have
        key = (container.runtime, image)
        if key in seen:
            continue
        seen.add(key)
        lines.append(describe(ensure(image, container), container.runtime))
    return lines


__all__ = ["ImageError", "describe", "ensure", "prepare_images"]
