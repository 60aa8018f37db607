"""The commands that execute and watch runs: run, worker, status, logs, retry, cancel."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the execution commands to ``app``."""
    from . import cli_worker

    cli_worker.register(app)
