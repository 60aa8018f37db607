"""A spec pack: many scans' specs in one object, each read alone with two ranged GETs.

An array job of 10,000 children used to need 10,000 spec objects, one PUT
each (79% of a submit's time on moto; on S3 10,000 billed requests). A pack
holds them all in one object that stays plain text (``less`` shows it):

* a header line of exactly :data:`HEADER_SIZE` bytes: JSON with the format,
  the run id and the count, padded with spaces;
* the index: ``count`` records of exactly :data:`RECORD_SIZE` bytes, record
  ``i`` at ``HEADER_SIZE + i * RECORD_SIZE``: ``"<i> <offset> <length>\\n"``,
  zero-padded, the offset absolute in the object;
* the specs, each exactly as ``specs/<scan>.json`` of the run directory
  (``Spec.to_json``), by index.

A child with index ``i`` GETs its record's byte range, then its spec's:
it never reads the other 9,999. The record repeats its own index, so an
index past the end (which would land in the specs, or beyond the object)
is refused instead of read as someone else's spec.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import StorageError, UsageError
from .specs import Spec
from .storage import Location, open_location

FORMAT = "bidsbatch-spec-pack/1"
HEADER_SIZE = 256
RECORD_SIZE = 40
_RECORD = re.compile(rb"(\d{10}) (\d{16}) (\d{11})\n")


@dataclass(frozen=True)
class PackHeader:
    """The first line of a pack."""

    run_id: str
    count: int


def build(run_id: str, specs: Sequence[Spec | bytes]) -> bytes:
    """The pack of ``specs`` (index ``i`` is ``specs[i]``), as bytes to write once.

    An item may be a spec's JSON bytes already (the run directory's file, which
    ``plan`` wrote from ``Spec.to_json``): serialising 10,000 specs again would
    be most of a submit's own time.
    """
    bodies = [s if isinstance(s, bytes) else s.to_json().encode("utf-8") for s in specs]
    header = json.dumps({"format": FORMAT, "run_id": run_id, "count": len(bodies),
                         "header_size": HEADER_SIZE, "record_size": RECORD_SIZE},
                        sort_keys=True).encode()
    if len(header) >= HEADER_SIZE:
        raise UsageError(f"run id {run_id!r} is too long for a spec pack header")
    records = []
    offset = HEADER_SIZE + RECORD_SIZE * len(bodies)
    for i, body in enumerate(bodies):
        records.append(b"%010d %016d %011d\n" % (i, offset, len(body)))
        offset += len(body)
    return b"".join([header.ljust(HEADER_SIZE - 1) + b"\n", *records, *bodies])


def read_header(location: Location, key: str) -> PackHeader:
    """The header of the pack at ``key`` (one ranged GET)."""
    raw = location.read_range(key, 0, HEADER_SIZE)
    try:
        data = json.loads(raw)
        if data.get("format") != FORMAT:
            raise ValueError(f"format {data.get('format')!r}")
        return PackHeader(run_id=str(data["run_id"]), count=int(data["count"]))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UsageError(f"{location.describe(key)}: not a spec pack ({exc})") from None


def read_spec(location: Location, key: str, index: int) -> Spec:
    """Spec number ``index`` (from 0) of the pack at ``key``: two ranged GETs."""
    where = location.describe(key)
    if index < 0:
        raise UsageError(f"index {index} is out of range for {where}")
    raw = location.read_range(key, HEADER_SIZE + index * RECORD_SIZE, RECORD_SIZE)
    m = _RECORD.fullmatch(raw)
    if m is None or int(m.group(1)) != index:
        raise UsageError(f"index {index} is out of range: {where} holds fewer specs",
                         hint="check --index / --index-base and the array size")
    offset, length = int(m.group(2)), int(m.group(3))
    body = location.read_range(key, offset, length)
    if len(body) != length:
        raise StorageError(f"{where} is cut short: spec {index} needs bytes {offset}+{length}",
                           hint="submit the run again to rewrite its spec pack")
    return Spec.from_json(body, source=f"{where} [{index}]")


def scan_ids(data: bytes) -> list[str]:
    """The scan ids of a whole pack's bytes, by index (for tools and recovery)."""
    count = json.loads(data[:HEADER_SIZE])["count"]
    out = []
    for i in range(count):
        start = HEADER_SIZE + i * RECORD_SIZE
        m = _RECORD.fullmatch(data[start:start + RECORD_SIZE])
        if m is None:
            raise UsageError(f"spec pack record {i} is damaged")
        offset, length = int(m.group(2)), int(m.group(3))
        out.append(Spec.from_json(data[offset:offset + length]).scan_id)
    return out


def load_uri(uri: str, index: int) -> Spec:
    """Spec number ``index`` of the pack named by a path, ``file://`` or ``s3://`` URI."""
    text = str(uri)
    if "://" not in text:
        text = str(Path(text).expanduser().absolute())
    parent, _, name = text.rstrip("/").rpartition("/")
    if not name or parent.endswith(":/") or (text.startswith("s3://") and "/" not in text[5:]):
        raise UsageError(f"{uri} does not name a spec pack file")
    return read_spec(open_location(parent or "/"), name, index)
