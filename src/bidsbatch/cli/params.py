"""Options declared once and shared by many commands: one signature-extending decorator.

typer reads a command's options from its function signature, so a group of
options used by several commands (the planning options, every executor's
settings) would be declared again in each. :func:`extend` instead adds a
group's parameters to a command's signature and hands the command one typed
value built from them, in place of the parameter it names.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Sequence
from typing import Any


def extend(
    func: Callable[..., Any], *, into: str, params: Sequence[inspect.Parameter],
    build: Callable[[dict[str, Any]], Any],
) -> Callable[..., Any]:
    """``func`` with ``params`` in place of its parameter ``into``.

    The command then receives ``into=build({name: value of each added parameter})``.
    Annotations are resolved here (``from __future__ import annotations`` makes them
    strings that typer would resolve in the wrong module).
    """
    sig = inspect.signature(func)
    hints = typing.get_type_hints(func, include_extras=True)
    names = [p.name for p in params]
    clash = set(names) & (set(sig.parameters) - {into})
    if clash:
        raise TypeError(f"{func.__name__}: options declared twice: {sorted(clash)}")

    @functools.wraps(func)
    def wrapper(**kwargs: Any) -> Any:
        given = {n: kwargs.pop(n) for n in names if n in kwargs}
        return func(**kwargs, **{into: build(given)})

    kept = [p.replace(annotation=hints.get(p.name, p.annotation))
            for p in sig.parameters.values() if p.name != into]
    required = [p for p in kept if p.default is inspect.Parameter.empty]
    optional = [p for p in kept if p.default is not inspect.Parameter.empty]
    new = [*required, *optional, *params]
    wrapper.__signature__ = sig.replace(  # type: ignore[attr-defined]
        parameters=[p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in new],
        return_annotation=hints.get("return", sig.return_annotation))
    wrapper.__annotations__ = {p.name: p.annotation for p in new} | (
        {"return": hints["return"]} if "return" in hints else {})
    del wrapper.__wrapped__  # typer must see the new signature, not the old one
    return wrapper


def parameter(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                             default=default)
