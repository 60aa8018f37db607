"""The output's ``dataset_description.json``: who made the derivatives, and from what.

BIDS derivatives say where they came from in ``dataset_description.json``:
``GeneratedBy`` (the pipelines, with ``Name``, ``Version``, ``CodeURL``,
``Container``) and ``SourceDatasets`` (the input's ``URL``). bidsbatch adds
its own entry — itself, the pipeline and its container image — and the input
dataset's URI to what the app wrote, or writes the file when the app wrote
none. The app's entries are never dropped.

Where and when, and why there:

- **Every committing worker merges**, after its stage-out and before its
  marker: the app's file is taken out of the plain upload (every scan of a
  BIDS App writes one; uploaded as is, the last scan's would erase the
  merged file) and merged with the output's current file and bidsbatch's
  entry; the marker lists the file as the scan left it (its checksum is the
  same for every scan of a run, whose merges all give the same bytes). Runs
  without a group step, and scans a later run adds, get the file too.
- **The group step merges again** after its app ran, with what the file held
  before: a group command that rewrites the file (the demo app's does) loses
  nothing either.
- **Concurrent scans do not race**: the merge is a pure, idempotent function
  of the current file and the app's (``merge(merge(x)) == merge(x)``); a
  worker whose merge would change nothing only reads the file (one GET: the
  usual case after the first scan). A change is read, merged and written
  under a lease of its own (``.bidsbatch/claims/_dataset_description.json``,
  the scan claims' atomic create and take-over), and the write itself is
  atomic (a rename locally, one PUT on S3). A worker that cannot get the
  lease within :data:`LEASE_WAIT_SECONDS` leaves the file to the next
  committer and says so in its log; it does not fail the scan.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__
from .errors import BidsbatchError
from .storage import Location, OutputFile

DESCRIPTION = "dataset_description.json"
#: The lease's "scan id": no scan id starts with an underscore (they are sub-…).
LEASE_NAME = "_dataset_description"
LEASE_WAIT_SECONDS = 60.0
#: The BIDS version written into a description the app did not write.
DEFAULT_BIDS_VERSION = "1.10.0"
BIDSBATCH_NAME = "bidsbatch"


@dataclass(frozen=True)
class Provenance:
    """What bidsbatch says about a run's outputs."""

    pipeline: str
    image: str
    dataset: str  # the input's URI (s3://… or a local path)

    def generated_by(self) -> dict[str, Any]:
        """bidsbatch's ``GeneratedBy`` entry."""
        entry: dict[str, Any] = {
            "Name": BIDSBATCH_NAME,
            "Version": __version__,
            "Description": f"ran pipeline {self.pipeline} ({self.image}) over each scan",
            "CodeURL": f"https://pypi.org/project/bidsbatch/{__version__}/",
        }
        if self.image:
            # The image is an OCI reference whichever runtime pulled it: BIDS's "docker".
            entry["Container"] = {"Type": "docker", "Tag": self.image}
        return entry

    def source_dataset(self) -> dict[str, str]:
        return {"URL": source_url(self.dataset)}


def source_url(uri: str) -> str:
    """The dataset's URI as ``SourceDatasets`` wants it: a URL (``file://`` for a folder)."""
    if "://" in uri:
        return uri
    return Path(uri).expanduser().absolute().as_uri()


def merge_description(newer: Mapping[str, Any] | None, older: Mapping[str, Any] | None,
                      prov: Provenance, *, name: str) -> dict[str, Any]:
    """``newer`` (what an app just wrote) over ``older`` (what the output held), plus ours.

    Top-level fields of ``newer`` win; ``GeneratedBy`` and ``SourceDatasets`` keep
    every entry of both (``newer``'s first, each once), then bidsbatch's own entry
    (one, the current version's) and the input dataset.
    """
    out: dict[str, Any] = {**(older or {}), **(newer or {})}
    out.setdefault("Name", f"{name} derivatives")
    out.setdefault("BIDSVersion", DEFAULT_BIDS_VERSION)
    out.setdefault("DatasetType", "derivative")
    generated = [e for e in _entries(newer, "GeneratedBy") + _entries(older, "GeneratedBy")
                 if not (isinstance(e, dict) and e.get("Name") == BIDSBATCH_NAME)]
    out["GeneratedBy"] = [*_unique(generated), prov.generated_by()]
    sources = _unique(_entries(newer, "SourceDatasets") + _entries(older, "SourceDatasets"))
    ours = prov.source_dataset()
    if not any(isinstance(s, dict) and s.get("URL") == ours["URL"] for s in sources):
        sources.append(ours)
    out["SourceDatasets"] = sources
    return out


def _entries(doc: Mapping[str, Any] | None, field: str) -> list[Any]:
    value = (doc or {}).get(field)
    return list(value) if isinstance(value, list) else []


def _unique(items: Sequence[Any]) -> list[Any]:
    seen: set[str] = set()
    out = []
    for item in items:
        key = json.dumps(item, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


def _encode(doc: Mapping[str, Any]) -> bytes:
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def read_description(output: Location) -> dict[str, Any] | None:
    """The output's description, or None (none yet, or not a JSON object: then ours replaces
    it, since nothing could read it)."""
    return _parse(_read_bytes(output))


def _read_bytes(output: Location) -> bytes | None:
    try:
        return output.read_bytes(DESCRIPTION)
    except BidsbatchError:
        return None


def _parse(data: bytes | None) -> dict[str, Any] | None:
    if data is None:
        return None
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def take_app_description(out_dir: Path) -> dict[str, Any] | None:
    """Take the app's ``dataset_description.json`` out of its output folder, before upload.

    Left in place it would be uploaded over the merged file; it is merged instead.
    A file that is not a JSON object is left to be uploaded as the app wrote it.
    """
    path = out_dir / DESCRIPTION
    if not path.is_file() or path.is_symlink():
        return None
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    path.unlink()
    return data


def record(output: Location, prov: Provenance, *, app: Mapping[str, Any] | None,
           before: Mapping[str, Any] | None = None, run_id: str, log: Any,
           sleep: Any = time.sleep, wait_seconds: float = LEASE_WAIT_SECONDS) -> bytes | None:
    """Merge ``app`` (and ``before``) and bidsbatch's entry into the output's description.

    Returns the file's bytes as it now is (None: left to another worker, the lease
    was busy). Lock-free when nothing would change.
    """
    from .leases import ClaimHeld, ScanClaim

    def merged_now() -> tuple[bytes | None, dict[str, Any] | None, dict[str, Any]]:
        raw = _read_bytes(output)
        current = _parse(raw)
        older = merge_description(current, before, prov, name=prov.pipeline) \
            if before is not None else current
        return raw, current, merge_description(app, older, prov, name=prov.pipeline)

    raw, current, wanted = merged_now()
    if current == wanted and raw is not None:
        return raw
    claim = ScanClaim(output, scan_id=LEASE_NAME, run_id=run_id, job_id=None)
    deadline = time.monotonic() + wait_seconds
    delay = 0.05
    while True:
        try:
            claim.acquire()
            break
        except ClaimHeld:
            if time.monotonic() > deadline:
                log.info(f"warning: {output.describe(DESCRIPTION)} is being written by another "
                         "worker; left to the next one")
                return None
            sleep(delay)
            delay = min(delay * 2, 1.0)
    try:
        raw, current, wanted = merged_now()  # again, under the lease: what we merge is current
        if current == wanted and raw is not None:
            return raw
        data = _encode(wanted)
        output.write_bytes(DESCRIPTION, data)
        log.info(f"provenance: {output.describe(DESCRIPTION)} names bidsbatch "
                 f"{__version__}, {prov.pipeline} ({prov.image}) and {prov.dataset}")
        return data
    finally:
        with contextlib.suppress(Exception):
            claim.release()


def record_for_scan(output: Location, spec: Any, app: Mapping[str, Any] | None, *,
                    log: Any) -> OutputFile | None:
    """The worker's call, at commit: the file as this scan left it, for its marker.

    Best effort: a failure to write is said in the log, not fatal (None then).
    """
    prov = Provenance(pipeline=spec.pipeline, image=spec.image, dataset=spec.dataset)
    try:
        data = record(output, prov, app=app, run_id=spec.run_id, log=log)
    except BidsbatchError as exc:
        log.info(f"warning: could not write {output.describe(DESCRIPTION)}: {exc}")
        return None
    if data is None:
        return None
    return OutputFile(key=DESCRIPTION, size=len(data),
                      checksum="sha256:" + hashlib.sha256(data).hexdigest())


def with_description(outputs: list[OutputFile], described: OutputFile | None) -> list[OutputFile]:
    """A scan's outputs with the description as it committed it, in key order."""
    if described is None:
        return outputs
    return sorted([*(o for o in outputs if o.key != DESCRIPTION), described],
                  key=lambda o: o.key)


def record_for_group(output: Location, info: Any, *, before: Mapping[str, Any] | None,
                     log: Any) -> None:
    """The group step's call, after its app: what the file held before is merged back."""
    prov = Provenance(pipeline=info.pipeline.name, image=info.pipeline.image,
                      dataset=info.dataset)
    try:
        record(output, prov, app=None, before=before, run_id=info.run_id, log=log)
    except BidsbatchError as exc:
        log.info(f"warning: could not write {output.describe(DESCRIPTION)}: {exc}")
