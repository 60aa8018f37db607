"""Sentinel-2 L1C scenes: tiles × a date range, expanded to the bucket's layout.

``s3://sentinel-s2-l1c`` (Requester Pays) keeps one folder per tile and
acquisition, ``tiles/<zone>/<band>/<square>/<year>/<month>/<day>/<seq>/``
(month and day without leading zeros), whose ``tileInfo.json`` names the product
folder ``products/<y>/<m>/<d>/<name>/`` (its metadata). Every listing of a
Requester Pays bucket is billed, so only the exact prefixes of the asked tiles
and days are listed (a whole month in one listing when the range covers it),
never the bucket.
"""

from __future__ import annotations

import calendar
import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta

from ..errors import DatasetError, StorageError, UsageError
from ..storage import Location, ObjectInfo, S3Options, open_location
from .base import Item, ItemInput, ItemSet, ItemSource, unique

DEFAULT_BUCKET = "s3://sentinel-s2-l1c"
_TILE = re.compile(r"^T?(\d{1,2})([C-HJ-NP-X])([A-HJ-NP-Z]{2})$")
_DAY_PATH = re.compile(r"^(\d+)/(\d+)/(\d+)/(\d+)/")


@dataclass(frozen=True)
class Tile:
    zone: int
    band: str
    square: str

    @property
    def name(self) -> str:
        return f"{self.zone:02d}{self.band}{self.square}"

    @property
    def prefix(self) -> str:
        return f"tiles/{self.zone}/{self.band}/{self.square}/"


def parse_tiles(text: str) -> list[Tile]:
    """``36NXF,10SDG`` (a leading ``T`` allowed) → tiles; UsageError for a bad one."""
    out = []
    for raw in (t.strip().upper() for t in text.split(",")):
        if not raw:
            continue
        m = _TILE.match(raw)
        if not m or not 1 <= int(m.group(1)) <= 60:
            raise UsageError(f"--tiles: {raw!r} is not a Sentinel-2 (MGRS) tile",
                             hint="write tiles as 36NXF or T36NXF: UTM zone 1-60, a latitude "
                                  "band, a two-letter square")
        out.append(Tile(int(m.group(1)), m.group(2), m.group(3)))
    if not out:
        raise UsageError("--tiles names no tile", hint="e.g. --tiles 36NXF,10SDG")
    return sorted(set(out), key=lambda t: t.name)


def parse_dates(text: str) -> tuple[date, date]:
    """``2019-01-01..2019-01-31`` or one day ``2019-01-05`` → (first, last), inclusive."""
    first, sep, last = text.strip().partition("..")
    try:
        start = date.fromisoformat(first.strip())
        end = date.fromisoformat(last.strip()) if sep else start
    except ValueError:
        raise UsageError(f"--dates {text!r} is not DATE or DATE..DATE",
                         hint="e.g. --dates 2019-01-01..2019-01-31 (inclusive)") from None
    if end < start:
        raise UsageError(f"--dates {text!r}: the range ends before it starts")
    if (end - start).days > 3660:
        raise UsageError(f"--dates {text!r}: more than ten years",
                         hint="plan a few years at a time")
    return start, end


def day_prefixes(tile: Tile, start: date, end: date) -> list[str]:
    """The exact prefixes to list: a month's when the range covers it, else each day's."""
    out = []
    day = start
    while day <= end:
        month_end = date(day.year, day.month, calendar.monthrange(day.year, day.month)[1])
        if day.day == 1 and month_end <= end:
            out.append(f"{tile.prefix}{day.year}/{day.month}/")
            day = month_end + timedelta(days=1)
        else:
            out.append(f"{tile.prefix}{day.year}/{day.month}/{day.day}/")
            day += timedelta(days=1)
    return out


@dataclass(frozen=True)
class Sentinel2Source(ItemSource):
    tiles: tuple[Tile, ...]
    start: date
    end: date
    bucket: str = DEFAULT_BUCKET
    kind = "sentinel2"

    def describe(self) -> str:
        return (f"Sentinel-2 tiles {','.join(t.name for t in self.tiles)} from "
                f"{self.start} to {self.end} in {self.bucket}")

    def list_items(self, *, s3: S3Options, max_workers: int = 16) -> ItemSet:
        try:
            return self._list(s3, max_workers)
        except StorageError as exc:
            if s3.requester_pays or "access denied" not in exc.message:
                raise
            raise StorageError(
                f"access denied to {self.bucket}: the Sentinel-2 buckets are Requester Pays "
                "(you pay for the requests and the transfer)",
                hint="pass --requester-pays") from None

    def _list(self, s3: S3Options, max_workers: int) -> ItemSet:
        root = open_location(self.bucket, s3=s3)
        prefixes = [(t, p) for t in self.tiles for p in day_prefixes(t, self.start, self.end)]
        with ThreadPoolExecutor(max_workers=max(1, max_workers),
                                thread_name_prefix="s2") as pool:
            listings = list(pool.map(lambda tp: root.list(tp[1], delimiter=None).objects,
                                     prefixes))
            scenes: dict[tuple[Tile, date, int], list[ObjectInfo]] = {}
            for (tile, _prefix), objects in zip(prefixes, listings, strict=True):
                for obj in objects:
                    m = _DAY_PATH.match(obj.key[len(tile.prefix):])
                    if not m:
                        continue
                    y, mo, d, seq = (int(x) for x in m.groups())
                    when = date(y, mo, d)
                    if self.start <= when <= self.end:
                        scenes.setdefault((tile, when, seq), []).append(obj)
            if not scenes:
                raise DatasetError(
                    f"no Sentinel-2 scene of {', '.join(t.name for t in self.tiles)} between "
                    f"{self.start} and {self.end} in {self.bucket}",
                    hint="check the tiles and dates (the tile may be outside the orbit "
                         "on those days)")
            items = list(pool.map(lambda kv: _item(root, *kv[0], kv[1]), sorted(
                scenes.items(), key=lambda kv: (kv[0][0].name, kv[0][1], kv[0][2]))))
        return ItemSet(root=root.uri, name=self.describe(), items=unique(items, where=self.bucket))


def _item(root: Location, tile: Tile, when: date, seq: int,
          files: list[ObjectInfo]) -> Item:
    folder = f"{tile.prefix}{when.year}/{when.month}/{when.day}/{seq}/"
    keys = {f.key for f in files}
    product_path = ""
    if f"{folder}tileInfo.json" in keys:
        try:
            info = json.loads(root.read_text(f"{folder}tileInfo.json"))
            product_path = str(info.get("productPath") or "").strip("/")
        except (ValueError, AttributeError):
            raise DatasetError(f"{root.describe(folder + 'tileInfo.json')} is not the JSON "
                               "object of a Sentinel-2 tile") from None
    inputs = [ItemInput("tile", folder)]
    product_files: list[ObjectInfo] = []
    if product_path.startswith("products/"):
        inputs.append(ItemInput("product", product_path + "/"))
        product_files = root.walk(product_path + "/")
    product = product_path.rsplit("/", 1)[-1] if product_path else ""
    return Item(
        id=f"{tile.name}-{when.isoformat()}-{seq}",
        inputs=tuple(inputs),
        files=tuple(sorted(files + product_files)),
        fields=(("tile", tile.name), ("date", when.isoformat()), ("seq", str(seq)),
                ("product_name", product)),
    )
