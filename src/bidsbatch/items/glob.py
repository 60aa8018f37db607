"""``--items-glob 's3://bucket/prefix/*/*.SAFE/'``: one item per match.

The pattern is listed level by level with S3's delimiter, the prefixes of one
level in parallel, as the BIDS crawl lists subjects: only the folders the pattern
can match are ever listed. A pattern ending in ``/`` matches prefixes (every file
below a match is an input of its item), otherwise objects.
"""

from __future__ import annotations

import fnmatch
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ..errors import DatasetError, UsageError
from ..storage import Location, S3Options, open_location
from .base import Item, ItemInput, ItemSet, ItemSource, list_inputs, safe_id, unique

_WILD = set("*?[")


@dataclass(frozen=True)
class GlobSource(ItemSource):
    pattern: str
    kind = "glob"

    def describe(self) -> str:
        return f"items matching {self.pattern}"

    def list_items(self, *, s3: S3Options, max_workers: int = 16) -> ItemSet:
        root_uri, segments, want_prefixes = _split(self.pattern)
        root = open_location(root_uri, s3=s3)
        matches = _expand(root, segments, want_prefixes=want_prefixes, max_workers=max_workers)
        if not matches:
            raise DatasetError(f"nothing matches {self.pattern}",
                               hint="check the pattern (one '*' per folder level; end it "
                                    "with '/' to match folders)")
        n_wild = sum(1 for s in segments if _is_wild(s))
        inputs = {key: ItemInput("input", key) for key in matches}
        files = list_inputs(root, list(inputs.values()), max_workers=max_workers)
        items = []
        for key, inp in inputs.items():
            parts = key.rstrip("/").split("/")
            name = parts[-1]
            stem = name.rsplit(".", 1)[0] if "." in name else name
            # The id names what the wildcards matched: stable whatever else is listed.
            matched = [p for p, s in zip(parts, segments, strict=True) if _is_wild(s)]
            items.append(Item(
                id=safe_id("_".join(matched[-n_wild:]) or name),
                inputs=(inp,), files=files[inp],
                fields=(("name", name), ("stem", stem), ("key", key.rstrip("/"))),
            ))
        return ItemSet(root=root.uri, name=self.pattern,
                       items=unique(items, where=self.pattern))


def _is_wild(segment: str) -> bool:
    return any(c in _WILD for c in segment)


def _split(pattern: str) -> tuple[str, list[str], bool]:
    """``s3://b/p/*/x/`` → (``s3://b/p``, ``["*", "x"]``, True): the literal root, the rest."""
    text = pattern.strip()
    if text.startswith("file://"):
        text = text[len("file://"):]
    want_prefixes = text.endswith("/")
    if text.startswith("s3://"):
        bucket, _, path = text[5:].partition("/")
        base, parts = f"s3://{bucket}", [p for p in path.split("/") if p]
    else:
        base, parts = ("/" if text.startswith("/") else "."), [p for p in text.split("/") if p]
    if not any(_is_wild(p) for p in parts):
        raise UsageError(f"--items-glob {pattern}: no wildcard in it",
                         hint="use '*' for the folder level that varies, e.g. "
                              "s3://bucket/prefix/*/")
    first = next(i for i, p in enumerate(parts) if _is_wild(p))
    literal = "/".join(parts[:first])
    if base.startswith("s3://"):
        root = f"{base}/{literal}" if literal else base
    else:
        root = str((base.rstrip("/") + "/" + literal) if literal else base)
    if any(p in ("..", ".") or p == "**" for p in parts[first:]):
        raise UsageError(f"--items-glob {pattern}: '.', '..' and '**' are not supported",
                         hint="one '*' per folder level")
    return root, parts[first:], want_prefixes


def _expand(root: Location, segments: list[str], *, want_prefixes: bool,
            max_workers: int) -> list[str]:
    """Keys (prefixes end in ``/``) under ``root`` matching ``segments``, level by level."""
    level = [""]
    with ThreadPoolExecutor(max_workers=max(1, max_workers), thread_name_prefix="glob") as pool:
        for depth, segment in enumerate(segments):
            last = depth == len(segments) - 1
            listings = list(pool.map(lambda p: root.list(p, delimiter="/"), level))
            nxt: list[str] = []
            for listing in listings:
                if not last or want_prefixes:
                    nxt += [p for p in listing.prefixes
                            if fnmatch.fnmatchcase(p.rstrip("/").rsplit("/", 1)[-1], segment)]
                else:
                    nxt += [o.key for o in listing.objects
                            if fnmatch.fnmatchcase(o.key.rsplit("/", 1)[-1], segment)]
            level = sorted(set(nxt))
            if not level:
                return []
    return level
