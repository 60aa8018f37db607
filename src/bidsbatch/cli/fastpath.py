"""The entry point's fast path: ``status``, ``logs`` and ``runs`` without building typer's app.

Importing typer (and with it its copy of click, its rich help and its
parameter machinery) and building the click command of a command costs more
than ``status`` of a 1,000-scan run itself. A command line of these commands
that is plainly valid, the command's name, its positional values and its
flags spelled as the command declares them, needs none of that to be read:
it is answered here, by the same function the typer command calls
(``status_view.py``, ``runs_view.py``), with the same outcome on error
(``outcome.py``).

Anything else goes to the typer app, which answers as it always has:
``--help`` or ``-h``, an unknown or misspelt option, a missing or extra
value, ``--opt=value``, ``--``, an empty value, ``status --watch``, a
completion request of the shell. The table below is checked against the click
commands by tests/test_cli_fastpath.py: a flag here is a flag there with the same
parameter, and the counts of positionals are the command's.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import import_module

#: Set by the shell when it asks click to complete a word (the prog name is ``bidsbatch``).
COMPLETE_VAR = "_BIDSBATCH_COMPLETE"


@dataclass(frozen=True)
class FastCommand:
    """A command the fast path reads, and the function that does its work."""

    name: str
    #: Each flag's spellings, to the keyword of the function (click's parameter name).
    flags: Mapping[str, str]
    #: How many positional values it takes: at least, at most (given in order).
    least: int
    most: int
    #: ``module:function`` under ``bidsbatch.cli``.
    target: str


FAST = (
    FastCommand("status", {"--json": "as_json", "--rebuild": "rebuild"}, 0, 1,
                "status_view:show_status"),
    FastCommand("logs", {"--follow": "follow", "-f": "follow"}, 1, 2, "status_view:show_logs"),
    FastCommand("runs", {"--json": "as_json"}, 0, 0, "runs_view:show_runs"),
)
_BY_NAME = {c.name: c for c in FAST}


@dataclass(frozen=True)
class FastCall:
    """A command line the fast path answers."""

    command: FastCommand
    positionals: tuple[str, ...]
    flags: frozenset[str]
    debug: bool


def parse(argv: Sequence[str]) -> FastCall | None:
    """``argv`` read as the typer app would read it, or None when only the app can say."""
    args = list(argv)
    debug = args[:1] == ["--debug"]  # the top level's only option besides --version
    if debug:
        args = args[1:]
    command = _BY_NAME.get(args[0]) if args else None
    if command is None:
        return None
    positionals: list[str] = []
    flags: set[str] = set()
    for token in args[1:]:
        if token in command.flags:
            flags.add(command.flags[token])
        elif not token or token.startswith("-"):
            return None
        else:
            positionals.append(token)
    if not command.least <= len(positionals) <= command.most:
        return None
    return FastCall(command, tuple(positionals), frozenset(flags), debug)


def fast_exit_code(argv: Sequence[str], environ: Mapping[str, str] = os.environ) -> int | None:
    """Run ``argv`` on the fast path: its exit code, or None for the typer app to run it."""
    if COMPLETE_VAR in environ:
        return None
    call = parse(argv)
    if call is None:
        return None
    from .outcome import guarded

    module, _, name = call.command.target.partition(":")
    function = getattr(import_module(f"{__package__}.{module}"), name)
    return guarded(lambda: function(*call.positionals, **dict.fromkeys(call.flags, True)),
                   debug=call.debug)
