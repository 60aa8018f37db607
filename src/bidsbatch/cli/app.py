"""The ``bidsbatch`` command line: thin, it parses, calls the API and renders.

Errors are typed (``bidsbatch.errors``) and turned into one line and an exit
code here, in one place: 2 for usage, 1 for failures. ``--debug`` shows the
traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from importlib import import_module
from typing import Any

import typer

from .. import __version__
from ..console import err_console, print_error
from ..errors import BidsbatchError
from .coercion import lighten
from .helpnames import tidy_help
from .lazy import LazyCommand, LazyGroup
from .multivalue import spread_values
from .outcome import print_unexpected

#: Every command family registers itself; this is the one list of the commands (the order
#: of ``--help``), with the module whose ``register`` adds each and the first paragraph
#: of its help (what ``bidsbatch --help`` shows without importing the module; checked
#: against the command's own by tests/test_cli_lazy.py).
COMMANDS = (
    LazyCommand("synth", "plan", "Write a synthetic BIDS dataset with real tiny NIfTI images."),
    LazyCommand("pipelines", "plan", "List the pipeline presets, or show one."),
    LazyCommand("plan", "plan", "Crawl DATASET and write one JSON spec per scan into a run "
                "directory (a dry run)."),
    LazyCommand("run", "run", "Plan DATASET, skip the scans already done, run the rest, and "
                "watch them."),
    LazyCommand("status", "status", "Show the state of every scan of a run, and the counts."),
    LazyCommand("logs", "status", "Print a scan's log (every attempt), then the crash files of "
                "its failure."),
    LazyCommand("show", "show", "Print a scan's spec (the JSON its worker runs from)."),
    LazyCommand("retry", "run", "Run the failed scans of a run again (and only those)."),
    LazyCommand("cancel", "run", "Stop every queued and running scan of a run."),
    LazyCommand("demo", "run", "The main job: a synthetic dataset, the demo pipeline over every "
                "scan, locally."),
    LazyCommand("runs", "runs", "List the runs (id, dataset, pipeline, executor, scans by state, "
                "last activity), newest\nfirst. States are as last seen: bidsbatch status RUN "
                "asks the executor."),
    LazyCommand("worker", "worker", "Process one scan inside a job: stage in, run the app, "
                "stage out, commit."),
    LazyCommand("group-step", "worker", "Run the pipeline's group step over a run's output "
                "(what the group job runs)."),
    LazyCommand("report", "cost", "Write a run's report: one self-contained HTML file (summary, "
                "charts, every scan)."),
    LazyCommand("doctor", "aws", "Check credentials, region, the Batch environment, the job "
                "role and the data."),
    LazyCommand("image", "image", "Images: pull or build a pipeline's image; the Batch image "
                "with bidsbatch added."),
    LazyCommand("cost", "cost", "What a run will cost (cost estimate DATASET) and what it cost "
                "(cost RUN, or cost show RUN)."),
    LazyCommand("aws", "aws", "Set up, show and remove the AWS Batch environment bidsbatch runs "
                "in."),
)


class _Commands(LazyGroup):
    """The top level: a command's module is imported when that command runs."""

    table = COMMANDS

    def load_module(self, module: str) -> Mapping[str, Any]:
        family = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
        family.callback()(_no_options)  # a callback makes it a group, as the top level is
        import_module(f"{__package__}.{module}").register(family)
        built = typer.main.get_command(family).commands
        for name, command in built.items():
            tidy_help(command, name)
            _lighten(command)
        return built


def _no_options() -> None:
    """(the callback of a family's group, which is never invoked)"""


def _lighten(command: Any) -> None:
    lighten(command)
    for sub in (getattr(command, "commands", None) or {}).values():
        _lighten(sub)


app = typer.Typer(
    name="bidsbatch",
    help="Run a BIDS App over every scan of a BIDS dataset: locally, on AWS Batch, on Slurm.",
    no_args_is_help=True,
    # --install-completion / --show-completion (bash, zsh, fish, PowerShell).
    add_completion=True,
    pretty_exceptions_enable=False,
    cls=_Commands,
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


def click_command() -> Any:
    """The click command of the whole CLI, built once per process (help names tidied).

    Its commands are built as they are looked up (``cli/lazy.py``); walking over
    ``commands.items()`` builds them all.
    """
    command = _state.get("command")
    if command is None:
        command = _state["command"] = tidy_help(typer.main.get_command(app), deep=False)
        lighten(command)
    return command


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
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
        print_unexpected(exc)
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


def run() -> None:
    sys.exit(main())
