"""A run directory's own marker: bidsbatch writes into (and deletes from) a folder only
when the folder is one it made.

``--run-dir`` may name any folder. A folder that is new, empty, or carries the
marker file ``.bidsbatch-run`` is a run directory; one that holds other things
is refused, so that the clean-up of stale specs can never delete a user's
files. Run directories written before the marker existed are recognised by a
valid ``run.json`` and get the marker.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from .errors import UsageError

MARKER = ".bidsbatch-run"
_MARKER_TEXT = "This folder is a bidsbatch run directory: bidsbatch writes and deletes here.\n"


def claim_run_dir(path: Path) -> None:
    """Make ``path`` a run directory, or refuse it (exit 2) when it holds other files."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"run directory {path} is a file, not a folder",
                         hint="give --run-dir a new or empty folder")
    if path.is_dir() and not (path / MARKER).exists():
        try:
            entries = [e.name for e in os.scandir(path)]
        except OSError as exc:
            raise UsageError(f"cannot read run directory {path}: {exc.strerror}") from None
        if entries and not _legacy_run_dir(path):
            raise UsageError(
                f"{path} is not empty and is not a bidsbatch run directory "
                f"(no {MARKER}; it holds {', '.join(sorted(entries)[:3])}"
                f"{', …' if len(entries) > 3 else ''})",
                hint="give --run-dir a new or empty folder",
            )
    try:
        path.mkdir(parents=True, exist_ok=True)
        marker = path / MARKER
        if not marker.exists():
            with contextlib.suppress(FileExistsError), open(marker, "x") as fh:
                fh.write(_MARKER_TEXT)
    except OSError as exc:
        raise UsageError(f"cannot make run directory {path}: {exc.strerror}",
                         hint="give --run-dir (or BIDSBATCH_HOME) a writable folder") from None


def is_run_dir(path: Path) -> bool:
    return (path / MARKER).is_file()


def _legacy_run_dir(path: Path) -> bool:
    """A run directory of an older bidsbatch: a ``run.json`` with a run id and scans."""
    try:
        data = json.loads((path / "run.json").read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and isinstance(data.get("run_id"), str) \
        and isinstance(data.get("scans"), list)


def previous_scans(path: Path) -> set[str]:
    """The scans the ``run.json`` in ``path`` lists (what bidsbatch wrote specs for)."""
    try:
        data = json.loads((path / "run.json").read_bytes())
    except (OSError, ValueError):
        return set()
    scans = data.get("scans") if isinstance(data, dict) else None
    if not isinstance(scans, list):
        return set()
    # Only plain names: a tampered run.json must not name a path outside specs/.
    return {s for s in scans if isinstance(s, str) and s and "/" not in s
            and "\\" not in s and s not in (".", "..") and "\0" not in s}
