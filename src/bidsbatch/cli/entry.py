"""The console script's entry point: ``bidsbatch --version`` answers before typer loads.

Building the typer app imports click, rich and typer's pydantic adapters (60 ms);
the version needs none of them. Plain command lines of ``status``, ``logs`` and ``runs``
go to the fast path (``fastpath.py``); everything else to :func:`bidsbatch.cli.app.run`.
"""

from __future__ import annotations

import sys


def run() -> None:
    if sys.argv[1:] == ["--version"]:  # what the app's eager --version option prints
        from .._version import __version__

        print(f"bidsbatch {__version__}")
        sys.exit(0)
    from .fastpath import fast_exit_code

    code = fast_exit_code(sys.argv[1:])  # status, logs, runs: without typer when plainly valid
    if code is not None:
        sys.exit(code)
    from .app import run as run_app

    run_app()
