"""The spec files of a plan: ``specs/<scan>.json``, one a scan, written as they are made.

A new file is written in place (no temporary name and rename: a third of the
system calls of 100,000 specs), with exclusive creation, so an existing one,
even one appearing meanwhile, goes the atomic way: compared, and replaced
through a temporary file only when its content changed. A plan cut off
mid-file leaves a spec that differs from its content, which the next plan
replaces. Paths are plain strings and files raw descriptors: at 100,000 specs
``pathlib`` and buffered file objects were a tenth of the write.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path

from .specs import Spec
from .specstream import PlannedSpecs
from .spectext import SpecTextWriter
from .storage import atomic_write

_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


def write_specs(specs_dir: Path, specs: Iterable[Spec]) -> None:
    """Write each spec's ``to_json()`` to ``specs_dir/<scan id>.json``. Raises OSError."""
    if isinstance(specs, PlannedSpecs):
        texts: Iterable[tuple[str, str]] = specs.texts()
    else:
        writer = SpecTextWriter()
        texts = ((spec.scan_id, writer.text(spec)) for spec in specs)
    folder = os.fspath(specs_dir) + os.sep
    for scan_id, text in texts:
        write_if_changed(folder + scan_id + ".json", text.encode("utf-8"))


def write_if_changed(path: str, data: bytes) -> None:
    """``path`` holds ``data`` afterwards; an existing file is replaced only if it differs."""
    try:
        fd = os.open(path, _NEW, 0o666)
    except FileExistsError:
        with contextlib.suppress(OSError), open(path, "rb") as fh:
            if fh.read() == data:
                return
        atomic_write(Path(path), data)
        return
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
