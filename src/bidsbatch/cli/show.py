"""``bidsbatch show RUN SCAN``: print one scan's spec, as planned and as its job reads it."""

from __future__ import annotations

import sys
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add ``show`` to ``app``."""
    app.command("show")(show_command)


def show_command(
    run_ref: Annotated[str, typer.Argument(help="Run id or run directory.")],
    scan: Annotated[str, typer.Argument(help="Scan id, e.g. sub-01_ses-1.")],
) -> None:
    """Print a scan's spec (the JSON its worker runs from).

    On AWS Batch the specs travel to the jobs packed in one object per
    submission; this is the same file, from the run directory.

    Example: bidsbatch show 20261202-1a2b3c sub-01_ses-1 | jq .argv
    """
    from ..runs import find_run

    run = find_run(run_ref)
    run.spec(scan)  # an unknown scan, or a damaged spec, is one clear error
    sys.stdout.write(run.spec_path(scan).read_text(encoding="utf-8"))
