"""The options that name items instead of a BIDS dataset (see bidsbatch.items)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ..items.registry import ItemOptions
from .params import parameter

ITEM_PARAMETERS = [
    parameter("items_file", Annotated[Path | None, typer.Option(
        "--items", help="Items from a CSV, TSV or JSON-lines file: an id column, input "
                        "columns (s3:// or paths), other columns as {placeholders}.")], None),
    parameter("items_glob", Annotated[str | None, typer.Option(
        "--items-glob", help="One item per match, e.g. 's3://bucket/prefix/*/*.SAFE/' "
                             "(a trailing '/' matches folders).")], None),
    parameter("tiles", Annotated[str | None, typer.Option(
        "--tiles", help="Sentinel-2 tiles (MGRS), e.g. 36NXF,10SDG; with --dates. DATASET "
                        "is the bucket (default s3://sentinel-s2-l1c).")], None),
    parameter("dates", Annotated[str | None, typer.Option(
        "--dates", help="Sentinel-2 acquisition dates: DAY or FIRST..LAST (inclusive).")],
        None),
    parameter("item_ids", Annotated[list[str] | None, typer.Option(
        "--item", help="Item id(s) to process. Repeat or use commas.")], None),
    parameter("exclude_items", Annotated[list[str] | None, typer.Option(
        "--exclude-item", help="Item id(s) to leave out.")], None),
]


def item_values(v: dict[str, Any]) -> dict[str, Any]:
    """The Planning fields of the item options."""
    return {
        "items": ItemOptions(items_file=v["items_file"], items_glob=v["items_glob"],
                             tiles=v["tiles"], dates=v["dates"]),
        "item_ids": tuple(v["item_ids"] or ()),
        "exclude_items": tuple(v["exclude_items"] or ()),
    }
