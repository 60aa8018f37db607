"""Canonical JSON text, fast: the bytes of ``json.dumps(…, sort_keys=True, indent=2)``.

``json.dumps`` with ``indent`` leaves the C encoder for the pure-Python one,
and ``dataclasses.asdict`` deep-copies every value on the way: together
they were half of planning 100,000 scans. :func:`canonical_text` writes the
same text in one walk over the value (dataclasses read field by field, the
strings escaped by the C ``encode_basestring``), and falls back to
``json.dumps`` for anything it does not know, so its output is
``json.dumps(asdict(value), sort_keys=True, indent=2, ensure_ascii=False) + "\\n"``
byte for byte (``tests/test_canonical.py`` pins that).
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields, is_dataclass
from json.encoder import encode_basestring  # C-accelerated (ensure_ascii=False)
from math import isfinite
from typing import Any

_INDENT = "  "
_NAMES: dict[type, tuple[str, ...]] = {}


class _Unusual(Exception):
    """A value :func:`canonical_text` leaves to ``json.dumps`` (non-str keys, NaN, …)."""


def canonical_text(value: Any) -> str:
    """Sorted keys, two-space indent, non-ASCII kept, trailing newline (a dataclass as asdict)."""
    out: list[str] = []
    try:
        _emit(value, out, "\n")
    except _Unusual:
        data = value
        if is_dataclass(value) and not isinstance(value, type):
            data = asdict(value)
            for name in _omitted(type(value)):
                if data.get(name) is None:
                    data.pop(name, None)
        return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    out.append("\n")
    return "".join(out)


def _names(cls: type) -> tuple[str, ...]:
    names = _NAMES.get(cls)
    if names is None:
        names = _NAMES[cls] = tuple(sorted(f.name for f in fields(cls)))
    return names


def _omitted(cls: type) -> frozenset[str]:
    """Fields a dataclass leaves out of its JSON while they are None (``OMIT_WHEN_NONE``)."""
    return getattr(cls, "OMIT_WHEN_NONE", frozenset())


def _emit(value: Any, out: list[str], nl: str) -> None:
    # The order of the checks is the json encoder's (a str subclass is a str, True an int).
    if isinstance(value, str):
        out.append(encode_basestring(value))
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(int.__repr__(value))
    elif isinstance(value, float):
        if not isfinite(value):
            raise _Unusual
        out.append(float.__repr__(value))
    elif isinstance(value, list | tuple):
        if not value:
            out.append("[]")
            return
        inner = nl + _INDENT
        out.append("[")
        first = True
        for item in value:
            out.append(inner if first else "," + inner)
            first = False
            _emit(item, out, inner)
        out.append(nl + "]")
    elif isinstance(value, dict):
        if not value:
            out.append("{}")
            return
        if not all(type(k) is str for k in value):
            raise _Unusual
        _emit_items(sorted(value.items()), out, nl)
    elif is_dataclass(value) and not isinstance(value, type):
        omit = _omitted(type(value))
        items = [(n, v) for n in _names(type(value))
                 if (v := getattr(value, n)) is not None or n not in omit]
        if not items:
            out.append("{}")
            return
        _emit_items(items, out, nl)
    else:
        raise _Unusual


def _emit_items(items: list[tuple[str, Any]], out: list[str], nl: str) -> None:
    inner = nl + _INDENT
    out.append("{")
    first = True
    for key, item in items:
        out.append((inner if first else "," + inner) + encode_basestring(key) + ": ")
        first = False
        _emit(item, out, inner)
    out.append(nl + "}")
