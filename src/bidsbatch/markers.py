"""Completion markers: the one fact that says a scan is done.

``OUTPUT/.bidsbatch/done/<scan-id>.json`` is written last by the worker,
after every output was uploaded. A scan is done if and only if its marker
exists with the same config hash as its spec. Resume, skip and retry all
read this one fact; the ledger is only a record.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .canonical import canonical_text
from .specs import Spec
from .storage import Location, OutputFile
from .usage import AppUsage

STATE_PREFIX = ".bidsbatch"
DONE_PREFIX = f"{STATE_PREFIX}/done/"
FAILED_PREFIX = f"{STATE_PREFIX}/failed/"


def marker_key(scan_id: str) -> str:
    return f"{DONE_PREFIX}{scan_id}.json"


def worker_log_key(scan_id: str) -> str:
    """The worker's own log, kept next to the marker."""
    return f"{DONE_PREFIX}{scan_id}.log"


def failed_key(scan_id: str) -> str:
    """The failure record of a scan's last failed attempt."""
    return f"{FAILED_PREFIX}{scan_id}.json"


def failed_log_key(scan_id: str) -> str:
    """The worker log of a scan's last failed attempt."""
    return f"{FAILED_PREFIX}{scan_id}.log"


@dataclass(frozen=True)
class Marker:
    run_id: str
    scan_id: str
    config_hash: str
    attempt: int
    started_at: str
    finished_at: str
    exit_code: int
    outputs: list[OutputFile] = field(default_factory=list)
    executor_job_id: str | None = None
    host: str | None = None
    bidsbatch_version: str | None = None
    #: The spec's fingerprint: what was done, so a later plan can say what changed.
    fingerprint: dict[str, str] = field(default_factory=dict)
    #: A CWL tool's output object (what cwltool printed), its locations in the output.
    tool_output: dict[str, Any] | None = None
    #: What the app used (peak memory, CPU time), as the worker measured it.
    usage: AppUsage | None = None

    #: Left out while None: markers of BIDS Apps stay as they were.
    OMIT_WHEN_NONE: ClassVar[frozenset[str]] = frozenset({"tool_output"})

    def to_json(self) -> str:
        # One walk over the marker, not asdict's deep copy (the same bytes: canonical.py).
        return canonical_text(self)

    @classmethod
    def from_json(cls, text: str | bytes) -> Marker:
        data: dict[str, Any] = json.loads(text)
        data["outputs"] = [OutputFile(**o) for o in data.get("outputs", [])]
        if isinstance(data.get("usage"), dict):
            data["usage"] = AppUsage.from_dict(data["usage"])
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def read_marker(output: Location, scan_id: str) -> Marker | None:
    """The scan's marker, or None when it has none (or an unreadable one)."""
    if not output.exists(marker_key(scan_id)):
        return None
    try:
        return Marker.from_json(output.read_bytes(marker_key(scan_id)))
    except (ValueError, TypeError, KeyError):
        return None  # a damaged marker counts as "not done": the scan is redone


def write_marker(output: Location, marker: Marker) -> None:
    output.write_text(marker_key(marker.scan_id), marker.to_json())


def is_done(spec: Spec, marker: Marker | None) -> bool:
    return marker is not None and marker.config_hash == spec.config_hash and marker.exit_code == 0


def done_scans(output: Location, specs: Iterable[Spec], *, max_workers: int = 16) -> set[str]:
    """The scan ids among ``specs`` whose marker exists with the same config hash.

    One listing of the marker folder, then the markers that exist are read in
    parallel (a marker is small; one GET each).
    """
    from .specstream import scan_ids_of

    specs = specs if isinstance(specs, Sequence) else list(specs)
    present = {
        o.key[len(DONE_PREFIX):-len(".json")]
        for o in output.list(DONE_PREFIX, delimiter="/").objects
        if o.key.endswith(".json")
    }
    # Only these specs are made (a plan's are made when read).
    candidates = [specs[i] for i, sid in enumerate(scan_ids_of(specs)) if sid in present]
    if not candidates:
        return set()

    def check(spec: Spec) -> str | None:
        try:
            marker = Marker.from_json(output.read_bytes(marker_key(spec.scan_id)))
        except (ValueError, TypeError, KeyError):
            return None
        return spec.scan_id if is_done(spec, marker) else None

    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(candidates)))) as pool:
        return {sid for sid in pool.map(check, candidates) if sid}
