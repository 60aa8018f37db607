"""The consoles: chatter, progress and tables on stderr; machine output on stdout."""

from __future__ import annotations

import sys

from rich.console import Console


def _make_err_console() -> Console:
    console = Console(stderr=True)
    if not console.is_terminal and "COLUMNS" not in __import__("os").environ:
        # Logs and CI: wide enough that tables do not fold scan ids.
        console = Console(stderr=True, width=140)
    return console


err_console = _make_err_console()


def print_json(text: str) -> None:
    """Machine-readable output: plain text on stdout, no rich markup."""
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()
