"""Options that take several values after one flag, as every BIDS App takes its labels.

BIDS Apps parse ``--participant-label 01 02`` with argparse's ``nargs="+"``:
the values run until the next option. click (and so typer) gives an option
one value per flag. Rather than reach into click's parser (whose classes
differ between the click typer pins and the copy typer 0.29 bundles), the
command line is rewritten before click reads it: ``--participant-label 01 02``
becomes ``--participant-label 01 --participant-label 02``, which click's
``multiple=True`` options already take. The repeated and comma-separated
forms are left as they are.

Only the options named in :data:`SPREAD` are touched, only in the command
actually invoked, and the values of every other option are stepped over, so
``--app-args "-p 01"`` or ``--slurm-extra -p`` is never mistaken for a label.
As with argparse, the values run until the next option: put DATASET and
OUTPUT first (``bidsbatch run DATASET OUTPUT --participant-label 01 02``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: Parameter names (click's ``param.name``) whose flag takes every value up to the next option.
SPREAD = frozenset({"participant_label", "session_label", "exclude_participant"})


@dataclass(frozen=True)
class _Flag:
    takes_value: bool
    spreads: bool


def spread_values(command: Any, args: Sequence[str]) -> list[str]:
    """``args`` with each spreading flag's extra values given their own flag.

    ``command`` is the root click command (a group); the invoked subcommand is
    found by its name, as click would.
    """
    out: list[str] = []
    items = list(args)
    i = 0
    current = command
    # Down the groups to the invoked command (root options such as --debug are flags).
    while getattr(current, "commands", None) is not None and i < len(items):
        token = items[i]
        out.append(token)
        i += 1
        if token.startswith("-"):
            continue
        nxt = current.get_command(None, token)  # a lazy group imports only this command
        if nxt is None:
            return out + items[i:]  # click reports the unknown command
        current = nxt
    flags = _flags(current)
    while i < len(items):
        token = items[i]
        i += 1
        if token == "--":
            out.append(token)
            out.extend(items[i:])
            break
        name, _eq, _value = token.partition("=")
        flag = flags.get(name) if token.startswith("--") else flags.get(token[:2])
        if flag is None or not token.startswith("-"):
            out.append(token)
            continue
        inline = (token.startswith("--") and "=" in token) or (
            not token.startswith("--") and len(token) > 2)
        out.append(token)
        if not flag.takes_value:
            continue
        if not inline and i < len(items):
            out.append(items[i])
            i += 1
        if flag.spreads:
            spelled = name if token.startswith("--") else token[:2]
            while i < len(items) and not items[i].startswith("-"):
                out += [spelled, items[i]]
                i += 1
    return out


def _flags(command: Any) -> dict[str, _Flag]:
    """Every option spelling of ``command``: whether it takes a value, and whether it spreads."""
    flags: dict[str, _Flag] = {}
    for param in getattr(command, "params", []):
        opts = [*getattr(param, "opts", []), *getattr(param, "secondary_opts", [])]
        if getattr(param, "param_type_name", "") != "option":
            continue
        takes = not getattr(param, "is_flag", False) and not getattr(param, "count", False)
        spreads = param.name in SPREAD and bool(getattr(param, "multiple", False))
        for opt in opts:
            flags[opt] = _Flag(takes_value=takes, spreads=spreads)
    return flags
