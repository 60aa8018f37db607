"""Why each scan of a plan will run, or not: read from the completion markers.

Done is one fact (markers.py: the marker with the same config hash). For a
scan that is not done, the marker it has (a previous result) holds the
fingerprint of what was done then, so the entries that changed can be named:
``inputs changed: ses-1_task-rest_bold.json``, ``pipeline changed``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum

from .fingerprint import ARGV_ENTRY, PIPELINE_ENTRY, changed_entries
from .markers import DONE_PREFIX, FAILED_PREFIX, Marker, is_done, marker_key
from .specs import Spec
from .specstream import scan_ids_of
from .storage import Location


class Why(Enum):
    DONE = "done"
    NEW = "new"
    FAILED = "failed before"
    INPUTS_CHANGED = "inputs changed"
    PIPELINE_CHANGED = "pipeline changed"
    CONFIG_CHANGED = "config changed"  # a marker from before fingerprints: no detail
    FORCED = "forced"


@dataclass(frozen=True)
class Reason:
    scan_id: str
    why: Why
    files: tuple[str, ...] = ()  # for INPUTS_CHANGED: the entries that changed

    @property
    def runs(self) -> bool:
        return self.why is not Why.DONE

    def text(self, *, max_files: int = 3) -> str:
        if not self.files:
            return self.why.value
        shown = ", ".join(self.files[:max_files])
        more = len(self.files) - max_files
        return f"{self.why.value}: {shown}" + (f" (+{more} more)" if more > 0 else "")


def explain(output: Location, specs: Iterable[Spec], *, force: bool = False,
            max_workers: int = 16) -> list[Reason]:
    """A :class:`Reason` per spec, in order. One listing per marker folder, then the markers."""
    specs = specs if isinstance(specs, Sequence) else list(specs)
    present = _listed(output, DONE_PREFIX)
    failed = _listed(output, FAILED_PREFIX)

    def one(spec: Spec) -> Reason:
        marker = _read(output, spec.scan_id)
        if is_done(spec, marker):
            return Reason(spec.scan_id, Why.FORCED if force else Why.DONE)
        if force:
            return Reason(spec.scan_id, Why.FORCED)
        if marker is None:
            return Reason(spec.scan_id, Why.FAILED if spec.scan_id in failed else Why.NEW)
        if not marker.fingerprint:
            return Reason(spec.scan_id, Why.CONFIG_CHANGED)
        changed = changed_entries(marker.fingerprint, spec.fingerprint)
        if PIPELINE_ENTRY in changed or ARGV_ENTRY in changed:
            return Reason(spec.scan_id, Why.PIPELINE_CHANGED)
        return Reason(spec.scan_id, Why.INPUTS_CHANGED, tuple(changed))

    # A scan without a marker needs neither its spec nor a thread (at 100,000 scans the
    # specs of a plan are made when read: only those with a marker are).
    reasons: list[Reason | None] = []
    with_marker: list[int] = []
    for i, sid in enumerate(scan_ids_of(specs)):
        if sid in present:
            with_marker.append(i)
            reasons.append(None)
        elif force:
            reasons.append(Reason(sid, Why.FORCED))
        else:
            reasons.append(Reason(sid, Why.FAILED if sid in failed else Why.NEW))
    if with_marker:
        with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(with_marker)))) as pool:
            for i, reason in zip(with_marker, pool.map(one, (specs[i] for i in with_marker)),
                                 strict=True):
                reasons[i] = reason
    return [r for r in reasons if r is not None]


def _listed(output: Location, prefix: str) -> set[str]:
    return {o.key[len(prefix):-len(".json")]
            for o in output.list(prefix, delimiter="/").objects if o.key.endswith(".json")}


def _read(output: Location, scan_id: str) -> Marker | None:
    try:
        return Marker.from_json(output.read_bytes(marker_key(scan_id)))
    except (ValueError, TypeError, KeyError):
        return None
