"""One writer per run directory: an exclusive ``fcntl.flock`` on ``RUN/supervisor.lock``.

``run`` and ``retry`` take it (without waiting) before they look at what is
running and submit, so two of them started together cannot both pass the
"already running" check. The local executor hands the locked file to its
supervisor process, which holds it until it exits: while a run's supervisor
lives, no other ``run`` of that run directory starts. The kernel drops the
lock when its holder dies, however it dies, so a lock is never left stale.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from .errors import UsageError

LOCK_NAME = "supervisor.lock"

#: Locks this process holds, by run directory (the local executor passes them on).
_held: dict[Path, int] = {}


def lock_path(run_dir: Path) -> Path:
    return run_dir / LOCK_NAME


def try_lock(run_dir: Path) -> int | None:
    """The fd of the locked file, or None when another process holds the lock."""
    fd = os.open(lock_path(run_dir), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[int]:
    """Hold the run directory's lock for the block; UsageError (exit 2) when it is taken."""
    key = run_dir.absolute()
    if key in _held:  # re-entrant within one process (start, then submit)
        yield _held[key]
        return
    try:
        fd = try_lock(run_dir)
    except OSError as exc:
        raise UsageError(f"cannot lock run directory {run_dir}: {exc.strerror}") from None
    if fd is None:
        raise UsageError(
            f"run {run_dir.name} is already running (another bidsbatch process holds "
            f"{lock_path(run_dir)})",
            hint=f"watch it with: bidsbatch status {run_dir} --watch",
        )
    _held[key] = fd
    try:
        yield fd
    finally:
        _held.pop(key, None)
        os.close(fd)


def held_fd(run_dir: Path) -> int | None:
    """The fd of the lock this process holds on ``run_dir``, if it holds it."""
    return _held.get(run_dir.absolute())
