"""The one registry of item sources: which CLI options make which source.

A source is a module with an :class:`~bidsbatch.items.base.ItemSource` and a
line here naming the option that selects it. The BIDS crawl is the default
(a DATASET argument and no item option).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from .base import ItemSource


@dataclass(frozen=True)
class ItemOptions:
    """What the command line said about items (the ``--items*``, ``--tiles`` options)."""

    items_file: Path | None = None
    items_glob: str | None = None
    tiles: str | None = None
    dates: str | None = None

    @property
    def given(self) -> list[str]:
        return [flag for flag, value in (("--items", self.items_file),
                                         ("--items-glob", self.items_glob),
                                         ("--tiles", self.tiles)) if value]


def _list(o: ItemOptions, dataset: str | None) -> ItemSource:
    from .listfile import ListFileSource

    assert o.items_file is not None
    return ListFileSource(Path(o.items_file).expanduser().absolute())


def _glob(o: ItemOptions, dataset: str | None) -> ItemSource:
    from .glob import GlobSource

    assert o.items_glob is not None
    return GlobSource(o.items_glob)


def _sentinel2(o: ItemOptions, dataset: str | None) -> ItemSource:
    from .sentinel2 import DEFAULT_BUCKET, Sentinel2Source, parse_dates, parse_tiles

    if not o.dates:
        raise UsageError("--tiles needs --dates", hint="e.g. --dates 2019-01-01..2019-01-31")
    start, end = parse_dates(o.dates)
    return Sentinel2Source(tuple(parse_tiles(o.tiles or "")), start, end,
                           bucket=(dataset or DEFAULT_BUCKET).rstrip("/"))


#: option flag -> builder. Adding a source is one module and one line here.
REGISTRY = {"--items": _list, "--items-glob": _glob, "--tiles": _sentinel2}


def item_source(options: ItemOptions, dataset: str | None) -> ItemSource | None:
    """The source the options name; None for a BIDS dataset; UsageError for two at once."""
    given = options.given
    if options.dates and not options.tiles:
        raise UsageError("--dates goes with --tiles (a Sentinel-2 source)")
    if not given:
        return None
    if len(given) > 1:
        raise UsageError(f"{' and '.join(given)} name two item sources",
                         hint="give one of --items, --items-glob, --tiles")
    if dataset is not None and given[0] != "--tiles":
        raise UsageError(f"{given[0]} names the items: give no DATASET argument",
                         hint=f"bidsbatch plan {given[0]} … OUTPUT")
    return REGISTRY[given[0]](options, dataset)
