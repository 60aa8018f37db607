"""The consoles: chatter, progress and tables on stderr; machine output on stdout."""

from __future__ import annotations

import sys

from rich.console import Console

err_console = Console(stderr=True)


def print_json(text: str) -> None:
    """Machine-readable output: plain text on stdout, no rich markup."""
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()
