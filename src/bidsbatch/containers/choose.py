"""Which runtime, and what every container of a run gets: decided once, at plan time.

Precedence for the runtime: ``--container``, then the pipeline's
``[container] runtime``, then the user config, then the first of
apptainer/podman/docker that answers; an executor whose job is the image
(AWS Batch) always gets ``none``. Shared assets (FreeSurfer license,
TemplateFlow home, the pipeline's ``[assets]``) are found and checked here,
so that a missing license is one clear line before anything runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from .settings import (
    FS_LICENSE_TARGET,
    TEMPLATEFLOW_TARGET,
    ContainerSpec,
    HostBind,
    PipelineContainer,
)
from .userconfig import UserContainerConfig, check_user, config_path, load_user_config

FS_LICENSE_URL = "https://surfer.nmr.mgh.harvard.edu/registration.html"


@dataclass(frozen=True)
class ContainerChoice:
    """What the command line said (None: not said)."""

    runtime: str | None = None
    fs_license_file: Path | None = None
    image_cache: Path | None = None
    user: str | None = None


def container_spec(
    pipeline: PipelineContainer, *, pipeline_name: str, has_image: bool = True,
    choice: ContainerChoice = ContainerChoice(), inside_image: bool = False,
    user_config: UserContainerConfig | None = None, environ: Mapping[str, str] | None = None,
    detect: bool = True, require_license: bool = True,
    warn: Callable[[str], None] | None = None,
) -> ContainerSpec:
    """The :class:`ContainerSpec` every scan of the run carries.

    ``require_license``: a pipeline that needs a FreeSurfer license and has none is a
    UsageError (the CLI); off, the license is only bound when there is one (the API's
    default plan).
    """
    env = os.environ if environ is None else environ
    config = user_config if user_config is not None else load_user_config()
    runtime = _runtime(pipeline, choice=choice, config=config, inside_image=inside_image,
                       has_image=has_image, detect=detect, environ=env, warn=warn)
    binds: list[HostBind] = []
    variables: dict[str, str] = {}
    in_container = runtime != "none"

    license_file = choice.fs_license_file or config.fs_license_file or (
        Path(env["FS_LICENSE"]) if env.get("FS_LICENSE") else None)
    if pipeline.fs_license and license_file is None and require_license:
        raise UsageError(
            f"pipeline {pipeline_name} needs a FreeSurfer license: none given",
            hint=f"pass --fs-license-file PATH or set fs_license_file in {config_path()} "
                 f"(a free license: {FS_LICENSE_URL})",
        )
    if license_file is not None:
        license_file = license_file.expanduser().absolute()
        if not license_file.is_file():
            raise UsageError(f"FreeSurfer license {license_file} is not a file",
                             hint="pass --fs-license-file with the license.txt you received")
        if in_container:
            binds.append(HostBind(str(license_file), FS_LICENSE_TARGET))
        if not inside_image:  # a path on this machine means nothing inside a Batch job
            variables["FS_LICENSE"] = FS_LICENSE_TARGET if in_container else str(license_file)

    templateflow = config.templateflow_home or (
        Path(env["TEMPLATEFLOW_HOME"]) if env.get("TEMPLATEFLOW_HOME") else None)
    if templateflow is not None and templateflow.expanduser().is_dir() and not inside_image:
        home = templateflow.expanduser().absolute()
        if in_container:
            binds.append(HostBind(str(home), TEMPLATEFLOW_TARGET))
        variables["TEMPLATEFLOW_HOME"] = TEMPLATEFLOW_TARGET if in_container else str(home)

    assets = []
    for asset in pipeline.assets:
        if asset.source.startswith("s3://"):
            assets.append(asset)
            continue
        path = Path(asset.source).expanduser().absolute()
        if not path.exists():
            raise UsageError(f"pipeline {pipeline_name}: asset {asset.name} ({path}) "
                             "does not exist")
        assets.append(type(asset)(name=asset.name, source=str(path), target=asset.target))

    user = choice.user or config.user
    if user is not None:
        check_user(user, where="--container-user")
    cache = choice.image_cache or config.image_cache
    return ContainerSpec(
        runtime=runtime, entrypoint=pipeline.entrypoint.value, network=pipeline.network,
        env=sorted(pipeline.env), binds=binds, assets=assets, variables=variables,
        image_cache=str(cache.expanduser().absolute()) if cache else None, user=user,
        command=list(config.commands.get(runtime, [])),
    )


def _runtime(pipeline: PipelineContainer, *, choice: ContainerChoice,
             config: UserContainerConfig, inside_image: bool, has_image: bool, detect: bool,
             environ: Mapping[str, str], warn: Callable[[str], None] | None) -> str:
    if inside_image:
        return "none"  # the job is the image: the worker runs the command as it is
    for said in (choice.runtime, pipeline.runtime, config.runtime):
        if said is not None:
            from . import RUNTIMES

            if said not in RUNTIMES:
                raise UsageError(f"unknown container runtime {said!r}",
                                 hint=f"use one of {', '.join(RUNTIMES)}")
            return said
    if not has_image or not detect:
        return "none"
    from . import detect_runtime

    found, reasons = detect_runtime(config.commands, environ)
    if found:
        return found
    if warn is not None:
        warn("no container runtime answers here (" + "; ".join(reasons) + "): the "
             "pipeline's command runs on this machine; pass --container to choose one")
    return "none"
