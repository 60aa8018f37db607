"""What a killed worker leaves behind on this machine, and how it is cleared.

A worker killed with SIGKILL cannot stop its app or remove its scratch folder.
Three things make up for it:

- the app is started with ``PR_SET_PDEATHSIG`` (Linux): the kernel kills it
  when its worker dies (:func:`die_with_parent`);
- the local supervisor, when it reaps a worker that died of a signal, kills
  whatever still carries that attempt's contract variables
  (``BIDSBATCH_RUN_ID``, ``BIDSBATCH_SCAN_ID``, ``BIDSBATCH_ATTEMPT``): the
  app's own children, which the kernel does not reach (:func:`kill_attempt`);
- each scratch folder holds ``worker.pid`` (host, pid, start time), and the
  next supervisor removes the scratch folders whose worker is gone
  (:func:`clean_dead_scratch`). Only folders with that file are touched.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from .leases import process_start

PID_FILE = "worker.pid"
PR_SET_PDEATHSIG = 1


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the kernel SIGKILL the child when its parent dies.

    ``preexec_fn`` runs Python between fork and exec, which is not safe in a
    threaded process when it takes locks or imports; this one only calls an
    already resolved ``prctl`` and ``getppid``, both plain system calls. None
    where there is no prctl (not Linux).
    """
    prctl = libc_prctl()
    if prctl is None:
        return None
    parent = os.getpid()
    sigkill = int(signal.SIGKILL)

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, sigkill, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(126)

    return preexec


def dying_with_parent(argv: list[str], *, path: str | None,
                      ) -> tuple[list[str], Callable[[], None] | None]:
    """``(argv, preexec_fn)`` that start ``argv`` to be SIGKILLed when this process dies.

    Through util-linux's ``setpriv --pdeathsig KILL`` where it is installed and
    ``argv[0]`` is found on ``path`` (the app's ``PATH``) or is an absolute
    executable: a ``preexec_fn`` makes ``subprocess`` fork the whole worker and run
    Python in the child (5.8 ms of CPU a scan for ``true``, against 2.4 ms through
    setpriv, which lets it ``vfork``). Else :func:`die_with_parent`, and an app that
    is not there is reported by ``Popen`` as before. (setpriv does not check that the
    worker still lives once the signal is set; the local supervisor kills a killed
    worker's app by its contract variables, :func:`kill_attempt`.)
    """
    helper = setpriv()
    if helper is not None and argv:
        exe = argv[0] if os.path.isabs(argv[0]) else (
            None if "/" in argv[0] else shutil.which(argv[0], path=path))
        if exe is not None and os.path.isfile(exe) and os.access(exe, os.X_OK):
            return [helper, "--pdeathsig", "KILL", "--", exe, *argv[1:]], None
    return argv, die_with_parent()


@functools.cache
def setpriv() -> str | None:
    """util-linux's ``setpriv`` that knows ``--pdeathsig`` (2.33 on), or None."""
    if not sys.platform.startswith("linux"):
        return None
    for folder in ("/usr/bin", "/bin", "/usr/sbin", "/sbin"):
        exe = os.path.join(folder, "setpriv")
        if os.access(exe, os.X_OK):
            try:
                text = subprocess.run([exe, "--help"], capture_output=True, text=True,
                                      timeout=10).stdout
            except (OSError, subprocess.SubprocessError):
                return None
            return exe if "--pdeathsig" in text else None
    return None


@functools.cache
def libc_prctl() -> Callable[..., int] | None:
    """libc's ``prctl``, resolved once a process (the local supervisor's forks inherit it:
    importing ctypes and opening libc in every worker cost ~5 ms a scan)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


def write_pid_file(scratch_root: Path) -> None:
    pid = os.getpid()
    (scratch_root / PID_FILE).write_text(f"{socket.gethostname()} {pid} {process_start(pid)}\n")


def _worker_gone(pid_file: Path) -> bool:
    try:
        host, pid_text, *start = pid_file.read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return False  # unreadable: not ours to judge
    if host != socket.gethostname():
        return False  # a shared scratch folder: another machine's worker
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return bool(start) and process_start(pid) not in ("", start[0])


def clean_dead_scratch(base: Path) -> list[Path]:
    """Remove ``base/bidsbatch-*/`` folders of workers that are gone; return them."""
    removed = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(base):
            if not entry.name.startswith("bidsbatch-") or not entry.is_dir(follow_symlinks=False):
                continue
            root = Path(entry.path)
            if _worker_gone(root / PID_FILE):
                shutil.rmtree(root, ignore_errors=True)
                removed.append(root)
    return removed


def kill_attempt(*, run_id: str, scan_id: str, attempt: int) -> list[int]:
    """SIGKILL every process of ours whose environment marks it as this attempt's app."""
    needles = [f"BIDSBATCH_RUN_ID={run_id}".encode(), f"BIDSBATCH_SCAN_ID={scan_id}".encode(),
               f"BIDSBATCH_ATTEMPT={attempt}".encode()]
    me = os.getpid()
    killed = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                env = fh.read().split(b"\0")
        except OSError:
            continue
        if all(n in env for n in needles):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry), signal.SIGKILL)
                killed.append(int(entry))
    return killed
