"""What keeps a local scan cheap: no thread to wait for the app, no Python between fork and exec.

bench/RESULTS.md ("the local executor's per-scan cost profiled") says what each cost.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from bidsbatch.orphans import dying_with_parent, setpriv
from bidsbatch.pidwait import open_pidfd
from bidsbatch.usage import AppWaiter

LINUX_PIDFD = sys.platform.startswith("linux") and open_pidfd(os.getpid()) is not None


@pytest.mark.skipif(not LINUX_PIDFD, reason="needs Linux pidfds")
def test_the_app_is_waited_for_without_a_thread_and_its_rusage_kept() -> None:
    before = {t.ident for t in threading.enumerate()}
    proc = subprocess.Popen([sys.executable, "-c", "x = bytearray(64 * 1024 * 1024)"])
    waiter = AppWaiter(proc)
    assert {t.ident for t in threading.enumerate()} == before  # nobody blocked in wait4
    with pytest.raises(subprocess.TimeoutExpired):
        waiter.wait(timeout=0)  # still starting: the timeout is honoured
    assert waiter.wait(timeout=60) == 0
    assert proc.returncode == 0 and waiter.poll() == 0
    usage = waiter.usage()
    assert usage is not None and usage.cpu_seconds is not None
    assert usage.peak_memory_mib is not None and usage.peak_memory_mib >= 64


@pytest.mark.skipif(setpriv() is None, reason="no util-linux setpriv with --pdeathsig here")
def test_the_app_starts_through_setpriv_and_dies_with_its_parent(tmp_path: Path) -> None:
    argv, preexec = dying_with_parent(["sleep", "60"], path=os.environ.get("PATH"))
    assert preexec is None  # subprocess may vfork: no Python runs in the child
    assert argv[:4] == [setpriv(), "--pdeathsig", "KILL", "--"]
    assert argv[4:] == [shutil.which("sleep"), "60"]
    # A parent that starts the app this way, then is SIGKILLed: the kernel kills the app.
    pid_file = tmp_path / "app.pid"
    code = (
        "import os, subprocess, sys\n"
        "from bidsbatch.orphans import dying_with_parent\n"
        "argv, pre = dying_with_parent(['sleep', '60'], path=os.environ.get('PATH'))\n"
        "p = subprocess.Popen(argv, preexec_fn=pre)\n"
        # Popen returns once setpriv is exec'd; it sets the signal, then execs sleep.
        "while not os.readlink(f'/proc/{p.pid}/exe').endswith('sleep'): pass\n"
        f"open({str(pid_file)!r}, 'w').write(str(p.pid))\n"
        "os.kill(os.getpid(), 9)\n"
    )
    parent = subprocess.run([sys.executable, "-c", code], check=False)
    assert parent.returncode == -9
    app = int(pid_file.read_text())
    fd = open_pidfd(app)
    if fd is not None:  # gone already, or it goes now
        from bidsbatch.pidwait import wait_pidfd

        assert wait_pidfd(fd, 10), "the app outlived its parent"
        os.close(fd)


def test_an_app_that_is_not_there_is_left_to_popen_to_report() -> None:
    argv, preexec = dying_with_parent(["no-such-app-here", "x"], path="/nonexistent")
    assert argv == ["no-such-app-here", "x"]
    assert preexec is not None or not sys.platform.startswith("linux")
    relative, _ = dying_with_parent(["./run.sh"], path=os.environ.get("PATH"))
    assert relative == ["./run.sh"]  # resolved by Popen against the app's cwd, as before
