"""What a successful scan must have written, checked before anything is uploaded.

An app that exits 0 and writes nothing (a wrong participant label, a
filter that matched no file, fMRIPrep stopping early on a missing
fieldmap) is not a done scan: its marker would make every rerun skip it.
A pipeline declares ``[output] expect``: globs relative to the output, with
``{participant}`` and ``{session}`` filled when planning; a nested list is
a set of alternatives, one of which is enough.
"""

from __future__ import annotations

from collections.abc import Iterable

from .errors import MissingOutputsError
from .storage.transfer import compile_excludes, is_excluded


def unmet(keys: Iterable[str], expected: list[list[str]]) -> list[list[str]]:
    """The entries of ``expected`` that none of ``keys`` (output paths) matches."""
    keys = list(keys)
    missing = []
    for alternatives in expected:
        patterns = compile_excludes(alternatives)
        if not any(is_excluded(k, patterns) for k in keys):
            missing.append(alternatives)
    return missing


def check_expected(keys: Iterable[str], expected: list[list[str]]) -> None:
    """Raise :class:`MissingOutputsError` naming what is missing, if anything is."""
    missing = unmet(keys, expected)
    if missing:
        what = "; ".join(" or ".join(alternatives) for alternatives in missing)
        raise MissingOutputsError(
            f"the app exited 0 but wrote no {what}",
            hint="see the app's log (bidsbatch logs RUN SCAN); [output] expect of the "
            "pipeline says what a scan must produce",
        )
