"""Typed executor settings: each field one CLI option, saved with the run.

An executor declares its settings as a frozen dataclass that subclasses
:class:`ExecutorSettings`; a field made with :func:`option` becomes a
command-line option of ``run`` (and of ``retry`` when it says so) through one
adapter (``cli/executor_options.py``), and every field is saved in the run's
ledger (:meth:`ExecutorSettings.to_json`) so that ``status``, ``logs``,
``retry`` and ``cancel`` rebuild the same executor without flags. Fields
without :func:`option` are internal: filled in by the executor (a region
looked up once, a queue taken from an AWS environment) and saved the same way.
No field may hold a credential.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self


@dataclass(frozen=True)
class CliOption:
    """How a settings field appears on the command line."""

    help: str
    #: The flag (``--job-queue``); default: ``--`` + the field name with dashes.
    flag: str | None = None
    #: A one-letter alias (``-j``); it must mean the same in every command that has it.
    short: str | None = None
    #: Also an option of ``retry`` (a setting that may change between attempts).
    on_retry: bool = False
    hidden: bool = False
    metavar: str | None = None
    #: More spellings of the flag (``--scratch`` for ``--work-dir``).
    aliases: tuple[str, ...] = ()
    #: Said when the option is given to an executor without it: what to do there instead.
    elsewhere: str | None = None


def option(default: Any = None, *, help: str, flag: str | None = None,
           short: str | None = None, on_retry: bool = False, hidden: bool = False,
           metavar: str | None = None, aliases: tuple[str, ...] = (),
           elsewhere: str | None = None) -> Any:
    """A settings field that is also a command-line option."""
    meta = {"cli": CliOption(help=help, flag=flag, short=short, on_retry=on_retry,
                             hidden=hidden, metavar=metavar, aliases=aliases,
                             elsewhere=elsewhere)}
    if isinstance(default, dict | list | set):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class SettingField:
    """One option-bearing field of a settings class, as the CLI adapter sees it."""

    name: str
    flag: str
    type: type
    default: Any
    cli: CliOption


@dataclass(frozen=True)
class ExecutorSettings:
    """Base of every executor's settings (an executor with none uses it as is)."""

    @classmethod
    def cli_fields(cls) -> list[SettingField]:
        """The fields that are command-line options, in declaration order."""
        hints = typing.get_type_hints(cls)
        out = []
        for f in dataclasses.fields(cls):
            cli = f.metadata.get("cli")
            if cli is None:
                continue
            default = f.default if f.default is not dataclasses.MISSING else None
            out.append(SettingField(
                name=f.name, flag=cli.flag or "--" + f.name.replace("_", "-"),
                type=_scalar(hints[f.name]), default=default, cli=cli))
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        """Settings from saved (or given) values; unknown keys and ``None`` are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names and v is not None})

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values for the ledger (what :meth:`from_json` reads back)."""
        return dataclasses.asdict(self)

    def merged(self, changes: Mapping[str, Any]) -> Self:
        """These settings with ``changes`` laid over them (``None`` values change nothing)."""
        names = {f.name for f in dataclasses.fields(self)}
        given = {k: v for k, v in changes.items() if k in names and v is not None}
        return dataclasses.replace(self, **given) if given else self


def _scalar(hint: Any) -> type:
    """The option's value type from a field's annotation (``int | None`` → ``int``)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = args[0] if len(args) == 1 else str
    return hint if isinstance(hint, type) else str
