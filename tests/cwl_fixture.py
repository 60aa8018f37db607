"""cwltool for the tests: in its own virtual environment, on PATH.

cwltool pins ``prov==1.5.1`` and nipype (in the test extra, for the presets' real
parsers) needs ``prov>=1.5.2``: the two cannot share one environment, so cwltool
lives in a venv of its own (cached like the container images) and bidsbatch finds
it on PATH, as it finds a pipx-installed one. Built when ``CI`` is set (about 20 s,
once), else the CWL tests skip with the command to build it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CACHE = Path(os.environ.get("BIDSBATCH_TEST_CACHE", "/var/tmp/bidsbatch-test-containers"))
VENV = CACHE / "cwltool-venv"


def find_cwltool() -> tuple[Path | None, str]:
    program = VENV / "bin" / "cwltool"
    if program.exists():
        return program.parent, ""
    build = f"{sys.executable} -m venv {VENV} && {VENV}/bin/pip install cwltool"
    if not os.environ.get("CI"):
        return None, f"cwltool is not set up for the tests; set CI=1 or run: {build}"
    VENV.parent.mkdir(parents=True, exist_ok=True)
    for cmd in ([sys.executable, "-m", "venv", str(VENV)],
                [str(VENV / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                 "cwltool"]):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            return None, f"{' '.join(cmd[:3])} failed: {(proc.stderr or proc.stdout)[-300:]}"
    return program.parent, ""


@pytest.fixture(scope="session")
def cwltool_bin() -> Path:
    """The folder of a working ``cwltool`` program (put it on PATH)."""
    found, why = find_cwltool()
    if found is None:
        pytest.skip(why)
    return found
