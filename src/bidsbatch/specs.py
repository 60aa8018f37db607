"""Specs and run records: the JSON files a plan writes.

A :class:`Spec` is everything one job needs to process one scan (the "one
JSON per scan" of the old cloud scripts), and nothing secret. A
:class:`RunInfo` (``run.json``) describes the whole run. Both serialise
deterministically: sorted keys, no timestamps, so the same plan gives
byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

from .canonical import canonical_text
from .containers.settings import ContainerSpec
from .cwl.pipeline import CwlTool
from .errors import UsageError
from .pipelines import Pipeline, Resources
from .storage import Location, ObjectInfo, S3Options, hostile_reason, open_location

SPEC_VERSION = 1


def canonical_json(data: Any) -> str:
    """Sorted keys, two-space indent, trailing newline: stable bytes for stable data."""
    return canonical_text(data)


def sha256_of(data: Any) -> str:
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class InputFile:
    """One input of a scan: key relative to the dataset root, size, checksum if known."""

    key: str
    size: int
    etag: str | None = None

    @classmethod
    def from_object(cls, obj: ObjectInfo) -> InputFile:
        return cls(obj.key, obj.size, obj.etag)


class _Places:
    """Where a spec's or a run's data is: the one place its locations are opened.

    The dataset is read with its own S3 options (``--requester-pays``,
    ``--no-sign-request``); the output is always written signed, with the
    caller's or the job's own credentials.
    """

    dataset: str
    output: str
    requester_pays: bool
    no_sign_request: bool

    @property
    def s3_options(self) -> S3Options:
        """How to read the dataset (never how to write the output)."""
        return S3Options(requester_pays=self.requester_pays, no_sign_request=self.no_sign_request)

    def open_dataset(self) -> Location:
        return open_location(self.dataset, s3=self.s3_options)

    def open_output(self) -> Location:
        return open_location(self.output)


@dataclass(frozen=True)
class Spec(_Places):
    """What one job needs to process one scan. Never credentials."""

    run_id: str
    scan_id: str
    participant: str
    session: str | None
    dataset: str
    output: str
    pipeline: str
    image: str
    argv: list[str]
    inputs: list[InputFile]
    resources: Resources
    attempts: int
    config_hash: str
    env: dict[str, str] = field(default_factory=dict)
    output_excludes: list[str] = field(default_factory=list)
    #: What a successful scan must have written: one glob of each entry must match.
    expected_outputs: list[list[str]] = field(default_factory=list)
    #: What the config hash covers, entry by entry (see fingerprint.py).
    fingerprint: dict[str, str] = field(default_factory=dict)
    requester_pays: bool = False
    no_sign_request: bool = False
    #: How the worker runs the app (runtime, binds, env names); not in the config hash.
    #: None: as a plain process (specs planned before containers existed).
    container: ContainerSpec | None = None
    spec_version: int = SPEC_VERSION
    #: A CWL pipeline's tool and this item's job object (None: run ``argv``).
    cwl: CwlTool | None = None
    #: The pipeline's kind for items (``items``, ``cwl``); None: a BIDS App over a scan.
    kind: str | None = None
    #: Left out of the JSON while None: the specs of BIDS Apps stay byte for byte.
    OMIT_WHEN_NONE: ClassVar[frozenset[str]] = frozenset({"cwl", "kind"})

    @property
    def input_bytes(self) -> int:
        return sum(f.size for f in self.inputs)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for name in self.OMIT_WHEN_NONE:
            if data[name] is None:
                data.pop(name)
        return data

    def to_json(self) -> str:
        # The dataclass itself, not asdict's deep copy: the same bytes (canonical.py).
        return canonical_text(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "spec") -> Spec:
        try:
            version = data.get("spec_version")
            if version != SPEC_VERSION:
                raise UsageError(
                    f"{source}: spec version {version!r} is not {SPEC_VERSION}",
                    hint="plan the run again with this version of bidsbatch",
                )
            known = {f.name for f in fields(cls)}
            values = {k: v for k, v in data.items() if k in known}
            values["inputs"] = [InputFile(**f) for f in data["inputs"]]
            values["resources"] = Resources.from_record(data["resources"])
            if data.get("container") is not None:
                values["container"] = ContainerSpec.from_dict(data["container"])
            if data.get("cwl") is not None:
                values["cwl"] = CwlTool.from_record(data["cwl"])
            spec = cls(**values)
        except UsageError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"{source}: not a valid bidsbatch spec ({exc})") from None
        # The scan id names files (markers, logs, the scratch folder): a plain name only,
        # checked before anything is written anywhere.
        sid = spec.scan_id
        reason = "not a string" if not isinstance(sid, str) else (
            hostile_reason(sid) or ("a '/' in it" if "/" in sid else None))
        if reason:
            raise UsageError(f"{source}: scan id {sid!r} is not a plain name ({reason})",
                             hint="the spec was changed by hand or damaged; plan the run again")
        return spec

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = "spec") -> Spec:
        try:
            data = json.loads(text)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UsageError(f"{source}: not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise UsageError(f"{source}: a spec must be a JSON object")
        return cls.from_dict(data, source=source)


@dataclass(frozen=True)
class RunInfo(_Places):
    """``run.json``: what a run is (dataset, output, pipeline, selection, scans)."""

    run_id: str
    dataset: str
    dataset_name: str
    output: str
    pipeline: Pipeline
    pipeline_source: str
    selection: dict[str, Any]
    scans: list[str]
    bidsbatch_version: str
    requester_pays: bool = False
    no_sign_request: bool = False
    warnings: list[str] = field(default_factory=list)
    #: Scans the pipeline cannot process (scan id -> why), planned for no job.
    left_out: dict[str, str] = field(default_factory=dict)
    #: How the apps of the run are run (a ContainerSpec's fields); the group step's too.
    container: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.pipeline, Pipeline):  # read from run.json (or given as one)
            object.__setattr__(self, "pipeline", Pipeline.from_record(self.pipeline))

    def to_json(self) -> str:
        data = asdict(self)
        data["pipeline"] = self.pipeline.to_dict()
        return canonical_json(data)

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = "run.json") -> RunInfo:
        hint = "plan the run again (bidsbatch plan DATASET OUTPUT --run-dir …) to rewrite it"
        try:
            data = json.loads(text)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UsageError(f"{source}: not a valid run record ({exc})", hint=hint) from None
        if not isinstance(data, dict):
            raise UsageError(f"{source}: not a valid run record (a JSON object is needed, "
                             f"not {type(data).__name__})", hint=hint)
        known = {f.name for f in fields(cls)}
        try:
            info = cls(**{k: v for k, v in data.items() if k in known})
        except UsageError as exc:  # its pipeline is not a valid pipeline record
            raise UsageError(f"{source}: not a valid run record ({exc.message})",
                             hint=hint) from None
        except (TypeError, KeyError, AttributeError, ValueError) as exc:
            raise UsageError(f"{source}: not a valid run record ({exc})", hint=hint) from None
        if not isinstance(info.scans, list) or not all(isinstance(x, str) for x in info.scans) \
                or not isinstance(info.run_id, str):
            raise UsageError(f"{source}: not a valid run record (run_id or scans has the "
                             "wrong type)", hint=hint)
        return info


@dataclass(frozen=True)
class Manifest:
    """Index -> scan of a run, for array jobs: child ``i`` runs ``specs[i]``."""

    run_id: str
    specs: list[str]  # URIs (or paths relative to the manifest) of the specs, by index

    def to_json(self) -> str:
        return canonical_json(asdict(self))

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = "manifest") -> Manifest:
        try:
            data = json.loads(text)
            return cls(run_id=data["run_id"], specs=list(data["specs"]))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise UsageError(f"{source}: not a valid manifest ({exc})") from None
