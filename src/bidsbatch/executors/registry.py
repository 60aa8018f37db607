"""The one registry of executors: CLI choices, help and options all derive from it.

A built-in engine is a package under ``bidsbatch/executors/`` whose
``__init__`` defines ``ENGINE`` (an :class:`Engine`), plus one line in
:data:`BUILTIN`. Engines of other distributions register the same way
through the ``bidsbatch.executors`` entry-point group (the value names the
module that defines ``ENGINE``), so a plugin needs no change here.

An :class:`Engine` names its settings class and, as a string, its executor
class: the CLI reads every engine's settings (its options) without importing
engine code such as boto3.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import import_module
from typing import TYPE_CHECKING

from ..errors import UsageError
from .settings import ExecutorSettings

if TYPE_CHECKING:
    from .base import Executor

#: name -> the module that defines its ENGINE. Adding an executor is one line here.
BUILTIN: dict[str, str] = {
    "local": "bidsbatch.executors.local",
    "aws-batch": "bidsbatch.executors.awsbatch",
    "slurm": "bidsbatch.executors.slurm",
    "fake": "bidsbatch.executors.fake",
}
ENTRY_POINT_GROUP = "bidsbatch.executors"
#: Where scans run when nothing says otherwise.
DEFAULT_EXECUTOR = "local"


@dataclass(frozen=True)
class Engine:
    """What the CLI and the runner know of an executor before loading it."""

    name: str
    #: One line for ``--executor``'s help.
    description: str
    settings: type[ExecutorSettings]
    #: ``"module:Class"`` of the :class:`Executor`, imported when it is used.
    executor: str
    #: Hidden from ``--executor``'s help (still accepted).
    hidden: bool = False

    def load(self) -> type[Executor]:
        module, _, cls = self.executor.partition(":")
        try:
            return getattr(import_module(module), cls)
        except ImportError as exc:
            raise UsageError(f"the {self.name} executor is not available: {exc}") from None


@cache
def engines() -> dict[str, Engine]:
    """Every engine: the built-in ones, then those of installed plugins."""
    found = {name: _engine(module) for name, module in BUILTIN.items()}
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in found:
            found[ep.name] = _engine(ep.value)
    return found


def engine(name: str) -> Engine:
    """An engine by name; UsageError naming the choices for an unknown one."""
    if name in BUILTIN:  # its own module only: no import of the others, no plugin scan
        return _engine(BUILTIN[name])
    try:
        return engines()[name]
    except KeyError:
        raise UsageError(f"unknown executor {name!r}",
                         hint=f"choose one of: {', '.join(visible_names())}") from None


def visible_names() -> list[str]:
    return [n for n, e in engines().items() if not e.hidden]


def _engine(module: str) -> Engine:
    found = getattr(import_module(module), "ENGINE", None)
    if not isinstance(found, Engine):
        raise UsageError(f"executor module {module} defines no ENGINE")
    return found
