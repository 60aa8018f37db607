"""``--items FILE``: a CSV, TSV or JSON-lines list of items.

One row per item: an id column (``id``, else ``item_id``, else the first), one
or more input columns whose every value is an ``s3://`` URI or a path (absolute,
``./``, ``../`` or ``file://``; relative paths are relative to the list file) naming
an object or a prefix, and any other columns, which become placeholders of the
pipeline's command (``{column}``).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from ..safety import read_utf8
from ..storage import S3Options, open_location
from .base import (
    Item,
    ItemInput,
    ItemSet,
    ItemSource,
    check_item_id,
    list_inputs,
    split_root,
    unique,
)

_PATHLIKE = ("s3://", "file://", "/", "./", "../")
_NAME_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


@dataclass(frozen=True)
class ListFileSource(ItemSource):
    path: Path
    kind = "list"

    def describe(self) -> str:
        return f"items listed in {self.path.name}"

    def list_items(self, *, s3: S3Options, max_workers: int = 16) -> ItemSet:
        rows = read_rows(self.path)
        where = str(self.path)
        header = list(rows[0])
        id_col = next((c for c in ("id", "item_id") if c in header), header[0])
        input_cols = [c for c in header if c != id_col
                      and all(str(r.get(c) or "").startswith(_PATHLIKE) for r in rows)]
        if not input_cols:
            raise UsageError(f"{where}: no column of inputs",
                             hint="give a column whose every value is an s3:// URI or a path "
                                  "(absolute, ./ or ../)")
        for c in header:
            if not set(c) <= _NAME_OK:
                raise UsageError(f"{where}: column name {c!r} is not a plain name",
                                 hint="use letters, digits and '_' (columns become "
                                      "{placeholders})")
        uris = [self._absolute(str(r[c])) for r in rows for c in input_cols]
        root_uri, keys = split_root(uris, where=where)
        root = open_location(root_uri, s3=s3)
        it = iter(keys)
        planned: list[tuple[str, list[ItemInput], tuple[tuple[str, str], ...]]] = []
        for n, row in enumerate(rows, 2):
            item_id = check_item_id(str(row.get(id_col) or "").strip(), where=f"{where}, row {n}")
            inputs = [ItemInput(c, next(it)) for c in input_cols]
            fields = tuple((c, str(row.get(c) if row.get(c) is not None else ""))
                           for c in header if c != id_col and c not in input_cols)
            planned.append((item_id, inputs, fields))
        listed = list_inputs(root, sorted({i for _id, ins, _f in planned for i in ins},
                                          key=lambda i: (i.key, i.name)),
                             max_workers=max_workers)
        items = []
        for item_id, inputs, fields in planned:
            files = {f for inp in inputs for f in listed[inp]}
            for inp in inputs:
                if not listed[inp]:
                    raise UsageError(f"{where}: item {item_id}: {root.describe(inp.key)} "
                                     "does not exist (no object, nothing under it)")
            items.append(Item(item_id, tuple(inputs), tuple(sorted(files)), fields))
        return ItemSet(root=root.uri, name=self.describe(), items=unique(items, where=where))

    def _absolute(self, value: str) -> str:
        text = value.strip()
        if text.startswith("s3://"):
            return text
        if text.startswith("file://"):
            text = text[len("file://"):]
        slash = "/" if text.endswith("/") else ""
        return str((self.path.parent / text).resolve()) + slash


def read_rows(path: Path) -> list[dict[str, object]]:
    """The rows of a list file (by extension: .csv, .tsv/.txt, .jsonl/.ndjson/.json)."""
    try:
        text = read_utf8(path, what="items file")
    except FileNotFoundError:
        raise UsageError(f"items file {path} does not exist") from None
    except OSError as exc:
        raise UsageError(f"cannot read items file {path}: {exc.strerror}") from None
    suffix = path.suffix.lower()
    rows: list[dict[str, object]]
    if suffix in (".jsonl", ".ndjson", ".json"):
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UsageError(f"{path}, line {n}: not JSON ({exc.msg})",
                                 hint="one JSON object a line (JSON lines)") from None
            if not isinstance(row, dict):
                raise UsageError(f"{path}, line {n}: not a JSON object")
            rows.append(row)
        keys: list[str] = []
        for row in rows:
            keys += [k for k in row if k not in keys]
        rows = [{k: row.get(k) for k in keys} for row in rows]
    else:
        delimiter = "," if suffix == ".csv" else "\t"
        rows = list(csv.DictReader(io.StringIO(text), delimiter=delimiter))
    if not rows:
        raise UsageError(f"items file {path} lists no item",
                         hint="a header line, then one row per item")
    return rows
