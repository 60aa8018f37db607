"""The worker's side of a CWL pipeline: the files, the cwltool command, the output object.

cwltool runs on the worker's machine (or in the job's image on AWS Batch) and
starts the tool's own container: docker mode with podman as the engine
(``--user-space-docker-cmd podman``: ``--podman`` forces ``--userns=keep-id``, which
podman refuses as root), ``--singularity`` for Apptainer, ``--no-container`` when
the job is the image (the tool's ``DockerRequirement`` must then be a hint). Its
outputs go to ``{output_dir}/<item>/``, one folder per item, staged out as any app's.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..containers.base import Invocation
from ..containers.job import AppPaths
from ..errors import UsageError
from ..pipelines import fill_runtime
from ..storage import Location
from .job import fill_job

if TYPE_CHECKING:
    from ..specs import Spec

OBJECT_FILE = "cwl-output.json"
JOB_FILE = "cwl-job.json"


def engine_flags(runtime: str, command: tuple[str, ...] | list[str] = ()) -> list[str]:
    """cwltool's flags for the container layer's runtime."""
    if runtime == "none":
        return ["--no-container"]
    if runtime == "podman":
        return ["--user-space-docker-cmd", command[0] if command else "podman"]
    if runtime == "apptainer":
        return ["--singularity"]
    return []  # docker: cwltool's default


@dataclass
class CwlLaunch:
    """Like :class:`~bidsbatch.containers.job.AppLaunch`, for cwltool on this machine."""

    spec: Spec
    paths: AppPaths
    base_env: dict[str, str]
    description: str

    @property
    def outdir(self) -> Path:
        return Path(self.paths.out) / self.spec.scan_id

    @property
    def object_file(self) -> Path:
        return Path(self.paths.work) / OBJECT_FILE

    def invocation(self, argv: list[str], env: Mapping[str, str]) -> Invocation:
        """``argv`` is the planned cwltool command (``cwltool`` and its extra flags)."""
        assert self.spec.cwl is not None
        work = Path(self.paths.work)
        tool = self.spec.cwl.tool
        if self.spec.cwl.text:
            tool_path = work / Path(tool).name
            tool_path.write_text(self.spec.cwl.text, encoding="utf-8")
            tool = str(tool_path)
        job = fill_job(self.spec.cwl.job, {"bids_dir": self.paths.bids,
                                           "output_dir": self.paths.out,
                                           "work_dir": self.paths.work})
        _check_local(job, where=f"the CWL job of {self.spec.scan_id}")
        job_path = work / JOB_FILE
        job_path.write_text(json.dumps(job, indent=2, sort_keys=True), encoding="utf-8")
        self.outdir.mkdir(parents=True, exist_ok=True)
        cs = self.spec.container
        flags = engine_flags(cs.runtime if cs else "none", cs.command if cs else ())
        extra = argv[1:]  # after "cwltool": the pipeline's own cwltool options
        tmp = Path(self.paths.tmp)
        tmp.mkdir(parents=True, exist_ok=True)
        return Invocation(argv=[sys.executable, "-m", "bidsbatch.cwl.runner",
                                str(self.object_file), "--outdir", str(self.outdir),
                                "--tmpdir-prefix", f"{tmp}/", *flags, *extra, tool,
                                str(job_path)], env=dict(env))

    def cleanup(self) -> None:
        """cwltool removes its own containers."""

    def output_object(self, output: Location) -> dict[str, Any] | None:
        """cwltool's output object, its files named where they were staged out to."""
        try:
            data = json.loads(self.object_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        base = "file://" + str(Path(self.paths.out).resolve())
        return _relocate(data, base, output)


def prepare_cwl(spec: Spec, host: AppPaths, *, environ: Mapping[str, str]) -> CwlLaunch:
    cs = spec.container
    runtime = cs.runtime if cs else "none"
    return CwlLaunch(spec=spec, paths=host, base_env=dict(environ),
                     description=f"cwltool ({' '.join(engine_flags(runtime)) or 'docker'})")


def cwl_output(launch: object, output: Location) -> dict[str, Any] | None:
    """The output object of a CWL launch for the marker; None for any other app."""
    return launch.output_object(output) if isinstance(launch, CwlLaunch) else None


def _check_local(value: Any, *, where: str) -> None:
    """No ``s3://`` reaches cwltool: it would run the tool on nothing and report success."""
    if isinstance(value, str) and "://" in value and not value.startswith("file://"):
        raise UsageError(f"{where} names {value!r}: cwltool reads local files only",
                         hint="name the item's inputs with their {placeholders}, which the "
                              "worker stages in")
    if isinstance(value, dict):
        for v in value.values():
            _check_local(v, where=where)
    if isinstance(value, list):
        for v in value:
            _check_local(v, where=where)


def _relocate(value: Any, base: str, output: Location) -> Any:
    if isinstance(value, list):
        return [_relocate(v, base, output) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: _relocate(v, base, output) for k, v in value.items() if k != "path"}
    loc = value.get("location")
    if isinstance(loc, str) and loc.startswith(base + "/"):
        out["location"] = output.describe(loc[len(base) + 1:])
    return out


__all__ = ["CwlLaunch", "cwl_output", "engine_flags", "fill_runtime", "prepare_cwl"]
