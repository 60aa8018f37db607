"""The ``bidsbatch`` command line: thin, it parses, calls the API and renders.

Errors are typed (``bidsbatch.errors``) and turned into one line and an exit
code here, in one place: 2 for usage, 1 for failures. ``--debug`` shows the
traceback.
"""

from __future__ import annotations

import sys
from typing import Any

import typer

from .. import __version__
from ..console import err_console, print_error
from ..errors import BidsbatchError
from .helpnames import tidy_help
from .multivalue import spread_values

app = typer.Typer(
    name="bidsbatch",
    help="Run a BIDS App over every scan of a BIDS dataset: locally, on AWS Batch, on Slurm.",
    no_args_is_help=True,
    # --install-completion / --show-completion (bash, zsh, fish, PowerShell).
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_state: dict[str, Any] = {"debug": False}


def _version(value: bool) -> None:
    if value:
        print(f"bidsbatch {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    _state["debug"] = debug


def _register() -> None:
    """Every command family registers itself, in this one list (the order of ``--help``)."""
    if _state.get("registered"):
        return
    _state["registered"] = True
    from . import aws, cost, image, plan, run, runs, worker

    for family in (plan, run, runs, worker, image, cost, aws):
        family.register(app)


def click_command() -> Any:
    """The click command of the whole CLI, built once per process (help names tidied)."""
    _register()
    command = _state.get("command")
    if command is None:
        command = _state["command"] = tidy_help(typer.main.get_command(app))
    return command


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    _register()
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        # typer rebuilds its click command (type hints of every command) on each call;
        # build it once per process: forked workers then start in milliseconds.
        command = click_command()
        args = spread_values(command, args)  # --participant-label 01 02, as BIDS Apps take it
        # Without standalone mode click returns the code of a typer.Exit instead of raising.
        rv = command.main(args=args, prog_name="bidsbatch", standalone_mode=False)
        if isinstance(rv, int):
            return rv
    except BidsbatchError as exc:
        if debug:
            raise
        print_error(exc)
        return exc.exit_code
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        return 130
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        err_console.print("[yellow]aborted[/]")
        return 1
    except Exception as exc:  # click's usage errors and anything unexpected
        if _is_click_exception(exc):
            exc.show(file=sys.stderr)  # type: ignore[attr-defined]
            return int(exc.exit_code)  # type: ignore[attr-defined]
        if debug:
            raise
        err_console.print(
            f"[bold red]error:[/] unexpected {type(exc).__name__}: {_escape(str(exc))}",
            highlight=False, soft_wrap=True,
        )
        err_console.print("  [dim]hint:[/] rerun with --debug for the traceback")
        return 1
    return 0


def _is_click_exception(exc: BaseException) -> bool:
    """A usage error of click (missing or bad parameter, unknown option or command).

    typer up to 0.28 raises ``click``'s exceptions; 0.29 raises those of the copy of
    click it bundles (``typer._click``), which are other classes with the same
    names. Matching the class name works under both (and the pins of pyproject).
    """
    return any(c.__name__ == "ClickException" for c in type(exc).__mro__) \
        and hasattr(exc, "show") and isinstance(getattr(exc, "exit_code", None), int)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def run() -> None:
    sys.exit(main())
