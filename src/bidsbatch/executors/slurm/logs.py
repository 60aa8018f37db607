"""A task's log file: its tail (the reason of a failure) and its lines (``bidsbatch logs``).

Slurm writes each task's output to ``logs/slurm/<array>_<task>.log`` in the
run directory (every attempt appended, ``--open-mode=append``). The worker
prefixes its lines ``<time> [worker]`` and the app's ``<time> [app]``; the
reason of a failure is the app's last error line, else the worker's last
``error:`` line, else the last line of the log.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_PREFIX = re.compile(r"^\S+Z \[(?P<source>app|worker)\] ")
_ERROR_WORDS = ("error", "exception", "traceback", "fail", "killed", "signal")
#: Slurm's own lines in a task's output (the task was killed, cancelled, timed out).
_SLURM_LINE = re.compile(r"slurmstepd: error: \*\*\* (?P<what>.*?) \*\*\*")


def tail_lines(path: Path, *, max_bytes: int = 16384) -> list[str]:
    """The last lines of ``path`` (none when it does not exist)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - max_bytes))
            return fh.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return []


def reason_from_log(path: Path, *, limit: int = 200) -> str | None:
    """One line on why the task failed, from the end of its log."""
    lines = [ln for ln in tail_lines(path) if ln.strip()]
    if not lines:
        return None
    slurm = [m["what"] for ln in lines if (m := _SLURM_LINE.search(ln))]
    app, worker = [], []
    for line in lines:
        m = _PREFIX.match(line)
        if not m:
            continue
        text = line[m.end():].strip()
        if m["source"] == "app" and any(w in text.lower() for w in _ERROR_WORDS):
            app.append(text)
        elif m["source"] == "worker" and (text.startswith("error:") or "signal" in text):
            worker.append(text.removeprefix("error:").strip())
    for found in (app, worker, slurm):
        if found:
            return found[-1][:limit]
    return lines[-1].strip()[:limit]
