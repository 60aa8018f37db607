"""BIDS file names, from the official schema (``bidsschematools``).

Two jobs: parse a name into entities, suffix and extension with the schema's
entity names and label formats; and say whether a path is a valid BIDS path,
with the schema's own filename rules. No hand-written BIDS regexes.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any


@lru_cache(maxsize=1)
def _schema() -> Any:
    from bidsschematools import schema

    return schema.load_schema()


@lru_cache(maxsize=1)
def _entity_names() -> dict[str, str]:
    """Short name in a filename (``sub``) -> schema entity key (``subject``)."""
    return {ent["name"]: key for key, ent in _schema().objects.entities.items()}


@lru_cache(maxsize=1)
def _entity_order() -> dict[str, int]:
    return {key: i for i, key in enumerate(_schema().rules.entities)}


@cache
def _format_regex(entity_key: str) -> re.Pattern[str]:
    schema = _schema()
    ent = schema.objects.entities[entity_key]
    if "enum" in ent:
        values = [v if isinstance(v, str) else v["name"] for v in ent["enum"]]
        return re.compile("|".join(re.escape(v) for v in values))
    return re.compile(schema.objects.formats[ent["format"]].pattern)


@lru_cache(maxsize=1)
def label_pattern() -> re.Pattern[str]:
    """The schema's pattern for a label (``[0-9a-zA-Z+]+`` in BIDS 1.10)."""
    return re.compile(_schema().objects.formats.label.pattern)


def is_valid_label(label: str) -> bool:
    """Is ``label`` a valid BIDS label (subject, session...)?"""
    return label_pattern().fullmatch(label) is not None


@dataclass(frozen=True)
class BidsName:
    """A parsed BIDS file name: ``sub-01_ses-1_task-rest_bold.nii.gz``."""

    entities: dict[str, str]  # schema entity key -> value, e.g. {"subject": "01"}
    suffix: str
    extension: str

    def applies_to(self, other: BidsName) -> bool:
        """Does this (sidecar) name apply to ``other`` by the inheritance principle?

        Same suffix, and every entity of this name is in ``other`` with the same
        value. The extension is not compared: ``bold.json`` applies to
        ``bold.nii.gz``.
        """
        if self.suffix != other.suffix:
            return False
        return all(other.entities.get(k) == v for k, v in self.entities.items())


def parse_name(filename: str) -> BidsName | None:
    """Parse a file name (no folders) into entities, suffix and extension.

    Returns None when the name does not have the ``key-value_..._suffix.ext``
    shape or uses an entity the schema does not know.
    """
    stem, dot, rest = filename.partition(".")
    extension = dot + rest
    parts = stem.split("_")
    if not parts or not parts[-1] or "-" in parts[-1]:
        return None
    suffix = parts[-1]
    names = _entity_names()
    entities: dict[str, str] = {}
    for part in parts[:-1]:
        short, sep, value = part.partition("-")
        key = names.get(short)
        if not sep or key is None or key in entities:
            return None
        if not _format_regex(key).fullmatch(value):
            return None
        entities[key] = value
    return BidsName(entities=entities, suffix=suffix, extension=extension)


class NameValidator:
    """Is a path (relative to the dataset root) valid by the schema's filename rules?

    Compiled once from ``bidsschematools.rules.regexify_all``. Results are cached
    by the path's shape (subject and session labels replaced), so a dataset of
    1,000 subjects costs about one schema match per distinct file name pattern.
    Thread-safe.
    """

    def __init__(self) -> None:
        from bidsschematools import rules, schema  # noqa: F401  (rules needs schema loaded)

        regexes, _schema_ns = rules.regexify_all()
        self._patterns = [re.compile(r["regex"]) for r in regexes]
        self._cache: dict[str, bool] = {}
        self._lock = threading.Lock()

    def is_valid(self, path: str, *, subject: str | None = None,
                 session: str | None = None) -> bool:
        shape = path
        if subject:
            shape = _replace_label(shape, f"sub-{subject}", "sub-S")
        if session:
            shape = _replace_label(shape, f"ses-{session}", "ses-S")
        cached = self._cache.get(shape)
        if cached is not None:
            return cached
        result = self._match(path)
        with self._lock:
            self._cache[shape] = result
        return result

    def _match(self, path: str) -> bool:
        for i, pat in enumerate(self._patterns):
            if pat.match(path):
                if i > 8:
                    # Keep the rules that match often near the front.
                    with self._lock:
                        if i < len(self._patterns) and self._patterns[i] is pat:
                            self._patterns.insert(0, self._patterns.pop(i))
                return True
        return False


def _replace_label(text: str, needle: str, repl: str) -> str:
    """``re.sub(re.escape(needle) + "(?=[_/.]|$)", repl, text)`` without a regex per label.

    One pattern per subject label overflowed ``re``'s cache at 100,000 subjects (every
    call compiled one); this scans the same way: left to right, matches not overlapping.
    """
    out: list[str] = []
    i, n, end_of_text = 0, len(needle), len(text)
    while (j := text.find(needle, i)) >= 0:
        end = j + n
        if end == end_of_text or text[end] in "_/.":
            out += (text[i:j], repl)
            i = end
        else:
            out.append(text[i:j + 1])
            i = j + 1
    out.append(text[i:])
    return "".join(out)


@lru_cache(maxsize=1)
def name_validator() -> NameValidator:
    """The shared validator (compiling the schema's rules takes ~40 ms)."""
    return NameValidator()
