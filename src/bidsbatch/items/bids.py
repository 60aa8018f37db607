"""The BIDS crawl as an item source: a scan is an item (for CWL tools over BIDS scans).

BIDS Apps keep their own planner (:func:`bidsbatch.planning.make_plan`); this
adapter lets a pipeline of another kind run per scan, with ``{bids_dir}`` (the
staged one-scan dataset), ``{participant}`` and ``{session}``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..storage import S3Options
from .base import Item, ItemInput, ItemSet, ItemSource


@dataclass(frozen=True)
class BidsSource(ItemSource):
    uri: str
    follow_symlinks: bool = False
    kind = "bids"

    def describe(self) -> str:
        return f"the scans of the BIDS dataset {self.uri}"

    def list_items(self, *, s3: S3Options, max_workers: int = 16) -> ItemSet:
        from ..bids import crawl

        ds = crawl(self.uri, s3=s3, max_workers=max_workers,
                   follow_symlinks=self.follow_symlinks)
        items = [Item(id=scan.id, inputs=(ItemInput("bids_dir", ""),), files=scan.files,
                      fields=(("participant", scan.participant),
                              ("session", scan.session or "")))
                 for scan in ds.scans]
        return ItemSet(root=ds.uri, name=ds.name, items=items, warnings=list(ds.warnings))
