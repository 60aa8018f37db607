"""What a failed scan leaves for debugging: the app's crash files, and its scratch folder.

An app that fails often says why in files of its own rather than on its
output: fMRIPrep and every nipype workflow write ``crash-<time>-<user>-<node>-
<uuid>.txt`` (the node, its inputs, the traceback) into the output's
``sub-X/log/<run-uuid>/`` or the work folder, which the worker throws away
with the scratch folder. So when an attempt fails, the worker copies those
files next to the failure record, ``OUTPUT/.bidsbatch/failed/<scan>.crash/
<folder>/<path>`` (``folder`` is ``out``, ``work`` or ``tmp`` of the scratch
folder), and lists them in the record. Bounded: at most :data:`MAX_FILES`
files, each cut to its last :data:`MAX_FILE_BYTES` (a traceback ends a crash
file), :data:`MAX_TOTAL_BYTES` in all; the newest first when there are more.

``--keep-scratch`` keeps the whole scratch folder of a failed attempt instead
of removing it; the record says where (and which host) so that ``logs`` and
``run`` can point at it. A kept folder loses its ``worker.pid``, so the next
run's clean-up of dead workers' folders leaves it alone.
"""

from __future__ import annotations

import fnmatch
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import BidsbatchError
from .markers import FAILED_PREFIX, failed_key
from .storage import Location

if TYPE_CHECKING:
    from .worker import FailureRecord, Scratch, WorkerLog

#: File names that are an app's crash report (nipype/fMRIPrep/MRIQC, and plain crash logs).
PATTERNS = ("crash-*.txt", "crash-*.log", "crash_*.txt", "*.crash")
MAX_FILES = 20
MAX_FILE_BYTES = 256 * 1024
MAX_TOTAL_BYTES = 2 * 1024 * 1024
#: The scratch folders searched, by the name they are saved under.
FOLDERS = ("out", "work", "tmp")


@dataclass(frozen=True)
class CrashFile:
    """One saved crash file: where it is in the output location, and what it was."""

    key: str  # OUTPUT/<key>
    source: str  # out/…, work/… or tmp/…: where the app wrote it in the scratch folder
    size: int  # the size the app wrote
    saved: int  # the bytes saved (its end when it was cut)

    @property
    def truncated(self) -> bool:
        return self.saved < self.size

    @classmethod
    def from_record(cls, data: Any) -> CrashFile:
        return cls(key=str(data["key"]), source=str(data["source"]), size=int(data["size"]),
                   saved=int(data["saved"]))


def crash_prefix(scan_id: str) -> str:
    return f"{FAILED_PREFIX}{scan_id}.crash/"


def find_crash_files(scratch: Scratch) -> list[tuple[str, Path]]:
    """The crash files under the scratch folder's ``out``, ``work`` and ``tmp``: (source, path).

    The newest first; symbolic links are not followed (an app's link may lead anywhere).
    """
    found: list[tuple[float, str, Path]] = []
    for folder in FOLDERS:
        root = scratch.root / folder
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                if not any(fnmatch.fnmatchcase(name, p) for p in PATTERNS):
                    continue
                path = Path(dirpath) / name
                try:
                    st = path.lstat()
                except OSError:
                    continue
                if not path.is_symlink() and path.is_file():
                    found.append((-st.st_mtime, f"{folder}/{path.relative_to(root).as_posix()}",
                                  path))
    found.sort()
    return [(source, path) for _t, source, path in found]


def save_crash_files(output: Location, scan_id: str, scratch: Scratch, *,
                     log: WorkerLog) -> list[CrashFile]:
    """Copy the bounded crash files next to the failure record; best effort."""
    from .storage import safe_key

    saved: list[CrashFile] = []
    total = 0
    found = find_crash_files(scratch)
    for source, path in found[:MAX_FILES]:
        try:
            size = path.stat().st_size
            keep = min(size, MAX_FILE_BYTES, MAX_TOTAL_BYTES - total)
            if keep <= 0:
                break
            with open(path, "rb") as fh:
                fh.seek(size - keep)
                data = fh.read(keep)
            key = safe_key(crash_prefix(scan_id) + source)
            output.write_bytes(key, data)
        except (OSError, BidsbatchError) as exc:
            log.info(f"warning: could not save the crash file {source}: {exc}")
            continue
        total += len(data)
        saved.append(CrashFile(key=key, source=source, size=size, saved=len(data)))
    if saved:
        more = len(found) - len(saved)
        log.info(f"crash files: {len(saved)} saved to {output.describe(crash_prefix(scan_id))}"
                 + (f" ({more} more left out)" if more > 0 else ""))
    return saved


def remove_crash_files(output: Location, scan_id: str) -> None:
    """The crash files of an earlier failure (a new attempt's record lists its own)."""
    keys = [o.key for o in output.walk(crash_prefix(scan_id))]
    for key in keys:
        output.delete(key)


def keep_scratch(scratch: Scratch, *, log: WorkerLog) -> None:
    """Leave the scratch folder for debugging: without its pid file no clean-up removes it."""
    from .orphans import PID_FILE

    (scratch.root / PID_FILE).unlink(missing_ok=True)
    log.info(f"scratch kept (--keep-scratch): {scratch.root}")


def with_debugging(output: Location, record: FailureRecord, *, scratch: Scratch | None,
                   keep: bool, log: WorkerLog) -> FailureRecord:
    """The failure record with its crash files saved (and the kept scratch folder named)."""
    if scratch is None:
        return record
    try:
        remove_crash_files(output, record.scan_id)
    except BidsbatchError as exc:
        log.info(f"warning: could not remove earlier crash files: {exc}")
    files = save_crash_files(output, record.scan_id, scratch, log=log)
    if keep:
        keep_scratch(scratch, log=log)
    return replace(record, crash_files=files, kept_scratch=str(scratch.root) if keep else None)


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class FailureDebug:
    """What a failure record says about debugging it (read by ``logs``, ``run``, the report)."""

    scan_id: str
    host: str | None
    kept_scratch: str | None
    crash_files: tuple[CrashFile, ...]


def read_failure_debug(output: Location, scan_id: str) -> FailureDebug | None:
    """The scan's failure record's crash files and kept scratch, or None without a record."""
    try:
        data = json.loads(output.read_bytes(failed_key(scan_id)))
    except (BidsbatchError, ValueError):
        return None
    try:
        files = tuple(CrashFile.from_record(c) for c in data.get("crash_files") or ())
    except (KeyError, TypeError, ValueError):
        files = ()
    return FailureDebug(scan_id=scan_id, host=data.get("host"),
                        kept_scratch=data.get("kept_scratch"), crash_files=files)


def crash_texts(output: Location, debug: FailureDebug) -> Iterator[tuple[CrashFile, str]]:
    """Each saved crash file with its text (undecodable bytes replaced)."""
    for crash in debug.crash_files:
        try:
            text = output.read_bytes(crash.key).decode("utf-8", errors="replace")
        except BidsbatchError as exc:
            text = f"(cannot read {output.describe(crash.key)}: {exc})"
        yield crash, text


def describe_crash(crash: CrashFile) -> str:
    """``work/wf/crash-….txt (12.3 KiB)``, and what was cut."""
    note = f", its last {crash.saved / 1024:.0f} KiB" if crash.truncated else ""
    return f"{crash.source} ({crash.size / 1024:.1f} KiB{note})"
