"""The container settings as typed values: the pipeline's ``[container]`` and ``[assets]``,
and what a spec carries to the worker.

A pipeline file says what the app needs::

    [container]
    entrypoint = "keep"        # the image's ENTRYPOINT is the app (BIDS App images)
    network = false            # the default: --network none
    env = ["MY_LICENSE_SERVER"] # variables of the worker passed through by name
    fs_license = true          # needs a FreeSurfer license (--fs-license-file)
    runtime = "none"           # rarely: the demo's bundled app runs without a container

    [assets.atlas]             # bound read-only into every job
    source = "s3://bucket/atlas.nii.gz"   # or a local path
    target = "/opt/atlas/atlas.nii.gz"

A :class:`ContainerSpec` is what the planner adds to every spec (not part of
the config hash: the runtime that runs an image does not change its outputs).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from ..credentials import check_no_credentials
from ..errors import PipelineError
from .base import Entrypoint

RUNTIME_NAMES = ("docker", "podman", "apptainer", "none")
#: Where the FreeSurfer license is seen in every container (FreeSurfer's own default).
FS_LICENSE_TARGET = "/opt/freesurfer/license.txt"
#: Where the TemplateFlow home is seen in every container.
TEMPLATEFLOW_TARGET = "/opt/templateflow"


@dataclass(frozen=True)
class Asset:
    """A file or folder every job of a pipeline needs, seen read-only at ``target``."""

    name: str
    source: str  # a local path or an s3:// object
    target: str


@dataclass(frozen=True)
class PipelineContainer:
    """The pipeline file's ``[container]`` and ``[assets]`` tables."""

    runtime: str | None = None
    entrypoint: Entrypoint = Entrypoint.REPLACE
    network: bool = False
    env: tuple[str, ...] = ()
    fs_license: bool = False
    assets: tuple[Asset, ...] = ()

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> PipelineContainer:
        """The inverse of :meth:`to_dict` (``run.json``)."""
        return cls(runtime=data.get("runtime"),
                   entrypoint=Entrypoint(data.get("entrypoint", Entrypoint.REPLACE.value)),
                   network=bool(data.get("network", False)), env=tuple(data.get("env") or ()),
                   fs_license=bool(data.get("fs_license", False)),
                   assets=tuple(Asset(**a) for a in data.get("assets") or ()))

    def to_dict(self) -> dict[str, Any]:
        return {"runtime": self.runtime, "entrypoint": self.entrypoint.value,
                "network": self.network, "env": list(self.env), "fs_license": self.fs_license,
                "assets": [vars(a).copy() for a in self.assets]}


@dataclass(frozen=True)
class HostBind:
    """A host path bound read-only into every container of the run (license, TemplateFlow)."""

    source: str
    target: str


@dataclass(frozen=True)
class ContainerSpec:
    """How the worker runs the app: which runtime, and everything the container gets."""

    runtime: str = "none"
    entrypoint: str = Entrypoint.REPLACE.value
    network: bool = False
    env: list[str] = field(default_factory=list)
    binds: list[HostBind] = field(default_factory=list)
    assets: list[Asset] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)  # set in the container
    image_cache: str | None = None
    user: str | None = None  # "UID:GID"; None: the worker's own
    command: list[str] = field(default_factory=list)  # the runtime's client; []: its name

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ContainerSpec:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["binds"] = [HostBind(**b) for b in data.get("binds", [])]
        values["assets"] = [Asset(**a) for a in data.get("assets", [])]
        return cls(**values)


def parse_pipeline_container(data: dict[str, Any], source: str) -> PipelineContainer:
    """The ``[container]`` and ``[assets]`` tables of a pipeline document."""

    def fail(message: str) -> PipelineError:
        return PipelineError(f"{source}: {message}",
                             hint="see the README's container section for the format")

    table = data.get("container", {})
    if not isinstance(table, dict):
        raise fail("[container] must be a table")
    unknown = set(table) - {"runtime", "entrypoint", "network", "env", "fs_license"}
    if unknown:
        raise fail(f"[container]: unknown key(s) {', '.join(sorted(unknown))}")
    runtime = table.get("runtime")
    if runtime is not None and runtime not in RUNTIME_NAMES:
        raise fail(f"container.runtime must be one of {', '.join(RUNTIME_NAMES)}, "
                   f"not {runtime!r}")
    try:
        entrypoint = Entrypoint(table.get("entrypoint", Entrypoint.REPLACE.value))
    except ValueError:
        raise fail("container.entrypoint must be 'replace' (the command replaces the "
                   "image's entrypoint) or 'keep' (its arguments go to the entrypoint)") from None
    network = table.get("network", False)
    if not isinstance(network, bool):
        raise fail("container.network must be true or false")
    env = table.get("env", [])
    if not isinstance(env, list) or not all(isinstance(x, str) and x for x in env):
        raise fail("container.env must be a list of variable names")
    check_no_credentials(dict.fromkeys(env, ""), where=source)
    fs_license = table.get("fs_license", False)
    if not isinstance(fs_license, bool):
        raise fail("container.fs_license must be true or false")

    assets_table = data.get("assets", {})
    if not isinstance(assets_table, dict):
        raise fail("[assets] must be a table of [assets.NAME] tables")
    assets = []
    for name, entry in sorted(assets_table.items()):
        if not isinstance(entry, dict) or set(entry) != {"source", "target"} or not all(
                isinstance(v, str) and v for v in entry.values()):
            raise fail(f"[assets.{name}] takes 'source' (a path or s3:// URI) and 'target' "
                       "(an absolute path in the container)")
        if not entry["target"].startswith("/"):
            raise fail(f"assets.{name}.target must be an absolute path, not {entry['target']!r}")
        assets.append(Asset(name=name, source=entry["source"], target=entry["target"]))
    return PipelineContainer(runtime=runtime, entrypoint=entrypoint, network=network,
                             env=tuple(env), fs_license=fs_license, assets=tuple(assets))
