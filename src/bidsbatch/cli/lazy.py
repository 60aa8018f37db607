"""A command group that imports a command's module only when that command runs.

click's documented "LazyGroup" pattern. Building typer's click command of
every function of the CLI, and importing every module those functions are
declared in, costs more than most commands' own work (``status`` of a
1,000-scan run: about a second of a 1.3 s start). The group knows each
command's name, the module that registers it and the first paragraph of its
help: ``bidsbatch status`` imports the status module only, and the top-level
``--help`` and shell completion of a command name list every name and short
help from the table, importing none of them.

The group's ``commands`` is a mapping over the table: looking a name up loads
that command's module (and builds all of that module's commands, once);
iterating over its items loads everything, as a walk over the whole CLI wants.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from typer.core import TyperCommand, TyperGroup


@dataclass(frozen=True)
class LazyCommand:
    """A command of the top level as ``--help`` lists it, and where it is declared."""

    name: str
    #: The module of ``bidsbatch.cli`` whose ``register(app)`` adds it.
    module: str
    #: The first paragraph of its help: the line ``bidsbatch --help`` shows for it.
    help: str
    hidden: bool = False


class LazyCommands(MutableMapping[str, Any]):
    """The commands of a :class:`LazyGroup`, by name, loaded when looked up."""

    def __init__(self, table: tuple[LazyCommand, ...],
                 load: Callable[[str], Mapping[str, Any]], stub: Callable[[LazyCommand], Any]):
        self._table = {c.name: c for c in table}
        self._load = load
        self._stub = stub
        self._loaded: dict[str, Any] = {}
        self._listing = False

    def __getitem__(self, name: str) -> Any:
        if name in self._loaded:
            return self._loaded[name]
        entry = self._table[name]  # KeyError: no such command (click says so)
        if self._listing:
            return self._stub(entry)
        built = self._load(entry.module)
        unknown = set(built) - set(self._table)
        if unknown:
            raise TypeError(f"cli.{entry.module} registers {sorted(unknown)}, which the "
                            "command table of cli/app.py does not list")
        self._loaded.update(built)
        return self._loaded[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        self._table.pop(name, None)
        self._loaded.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        yield from self._table
        yield from (n for n in list(self._loaded) if n not in self._table)

    def __len__(self) -> int:
        return len(self._table.keys() | self._loaded.keys())

    @contextmanager
    def listing(self) -> Iterator[None]:
        """While listing names and short help: commands not loaded yet answer as stubs."""
        before, self._listing = self._listing, True
        try:
            yield
        finally:
            self._listing = before


class LazyGroup(TyperGroup):
    """The top-level group: its subclass says which commands exist and how to build them."""

    #: Every command, in the order of ``--help``.
    table: tuple[LazyCommand, ...] = ()

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = LazyCommands(self.table, self.load_module, self._stub)

    def load_module(self, module: str) -> Mapping[str, Any]:
        """The click commands that ``bidsbatch.cli.<module>`` registers, by name."""
        raise NotImplementedError

    def format_help(self, ctx: Any, formatter: Any) -> None:
        with self.commands.listing():  # type: ignore[attr-defined]
            super().format_help(ctx, formatter)

    def shell_complete(self, ctx: Any, incomplete: str) -> Any:
        with self.commands.listing():  # type: ignore[attr-defined]
            return super().shell_complete(ctx, incomplete)

    def _stub(self, entry: LazyCommand) -> Any:
        # typer's command class, as the real one's: its short help is made the same way.
        return TyperCommand(name=entry.name, help=entry.help, hidden=entry.hidden)
