"""The worker's side: from a spec and its scratch folder to the command that runs the app.

With a container, the app sees its folders at fixed paths (:data:`IN_CONTAINER`):
the staged scan read-only at ``/bids``, the output and work folders writable at
``/out`` and ``/work``, ``TMPDIR`` inside the work folder, and the run's
shared assets read-only. Its environment is only what the pipeline names
plus the contract's variables (never the worker's, never credentials).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import make_runtime
from .base import Bind, ContainerRequest, ContainerRuntime, Entrypoint, Invocation, Limits
from .settings import Asset, ContainerSpec

if TYPE_CHECKING:
    from ..specs import Spec


@dataclass(frozen=True)
class AppPaths:
    """The app's folders as the app sees them."""

    bids: str
    out: str
    work: str
    tmp: str


IN_CONTAINER = AppPaths(bids="/bids", out="/out", work="/work", tmp="/work/.tmp")


@dataclass
class AppLaunch:
    """How one app run starts: its paths, the base of its environment, and the runtime."""

    runtime: ContainerRuntime
    paths: AppPaths
    base_env: dict[str, str]
    request: ContainerRequest | None = None  # None: no container
    description: str = "no container"
    passed: frozenset[str] = frozenset()  # names passed through from the worker
    _container: str | None = field(default=None, init=False)

    def invocation(self, argv: list[str], env: Mapping[str, str]) -> Invocation:
        if self.request is None:
            return Invocation(argv=list(argv), env=dict(env))
        from dataclasses import replace

        passed = {k: v for k, v in env.items() if k in self.passed}
        rest = {k: v for k, v in env.items() if k not in self.passed}
        inv = self.runtime.invocation(replace(self.request, argv=list(argv), env=rest,
                                              pass_env=passed))
        self._container = inv.container
        return inv

    def container_id(self) -> str | None:
        """The running container's id (for its cgroup: what the app used), once it has one."""
        return self.runtime.container_id(self._container) if self._container else None

    def cleanup(self) -> None:
        """Remove the container if its client left it behind (a stopped or killed client)."""
        if self._container:
            self.runtime.remove(self._container)


def prepare_app(spec: Spec, host: AppPaths, *, attempt: int,
                environ: Mapping[str, str]) -> AppLaunch:
    """The launch of ``spec``'s app; ``host`` are its folders on this machine."""
    r = spec.resources
    return prepare_launch(spec.container or ContainerSpec(), image=spec.image, host=host,
                          limits=Limits(cpus=r.vcpus, memory_mib=r.memory_mib, gpus=r.gpus),
                          name=container_name(spec.run_id, spec.scan_id, attempt),
                          environ=environ)


def prepare_launch(cs: ContainerSpec, *, image: str, host: AppPaths, limits: Limits, name: str,
                   environ: Mapping[str, str]) -> AppLaunch:
    """The launch of an app in ``image`` (a scan's, or the group step's)."""
    cache = Path(cs.image_cache) if cs.image_cache else None
    runtime = make_runtime(cs.runtime, command=cs.command or None, environ=environ,
                           image_cache=cache)
    if cs.runtime == "none":
        base = dict(environ)
        base.update(cs.variables)
        return AppLaunch(runtime=runtime, paths=host, base_env=base)

    had = runtime.ensure_image(image, pull=False)
    user = cs.user or f"{os.getuid()}:{os.getgid()}"
    tmp = Path(host.work) / Path(IN_CONTAINER.tmp).relative_to(IN_CONTAINER.work)
    tmp.mkdir(parents=True, exist_ok=True)
    _make_for(user, [Path(host.out), Path(host.work), tmp])
    binds = [Bind(Path(host.bids), IN_CONTAINER.bids, read_only=True),
             Bind(Path(host.out), IN_CONTAINER.out, read_only=False),
             Bind(Path(host.work), IN_CONTAINER.work, read_only=False)]
    binds += [Bind(Path(b.source), b.target) for b in cs.binds]
    binds += [Bind(stage_asset(a), a.target) for a in cs.assets]
    base = {name: environ[name] for name in cs.env if name in environ}
    base.update(cs.variables)
    request = ContainerRequest(
        image=had.runs, argv=[], binds=binds, workdir=IN_CONTAINER.work, limits=limits,
        user=user if runtime.name != "apptainer" else None, network=cs.network,
        entrypoint=Entrypoint(cs.entrypoint), name=name,
    )
    return AppLaunch(runtime=runtime, paths=IN_CONTAINER, base_env=base, request=request,
                     description=f"{runtime.name} {had.runs}",
                     passed=frozenset(n for n in cs.env if n in environ))


def container_name(run_id: str, scan_id: str, attempt: int) -> str:
    """``bidsbatch-<run>-<scan>-<attempt>-<pid>``: findable by run and scan, never reused."""
    raw = f"bidsbatch-{run_id}-{scan_id}-{attempt}-{os.getpid()}"
    return re.sub(r"[^a-zA-Z0-9_.-]", "-", raw)


def _make_for(user: str, folders: list[Path]) -> None:
    """The writable folders belong to the container's user, or it cannot write them."""
    uid, gid = (int(x) for x in user.split(":"))
    if uid == os.getuid():
        return
    for folder in folders:
        with contextlib.suppress(PermissionError):
            os.chown(folder, uid, gid)


def asset_cache() -> Path:
    """Where s3:// assets are kept on this node: ``$BIDSBATCH_HOME/assets``."""
    from ..runs import bidsbatch_home

    return bidsbatch_home() / "assets"


def stage_asset(asset: Asset) -> Path:
    """A local asset as it is; an s3:// one downloaded once per node into the cache."""
    if not asset.source.startswith("s3://"):
        return Path(asset.source)
    key_hash = hashlib.sha256(asset.source.encode()).hexdigest()[:16]
    name = asset.source.rstrip("/").rsplit("/", 1)[-1]
    target = asset_cache() / key_hash / name
    if target.exists():
        return target
    from ..storage import open_location

    parent, _, key = asset.source[len("s3://"):].partition("/")
    folder, _, base = key.rpartition("/")
    location = open_location(f"s3://{parent}/{folder}" if folder else f"s3://{parent}")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".stage-", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(location.read_bytes(base))
        os.replace(tmp, target)  # whole or nothing, whichever job of the node is first
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return target
