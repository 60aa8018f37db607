"""Saying what a failed scan left for debugging: its crash files and kept scratch folder."""

from __future__ import annotations

from collections.abc import Iterable

from rich.markup import escape

from ..console import err_console
from ..crashfiles import crash_texts, describe_crash, read_failure_debug
from ..errors import BidsbatchError
from ..runs import RunDir

#: ``run`` names the debugging leftovers of at most this many failed scans.
MAX_NAMED = 10


def print_crash_files(run: RunDir, scan_id: str) -> None:
    """After a scan's log (``bidsbatch logs``): its crash files in full, and its kept scratch."""
    try:
        output = run.info().open_output()
        debug = read_failure_debug(output, scan_id)
    except BidsbatchError:
        return  # the log is shown; an unreachable output only hides the extras
    if debug is None:
        return
    for crash, text in crash_texts(output, debug):
        print(f"----- crash file {describe_crash(crash)}: {output.describe(crash.key)}")
        print(text.rstrip("\n"))
    if debug.kept_scratch:
        print(f"----- scratch folder kept: {debug.kept_scratch}"
              + (f" (on {debug.host})" if debug.host else ""))


def say_debugging(run: RunDir, failed: Iterable[str]) -> None:
    """At the end of ``run``: where each failed scan's crash files and kept scratch are."""
    failed = list(failed)
    try:
        output = run.info().open_output()
    except BidsbatchError:
        return
    for scan_id in failed[:MAX_NAMED]:
        debug = read_failure_debug(output, scan_id)
        if debug is None:
            continue
        if debug.crash_files:
            err_console.print(f"{escape(scan_id)}: {len(debug.crash_files)} crash file(s) "
                              f"saved: bidsbatch logs {escape(_ref(run))} {escape(scan_id)}",
                              highlight=False)
        if debug.kept_scratch:
            err_console.print(f"{escape(scan_id)}: scratch folder kept: "
                              f"{escape(debug.kept_scratch)}", highlight=False)


def _ref(run: RunDir) -> str:
    """How to name the run on the command line: its id in the runs home, else its folder."""
    from ..runs import runs_root

    return run.path.name if run.path.parent == runs_root() else str(run.path)
