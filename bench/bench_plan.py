"""Planning at scale: ``bidsbatch plan`` of N scans of tiny files, wall time and peak memory.

    .venv/bin/python bench/bench_plan.py [--scans 100000] [--repeats 3] [--profile]

The dataset has N subjects without sessions, each with a T1w image (a few
bytes: the crawl and the plan read names and sizes, never contents) and its
sidecar, plus the dataset-level files. Each repeat runs ``bidsbatch plan DS
OUT --pipeline demo --run-dir RUN --json`` as a user would, into a new run
directory, and reads the child's wall time and peak RSS (``wait4``). With
``--profile`` it runs the plan once in this process under cProfile instead.
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


def make_tiny_dataset(root: Path, scans: int) -> Path:
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text(
        '{"Name": "tiny", "BIDSVersion": "1.9.0", "DatasetType": "raw"}\n')
    width = len(str(scans))
    rows = ["participant_id\tage"]
    for i in range(scans):
        label = f"{i:0{width}d}"
        anat = root / f"sub-{label}" / "anat"
        anat.mkdir(parents=True)
        (anat / f"sub-{label}_T1w.nii.gz").write_bytes(b"\x1f\x8b" + label.encode())
        (anat / f"sub-{label}_T1w.json").write_text('{"RepetitionTime": 2.0}\n')
        rows.append(f"sub-{label}\t{20 + i % 50}")
    (root / "participants.tsv").write_text("\n".join(rows) + "\n")
    return root


def time_plan(ds: Path, work: Path, n: int) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one ``bidsbatch plan`` process."""
    env = {**os.environ, "BIDSBATCH_HOME": str(work / "state")}
    argv = [str(BIN / "bidsbatch"), "plan", str(ds), str(work / f"out{n}"), "--pipeline",
            "demo", "--run-dir", str(work / f"run{n}"), "--json"]
    t = time.perf_counter()
    with open(os.devnull, "wb") as null:
        proc = subprocess.Popen(argv, env=env, stdout=null, stderr=subprocess.PIPE)
        assert proc.stderr is not None
        err = proc.stderr.read()
        _pid, status, rusage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"bidsbatch plan failed: {err[-2000:].decode()}")
    return elapsed, rusage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def profile(ds: Path, work: Path) -> None:
    import cProfile
    import pstats

    from bidsbatch import api

    def go() -> None:
        plan = api.plan(str(ds), str(work / "out-profile"), pipeline="demo",
                        run_dir=str(work / "run-profile"))
        print(f"{len(plan.specs)} specs")

    prof = cProfile.Profile()
    prof.runcall(go)
    pstats.Stats(prof).sort_stats("cumulative").print_stats(30)
    pstats.Stats(prof).sort_stats("tottime").print_stats(25)


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def phases(ds: Path, work: Path) -> None:
    """CPU and wall seconds of each step ``bidsbatch plan`` takes, in this process."""
    import resource

    from bidsbatch.bids import crawl
    from bidsbatch.cli.reasons import reasons_or_none
    from bidsbatch.planning import make_plan

    os.environ["BIDSBATCH_HOME"] = str(work / "state-phases")
    rows = []

    def step(name: str, fn):  # noqa: ANN001, ANN202
        r, w = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        value = fn()
        e = resource.getrusage(resource.RUSAGE_SELF)
        rows.append((name, e.ru_utime - r.ru_utime, e.ru_stime - r.ru_stime,
                     time.perf_counter() - w, _rss_mb()))
        return value

    dataset = step("crawl", lambda: crawl(str(ds)))
    plan = step("make_plan", lambda: make_plan(dataset, str(work / "out-phases"),
                                                 pipeline="demo"))
    step("write", lambda: plan.write(work / "run-phases"))
    step("reasons", lambda: reasons_or_none(plan, force=False))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("| phase | CPU user (s) | CPU system (s) | wall (s) | RSS after (MB) |\n"
          "|---|---:|---:|---:|---:|")
    for name, user, system, wall, rss in rows:
        print(f"| {name} | {user:.2f} | {system:.2f} | {wall:.2f} | {rss:.0f} |")
    print(f"\npeak RSS of this process: {peak:.0f} MB; load average "
          f"{os.getloadavg()[0]:.1f}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scans", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--dataset", type=Path, default=None,
                    help="keep the tiny dataset here (made once, reused by later runs)")
    ap.add_argument("--phases", action="store_true",
                    help="time crawl, make_plan, write and reasons in this process")
    ns = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-plan-") as tmp:
        work = Path(tmp)
        t = time.perf_counter()
        ds = ns.dataset or work / "ds"
        if not (ds / "participants.tsv").exists():
            make_tiny_dataset(ds, ns.scans)
            print(f"dataset of {ns.scans} scans written in {time.perf_counter() - t:.1f} s",
                  file=sys.stderr)
        if ns.profile:
            profile(ds, work)
            return 0
        if ns.phases:
            phases(ds, work)
            return 0
        walls, peaks = [], []
        for i in range(ns.repeats):
            wall, peak = time_plan(ds, work, i)
            walls.append(wall)
            peaks.append(peak)
            print(f"run {i + 1}: {wall:.2f} s, {peak:.0f} MB peak", file=sys.stderr)
        print(f"\n{ns.scans} scans, medians of {ns.repeats} runs\n")
        print("| scans | `bidsbatch plan` wall (s) | peak RSS (MB) |")
        print("|---:|---:|---:|")
        print(f"| {ns.scans} | {statistics.median(walls):.2f} | {statistics.median(peaks):.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
