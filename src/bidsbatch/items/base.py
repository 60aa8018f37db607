"""The item-source interface and the values it returns.

Every input of every item of one run lives under one *root* location (a bucket
prefix, or a local folder): a spec names its inputs by key relative to that root,
as a BIDS scan's are relative to the dataset, so the worker stages items exactly
as it stages scans (into ``{bids_dir}``, keys kept).
"""

from __future__ import annotations

import itertools
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

from ..errors import DatasetError, UsageError
from ..storage import Location, ObjectInfo, S3Options, hostile_reason, open_location

#: What an item id may be: it names markers, logs and scratch folders.
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class ItemInput:
    """One named input of an item: an object key, or a prefix ending in ``/``, under the root."""

    name: str
    key: str

    @property
    def is_prefix(self) -> bool:
        return self.key.endswith("/") or self.key == ""


@dataclass(frozen=True)
class Item:
    """One unit of work: a stable id, its inputs (listed files) and its fields."""

    id: str
    inputs: tuple[ItemInput, ...]
    files: tuple[ObjectInfo, ...]
    fields: tuple[tuple[str, str], ...] = ()

    @property
    def field_map(self) -> dict[str, str]:
        return dict(self.fields)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


@dataclass
class ItemSet:
    """What a source listed: the root every input is under, the items, notes."""

    root: str
    name: str
    items: list[Item]
    warnings: list[str] = field(default_factory=list)


class ItemSource(ABC):
    """Lists the items of a run. One subclass per kind of source."""

    #: The registry name (``bids``, ``list``, ``glob``, ``sentinel2``).
    kind: ClassVar[str]

    @abstractmethod
    def describe(self) -> str:
        """One line for the plan's summary and ``run.json`` (what was listed)."""

    @abstractmethod
    def list_items(self, *, s3: S3Options, max_workers: int = 16) -> ItemSet:
        """List the items. ``s3`` says how to read the inputs (Requester Pays…)."""


def check_item_id(item_id: str, *, where: str) -> str:
    """``item_id`` if it is a plain, safe name (the checks of scan ids), else UsageError."""
    if not isinstance(item_id, str) or not _ID.match(item_id) or hostile_reason(item_id):
        raise UsageError(f"{where}: item id {item_id!r} is not a plain name",
                         hint="ids are letters, digits, '.', '_' and '-' (at most 200), "
                              "starting with a letter or digit")
    return item_id


def safe_id(text: str) -> str:
    """A plain item id made from ``text`` (a path, a product name): stable, never empty."""
    cleaned = _UNSAFE_CHARS.sub("-", text).strip("-._")[:200]
    return cleaned or "item"


def unique(items: list[Item], *, where: str) -> list[Item]:
    """``items`` sorted by id; DatasetError when two share one (an id names one marker)."""
    out = sorted(items, key=lambda i: i.id)
    for a, b in itertools.pairwise(out):
        if a.id == b.id:
            raise DatasetError(f"{where}: two items have the id {a.id!r}",
                               hint="give every item its own id")
    return out


def split_root(uris: list[str], *, where: str) -> tuple[str, list[str]]:
    """The common root of ``uris`` (all on one bucket or one disk) and their keys under it.

    A URI ending in ``/`` is a prefix and keeps its slash in its key.
    """
    if not uris:
        raise DatasetError(f"{where}: no inputs")
    schemes = {u.split("://", 1)[0] if u.startswith("s3://") else "path" for u in uris}
    if len(schemes) > 1:
        raise UsageError(f"{where}: inputs are both on S3 and on local disk",
                         hint="put every input of a run in one bucket (or one folder)")
    if schemes == {"s3"}:
        buckets = {u[5:].split("/", 1)[0] for u in uris}
        if len(buckets) > 1:
            raise UsageError(f"{where}: inputs are in {len(buckets)} buckets "
                             f"({', '.join(sorted(buckets)[:3])})",
                             hint="a run reads its inputs from one bucket: plan one run "
                                  "per bucket")
        bucket = buckets.pop()
        paths = [u[5 + len(bucket):].lstrip("/") for u in uris]
        base = f"s3://{bucket}"
    else:
        paths = [u.lstrip("/") for u in uris]
        base = ""
    parents = [p.rsplit("/", 1)[0].split("/") if "/" in p.rstrip("/") else []
               for p in (x.rstrip("/") for x in paths)]
    common: list[str] = []
    for parts in zip(*parents, strict=False):
        if len(set(parts)) != 1:
            break
        common.append(parts[0])
    prefix = "/".join(common)
    keys = [p[len(prefix) + 1:] if prefix else p for p in paths]
    root = f"{base}/{prefix}" if base else "/" + prefix
    for key in keys:
        reason = hostile_reason(key.rstrip("/")) if key.rstrip("/") else None
        if reason:
            raise UsageError(f"{where}: input {key!r} is not a safe relative path ({reason})")
    return root.rstrip("/") if root != "/" else root, keys


def list_inputs(root: Location, inputs: list[ItemInput], *,
                max_workers: int) -> dict[ItemInput, tuple[ObjectInfo, ...]]:
    """The files of each input: prefixes listed in parallel, objects stat'ed (one request each).

    An input named without a trailing ``/`` is an object when one exists, else a prefix.
    """
    from concurrent.futures import ThreadPoolExecutor

    def objects(inp: ItemInput) -> tuple[ItemInput, tuple[ObjectInfo, ...]]:
        if not inp.is_prefix:
            found = root.stat(inp.key)
            if found is not None:
                return inp, (found,)
        prefix = inp.key if inp.is_prefix else inp.key + "/"
        return inp, tuple(sorted(root.walk(prefix)))

    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(inputs) or 1)),
                            thread_name_prefix="items") as pool:
        return dict(pool.map(objects, inputs))


def open_root(uri: str, s3: S3Options) -> Location:
    return open_location(uri, s3=s3)
