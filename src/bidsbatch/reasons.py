"""Why each scan of a plan will run, or not: read from the completion markers.

Done is one fact (markers.py: the marker with the same config hash). For a
scan that is not done, the marker it has (a previous result) holds the
fingerprint of what was done then, so the entries that changed can be named:
``inputs changed: ses-1_task-rest_bold.json``, ``pipeline changed``.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum

from .fingerprint import ARGV_ENTRY, PIPELINE_ENTRY, changed_entries
from .markers import DONE_PREFIX, FAILED_PREFIX, Marker, is_done, marker_key
from .specs import Spec
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
    specs = list(specs)
    present = _listed(output, DONE_PREFIX)
    failed = _listed(output, FAILED_PREFIX)

    def one(spec: Spec) -> Reason:
        marker = _read(output, spec.scan_id) if spec.scan_id in present else None
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

    if not specs:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(specs)))) as pool:
        return list(pool.map(one, specs))


def _listed(output: Location, prefix: str) -> set[str]:
    return {o.key[len(prefix):-len(".json")]
            for o in output.list(prefix, delimiter="/").objects if o.key.endswith(".json")}


def _read(output: Location, scan_id: str) -> Marker | None:
    try:
        return Marker.from_json(output.read_bytes(marker_key(scan_id)))
    except (ValueError, TypeError, KeyError):
        return None
