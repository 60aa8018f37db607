"""The consoles: chatter, progress and tables on stderr; machine output on stdout."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:
    from .errors import BidsbatchError


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


def print_error(exc: BidsbatchError) -> None:
    """A typed error as the user sees it: one ``error:`` line, and a hint when there is one."""
    from rich.markup import escape

    err_console.print(f"[bold red]error:[/] {escape(exc.message)}", highlight=False)
    if exc.hint:
        err_console.print(f"  [dim]hint:[/] {escape(exc.hint)}", highlight=False)
