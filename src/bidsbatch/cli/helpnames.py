"""Help pages that name values by what they are, never by their Python type.

typer 0.29 prints each parameter's annotation in the help (``<bool>`` after a
flag, ``<list[str]>``, ``<path>``, ``{dataset}``); older versions print
click's ``TEXT``/``INTEGER``. Neither tells a user what to type. Once the
click command is built, every parameter gets a metavar that says it
(``DIR``, ``N``, ``RUN``, ``QUEUE``…; none for a flag), and the type column
shows the metavar only. A parameter that declares its own metavar keeps it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: Words an option's name may end with that say "a folder".
_DIR_WORDS = ("dir", "home", "cache", "folder")
#: Argument metavars for names that are not plain words.
_ARGUMENTS = {"run_ref": "RUN", "first": "[RUN]", "second": "SCAN"}
#: Usage lines click cannot say: ``logs``' first argument is optional *before* a required one.
_USAGE = {"logs": ["[OPTIONS]", "[RUN]", "SCAN"]}


def tidy_help(command: Any) -> Any:
    """``command`` (and every subcommand) with value names instead of type names."""
    for param in getattr(command, "params", []):
        _tidy(param)
    _tidy_help_option(command)
    if getattr(command, "name", None) in _USAGE:
        pieces = _USAGE[command.name]
        command.collect_usage_pieces = lambda ctx=None, _p=pieces: list(_p)
    for sub in (getattr(command, "commands", None) or {}).values():
        tidy_help(sub)
    return command


def value_name(param: Any) -> str:
    """What a parameter's value is called in the help: ``DIR``, ``N``, ``RUN``, ``a|b``…"""
    if getattr(param, "param_type_name", "") == "argument":
        return _ARGUMENTS.get(param.name, param.name.upper())
    type_ = getattr(param, "type", None)
    choices = getattr(type_, "choices", None)
    if choices:
        return "|".join(str(c) for c in choices)
    word = _last_word(param)
    kind = getattr(type_, "name", "")
    if kind in ("integer", "float") or kind.endswith("range"):
        return "N"
    if kind == "path" or _annotated(param) is Path:
        return "DIR" if word.lower() in _DIR_WORDS else "PATH"
    return word.upper()


def _tidy(param: Any) -> None:
    flag = bool(getattr(param, "is_flag", False) or getattr(param, "count", False))
    if param.metavar is None:
        param.metavar = "" if flag else value_name(param)
    # An argument's name column already is its metavar: its type column stays empty.
    argument = getattr(param, "param_type_name", "") == "argument"
    shown = None if argument else (param.metavar or None)
    # typer 0.29 asks display_type_rich for the type column (arguments ignore their metavar
    # there); an instance attribute answers for the method, on any typer version.
    param.display_type_rich = lambda ctx=None, _shown=shown: _shown


def _tidy_help_option(command: Any) -> None:
    """``--help`` is made by click on demand: tidy it as it is made."""
    original = getattr(command, "get_help_option", None)
    if original is None or getattr(original, "_tidied", False):
        return

    def get_help_option(ctx: Any) -> Any:
        option = original(ctx)
        if option is not None:
            _tidy(option)
        return option

    get_help_option._tidied = True  # type: ignore[attr-defined]
    command.get_help_option = get_help_option


def _last_word(param: Any) -> str:
    longs = [o for o in getattr(param, "opts", []) if o.startswith("--")]
    name = longs[0] if longs else param.name or "value"
    return name.lstrip("-").replace("_", "-").split("-")[-1] or "value"


def _annotated(param: Any) -> Any:
    info = getattr(param, "type_descriptor", None)
    return getattr(info, "annotation", None)
