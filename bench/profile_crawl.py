#!/usr/bin/env python
"""Where the crawl's own CPU goes: cProfile of a local crawl, and on S3 the split
between listing (boto3: signing, HTTP, XML parsing) and building scans (ours).

    .venv/bin/python bench/profile_crawl.py [--subjects 1000] [--s3-subjects 200]

The dataset is the one of bench_crawl.py. cProfile only sees the main thread, so
the S3 part measures process CPU time around the two phases instead.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench_crawl  # noqa: E402  (sets the fake AWS environment first)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--subjects", type=int, default=1000)
    ap.add_argument("--s3-subjects", type=int, default=200)
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args()

    from bidsbatch import bids

    tmp = Path(tempfile.mkdtemp(prefix="profile-crawl-"))
    srv = None
    try:
        local = tmp / "ds"
        bench_crawl.make_dataset(local, args.subjects)
        bids.crawl(str(local))  # warm: schema, validator
        t0 = time.perf_counter()
        bids.crawl(str(local))
        print(f"local crawl, {args.subjects} subjects: {time.perf_counter() - t0:.2f} s wall")
        prof = cProfile.Profile()
        prof.enable()
        bids.crawl(str(local), max_workers=1)
        prof.disable()
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(args.top)
        print(out.getvalue())

        import moto_server

        small = tmp / "ds-s3"
        bench_crawl.make_dataset(small, args.s3_subjects)
        srv = moto_server.start()
        os.environ["AWS_ENDPOINT_URL"] = srv.url
        bench_crawl.upload(srv.url, small)
        phases = {"listing (boto3 + ObjectInfo)": 0.0, "building scans (ours)": 0.0}
        original_list = bids._Crawler._list_subjects
        original_scans = bids._Crawler._subject_scans

        def timed_list(self, subjects):  # type: ignore[no-untyped-def]
            c0 = time.process_time()
            try:
                return original_list(self, subjects)
            finally:
                phases["listing (boto3 + ObjectInfo)"] += time.process_time() - c0

        def timed_scans(self, *a, **k):  # type: ignore[no-untyped-def]
            c0 = time.process_time()
            try:
                return original_scans(self, *a, **k)
            finally:
                phases["building scans (ours)"] += time.process_time() - c0

        bids._Crawler._list_subjects = timed_list  # type: ignore[method-assign]
        bids._Crawler._subject_scans = timed_scans  # type: ignore[method-assign]
        c0 = time.process_time()
        t0 = time.perf_counter()
        ds = bids.crawl(bench_crawl.URI)
        wall = time.perf_counter() - t0
        total = time.process_time() - c0
        print(f"S3 crawl, {args.s3_subjects} subjects ({ds.n_files} objects): {wall:.2f} s wall, "
              f"{total:.2f} s client CPU")
        for name, cpu in phases.items():
            print(f"  {name}: {cpu:.2f} s CPU")
        return 0
    finally:
        if srv is not None:
            srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
