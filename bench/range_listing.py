"""A benchmark-only experiment: list subjects by key *ranges* instead of one listing each.

Not part of bidsbatch. ``crawl_ranges`` is ``bidsbatch.bids.crawl`` with one step
swapped: instead of one ListObjectsV2 per subject (``Prefix=sub-X/``), the sorted
subjects are cut into ``max_workers`` contiguous groups and each group is read
with one paginated listing that starts just before its first subject
(``StartAfter``) and stops once it is past its last one. Keys come back 1,000 a
page, so 1,000 small subjects cost about ``n_objects / 1000 + groups`` requests
instead of ``n_subjects``; the groups are still listed in parallel.

Every key is assigned to the subject folder it starts with, so each subject gets
exactly the objects, in the same (key) order, that ``Prefix=sub-X/`` would
return; keys of skipped folders that fall inside a range are read and dropped.
The benchmark checks the resulting scans equal the stock crawl's.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bidsbatch.bids import Dataset, _Crawler
from bidsbatch.locations import ObjectInfo, S3Location, _etag, open_location


class _RangeCrawler(_Crawler):
    def _list_subjects(self, subjects: list[str]) -> dict[str, list[ObjectInfo]]:
        loc = self.loc
        if not isinstance(loc, S3Location) or not subjects:
            return super()._list_subjects(subjects)
        total = len(subjects)
        ordered = sorted(subjects, key=lambda s: f"sub-{s}/")  # S3 key order
        n_groups = max(1, min(self.max_workers, total))
        size = -(-total // n_groups)
        groups = [ordered[i : i + size] for i in range(0, total, size)]
        out: dict[str, list[ObjectInfo]] = {s: [] for s in subjects}
        done = 0
        if self.progress:
            self.progress(0, total)

        def one(group: list[str]) -> tuple[int, dict[str, list[ObjectInfo]]]:
            return len(group), _list_range(loc, group)

        with ThreadPoolExecutor(max_workers=len(groups), thread_name_prefix="crawl") as pool:
            for n, listing in pool.map(one, groups):
                for label, objects in listing.items():
                    out[label] = objects
                done += n
                if self.progress:
                    self.progress(done, total)
        return out


def _list_range(loc: S3Location, group: list[str]) -> dict[str, list[ObjectInfo]]:
    """Objects of the subjects in ``group`` (contiguous in key order), by subject."""
    folders = {f"sub-{s}": s for s in group}
    first = loc.full_key(f"sub-{group[0]}/")
    # Every key under the last subject's folder sorts before "<...>/sub-LAST0"
    # ('0' follows '/'), so the first key at or past it ends the range.
    stop = loc.full_key(f"sub-{group[-1]}0")
    kwargs: dict[str, Any] = {
        "Bucket": loc.bucket,
        "Prefix": loc.full_key("sub-"),
        "StartAfter": first[:-1],  # just before "<...>/sub-FIRST/"
        **loc.request_extra,
    }
    out: dict[str, list[ObjectInfo]] = {s: [] for s in group}
    with loc._errors(f"sub-{group[0]}/"):
        paginator = loc.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(**kwargs):
            for obj in page.get("Contents", ()):
                key = obj["Key"]
                if key >= stop:
                    return out
                rel = loc._rel(key)
                folder, slash, _rest = rel.partition("/")
                label = folders.get(folder) if slash else None
                if label is not None:
                    out[label].append(ObjectInfo(rel, obj["Size"], _etag(obj.get("ETag"))))
    return out


def crawl_ranges(uri: str, *, max_workers: int = 16) -> Dataset:
    return _RangeCrawler(open_location(uri), max_workers=max_workers, progress=None).run()
