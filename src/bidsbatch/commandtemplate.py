"""A pipeline's command template, parsed once for a whole plan.

:func:`bidsbatch.pipelines.render_template` parses every part of the
template with ``string.Formatter`` on each call: at 100,000 scans that was a
tenth of the plan. :class:`CompiledCommand` keeps the parse and fills it per
scan, giving exactly ``render_template``'s list (``tests/test_plan_stream.py``
compares the two).
"""

from __future__ import annotations

import string
from dataclasses import dataclass

from .pipelines import RUNTIME_PLACEHOLDERS, Template

#: One piece of a template string: its literal text (braces escaped) and the name after it.
_Piece = tuple[str, str | None]


def _pieces(item: str) -> tuple[_Piece, ...]:
    return tuple((literal.replace("{", "{{").replace("}", "}}"), name)
                 for literal, name, _spec, _conv in string.Formatter().parse(item))


def _fill(pieces: tuple[_Piece, ...], values: dict[str, str]) -> str:
    # pipelines._fill, step for step: the final unescaping also applies to the values.
    text = "".join([literal + ("" if name is None else
                               values[name] if name in values else "{" + name + "}")
                    for literal, name in pieces])
    return text.replace("{{", "{").replace("}}", "}")


def _constant(pieces: tuple[_Piece, ...]) -> str | None:
    """The text of a part without placeholders (the same for every scan), else None."""
    return _fill(pieces, {}) if all(name is None for _l, name in pieces) else None


@dataclass(frozen=True)
class _Optional:
    """An optional group: left out when one of its plan-time placeholders has no value."""

    names: frozenset[str]
    items: tuple[tuple[_Piece, ...], ...]


@dataclass(frozen=True)
class CompiledCommand:
    parts: tuple[str | tuple[_Piece, ...] | _Optional, ...]

    @classmethod
    def compile(cls, template: Template) -> CompiledCommand:
        parts: list[str | tuple[_Piece, ...] | _Optional] = []
        for part in template:
            if isinstance(part, list):
                items = tuple(_pieces(item) for item in part)
                names = frozenset(n for pieces in items for _l, n in pieces if n is not None)
                parts.append(_Optional(names - RUNTIME_PLACEHOLDERS, items))
            else:
                pieces = _pieces(part)
                constant = _constant(pieces)
                parts.append(pieces if constant is None else constant)
        return cls(tuple(parts))

    def render(self, values: dict[str, str]) -> list[str]:
        """``render_template(template, values)``."""
        out: list[str] = []
        for part in self.parts:
            if type(part) is str:
                out.append(part)
            elif isinstance(part, _Optional):
                if any(not values.get(n) for n in part.names):
                    continue
                out.extend(_fill(pieces, values) for pieces in part.items)
            else:
                out.append(_fill(part, values))  # type: ignore[arg-type]
        return out
