#!/usr/bin/env python
"""The S3 crawl with real latency: moto behind bench/latency_proxy.py, swept over delays.

    .venv/bin/python bench/bench_latency.py [--subjects 1000] [--latencies 0,20,40,80] \
        [--repeats 2] [--b2t-path /tmp/b2t-s3]

One dataset (``bench_crawl.make_dataset``) on one moto server; for each delay a
proxy on 127.0.0.1 in front of it (0 ms too, so the proxy's own cost is in every
row), and, in turn within each repeat:

- **ours**: ``bidsbatch.bids.crawl`` (16 workers): the root with a delimiter, the
  first page of the subjects' key range, one near-empty request, then the rest in
  as many key ranges as ``storage/keyranges.py`` chooses from those timings;
- **floor**: one sequential paginated listing of the whole prefix (no delimiter),
  the fewest requests anything can send;
- **parallel R**: the root, then the subjects in R equal key ranges listed at once
  (raw boto3, no BIDS work): the best of R in 2, 4, 8, 16, 32 is the "best
  parallel listing" an oracle that knew the latency would pick;
- **per subject**: the root, then one paginated listing per subject on 16 threads
  (the crawl's first version);
- **bids2table** ``index_dataset`` in its S3 mode (cloudpathlib; ``--b2t-path``),
  once per delay (1,000+ sequential requests).

Requests are counted by the moto server; wall time around each call. Ratios are
to ours within the same delay, medians over the repeats.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

import bench_crawl  # noqa: E402  (sets fake credentials in os.environ)
import latency_proxy  # noqa: E402


def _client(url: str):  # type: ignore[no-untyped-def]
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                        config=Config(max_pool_connections=64))


def floor(url: str) -> Callable[[], str]:
    def run() -> str:
        c = _client(url)
        n = 0
        for page in c.get_paginator("list_objects_v2").paginate(
                Bucket=bench_crawl.BUCKET, Prefix=f"{bench_crawl.PREFIX}/"):
            n += len(page.get("Contents", ()))
        return f"{n} objects"
    return run


def _subjects(c) -> list[str]:  # type: ignore[no-untyped-def]
    subs = []
    for page in c.get_paginator("list_objects_v2").paginate(
            Bucket=bench_crawl.BUCKET, Prefix=f"{bench_crawl.PREFIX}/", Delimiter="/"):
        subs += [p["Prefix"] for p in page.get("CommonPrefixes", ())
                 if p["Prefix"].split("/")[-2].startswith("sub-")]
    return sorted(subs)


def parallel(url: str, ranges: int) -> Callable[[], str]:
    def run() -> str:
        c = _client(url)
        subs = _subjects(c)
        size = -(-len(subs) // ranges)
        groups = [subs[i:i + size] for i in range(0, len(subs), size)]

        def one(group: list[str]) -> int:
            stop = group[-1].rstrip("/") + "0"
            n = 0
            for page in c.get_paginator("list_objects_v2").paginate(
                    Bucket=bench_crawl.BUCKET, Prefix=f"{bench_crawl.PREFIX}/sub-",
                    StartAfter=group[0].rstrip("/")):
                keys = [o["Key"] for o in page.get("Contents", ())]
                n += sum(k < stop for k in keys)
                if keys and keys[-1] >= stop:
                    break
            return n

        with ThreadPoolExecutor(len(groups)) as pool:
            n = sum(pool.map(one, groups))
        return f"{n} objects"
    return run


def per_subject(url: str) -> Callable[[], str]:
    def run() -> str:
        c = _client(url)
        subs = _subjects(c)

        def one(prefix: str) -> int:
            return sum(len(p.get("Contents", ())) for p in c.get_paginator(
                "list_objects_v2").paginate(Bucket=bench_crawl.BUCKET, Prefix=prefix))

        with ThreadPoolExecutor(16) as pool:
            n = sum(pool.map(one, subs))
        return f"{n} objects"
    return run


def b2t(url: str) -> Callable[[], str]:
    from cloudpathlib import S3Client

    S3Client(endpoint_url=url).set_as_default_client()
    return bench_crawl.b2t(bench_crawl.URI)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subjects", type=int, default=1000)
    ap.add_argument("--latencies", default="0,20,40,80")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--ranges", default="2,4,8,16,32")
    ap.add_argument("--b2t-path", default=os.environ.get("BENCH_B2T_PATH"))
    ap.add_argument("--skip-b2t", action="store_true")
    ap.add_argument("--skip-per-subject", action="store_true")
    args = ap.parse_args()
    import moto_server

    tmp = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    srv = moto_server.start()
    try:
        made = bench_crawl.make_dataset(tmp / "ds", args.subjects)
        n_objects, up = bench_crawl.upload(srv.url, tmp / "ds")
        print(f"# {n_objects} objects ({made}), uploaded in {up:.0f} s", file=sys.stderr)
        if args.b2t_path:
            sys.path.insert(0, args.b2t_path)
        bench = bench_crawl.Bench(srv)
        print("| delay ms | tool | wall s (median) | runs | S3 requests | moto CPU s | "
              "ratio vs ours |")
        print("|---:|---|---:|---:|---:|---:|---:|")
        for delay in [float(x) for x in args.latencies.split(",")]:
            with latency_proxy.start(srv.url, delay) as proxy:
                os.environ["AWS_ENDPOINT_URL"] = proxy.url  # ours: a new client per URL
                tools: list[tuple[str, Callable[[], Callable[[], str]]]] = [
                    ("ours (bidsbatch crawl, 16 workers)",
                     lambda: bench_crawl.ours(bench_crawl.URI, 16)),
                    ("floor: one sequential listing", lambda: floor(proxy.url))]
                tools += [(f"parallel listing, {r} key ranges",
                           lambda r=r: parallel(proxy.url, r))  # type: ignore[misc]
                          for r in map(int, args.ranges.split(","))]
                if not args.skip_per_subject:
                    tools.append(("per subject, 16 threads", lambda: per_subject(proxy.url)))
                runs: dict[str, list[bench_crawl.Run]] = {name: [] for name, _ in tools}
                for rep in range(args.repeats):
                    order = tools if rep % 2 == 0 else list(reversed(tools))
                    for name, make in order:
                        run = bench.measure(make())
                        runs[name].append(run)
                        print(f"  {delay:g} ms {name}: {run.wall:.2f} s, "
                              f"{sum(run.requests.values())} requests, {run.found}",
                              file=sys.stderr, flush=True)
                if not args.skip_b2t:
                    name = "bids2table index_dataset (S3 mode), once"
                    run = bench.measure(b2t(proxy.url))
                    runs[name] = [run]
                    print(f"  {delay:g} ms {name}: {run.wall:.2f} s", file=sys.stderr,
                          flush=True)
                ours = statistics.median(r.wall for r in runs[tools[0][0]])
                best = min((statistics.median(r.wall for r in v), k) for k, v in runs.items()
                           if k.startswith("parallel"))
                for name, rs in runs.items():
                    wall = statistics.median(r.wall for r in rs)
                    reqs = int(statistics.median(sum(r.requests.values()) for r in rs))
                    cpu = statistics.median(r.moto_cpu for r in rs)
                    print(f"| {delay:g} | {name} | {wall:.2f} | {len(rs)} | {reqs} | {cpu:.2f} | "
                          f"{wall / ours:.2f}x |", flush=True)
                print(f"| {delay:g} | **best parallel listing: {best[1]}** | {best[0]:.2f} | | | | "
                      f"ours / best = {ours / best[0]:.2f} |", flush=True)
        print(f"\nload average at the end: {os.getloadavg()[0]:.1f}; {time.ctime()}")
        return 0
    finally:
        srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
