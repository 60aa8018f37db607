"""``bidsbatch runs``: the runs this machine knows, newest first."""

from __future__ import annotations

import typer

from .args import JsonOpt
from .runs_view import show_runs


def register(app: typer.Typer) -> None:
    """Add ``runs`` to ``app``."""
    app.command("runs")(runs_command)


def runs_command(as_json: JsonOpt = False) -> None:
    """List the runs (id, dataset, pipeline, executor, scans by state, last activity), newest
    first. States are as last seen: bidsbatch status RUN asks the executor.

    Example: bidsbatch runs --json
    """
    show_runs(as_json=as_json)
