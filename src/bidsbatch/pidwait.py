"""Waiting for a process to end without a sleep loop: a pidfd, where Linux has one.

``Popen.wait(timeout=…)`` (Python 3.11) polls, sleeping up to 50 ms between
checks: a 35 ms app cost 63 ms, and ``runner.wait`` noticed the end of a
run up to 2 s late. A pidfd (Linux 5.3) becomes readable the moment its
process exits, whoever its parent is, so one ``poll`` with the deadline as
its timeout wakes on the exit itself. Elsewhere (no ``pidfd_open``, or the
kernel refuses it) the old ways stand in.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import time
from collections.abc import Callable


def open_pidfd(pid: int) -> int | None:
    """A pidfd of ``pid``; None where there is none (another OS, an old kernel, pid gone)."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        return opener(pid)
    except OSError:
        return None


def wait_pidfd(fd: int, timeout: float | None) -> bool:
    """Block until the pidfd's process has exited (True) or ``timeout`` seconds passed."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        # poll() is retried on EINTR by Python (PEP 475); a signal handler that raises
        # (the worker's SIGTERM) ends the wait as it ended Popen.wait.
        if poller.poll(None if left is None else int(left * 1000) + 1):
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False


def wait_child(proc: subprocess.Popen[bytes], timeout: float | None) -> int | None:
    """``proc``'s exit code once it exits, or None after ``timeout`` seconds."""
    if timeout is None:
        return proc.wait()
    fd = open_pidfd(proc.pid)
    if fd is None:
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
    try:
        if proc.poll() is not None:
            return proc.returncode
        if not wait_pidfd(fd, timeout):
            return None
    finally:
        os.close(fd)
    return proc.wait()  # it has exited: this reaps it at once


def wait_gone(pid: int, timeout: float, *, alive: Callable[[int], bool],
              sleep: Callable[[float], None] = time.sleep) -> bool:
    """Wait up to ``timeout`` s for a process that need not be our child; True when gone.

    ``alive`` says whether it still runs (a zombie counts as gone): without a pidfd
    it is asked every 50 ms.
    """
    fd = open_pidfd(pid)
    if fd is None:
        deadline = time.monotonic() + timeout
        while alive(pid) and time.monotonic() < deadline:
            sleep(0.05)
        return not alive(pid)
    try:
        wait_pidfd(fd, timeout)
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
    return not alive(pid)
