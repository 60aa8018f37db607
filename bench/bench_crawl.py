#!/usr/bin/env python
"""Crawl benchmark: bidsbatch's S3 crawl against bids2table and a naive m2g-style crawl.

    .venv/bin/python bench/bench_crawl.py [--subjects 1000] [--repeats 3]

Makes a synthetic BIDS dataset (``bidsbatch.synth``; 1,000 subjects x 2 sessions
is about 21,000 objects), uploads it to a moto S3 server on 127.0.0.1
(``tests/moto_server.py``, which counts the requests it serves), then times, in
this one process and one after another:

- ``bidsbatch.bids.crawl("s3://...")`` (parallel key-range listings) at several
  ``max_workers``;
- bids2table ``index_dataset`` in its S3 mode (cloudpathlib, which reads
  ``AWS_ENDPOINT_URL``) when cloudpathlib can be imported, and on the local copy;
- the naive peer of ``bench/naive_crawl.py`` (one listing per key prefix,
  sequential), and m2g's cloud script's own shape;
- ``bidsbatch plan s3://... --pipeline demo`` once, end to end, as a subprocess;
- both crawls on the local copy.

Wall time is ``time.perf_counter`` around each call (subprocess wall time for
the CLI); S3 requests come from the moto server's counter, reset before each
run; moto CPU is the server process's user+system time over the run. Medians of
``--repeats`` runs. bids2table needs ``cloudpathlib`` for S3; it is not a
bidsbatch dependency, so install it out of the project's venv and point at it:

    .venv/bin/pip install --no-deps --target /tmp/b2t-s3 'cloudpathlib>=0.21'
    .venv/bin/python bench/bench_crawl.py --b2t-path /tmp/b2t-s3
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))  # moto_server
sys.path.insert(0, str(HERE))  # naive_crawl

BUCKET = "bench-crawl"
PREFIX = "ds"
URI = f"s3://{BUCKET}/{PREFIX}"

# Fake credentials only; never a real account.
for _var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_DEFAULT_PROFILE"):
    os.environ.pop(_var, None)
os.environ.update(
    AWS_ACCESS_KEY_ID="x",
    AWS_SECRET_ACCESS_KEY="y",
    AWS_REGION="us-east-1",
    AWS_DEFAULT_REGION="us-east-1",
    AWS_EC2_METADATA_DISABLED="true",
)


# --------------------------------------------------------------------------- dataset


def make_dataset(root: Path, subjects: int) -> str:
    """Write the dataset; return how it was made (for the report)."""
    try:
        from bidsbatch.synth import make_dataset as synth

        synth(
            root, subjects=subjects, sessions=("1", "2"), runs=2, inherited_sidecars=False,
            shape=(4, 4, 4), n_volumes=3,
        )
        return (f"bidsbatch.synth.make_dataset(subjects={subjects}, sessions=('1','2'), runs=2, "
                "inherited_sidecars=False, shape=(4,4,4), n_volumes=3)")
    except Exception as exc:  # synth is young; the key layout is what matters here
        shutil.rmtree(root, ignore_errors=True)
        _tiny_layout(root, subjects)
        return f"tiny-file layout of bench/bench_crawl.py (synth failed: {exc!r})"


def _tiny_layout(root: Path, subjects: int) -> None:
    """The same key layout with tiny bodies: 10 files a scan, 2 sessions a subject."""
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text(
        json.dumps({"Name": "bench", "BIDSVersion": "1.10.0", "DatasetType": "raw"})
    )
    (root / "README").write_text("bench\n")
    (root / "participants.tsv").write_text(
        "participant_id\n" + "".join(f"sub-{i:04d}\n" for i in range(1, subjects + 1))
    )
    (root / "task-rest_bold.json").write_text('{"RepetitionTime": 2.0, "TaskName": "rest"}')
    for i in range(1, subjects + 1):
        sub = f"sub-{i:04d}"
        (root / sub).mkdir()
        (root / sub / f"{sub}_sessions.tsv").write_text("session_id\nses-1\nses-2\n")
        for ses in ("1", "2"):
            base = root / sub / f"ses-{ses}"
            p = f"{sub}_ses-{ses}"
            files = {
                f"anat/{p}_T1w.nii.gz": b"\x1f\x8b", f"anat/{p}_T1w.json": b"{}",
                f"func/{p}_task-rest_bold.nii.gz": b"\x1f\x8b",
                f"func/{p}_task-rest_bold.json": b"{}",
                f"func/{p}_task-rest_events.tsv": b"onset\tduration\n",
                f"dwi/{p}_dwi.nii.gz": b"\x1f\x8b", f"dwi/{p}_dwi.bval": b"0 1000\n",
                f"dwi/{p}_dwi.bvec": b"0 1\n0 0\n0 0\n", f"dwi/{p}_dwi.json": b"{}",
                f"{p}_scans.tsv": b"filename\n",
            }
            for rel, body in files.items():
                (base / rel).parent.mkdir(parents=True, exist_ok=True)
                (base / rel).write_bytes(body)


def upload(url: str, root: Path) -> tuple[int, float]:
    import boto3
    from botocore.config import Config

    client = boto3.client("s3", endpoint_url=url, config=Config(max_pool_connections=32))
    client.create_bucket(Bucket=BUCKET)
    files = sorted(p for p in root.rglob("*") if p.is_file())

    def put(path: Path) -> None:
        key = f"{PREFIX}/{path.relative_to(root).as_posix()}"
        client.put_object(Bucket=BUCKET, Key=key, Body=path.read_bytes())

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(put, files))
    return len(files), time.perf_counter() - t0


# --------------------------------------------------------------------------- measuring


def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu() -> float:
    child = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + child.ru_utime + child.ru_stime


def _operation(rec: dict[str, str]) -> str:
    method, query, path = rec["method"], rec["query"], rec["path"]
    bucket_level = path.strip("/").count("/") == 0
    if method == "GET" and "list-type=2" in query:
        return "ListObjectsV2"
    if method == "GET" and bucket_level:
        return "ListObjects"
    if method == "HEAD":
        return "HeadBucket" if bucket_level else "HeadObject"
    if method == "GET":
        return "GetObject"
    return method


@dataclass
class Run:
    wall: float
    requests: collections.Counter
    moto_cpu: float
    client_cpu: float
    found: str


@dataclass
class Row:
    tool: str
    mode: str
    workers: str
    runs: list[Run] = field(default_factory=list)
    note: str = ""

    @property
    def wall(self) -> float:
        return statistics.median(r.wall for r in self.runs)

    @property
    def n_requests(self) -> int:
        return int(statistics.median(sum(r.requests.values()) for r in self.runs))

    @property
    def moto_cpu(self) -> float:
        return statistics.median(r.moto_cpu for r in self.runs)

    @property
    def client_cpu(self) -> float:
        return statistics.median(r.client_cpu for r in self.runs)

    def breakdown(self) -> str:
        last = self.runs[-1].requests
        return ", ".join(f"{n} {op}" for op, n in last.most_common())


class Bench:
    def __init__(self, server: Any | None) -> None:
        self.server = server

    def measure(self, fn: Callable[[], str]) -> Run:
        srv = self.server
        if srv is not None:
            srv.reset_requests()
            s0 = _proc_cpu(srv.process.pid)
        c0 = _own_cpu()
        t0 = time.perf_counter()
        found = fn()
        wall = time.perf_counter() - t0
        client = _own_cpu() - c0
        if srv is None:
            return Run(wall, collections.Counter(), 0.0, client, found)
        moto = _proc_cpu(srv.process.pid) - s0
        counts = collections.Counter(_operation(r) for r in srv.requests())
        return Run(wall, counts, moto, client, found)


# --------------------------------------------------------------------------- the tools


def ours(uri: str, workers: int) -> Callable[[], str]:
    from bidsbatch.bids import crawl

    def run() -> str:
        ds = crawl(uri, max_workers=workers)
        return f"{len(ds.scans)} scans / {ds.n_files} objects"

    return run


def b2t(root: str) -> Callable[[], str]:
    import bids2table
    from bids2table import _indexing

    def run() -> str:
        # Its dataset checks are lru_cached per path: clear them so every repeat
        # does the same requests as a fresh process would.
        _indexing._get_bids_dataset.cache_clear()
        _indexing._is_bids_dataset.cache_clear()
        table = bids2table.index_dataset(root)
        # Scans as bidsbatch counts them: subject x session of the data files.
        cols = table.select(["sub", "ses", "datatype"]).to_pylist()
        scans = len({(c["sub"], c["ses"]) for c in cols if c["datatype"]})
        return f"{scans} scans / {table.num_rows} rows"

    return run


def naive(kind: str) -> Callable[[], str]:
    import boto3
    import naive_crawl

    fn = {"per_prefix": naive_crawl.crawl_per_prefix,
          "m2g_shipped": naive_crawl.crawl_m2g_shipped}[kind]

    def run() -> str:
        client = boto3.client("s3")  # one client, AWS_ENDPOINT_URL from the environment
        scans = fn(client, BUCKET, PREFIX)
        keys = {k for files in scans.values() for k in files}
        return f"{len(scans)} scans / {len(keys)} objects"

    return run


def cli_plan(tmp: Path) -> Callable[[], str]:
    exe = Path(sys.executable).with_name("bidsbatch")
    out = tmp / "plan-out"
    run_dir = tmp / "plan-run"

    def run() -> str:
        shutil.rmtree(run_dir, ignore_errors=True)
        proc = subprocess.run(
            [str(exe), "plan", URI, str(out), "--pipeline", "demo", "--run-dir", str(run_dir),
             "--json"],
            capture_output=True, text=True, env={**os.environ, "BIDSBATCH_HOME": str(tmp / "home")},
        )
        if proc.returncode != 0:
            raise RuntimeError(f"bidsbatch plan failed ({proc.returncode}): {proc.stderr[-2000:]}")
        specs = json.loads(proc.stdout)["specs"]
        return f"{len(specs)} specs"

    return run


def moto_page_costs(srv: Any, subject_dirs: list[str]) -> list[tuple[str, float, float, int]]:
    """Sequential ListObjectsV2 timings: (what, wall ms/request, moto CPU ms/request, n)."""
    import boto3

    client = boto3.client("s3")
    client.create_bucket(Bucket="bench-tiny")
    first = subject_dirs[0]
    per_subject = len(client.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/{first}/")
                      .get("Contents", []))
    for i in range(per_subject):
        client.put_object(Bucket="bench-tiny", Key=f"{PREFIX}/{first}/f{i:02d}", Body=b"x")
    n_small = min(50, len(subject_dirs))
    cases: list[tuple[str, Callable[[int], Any], int]] = [
        ("a prefix with no keys, in the dataset bucket",
         lambda i: client.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/nothing-{i}/"), 50),
        (f"1 subject's prefix ({per_subject} keys), in the dataset bucket",
         lambda i: client.list_objects_v2(
             Bucket=BUCKET, Prefix=f"{PREFIX}/{subject_dirs[i % len(subject_dirs)]}/"),
         n_small),
        (f"the same {per_subject} keys, alone in a bucket",
         lambda i: client.list_objects_v2(Bucket="bench-tiny", Prefix=f"{PREFIX}/{first}/"), 50),
        ("one full 1,000-key page, in the dataset bucket",
         lambda i: client.list_objects_v2(
             Bucket=BUCKET, Prefix=f"{PREFIX}/sub-", MaxKeys=1000), 10),
    ]
    out = []
    for what, call, n in cases:
        for i in range(3):
            call(i)  # warm
        srv.reset_requests()
        s0 = _proc_cpu(srv.process.pid)
        t0 = time.perf_counter()
        for i in range(n):
            call(i)
        wall = (time.perf_counter() - t0) / n * 1000
        cpu = (_proc_cpu(srv.process.pid) - s0) / n * 1000
        out.append((what, wall, cpu, n))
    return out


# --------------------------------------------------------------------------- report


def table(rows: list[Row], ref_s3: Row | None, ref_local: Row | None) -> str:
    lines = [
        "| tool | mode | workers | wall s (median) | runs | S3 requests | moto CPU s | "
        "client CPU s | found | ratio vs ours |",
        "|---|---|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for row in rows:
        ref = ref_local if row.mode.startswith("local") else ref_s3
        ratio = f"{row.wall / ref.wall:.2f}x" if ref is not None and ref.runs else ""
        remote = not row.mode.startswith("local")
        lines.append(
            f"| {row.tool} | {row.mode} | {row.workers} | {row.wall:.2f} | {len(row.runs)} | "
            f"{row.n_requests if remote else '-'} | {row.moto_cpu:.2f} | {row.client_cpu:.2f} | "
            f"{row.runs[-1].found} | {ratio} |"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subjects", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", default="8,16,32",
                    help="max_workers values for our crawl (default: 8,16,32)")
    ap.add_argument("--sweep-repeats", type=int, default=1,
                    help="repeats of the worker counts other than 16 (default 1, to stay "
                         "within ~10 minutes; 16 gets --repeats)")
    ap.add_argument("--naive-repeats", type=int, default=1,
                    help="repeats of the naive crawls (default 1: ~9,000 sequential requests "
                         "take minutes on moto)")
    ap.add_argument("--b2t-path", default=os.environ.get("BENCH_B2T_PATH"),
                    help="a folder holding cloudpathlib (pip --target), for bids2table's S3 mode")
    ap.add_argument("--skip-naive", action="store_true")
    ap.add_argument("--skip-cli", action="store_true")
    ap.add_argument("--json", type=Path, help="also write every run as JSON here")
    args = ap.parse_args()
    workers = [int(w) for w in args.workers.split(",") if w]
    sweep_repeats = args.sweep_repeats

    import moto_server

    started = time.perf_counter()
    load_start = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="bench-crawl-"))
    local = tmp / "ds"
    srv = None
    rows: list[Row] = []
    try:
        t0 = time.perf_counter()
        made_by = make_dataset(local, args.subjects)
        gen_s = time.perf_counter() - t0
        srv = moto_server.start()
        os.environ["AWS_ENDPOINT_URL"] = srv.url
        n_objects, up_s = upload(srv.url, local)
        print(f"# dataset: {made_by}\n# {n_objects} objects, made in {gen_s:.1f} s, "
              f"uploaded to moto in {up_s:.1f} s", file=sys.stderr)

        # bids2table reads AWS_ENDPOINT_URL when it is imported (its default S3 client).
        if args.b2t_path:
            sys.path.insert(0, args.b2t_path)
        from bids2table._pathlib import cloudpathlib_is_available

        b2t_s3 = cloudpathlib_is_available()
        bench = Bench(srv)

        def log(row: Row, run: Run) -> None:
            print(f"  {row.tool} [{row.mode}, {row.workers}] {run.wall:.2f} s, "
                  f"{sum(run.requests.values())} requests, moto CPU {run.moto_cpu:.1f} s, "
                  f"{run.found}, load {os.getloadavg()[0]:.1f}", file=sys.stderr)

        default_w = 16 if 16 in workers else workers[0]
        ours_rows = {w: Row("bidsbatch crawl", "S3 (moto)", str(w)) for w in workers}
        b2t_row = Row("bids2table 2.3.1 index_dataset", "S3 (moto, cloudpathlib)", "1 (sequential)")

        # Round-robin the repeats so drift hits every tool alike.
        for rep in range(args.repeats):
            plan: list[tuple[Row, Callable[[], str]]] = [
                (ours_rows[default_w], ours(URI, default_w))]
            if rep < sweep_repeats:
                plan += [(ours_rows[w], ours(URI, w)) for w in workers if w != default_w]
            if b2t_s3:
                plan.append((b2t_row, b2t(URI)))
            for row, fn in plan:
                run = bench.measure(fn)
                row.runs.append(run)
                log(row, run)

        naive_rows = []
        if not args.skip_naive:
            for kind, label in (
                ("per_prefix", "naive: one listing per key prefix (bench/naive_crawl.py)"),
                ("m2g_shipped", "m2g_cloud's shape: full listing + 1 per subject"),
            ):
                row = Row(label, "S3 (moto)", "1 (sequential)")
                for _ in range(args.naive_repeats):
                    run = bench.measure(naive(kind))
                    row.runs.append(run)
                    log(row, run)
                naive_rows.append(row)

        cli_row = None
        if not args.skip_cli:
            cli_row = Row("`bidsbatch plan ... --pipeline demo` (subprocess, end to end)",
                          "S3 (moto)", "16")
            run = bench.measure(cli_plan(tmp))
            cli_row.runs.append(run)
            log(cli_row, run)

        pages = moto_page_costs(
            srv, sorted(p.name for p in local.iterdir() if p.name.startswith("sub-")))

        # Local copy: no server involved.
        local_bench = Bench(None)
        ours_local = Row("bidsbatch crawl", "local copy", str(default_w))
        b2t_local = Row("bids2table 2.3.1 index_dataset", "local copy", "1 (sequential)")
        for _ in range(args.repeats):
            for row, fn in ((ours_local, ours(str(local), default_w)),
                            (b2t_local, b2t(str(local)))):
                run = local_bench.measure(fn)
                row.runs.append(run)
                log(row, run)

        rows = [ours_rows[default_w]]
        rows += [ours_rows[w] for w in workers if w != default_w]
        if b2t_s3:
            rows.append(b2t_row)
        rows += naive_rows
        if cli_row:
            rows.append(cli_row)
        rows += [ours_local, b2t_local]

        print(f"\nDataset: {n_objects} objects ({args.subjects} subjects x 2 sessions), {made_by}.")
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        print(f"Machine: {os.cpu_count()} cores, {mem:.0f} GiB, Python "
              f"{platform.python_version()}, {datetime.date.today().isoformat()}. Moto server: "
              "tests/moto_server.py (one process, threaded).")
        print("Load average (1 min) at start / end: "
              f"{load_start:.1f} / {os.getloadavg()[0]:.1f}.")
        if not b2t_s3:
            print("bids2table S3 mode: not run (cloudpathlib not importable; see --b2t-path); "
                  "local copy only.")
        print()
        print(table(rows, ours_rows[default_w], ours_local))
        print("\nRequests by operation (last run):")
        for row in rows:
            if row.runs and row.runs[-1].requests:
                print(f"- {row.tool} [{row.workers}]: {row.breakdown()}")
        print("\nmoto's cost per ListObjectsV2 (sequential, one client):\n")
        print("| listing | wall ms / request | moto CPU ms / request | n |")
        print("|---|---:|---:|---:|")
        for what, wall, cpu, n in pages:
            print(f"| {what} | {wall:.1f} | {cpu:.1f} | {n} |")
        print(f"\nTotal benchmark time: {time.perf_counter() - started:.0f} s")
        if args.json:
            args.json.write_text(json.dumps({
                "dataset": made_by, "objects": n_objects,
                "rows": [{"tool": r.tool, "mode": r.mode, "workers": r.workers, "runs": [
                    {"wall": x.wall, "requests": dict(x.requests), "moto_cpu": x.moto_cpu,
                     "client_cpu": x.client_cpu, "found": x.found} for x in r.runs]}
                    for r in rows],
                "moto_pages": pages,
            }, indent=2))
        return 0
    finally:
        if srv is not None:
            srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
