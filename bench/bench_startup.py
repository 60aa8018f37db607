"""Start-up: ``bidsbatch --version`` and ``bidsbatch status`` of a finished 1,000-scan run.

    .venv/bin/python bench/bench_startup.py [--scans 1000] [--repeats 15]

Paired with the floor, ``python -c pass`` of the same interpreter, run
alternately (the machine is shared: the ratio to the floor of the same moment
says more than a wall time). The run is a real one: ``bidsbatch run`` of the
demo-sized no-op pipeline over N tiny scans (``true``), then ``status RUN``
(the table, the counts) is timed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
sys.path.insert(0, str(Path(__file__).parent))

from bench_plan import make_tiny_dataset  # noqa: E402


def timed(argv: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=True)
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scans", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=15)
    ns = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        work = Path(tmp)
        env = {**os.environ, "BIDSBATCH_HOME": str(work / "state")}
        ds = make_tiny_dataset(work / "ds", ns.scans)
        pipeline = work / "noop.toml"
        pipeline.write_text('name = "noop"\nimage = "busybox:latest"\n'
                            'command = ["true", "{participant}"]\n'
                            '[inputs]\nrequire = ["anat/T1w"]\n'
                            '[resources]\nvcpus = 1\nmemory_mib = 128\n'
                            '[container]\nruntime = "none"\n')
        run_dir = work / "run"
        subprocess.run([str(BIN / "bidsbatch"), "run", str(ds), str(work / "out"),
                        "--pipeline", str(pipeline), "--run-dir", str(run_dir), "--json"],
                       env=env, stdout=subprocess.DEVNULL, check=True)
        cases = {
            "`bidsbatch --version`": [str(BIN / "bidsbatch"), "--version"],
            f"`bidsbatch status` ({ns.scans} scans)": [str(BIN / "bidsbatch"), "status",
                                                      str(run_dir)],
        }
        floor = [sys.executable, "-c", "pass"]
        print(f"\nmedians of {ns.repeats} paired runs (command, then `python -c pass`)\n")
        print("| command | bidsbatch (ms) | `python -c pass` (ms) | ratio | minus the floor (ms) |")
        print("|---|---:|---:|---:|---:|")
        for name, argv in cases.items():
            ours, base = [], []
            for _ in range(ns.repeats):
                ours.append(timed(argv, env))
                base.append(timed(floor, env))
            mo, mb = statistics.median(ours), statistics.median(base)
            ratios = statistics.median(o / b for o, b in zip(ours, base, strict=True))
            print(f"| {name} | {mo * 1000:.0f} | {mb * 1000:.0f} | {ratios:.1f}× | "
                  f"{(mo - mb) * 1000:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
