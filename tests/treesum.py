"""Checksums of a whole folder tree, to show that a command changed nothing it was not
allowed to: every file's sha256, every symlink's target, every folder, by relative path."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def tree_sums(root: Path, *, skip: tuple[Path, ...] = ()) -> dict[str, str]:
    """``{relative path: "file:<sha256>" | "link:<target>" | "dir"}`` for ``root``.

    Folders in ``skip`` (the places a command is allowed to write) are left out.
    Symlinks are recorded, never followed.
    """
    skipped = {os.path.abspath(p) for p in skip}
    sums: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in skipped]
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            if path in skipped:
                continue
            rel = os.path.relpath(path, root)
            if os.path.islink(path):
                sums[rel] = "link:" + os.readlink(path)
            elif os.path.isdir(path):
                sums[rel] = "dir"
            else:
                with open(path, "rb") as fh:
                    sums[rel] = "file:" + hashlib.file_digest(fh, "sha256").hexdigest()
    return sums


def changes(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """What differs between two :func:`tree_sums`, one line each (empty: nothing)."""
    out = [f"removed {k}" for k in sorted(before.keys() - after.keys())]
    out += [f"added {k}" for k in sorted(after.keys() - before.keys())]
    out += [f"changed {k}" for k in sorted(before.keys() & after.keys()) if before[k] != after[k]]
    return out
