"""Pipelines as data: how one scan is processed.

A pipeline is a TOML file (presets ship in ``bidsbatch/presets/``)::

    name = "demo"
    image = "bidsbatch/demo:0.1.0"
    command = ["bidsbatch-demo-app", "{bids_dir}", "{output_dir}", "participant",
               "--participant_label", "{participant}",
               ["--session_label", "{session}"]]      # optional part
    [resources]
    vcpus = 1
    memory_mib = 1024
    timeout_minutes = 30
    [retry]
    attempts = 3
    [group]
    command = ["bidsbatch-demo-app", "{bids_dir}", "{output_dir}", "group"]

A nested list in ``command`` is an optional part: it vanishes when a
placeholder inside it has no value (``{session}`` for a sessionless scan).
"""

from __future__ import annotations

import hashlib
import json
import string
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from importlib import resources as importlib_resources
from pathlib import Path
from typing import Any

from .containers.settings import PipelineContainer, parse_pipeline_container
from .credentials import CREDENTIAL_VARIABLES, check_no_credentials  # noqa: F401 (re-exported)
from .cwl.pipeline import CwlTool
from .errors import PipelineError
from .safety import read_utf8

#: Placeholders known when a scan is planned.
PLAN_PLACEHOLDERS = {"participant", "session", "scan_id", "n_cpus", "mem_mib", "mem_gb"}
#: Placeholders filled by the worker at run time (paths inside the job).
RUNTIME_PLACEHOLDERS = {"bids_dir", "output_dir", "work_dir"}
PLACEHOLDERS = PLAN_PLACEHOLDERS | RUNTIME_PLACEHOLDERS

Template = list[str | list[str]]


@dataclass(frozen=True)
class Resources:
    """What one job needs. Generic: engine settings live in the executors.

    The one resources type, from the pipeline file to the spec and the engines.
    """

    vcpus: float = 1.0
    memory_mib: int = 2048
    gpus: int = 0
    disk_gib: int = 20
    timeout_minutes: int = 60

    @classmethod
    def from_record(cls, data: Mapping[str, Any]) -> Resources:
        """From a spec's or run.json's ``resources`` (what :func:`dataclasses.asdict` wrote)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class GroupStep:
    """A command run once over the whole output after every scan is done."""

    command: Template
    resources: Resources | None = None

    @classmethod
    def from_record(cls, data: Mapping[str, Any]) -> GroupStep:
        res = data.get("resources")
        return cls(command=list(data["command"]),
                   resources=Resources.from_record(res) if res else None)


@dataclass(frozen=True)
class Pipeline:
    """A validated pipeline. Build one with :func:`load_pipeline` or :meth:`from_dict`."""

    name: str
    image: str
    command: Template
    description: str = ""
    resources: Resources = field(default_factory=Resources)
    attempts: int = 3
    env: dict[str, str] = field(default_factory=dict)
    output_excludes: tuple[str, ...] = ()
    #: What a scan must produce: every entry is a tuple of globs, one of which must match.
    expected_outputs: tuple[tuple[str, ...], ...] = ()
    #: What a scan must contain to be planned: any of "datatype" or "datatype/suffix".
    required_inputs: tuple[str, ...] = ()
    #: Inputs the app does not need (globs over dataset keys).
    input_excludes: tuple[str, ...] = ()
    group: GroupStep | None = None
    #: ``[container]`` and ``[assets]``: how the image is run (not in the output hash).
    container: PipelineContainer = field(default_factory=PipelineContainer)
    source: str = ""
    #: "bids" (a BIDS App over scans), "items" (a command over any items), "cwl".
    kind: str = "bids"
    #: The tool and job template of a ``kind = "cwl"`` pipeline.
    cwl: CwlTool | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "<pipeline>") -> Pipeline:
        """Validate ``data`` (a parsed TOML document) into a Pipeline; PipelineError if bad."""
        return _parse(data, source)

    @classmethod
    def from_record(cls, data: Mapping[str, Any]) -> Pipeline:
        """The pipeline as :meth:`to_dict` wrote it (``run.json``): its inverse."""
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        values["resources"] = Resources.from_record(data.get("resources") or {})
        for name in ("output_excludes", "required_inputs", "input_excludes"):
            values[name] = tuple(data.get(name) or ())
        values["expected_outputs"] = tuple(tuple(e) for e in data.get("expected_outputs") or ())
        values["env"] = dict(data.get("env") or {})
        values["container"] = PipelineContainer.from_record(data.get("container") or {})
        group = data.get("group")
        values["group"] = GroupStep.from_record(group) if group else None
        container = data.get("container")
        values["container"] = (PipelineContainer.from_record(container) if container
                               else PipelineContainer())
        if data.get("cwl"):
            values["cwl"] = CwlTool.from_record(data["cwl"])
        return cls(**values)

    def output_hash(self) -> str:
        """Hash of every setting that can change a scan's outputs (not resources or retries)."""
        payload = {
            "image": self.image,
            "command": self.command,
            "env": dict(sorted(self.env.items())),
            "output_excludes": list(self.output_excludes),
        }
        if self.cwl is not None:  # left out otherwise: the hashes of BIDS Apps stay as they were
            payload["cwl"] = self.cwl.to_dict()
        return _sha256(payload)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["output_excludes"] = list(self.output_excludes)
        data["expected_outputs"] = [list(e) for e in self.expected_outputs]
        data["required_inputs"] = list(self.required_inputs)
        data["input_excludes"] = list(self.input_excludes)
        data.pop("source")
        # Left out when unset, so that run ids of pipelines without one stay as they were.
        data.pop("container")
        if self.container != PipelineContainer():
            data["container"] = self.container.to_dict()
        for name, default in (("kind", "bids"), ("cwl", None)):
            if data[name] == default:
                data.pop(name)
        return data

    def argv_for(self, *, participant: str, session: str | None, scan_id: str) -> list[str]:
        """The argv for one scan, with plan-time placeholders filled.

        Runtime placeholders (``{bids_dir}``, ``{output_dir}``, ``{work_dir}``)
        stay in place; the worker fills them with paths inside the job.
        """
        values = self._values(participant=participant, session=session, scan_id=scan_id)
        return render_template(self.command, values)

    def _values(self, *, participant: str, session: str | None, scan_id: str) -> dict[str, str]:
        r = self.resources
        return {
            "participant": participant,
            "session": session or "",
            "scan_id": scan_id,
            "n_cpus": str(max(1, int(r.vcpus))),
            "mem_mib": str(r.memory_mib),
            "mem_gb": str(max(1, r.memory_mib // 1024)),
        }


def render_template(template: Template, values: dict[str, str]) -> list[str]:
    """Fill known ``values``; keep runtime placeholders; drop optional parts with no value."""
    out: list[str] = []
    for part in template:
        if isinstance(part, list):
            names = {n for item in part for n in _fields(item)}
            if any(n not in RUNTIME_PLACEHOLDERS and not values.get(n) for n in names):
                continue
            out.extend(_fill(item, values) for item in part)
        else:
            out.append(_fill(part, values))
    return out


def fill_runtime(argv: list[str], *, bids_dir: str, output_dir: str, work_dir: str) -> list[str]:
    """Fill the runtime placeholders of a planned argv (the worker does this)."""
    values = {"bids_dir": bids_dir, "output_dir": output_dir, "work_dir": work_dir}
    return [_fill(a, values) for a in argv]


def _fill(item: str, values: dict[str, str]) -> str:
    out = []
    for literal, name, _spec, _conv in string.Formatter().parse(item):
        out.append(literal.replace("{", "{{").replace("}", "}}"))
        if name is not None:
            out.append(values[name] if name in values else "{" + name + "}")
    text = "".join(out)
    # Undo the escaping of literal braces: placeholders are the only braces we keep.
    return text.replace("{{", "{").replace("}}", "}")


def _fields(item: str) -> list[str]:
    return [name for _l, name, _s, _c in string.Formatter().parse(item) if name is not None]


# --------------------------------------------------------------------------- parsing


_TOP_KEYS = {"name", "description", "image", "command", "resources", "retry", "env", "output",
             "inputs", "group", "container", "assets", "kind", "cwl"}
#: Pipeline kinds: what a pipeline runs over, and how.
KINDS = ("bids", "items", "cwl")
#: The BIDS datatypes (folders of a scan) a pipeline can require.
DATATYPES = {"anat", "func", "dwi", "fmap", "perf", "eeg", "meg", "ieeg", "beh", "pet", "micr",
             "nirs", "motion", "mrs"}
#: The placeholders an expected-output glob may use.
OUTPUT_PLACEHOLDERS = {"participant", "session"}
_RESOURCE_KEYS = {"vcpus", "memory_mib", "gpus", "disk_gib", "timeout_minutes"}


def _parse(data: dict[str, Any], source: str) -> Pipeline:
    def fail(message: str) -> PipelineError:
        return PipelineError(
            f"{source}: {message}",
            hint="see the presets (bidsbatch pipelines) for the format",
        )

    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise fail(f"unknown key(s) {', '.join(sorted(unknown))}")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise fail("'name' is missing")
    kind = data.get("kind", "bids")
    if kind not in KINDS:
        raise fail(f"kind {kind!r} is not one of {', '.join(KINDS)}")
    if kind != "cwl" and "cwl" in data:
        raise fail("[cwl] belongs to a pipeline of kind = \"cwl\"")
    image = data.get("image", "" if kind == "cwl" else None)
    if not isinstance(image, str) or (not image.strip() and kind != "cwl"):
        raise fail("'image' is missing: name the container image the pipeline runs in")
    cwl = None
    if kind == "cwl":
        from .cwl.pipeline import parse_cwl

        cwl = parse_cwl(data.get("cwl"), source=source, fail=fail)
        data = {**data, "command": data.get("command", ["cwltool"])}
    # An item pipeline's placeholders are the items' own names, checked when planned.
    command = _parse_template(data.get("command"), "command", fail, any_names=kind != "bids")
    if kind == "bids" and not any("{participant}" in p for p in _flatten(command)):
        raise fail("'command' never uses {participant}: every scan would run the same thing")
    resources = _parse_resources(data.get("resources", {}), "resources", fail)

    retry = data.get("retry", {})
    if not isinstance(retry, dict) or set(retry) - {"attempts"}:
        raise fail("[retry] takes only 'attempts'")
    attempts = retry.get("attempts", 3)
    if not isinstance(attempts, int) or isinstance(attempts, bool) or not 1 <= attempts <= 10:
        raise fail(f"retry.attempts must be a whole number from 1 to 10, not {attempts!r}")

    env = data.get("env", {})
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise fail("[env] must map names to strings")
    check_no_credentials(env, where=source)

    output = data.get("output", {})
    if not isinstance(output, dict) or set(output) - {"exclude", "expect"}:
        raise fail("[output] takes only 'exclude' and 'expect' (lists of glob patterns)")
    excludes = output.get("exclude", [])
    if not isinstance(excludes, list) or not all(isinstance(x, str) for x in excludes):
        raise fail("output.exclude must be a list of glob patterns")
    expected = _parse_expected(output.get("expect", []), fail)
    required, input_excludes = _parse_inputs(data.get("inputs", {}), fail)
    _check_globs(excludes, fail)

    group = None
    if "group" in data:
        g = data["group"]
        if not isinstance(g, dict) or set(g) - {"command", "resources"}:
            raise fail("[group] takes 'command' and optional [group.resources]")
        gcmd = _parse_template(g.get("command"), "group.command", fail)
        gres = (
            _parse_resources(g["resources"], "group.resources", fail)
            if "resources" in g
            else None
        )
        group = GroupStep(command=gcmd, resources=gres)

    return Pipeline(
        name=name.strip(),
        image=image.strip(),
        command=command,
        description=str(data.get("description", "")).strip(),
        resources=resources,
        attempts=attempts,
        env=dict(env),
        output_excludes=tuple(excludes),
        expected_outputs=expected,
        required_inputs=required,
        input_excludes=input_excludes,
        group=group,
        container=parse_pipeline_container(data, source),
        source=source,
        kind=kind,
        cwl=cwl,
    )


def _parse_expected(value: Any, fail: Any) -> tuple[tuple[str, ...], ...]:
    """``expect``: globs relative to the output; a nested list is a set of alternatives."""
    if not isinstance(value, list):
        raise fail("output.expect must be a list of glob patterns (a nested list: any one of)")
    out: list[tuple[str, ...]] = []
    for item in value:
        alternatives = item if isinstance(item, list) else [item]
        if not alternatives or not all(isinstance(a, str) and a.strip() for a in alternatives):
            raise fail(f"output.expect: {item!r} is not a glob pattern or a list of them")
        for glob in alternatives:
            if glob.startswith("/") or ".." in glob.split("/"):
                raise fail(f"output.expect: {glob!r} must be relative to the output folder")
            try:
                names = _fields(glob)
            except ValueError as exc:
                raise fail(f"output.expect: bad braces in {glob!r}: {exc}") from None
            unknown = [n for n in names if n not in OUTPUT_PLACEHOLDERS]
            if unknown:
                raise fail(f"output.expect: unknown placeholder {{{unknown[0]}}} in {glob!r} "
                           "(known: {participant}, {session})")
        out.append(tuple(alternatives))
    return tuple(out)


def _parse_inputs(value: Any, fail: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``[inputs]``: ``require`` (any of DATATYPE or DATATYPE/SUFFIX) and ``exclude`` (globs)."""
    if not isinstance(value, dict) or set(value) - {"require", "exclude"}:
        raise fail("[inputs] takes only 'require' and 'exclude'")
    require = value.get("require", [])
    if not isinstance(require, list) or not all(isinstance(r, str) for r in require):
        raise fail("inputs.require must be a list such as [\"anat/T1w\", \"anat/T2w\"]")
    for item in require:
        datatype, _slash, suffix = item.partition("/")
        if datatype not in DATATYPES or (_slash and not suffix.isalnum()):
            raise fail(f"inputs.require: {item!r} is not DATATYPE or DATATYPE/SUFFIX "
                       f"(datatypes: {', '.join(sorted(DATATYPES))})")
    exclude = value.get("exclude", [])
    if not isinstance(exclude, list) or not all(isinstance(x, str) for x in exclude):
        raise fail("inputs.exclude must be a list of glob patterns")
    return tuple(require), tuple(exclude)
def _check_globs(patterns: list[str], fail: Any) -> None:
    """Each exclude compiles now, not at stage-out after the app ran."""
    import re

    from .storage.transfer import compile_excludes

    for pattern in patterns:
        try:
            compile_excludes([pattern])
        except re.error as exc:
            raise fail(f"output.exclude: {pattern!r} is not a valid glob ({exc})") from None


def _flatten(template: Template) -> list[str]:
    return [x for p in template for x in (p if isinstance(p, list) else [p])]


def _parse_template(value: Any, key: str, fail: Any, *, any_names: bool = False) -> Template:
    if not isinstance(value, list) or not value:
        raise fail(f"'{key}' must be a non-empty list of arguments")
    out: Template = []
    for part in value:
        if isinstance(part, list):
            if not part or not all(isinstance(x, str) for x in part):
                raise fail(f"'{key}': an optional part must be a non-empty list of strings")
            out.append(list(part))
        elif isinstance(part, str):
            out.append(part)
        else:
            raise fail(f"'{key}': argument {part!r} is not a string (quote it)")
    for item in _flatten(out):
        try:
            names = _fields(item)
        except ValueError as exc:
            raise fail(f"'{key}': bad braces in {item!r}: {exc}") from None
        for n in names:
            if n not in PLACEHOLDERS and not (any_names and n.isidentifier()):
                known = ", ".join("{" + p + "}" for p in sorted(PLACEHOLDERS))
                raise fail(f"'{key}': unknown placeholder {{{n}}} (known: {known})")
    if isinstance(out[0], list):
        raise fail(f"'{key}': the first argument (the program) cannot be optional")
    return out


def _parse_resources(value: Any, key: str, fail: Any) -> Resources:
    if not isinstance(value, dict):
        raise fail(f"[{key}] must be a table")
    unknown = set(value) - _RESOURCE_KEYS
    if unknown:
        raise fail(f"[{key}]: unknown key(s) {', '.join(sorted(unknown))}")
    defaults = Resources()
    vcpus = value.get("vcpus", defaults.vcpus)
    if isinstance(vcpus, bool) or not isinstance(vcpus, int | float) or not 0.25 <= vcpus <= 192:
        raise fail(f"{key}.vcpus must be a number from 0.25 to 192, not {vcpus!r}")
    ints = {}
    limits = {"memory_mib": (128, 4_000_000), "gpus": (0, 16), "disk_gib": (1, 16_000),
              "timeout_minutes": (1, 14 * 24 * 60)}
    for name, (lo, hi) in limits.items():
        v = value.get(name, getattr(defaults, name))
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise fail(f"{key}.{name} must be a whole number from {lo} to {hi}, not {v!r}")
        ints[name] = v
    return Resources(vcpus=float(vcpus), **ints)


# --------------------------------------------------------------------------- loading


def preset_names() -> list[str]:
    """The names of the shipped presets."""
    files = importlib_resources.files("bidsbatch") / "presets"
    return sorted(p.name[:-5] for p in files.iterdir() if p.name.endswith(".toml"))


def load_pipeline(name_or_path: str | Path) -> Pipeline:
    """A preset by name (``demo``, ``m2g``, ``fmriprep``, ``mriqc``) or a TOML file by path."""
    text_name = str(name_or_path)
    path = Path(text_name)
    if text_name in preset_names():
        res = importlib_resources.files("bidsbatch") / "presets" / f"{text_name}.toml"
        raw, source = res.read_text(encoding="utf-8"), f"preset {text_name}"
    elif path.suffix == ".toml" or path.exists():
        try:
            raw = read_utf8(path, what="pipeline file")
        except FileNotFoundError:
            raise PipelineError(f"pipeline file {path} does not exist") from None
        except OSError as exc:
            raise PipelineError(f"cannot read pipeline file {path}: {exc.strerror}") from None
        source = str(path)
    else:
        raise PipelineError(
            f"unknown pipeline {text_name!r}",
            hint=f"use a preset ({', '.join(preset_names())}) or a path to a .toml file",
        )
    try:
        data = tomllib.loads(raw)
    except tomllib.TOMLDecodeError as exc:
        raise PipelineError(f"{source}: not valid TOML: {exc}") from None
    return _parse(data, source)


def _sha256(payload: Any) -> str:
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()
