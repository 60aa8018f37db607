"""Local executor overhead: N scans of a no-op app, against ``xargs -P 2`` running it.

    .venv/bin/python bench/bench_local_executor.py [--scans 500] [--repeats 3] [--jobs 2]

Two no-op apps: ``true`` (a process that does nothing) and ``python3 -c pass``
(what the smallest Python BIDS App costs to start). For each, the wall time of
``bidsbatch run DATASET OUT --pipeline noop.toml --jobs 2`` (plan, marker check,
per-scan worker: stage-in of the scan's files, run, stage-out, marker, ledger),
and of ``xargs -P 2 -n 1`` running the same app once per scan. Medians over the
repeats; ratio = ours / xargs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent

APPS = {
    "true": ["true"],
    "python -c pass": [sys.executable, "-c", "pass"],
}


def pipeline_file(folder: Path, name: str, argv: list[str]) -> Path:
    quoted = ", ".join(f'"{a}"' for a in [*argv, "{participant}"])
    path = folder / f"noop-{len(argv)}.toml"
    path.write_text(
        f'name = "noop"\nimage = "busybox:latest"\ncommand = [{quoted}]\n'
        "[resources]\nvcpus = 1\nmemory_mib = 128\n"
        # A plain process, as xargs runs it (with podman installed, the image would be used).
        '[container]\nruntime = "none"\n'
    )
    return path


def time_ours(ds: Path, work: Path, pipeline: Path, jobs: int) -> float:
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(work / "state", ignore_errors=True)
    env = {**os.environ, "BIDSBATCH_HOME": str(work / "state")}
    t = time.perf_counter()
    proc = subprocess.run(
        [str(BIN / "bidsbatch"), "run", str(ds), str(out), "--pipeline", str(pipeline),
         "--jobs", str(jobs), "--json"],
        env=env, capture_output=True, text=True,
    )
    elapsed = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"bidsbatch run failed: {proc.stderr[-2000:]}")
    return elapsed


def time_xargs(labels: list[str], argv: list[str], jobs: int) -> float:
    t = time.perf_counter()
    subprocess.run(["xargs", "-P", str(jobs), "-n", "1", *argv],
                   input="\n".join(labels) + "\n", text=True, check=True)
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scans", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=2)
    ns = ap.parse_args()
    from bidsbatch.synth import make_dataset

    with tempfile.TemporaryDirectory(prefix="bench-local-") as tmp:
        work = Path(tmp)
        ds = make_dataset(work / "ds", subjects=ns.scans, sessions=None, modalities=["anat"],
                          shape=(4, 4, 4))
        labels = sorted(p.name[4:] for p in ds.glob("sub-*"))
        rows = []
        for name, argv in APPS.items():
            pipeline = pipeline_file(work, name, argv)
            ours, xargs = [], []
            for _ in range(ns.repeats):
                xargs.append(time_xargs(labels, argv, ns.jobs))
                ours.append(time_ours(ds, work, pipeline, ns.jobs))
            mo, mx = statistics.median(ours), statistics.median(xargs)
            rows.append((name, mo, mx, mo / mx, (mo - mx) / ns.scans * ns.jobs * 1000))
        print(f"\n{ns.scans} scans, --jobs {ns.jobs}, medians of {ns.repeats} runs\n")
        print("| no-op app | bidsbatch run (s) | xargs -P 2 (s) | ratio | overhead per scan "
              "per slot (ms) |")
        print("|---|---:|---:|---:|---:|")
        for name, mo, mx, ratio, per in rows:
            print(f"| `{name}` | {mo:.2f} | {mx:.2f} | {ratio:.2f}× | {per:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
