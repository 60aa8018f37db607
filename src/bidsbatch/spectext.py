"""The JSON text of many specs of one plan, the fields they share serialised once.

Most of a spec is the same for every scan of a plan: the run id, the
dataset, the output, the resources, the container, the env. A
:class:`SpecTextWriter` keeps the text of each field's last value and reuses
it while the next spec holds that very object (identity, so a value that
merely compares equal, ``1`` and ``True``, is never mistaken). The fields
that differ per scan (argv, inputs, fingerprint) take short paths for their
usual shapes. The text is ``Spec.to_json()``'s byte for byte: anything
unusual goes to :func:`bidsbatch.canonical.canonical_text` whole
(``tests/test_plan_stream.py`` compares the two on varied plans).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from json.encoder import encode_basestring  # C-accelerated (ensure_ascii=False)
from typing import Any

from .canonical import _emit, _Unusual, canonical_text
from .specs import InputFile, Spec
from .storage import ObjectInfo

#: What an input's text is written from: the same three fields (key, size, etag).
_File = InputFile | ObjectInfo

_FIELD_NL = "\n  "  # a spec's fields sit at depth 1: their values' newlines indent by this


def _names(spec: Spec) -> tuple[str, ...]:
    from dataclasses import fields

    return tuple(sorted(f.name for f in fields(spec)))


class SpecTextWriter:
    """``spec.to_json()`` for the specs of one plan, as they come. Not thread-safe."""

    def __init__(self) -> None:
        self._names: tuple[str, ...] | None = None
        self._keys: dict[str, tuple[str, str]] = {}
        #: field name -> (the last value, its text)
        self._last: dict[str, tuple[Any, str]] = {}

    def text(self, spec: Spec) -> str:
        if type(spec) is not Spec:
            return spec.to_json()
        if self._names is None:
            self._names = _names(spec)
            self._keys = {n: (encode_basestring(n) + ": ", ",\n  " + encode_basestring(n) + ": ")
                          for n in self._names}
        out = ["{"]
        first = True
        omit = Spec.OMIT_WHEN_NONE
        last = self._last
        try:
            for name in self._names:
                value = getattr(spec, name)
                if value is None and name in omit:
                    continue
                key_first, key_next = self._keys[name]
                if first:
                    out.append("\n  " + key_first)
                    first = False
                else:
                    out.append(key_next)
                cached = last.get(name)
                if cached is not None and cached[0] is value:
                    out.append(cached[1])
                    continue
                text = _value_text(value)
                last[name] = (value, text)
                out.append(text)
        except _Unusual:
            return canonical_text(spec)
        if first:
            return "{}\n"
        out.append("\n}\n")
        return "".join(out)


def _value_text(value: Any) -> str:
    """The text of one field's value at depth 1, as canonical.py writes it."""
    if type(value) is list and value:
        head = value[0]
        if type(head) is str and all(type(v) is str for v in value):
            return "[\n    " + ",\n    ".join(map(encode_basestring, value)) + "\n  ]"
        if type(head) is InputFile:
            texts = [_input_text(f) for f in value]
            if None not in texts:
                return "[\n    " + ",\n    ".join(texts) + "\n  ]"  # type: ignore[arg-type]
    elif type(value) is dict and value and all(type(k) is str and type(v) is str
                                               for k, v in value.items()):
        return "{\n    " + ",\n    ".join(encode_basestring(k) + ": " + encode_basestring(v)
                                          for k, v in sorted(value.items())) + "\n  }"
    out: list[str] = []
    _emit(value, out, _FIELD_NL)
    return "".join(out)


def _input_text(f: _File) -> str | None:
    """One input at depth 2 (``{"etag": …, "key": …, "size": …}``); None: not the usual."""
    etag, key, size = f.etag, f.key, f.size
    if type(key) is not str or type(size) is not int:
        return None
    if etag is None:
        etag_text = "null"
    elif type(etag) is str:
        etag_text = encode_basestring(etag)
    else:
        return None
    return ('{\n      "etag": ' + etag_text + ',\n      "key": ' + encode_basestring(key)
            + ',\n      "size": ' + int.__repr__(size) + "\n    }")


#: The fields of a BIDS plan's specs that differ from scan to scan (the rest are the plan's).
PER_SCAN = ("argv", "config_hash", "expected_outputs", "fingerprint", "inputs", "participant",
            "scan_id", "session")


class PlanTemplate:
    """The text of a plan's specs, its shared fields written once: fill in the per-scan ones.

    Made from one spec of the plan (``probe``); :meth:`text` joins the shared text
    with the per-scan fields' text. Raises :class:`_Unusual` when a shared field is
    not for the fast path (the caller writes spec by spec then).
    """

    def __init__(self, probe: Spec, shared_inputs: Iterable[_File]) -> None:
        pieces: list[str] = []
        fields: list[str] = []
        current = "{"
        first = True
        for name in _names(probe):
            value = getattr(probe, name)
            if value is None and name in Spec.OMIT_WHEN_NONE:
                continue
            current += ("\n  " if first else ",\n  ") + encode_basestring(name) + ": "
            first = False
            if name in PER_SCAN:
                pieces.append(current)
                fields.append(name)
                current = ""
            else:
                current += _value_text(value)
        pieces.append(current + "\n}\n")
        if fields != list(PER_SCAN):
            raise _Unusual
        self._pieces = pieces
        self._inputs = {id(f): (f, _input_text(f)) for f in shared_inputs}

    def inputs_text(self, inputs: Sequence[_File]) -> str:
        if not inputs:
            return "[]"
        texts = []
        known = self._inputs
        for f in inputs:
            hit = known.get(id(f))
            text = hit[1] if hit is not None and hit[0] is f else _input_text(f)
            if text is None:
                raise _Unusual
            texts.append(text)
        return "[\n    " + ",\n    ".join(texts) + "\n  ]"

    def text(self, *, argv: list[str], config_hash: str, expected_outputs: list[list[str]],
             fingerprint: dict[str, str], inputs: Sequence[_File], participant: str,
             scan_id: str, session: str | None) -> str:
        """One spec's text (raises :class:`_Unusual` for a value off the fast path)."""
        p = self._pieces
        return "".join((
            p[0], _value_text(argv),
            p[1], _str_text(config_hash),
            p[2], _nested_text(expected_outputs),
            p[3], _value_text(fingerprint),
            p[4], self.inputs_text(inputs),
            p[5], _str_text(participant),
            p[6], _str_text(scan_id),
            p[7], "null" if session is None else _str_text(session),
            p[8],
        ))


def _str_text(value: str) -> str:
    if type(value) is not str:
        raise _Unusual
    return encode_basestring(value)


def _nested_text(value: list[list[str]]) -> str:
    """A list of lists of strings at depth 1 (expected outputs)."""
    if type(value) is not list:
        raise _Unusual
    if not value:
        return "[]"
    parts = []
    for inner in value:
        if type(inner) is not list or not all(type(v) is str for v in inner):
            raise _Unusual
        parts.append("[\n      " + ",\n      ".join(map(encode_basestring, inner)) + "\n    ]"
                     if inner else "[]")
    return "[\n    " + ",\n    ".join(parts) + "\n  ]"
