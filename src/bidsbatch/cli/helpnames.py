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

from .helpoption import on_help_option

#: Words an option's name may end with that say "a folder".
_DIR_WORDS = ("dir", "home", "cache", "folder")
#: Argument metavars for names that are not plain words.
_ARGUMENTS = {"run_ref": "RUN", "first": "[RUN]", "second": "SCAN"}
#: One example per command, by its path, for the commands whose docstring has none
#: (kept here, not in each family's module: one place to see that every command has one).
EXAMPLES = {
    "": "bidsbatch run ds000114 derivatives/mriqc --pipeline mriqc --participant-label 01 02",
    "synth": "bidsbatch synth demo-ds --subjects 4 --sessions 1,2",
    "plan": "bidsbatch plan s3://openneuro.org/ds000114 out --no-sign-request --pipeline m2g "
            "--explain",
    "status": "bidsbatch status --watch   (the latest run; or: bidsbatch status RUN --json)",
    "retry": "bidsbatch retry --keep-scratch   (the failed scans of the latest run)",
    "cancel": "bidsbatch cancel demo-4648e75a56",
    "demo": "bidsbatch demo --subjects 4 --jobs 2",
    "worker": "bidsbatch worker --manifest s3://bucket/out/.bidsbatch/runs/RUN/manifest.json",
    "group-step": "bidsbatch group-step --run s3://bucket/out/.bidsbatch/runs/RUN/run.json",
    "report": "bidsbatch report --output report.html   (of the latest run)",
    "doctor": "bidsbatch doctor --environment lab --dataset s3://my-bids/ds001",
    "image": "bidsbatch image dockerfile --pipeline m2g > Dockerfile",
    "image dockerfile": "bidsbatch image dockerfile --pipeline m2g > Dockerfile",
    "image pull": "bidsbatch image pull fmriprep --container apptainer",
    "cost": "bidsbatch cost estimate s3://openneuro.org/ds000114 --pipeline m2g "
            "--no-sign-request",
    "cost estimate": "bidsbatch cost estimate s3://openneuro.org/ds000114 --pipeline m2g "
                     "--no-sign-request",
    "cost show": "bidsbatch cost show   (the latest run)",
    "cost suggest": "bidsbatch cost suggest   (the latest run), then: bidsbatch run ds out "
                    "--pipeline m2g --resources-from RUN",
    "cost prices": "bidsbatch cost prices --refresh",
    "aws": "bidsbatch aws setup lab --dataset s3://my-bids/ds001 --output s3://my-derivs/ds001",
    "aws setup": "bidsbatch aws setup lab --dataset s3://my-bids/ds001 --output "
                 "s3://my-derivs/ds001 --pipeline m2g",
    "aws status": "bidsbatch aws status lab",
    "aws teardown": "bidsbatch aws teardown lab --yes",
    "aws template": "bidsbatch aws template lab --dataset s3://my-bids/ds001 --output "
                    "s3://my-derivs/ds001 -o bidsbatch-lab.json",
}
#: Usage lines click cannot say: ``logs``' first argument is optional *before* a required one.
_USAGE = {"logs": ["[OPTIONS]", "[RUN]", "SCAN"]}


def tidy_help(command: Any, path: str = "", *, deep: bool = True) -> Any:
    """``command`` (and every subcommand, unless not ``deep``) with value names instead of
    type names, and an example in each help text."""
    for param in getattr(command, "params", []):
        _tidy(param)
    _tidy_help_option(command)
    if path in _USAGE:
        pieces = _USAGE[path]
        command.collect_usage_pieces = lambda ctx=None, _p=pieces: list(_p)
    if "Example" not in (command.help or "") and path in EXAMPLES:
        command.help = f"{(command.help or '').rstrip()}\n\nExample: {EXAMPLES[path]}"
    for name, sub in (getattr(command, "commands", None) or {}).items() if deep else ():
        tidy_help(sub, f"{path} {name}".strip())
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
    on_help_option(command, _tidy, tag="_bb_tidied")


def _last_word(param: Any) -> str:
    longs = [o for o in getattr(param, "opts", []) if o.startswith("--")]
    name = longs[0] if longs else param.name or "value"
    return name.lstrip("-").replace("_", "-").split("-")[-1] or "value"


def _annotated(param: Any) -> Any:
    info = getattr(param, "type_descriptor", None)
    return getattr(info, "annotation", None)
