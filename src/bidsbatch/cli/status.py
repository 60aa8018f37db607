"""``bidsbatch status`` and ``bidsbatch logs``: what a run's scans are doing.

Kept apart from ``run.py`` so that reading a run's state imports what it reads
with (the ledger, the run's executor), not every executor's options.
"""

from __future__ import annotations

from typing import Annotated

import typer

from .args import JsonOpt, RunArg
from .status_view import show_logs, show_status


def register(app: typer.Typer) -> None:
    """Add ``status`` and ``logs`` to ``app``."""
    app.command("status")(status_command)
    app.command("logs")(logs_command)


def status_command(
    run_ref: RunArg = None,
    # No -w: it is --work-dir, as in BIDS Apps (short options mean one thing everywhere).
    watch: Annotated[bool, typer.Option("--watch", help="Follow until it ends.")] = False,
    as_json: JsonOpt = False,
    rebuild: Annotated[bool, typer.Option(
        "--rebuild", help="Rebuild a damaged ledger from the completion markers first.")]
    = False,
) -> None:
    """Show the state of every scan of a run, and the counts."""
    show_status(run_ref, watch=watch, as_json=as_json, rebuild=rebuild)


def logs_command(
    first: Annotated[str, typer.Argument(
        show_default=False,
        help="Run id or run directory; leave it out for the latest run (one argument is "
             "the SCAN).")],
    second: Annotated[str | None, typer.Argument(
        show_default=False, help="Scan id, e.g. sub-01_ses-1 (or 'group').")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines.")]
    = False,
) -> None:
    """Print a scan's log (every attempt), then the crash files of its failure.

    Example: bidsbatch logs sub-01_ses-1   (of the latest run; or: bidsbatch logs RUN SCAN)
    """
    show_logs(first, second, follow=follow)
