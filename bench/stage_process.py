#!/usr/bin/env python
"""One stage-in or stage-out as a whole process, through the worker's own data path.

    python bench/stage_process.py in  ITEMS.json BUCKET PREFIX DEST [--workers 16]
    python bench/stage_process.py out SRC BUCKET PREFIX [--workers 16]

``in`` downloads the objects listed in ITEMS.json (key, size, etag, as a spec
lists a scan's inputs) with ``bidsbatch.storage.transfer.download_many``;
``out`` uploads a folder with ``upload_tree`` (sha256 of every file, as for a
marker). What it costs is what a worker pays for its data: the interpreter,
the imports, the S3 client and the transfers, which is how s5cmd, a process,
is measured too (bench/bench_transfer.py).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("direction", choices=("in", "out"))
    ap.add_argument("args", nargs="+")
    ap.add_argument("--workers", type=int, default=16)
    ns = ap.parse_args()
    from bidsbatch.storage import S3Location, transfer
    from bidsbatch.storage.base import ObjectInfo

    if ns.direction == "in":
        items_file, bucket, prefix, dest = ns.args
        items = [ObjectInfo(i["key"], i["size"], i["etag"])
                 for i in json.loads(Path(items_file).read_text())]
        transfer.download_many(S3Location(bucket, prefix), items, Path(dest),
                               max_workers=ns.workers)
    else:
        src, bucket, prefix = ns.args
        transfer.upload_tree(Path(src), S3Location(bucket, prefix), max_workers=ns.workers)


if __name__ == "__main__":
    main()
