"""What a pipeline takes from a scan: the data it requires and the inputs it leaves out.

A pipeline declares ``[inputs] require = ["anat/T1w", "anat/T2w"]``: a scan is
planned when it holds a data file (not a sidecar) of any of these
datatype/suffix pairs, or of the datatype alone (``"func"``). fMRIPrep on an
EEG-only scan, or m2g on a scan without diffusion, would fail after its
image was pulled and its inputs staged; ``plan`` leaves such scans out and
says why. ``[inputs] exclude`` names inputs the app does not need (globs
over dataset keys, as ``[output] exclude``).
"""

from __future__ import annotations

from collections.abc import Iterable

from .bidsnames import parse_name
from .storage import ObjectInfo
from .storage.transfer import compile_excludes, is_excluded

#: Metadata next to the data, not data: a T1w.json alone is no T1w image.
SIDECAR_EXTENSIONS = {".json", ".tsv", ".bval", ".bvec"}


def missing_required(folder: str, files: Iterable[ObjectInfo],
                     required: tuple[str, ...]) -> str | None:
    """None when the scan under ``folder`` has one of ``required``, else why it is left out."""
    if not required:
        return None
    present: set[str] = set()
    for obj in files:
        if not obj.key.startswith(folder):
            continue  # dataset-level and inherited files are not the scan's data
        parts = obj.key[len(folder):].split("/")
        if len(parts) < 2:
            continue
        name = parse_name(parts[-1])
        if name is None or name.extension in SIDECAR_EXTENSIONS:
            continue
        present.add(parts[0])
        present.add(f"{parts[0]}/{name.suffix}")
    if any(r in present for r in required):
        return None
    return f"no {' or '.join(required)} data"


def without_excluded(files: Iterable[ObjectInfo], patterns: tuple[str, ...]
                     ) -> tuple[ObjectInfo, ...]:
    """``files`` minus those the pipeline's ``[inputs] exclude`` names."""
    compiled = compile_excludes(patterns)
    return tuple(f for f in files if not is_excluded(f.key, compiled))
