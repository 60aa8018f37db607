"""Every option shared by several commands, declared once.

Single options are ``Annotated`` aliases (``RunArg``, ``JsonOpt``…; declared in
``args.py``, which imports nothing but typer, for the commands that need no more). Groups of
options become one typed value through :func:`~bidsbatch.cli.params.extend`:

- :func:`planning_options` — which scans of which dataset (``plan``, ``run``,
  ``cost estimate``): a :class:`Planning`;
- :func:`executor_options` — ``--executor`` and every executor's settings,
  derived from the registry (``run``): an :class:`ExecutorChoice`;
  :func:`retry_options` — the settings that may change on ``retry``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import UsageError
from ..executors import engines, visible_names
from ..executors.registry import DEFAULT_EXECUTOR
from ..executors.settings import SettingField
from ..items.registry import ItemOptions
from ..storage import S3Options
from .args import (  # noqa: F401  (declared there, light to import; used from here too)
    DatasetArg,
    JsonOpt,
    OutputArg,
    PipelineOpt,
    RequiredPipelineOpt,
    RunArg,
    RunDirOpt,
)
from .item_options import ITEM_PARAMETERS, item_values
from .params import extend, parameter

# --------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class Planning:
    """Which scans to plan, and how to read the dataset: the planning options' values."""

    participant_label: list[str]
    session_label: list[str]
    exclude_participant: list[str]
    labels_file: Path | None
    requester_pays: bool
    no_sign_request: bool
    follow_symlinks: bool = False
    #: ``--items``, ``--items-glob``, ``--tiles``/``--dates``, ``--item``, ``--exclude-item``.
    items: ItemOptions = field(default_factory=ItemOptions)
    item_ids: tuple[str, ...] = ()
    exclude_items: tuple[str, ...] = ()
    #: A finished run whose measured usage sets the resources (``cost suggest``).
    resources_from: str | None = None

    @property
    def s3(self) -> S3Options:
        """How to read the dataset (never the output: outputs are always written signed)."""
        return S3Options(requester_pays=self.requester_pays,
                         no_sign_request=self.no_sign_request)

    def selection(self):  # type: ignore[no-untyped-def]
        from ..selection import Selection

        return Selection.build(participants=self.participant_label,
                               sessions=self.session_label,
                               exclude=self.exclude_participant, labels_file=self.labels_file)

    def item_selection(self):  # type: ignore[no-untyped-def]
        """Which items (``--item``, ``--exclude-item``; ``--labels-file`` lists item ids)."""
        from ..items.selection import ItemSelection

        if self.participant_label or self.session_label or self.exclude_participant:
            raise UsageError("--participant-label, --session-label and --exclude-participant "
                             "select BIDS scans, not items",
                             hint="select items with --item and --exclude-item")
        return ItemSelection.build(ids=self.item_ids, exclude=self.exclude_items,
                                   file=self.labels_file)


_PLANNING = [
    # Space-separated values (``-p 01 02``) are spread by cli/multivalue.py; the
    # underscore spellings are the BIDS Apps' own (fMRIPrep, MRIQC, m2g).
    parameter("participant_label", Annotated[list[str] | None, typer.Option(
        "--participant-label", "--participant_label", "-p", metavar="LABEL...",
        help="Participant(s) to process, with or without 'sub-': space-separated "
             "(-p 01 02), repeated or comma-separated.")],
        None),
    parameter("session_label", Annotated[list[str] | None, typer.Option(
        "--session-label", "--session_label", "-s", metavar="LABEL...",
        help="Session(s) to process, with or without 'ses-' (as --participant-label).")],
        None),
    parameter("exclude_participant", Annotated[list[str] | None, typer.Option(
        "--exclude-participant", "--exclude_participant", metavar="LABEL...",
        help="Participant(s) to leave out (as --participant-label).")], None),
    parameter("labels_file", Annotated[Path | None, typer.Option(
        "--labels-file",
        help="File of participant labels or scan ids, one a line (or a TSV with "
             "participant_id).")], None),
    parameter("requester_pays", Annotated[bool, typer.Option(
        "--requester-pays", help="Pay for reading a Requester Pays bucket.")], False),
    parameter("no_sign_request", Annotated[bool, typer.Option(
        "--no-sign-request",
        help="Read public buckets (such as OpenNeuro's) without credentials.")], False),
    parameter("follow_symlinks", Annotated[bool, typer.Option(
        "--follow-symlinks",
        help="Local dataset: stage files whose symlinks lead outside it.")], False),
    *ITEM_PARAMETERS,
    parameter("resources_from", Annotated[str | None, typer.Option(
        "--resources-from", metavar="RUN",
        help="Ask for the vCPUs and memory `bidsbatch cost suggest RUN` gives (from what "
             "that run's scans used).")], None),
]


def planning_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Give ``func`` the planning options, as one :class:`Planning` in its ``planning``."""
    def build(v: dict[str, Any]) -> Planning:
        return Planning(
            participant_label=v["participant_label"] or [],
            session_label=v["session_label"] or [],
            exclude_participant=v["exclude_participant"] or [],
            labels_file=v["labels_file"], requester_pays=v["requester_pays"],
            no_sign_request=v["no_sign_request"], follow_symlinks=v["follow_symlinks"],
            resources_from=v["resources_from"], **item_values(v))

    return extend(func, into="planning", params=_PLANNING, build=build)


# --------------------------------------------------------------------------- executors


@dataclass(frozen=True)
class ExecutorChoice:
    """``--executor`` and the settings given for it (only what was typed)."""

    name: str
    options: dict[str, Any]


def _setting_fields(*, on_retry: bool) -> dict[str, tuple[SettingField, list[str]]]:
    """Every executor's option fields by flag, with the engines that have each.

    Two engines may share a flag (same name and type): one option serves both.
    """
    out: dict[str, tuple[SettingField, list[str]]] = {}
    for name, eng in engines().items():
        for f in eng.settings.cli_fields():
            if on_retry and not f.cli.on_retry:
                continue
            if f.flag in out:
                first, owners = out[f.flag]
                if first.name != f.name or first.type is not f.type:
                    raise TypeError(f"executors {owners[0]} and {name} declare {f.flag} "
                                    "differently")
                owners.append(name)
            else:
                out[f.flag] = (f, [name])
    return out


def _param(f: SettingField) -> inspect.Parameter:
    kwargs: dict[str, Any] = {"help": f.cli.help, "hidden": f.cli.hidden}
    if f.cli.metavar:
        kwargs["metavar"] = f.cli.metavar
    flags = (f.flag, *f.cli.aliases, *((f.cli.short,) if f.cli.short else ()))
    return parameter(f.name, Annotated[f.type | None, typer.Option(*flags, **kwargs)], None)


def executor_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Give ``func`` ``--executor`` and every executor's options, as one ``executor``."""
    fields = _setting_fields(on_retry=False)
    names = visible_names()
    described = "; ".join(f"{n}: {engines()[n].description}" for n in names)
    params = [parameter("executor_name", Annotated[str, typer.Option(
        "--executor", "-e", help=f"Where scans run ({described}).")], DEFAULT_EXECUTOR),
        *(_param(f) for f, _owners in fields.values())]

    by_name = {f.name: (f, owners) for f, owners in fields.values()}

    def build(v: dict[str, Any]) -> ExecutorChoice:
        name = v.pop("executor_name")
        given = {k: x for k, x in v.items() if x is not None}
        _check_owners(name, given, by_name)
        return ExecutorChoice(name=name, options=given)

    return extend(func, into="executor", params=params, build=build)


def _check_owners(name: str, given: dict[str, Any],
                  fields: dict[str, tuple[SettingField, list[str]]]) -> None:
    """An option of another executor is a mistake, not something to ignore quietly."""
    for key in given:
        f, owners = fields[key]
        if name in engines() and name not in owners:
            raise UsageError(f"{f.flag} is an option of the {' and '.join(owners)} executor, "
                             f"not of {name}",
                             hint=f.cli.elsewhere or f"drop it, or choose --executor {owners[0]}")


def retry_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Give ``func`` the executor settings that may change on retry, as ``overrides``."""
    fields = _setting_fields(on_retry=True)
    params = [_param(f) for f, _owners in fields.values()]
    return extend(func, into="overrides", params=params,
                  build=lambda v: {k: x for k, x in v.items() if x is not None})
