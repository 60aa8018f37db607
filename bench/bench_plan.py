"""Planning at scale: ``bidsbatch plan`` of N scans of tiny files, wall time and peak memory.

    .venv/bin/python bench/bench_plan.py [--scans 100000] [--repeats 3] [--dataset DIR]
                                         [--json] [--compare SRC] [--profile | --phases]

The dataset has N subjects without sessions, each with a T1w image (a few
bytes: the crawl and the plan read names and sizes, never contents) and its
sidecar, plus the dataset-level files (``--dataset DIR`` keeps it for the next
runs). Each repeat runs ``bidsbatch plan DS OUT --pipeline demo --run-dir RUN``
as a user would (``--json``: with every spec on stdout too), into a new run
directory, and reads the child's wall time, CPU time and peak RSS (``wait4``).
With ``--profile`` it runs the plan once in this process under cProfile
instead; with ``--phases`` it times crawl, make_plan, write and the
marker check in this process, user and system CPU apart.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

BIN = Path(sys.executable).parent
T = TypeVar("T")


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


def time_plan(ds: Path, work: Path, n: str, *, as_json: bool = False, src: Path | None = None
              ) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system) and peak RSS (MB) of one ``bidsbatch plan``.

    ``src``: run the bidsbatch of that source folder instead (another checkout's ``src``).
    """
    env = {**os.environ, "BIDSBATCH_HOME": str(work / f"state{n}")}
    if src is not None:
        env["PYTHONPATH"] = str(src)
    argv = [str(BIN / "bidsbatch"), "plan", str(ds), str(work / f"out{n}"), "--pipeline",
            "demo", "--run-dir", str(work / f"run{n}")] + (["--json"] if as_json else [])
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
    cpu = rusage.ru_utime + rusage.ru_stime
    return elapsed, cpu, rusage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


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


def _reference_loop_us() -> float:
    """How fast this machine runs Python at the moment (~10 µs idle on a recent x86 core)."""
    import timeit

    return min(timeit.repeat("sum(range(1000))", number=2000, repeat=5)) / 2000 * 1e6


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

    def step(name: str, fn: Callable[[], T]) -> T:
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
    ap.add_argument("--compare", type=Path, default=None, metavar="SRC",
                    help="also run the bidsbatch of SRC (another checkout's src/), interleaved")
    ap.add_argument("--json", action="store_true",
                    help="run `plan --json` (every spec on stdout too) instead of the summary")
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
        sides = {"this checkout": None} | ({f"--compare {ns.compare}": ns.compare}
                                           if ns.compare else {})
        got: dict[str, list[tuple[float, float, float]]] = {name: [] for name in sides}
        loads = []
        for i in range(ns.repeats):
            for j, (name, src) in enumerate(sides.items()):  # interleaved: the same moment
                got[name].append(time_plan(ds, work, f"{i}-{j}", as_json=ns.json, src=src))
                wall, cpu, peak = got[name][-1]
                loads.append(os.getloadavg()[0])
                print(f"run {i + 1} ({name}): {wall:.2f} s wall, {cpu:.2f} s CPU, "
                      f"{peak:.0f} MB peak", file=sys.stderr)
        print(f"\n{ns.scans} scans, medians of {ns.repeats} runs; load average "
              f"{min(loads):.1f}–{max(loads):.1f}; {_reference_loop_us():.1f} µs for "
              "sum(range(1000)) after\n")
        print("| code | scans | `bidsbatch plan` wall (s) | CPU user+system (s) "
              "| peak RSS (MB) |")
        print("|---|---:|---:|---:|---:|")
        for name, runs in got.items():
            walls, cpus, peaks = zip(*runs, strict=True)
            print(f"| {name} | {ns.scans} | {statistics.median(walls):.2f} "
                  f"| {statistics.median(cpus):.2f} | {statistics.median(peaks):.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
