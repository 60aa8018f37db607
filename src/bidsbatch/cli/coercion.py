"""Command-line values that need no pydantic: typer 0.29's coercion, without the import.

typer 0.29 coerces the value of every parameter (its default too, unless a
flag's bool) through a pydantic ``TypeAdapter`` it builds on first use, so any
command with a string argument imports pydantic and builds adapters: about
0.2 s of ``bidsbatch status``, for a value that is already the ``str`` it
declares. Here such values are answered as typer's adapters would answer them:
``None`` stays ``None`` (``()`` for a multiple option), a ``str`` for ``str``,
strings for ``list[str]`` (as a list), an ``int``/``float`` for an unbounded
``int``/``float``. Any other value (``"8"`` for an ``int``, a path, a bounded
number) goes to typer's own coercion, built then: the same messages, the
same errors.

Older typer (0.12–0.28, within the pin of pyproject) has no such step: the
parameters have no ``_runtime_param`` and are left as they are.
"""

from __future__ import annotations

from typing import Any

from .helpoption import on_help_option


def lighten(command: Any) -> None:
    """Give every typer parameter of ``command`` (not its subcommands) the light coercion,
    ``--help`` too (click makes that option anew on demand)."""
    for param in getattr(command, "params", []):
        _lighten(param)
    on_help_option(command, _lighten, tag="_bb_lightened")


def _lighten(param: Any) -> None:
    if getattr(param, "_runtime_param", False) is None and hasattr(param, "type_descriptor"):
        param._runtime_param = LightCoercion(param.type_descriptor)


class LightCoercion:
    """typer's ``RuntimeParam`` for the values above; the rest is handed to typer's own."""

    def __init__(self, descriptor: Any) -> None:
        self._descriptor = descriptor
        info = descriptor.parameter_info
        plain = (getattr(info, "parser", None) is None and not descriptor.is_file
                 and not descriptor.is_choice)
        unbounded = info.min is None and info.max is None
        annotation = descriptor.annotation
        self._scalar: type | None = None
        if plain and (annotation is str or (annotation in (int, float) and unbounded)):
            self._scalar = annotation
        self._list_of_str = plain and descriptor.is_list and \
            getattr(annotation, "__args__", None) == (str,)
        self._full: Any = None

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        multiple = param.multiple or param.nargs == -1
        if value is None:
            return () if multiple else None
        if not multiple and self._scalar is not None and type(value) is self._scalar:
            return value
        if multiple and self._list_of_str and isinstance(value, list | tuple) \
                and all(type(v) is str for v in value):
            return list(value)
        if self._full is None:
            from typer._coercion import build_runtime_param

            self._full = build_runtime_param(self._descriptor)
        return self._full.coerce(value, param=param, ctx=ctx)
