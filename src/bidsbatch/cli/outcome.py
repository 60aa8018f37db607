"""A command's outcome as the user sees it: one error line and an exit code.

Shared by the typer app (``app.main``) and the entry point's fast path
(``fastpath.py``), so a failure reads the same whichever parsed the command
line: a typed error is its line and hint (exit 2 for usage, 1 otherwise),
anything unexpected one line and a hint to rerun with ``--debug``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import BidsbatchError


def guarded(call: Callable[[], Any], *, debug: bool) -> int:
    """Run ``call`` as the app runs a command; its exit code.

    Ctrl-C is 130 with nothing printed, and a closed pipe (``status | head``) is 1,
    as typer's ``main`` has them.
    """
    try:
        call()
    except BidsbatchError as exc:
        if debug:
            raise
        from ..console import print_error

        print_error(exc)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        _quiet_closed_pipes()
        return 1
    except Exception as exc:
        if debug:
            raise
        print_unexpected(exc)
        return 1
    return 0


def print_unexpected(exc: BaseException) -> None:
    """One line for an error bidsbatch did not expect, and how to see its traceback."""
    from rich.markup import escape

    from ..console import err_console

    err_console.print(
        f"[bold red]error:[/] unexpected {type(exc).__name__}: {escape(str(exc))}",
        highlight=False, soft_wrap=True,
    )
    err_console.print("  [dim]hint:[/] rerun with --debug for the traceback")


def _quiet_closed_pipes() -> None:
    """What is left unflushed in stdout and stderr goes nowhere (no second error at exit)."""
    import contextlib
    import os
    import sys

    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            os.dup2(devnull, stream.fileno())
