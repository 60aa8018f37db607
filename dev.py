#!/usr/bin/env python3
"""Set up and run bidsbatch from a fresh clone, with nothing but Python 3.11+.

    python3 dev.py demo    # make .venv, install, run the demo end to end
    python3 dev.py test    # make .venv, install with test tools, run ruff + the whole test suite

Extra arguments after the command go to ``bidsbatch demo`` or to pytest.
The tests start the servers they need themselves (a moto server on 127.0.0.1).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"


def _say(msg: str) -> None:
    print(f"==> {msg}", file=sys.stderr, flush=True)


def _run(*cmd: str | Path, **kw) -> int:  # type: ignore[no-untyped-def]
    return subprocess.call([str(c) for c in cmd], **kw)


def setup(extras: str) -> None:
    """Create .venv and install bidsbatch (editable) with ``extras``, once per pyproject."""
    if sys.version_info < (3, 11):  # noqa: UP036 (dev.py runs on whatever python3 is)
        sys.exit(f"bidsbatch needs Python 3.11 or newer, this is {sys.version.split()[0]}")
    if not PY.exists():
        _say(f"creating {VENV}")
        venv.EnvBuilder(with_pip=True).create(VENV)
    stamp = VENV / f".installed-{extras or 'base'}"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return
    _say(f"installing bidsbatch{'[' + extras + ']' if extras else ''} into .venv")
    target = f"{ROOT}[{extras}]" if extras else str(ROOT)
    if not _uv_install(target):
        quiet = ["--quiet", "--disable-pip-version-check"]
        if _run(PY, "-m", "pip", "install", *quiet, "--upgrade", "pip") != 0:
            sys.exit("pip could not be upgraded")
        if _run(PY, "-m", "pip", "install", *quiet, "-e", target) != 0:
            sys.exit("installing bidsbatch failed (see pip's message above)")
    stamp.write_text(digest)


def _uv_install(target: str) -> bool:
    """Install with uv, which fetches in parallel (about 1 min where pip takes 7); else False.

    uv is itself a wheel from PyPI, put into .venv by pip. Any failure falls back to pip,
    so a machine where uv cannot run still gets set up.
    """
    quiet = ["--quiet", "--disable-pip-version-check"]
    if _run(PY, "-m", "pip", "install", *quiet, "uv>=0.5,<1") != 0:
        return False
    env = {**os.environ, "UV_NATIVE_TLS": "1"}  # the system's CA store, as pip uses
    argv = [BIN / "uv", "pip", "install", "--quiet", "--compile-bytecode", "--python", PY,
            "-e", target]
    if _run(*argv, env=env) == 0:
        return True
    _say("uv failed; installing with pip instead")
    return False


def demo(args: list[str]) -> int:
    setup("")
    return _run(BIN / "bidsbatch", "demo", *args, cwd=ROOT)


def test(args: list[str]) -> int:
    setup("test")
    _say("ruff check")
    if _run(BIN / "ruff", "check", "src", "tests", "bench", "dev.py", cwd=ROOT) != 0:
        return 1
    _say("pytest")
    # Bytecode is cached (each test starts hundreds of bidsbatch processes; compiling the
    # sources every time costs a fifth of each start), but outside the source tree.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(VENV / "pycache")
    return _run(PY, "-m", "pytest", "-q", *args, cwd=ROOT, env=env)


def main() -> int:
    commands = {"demo": demo, "test": test}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    return commands[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
