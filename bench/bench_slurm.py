#!/usr/bin/env python
"""Slurm submission and one status of N scans: bidsbatch against one job per scan.

    .venv/bin/python bench/bench_slurm.py [--scans 10000] [--old-budget 60] [--json-out FILE]

A real one-node Slurm cluster on 127.0.0.1 (``tests/slurm_cluster.py``, no
accounting), a local dataset of ``--scans`` scans (``scans / 2`` subjects x 2
sessions, one tiny T1w file each). Every Slurm command is counted from the
outside: a folder of shims first on PATH logs each call, then runs the real
command. Jobs are submitted held (``--hold``) and cancelled at the end, so
nothing runs: submission and watching are what is measured.

**Ours**: ``bidsbatch plan DS OUT --json`` alone first (to tell planning from
submitting), then ``bidsbatch run DS OUT --executor slurm --slurm-extra=--hold
--slurm-poll-seconds 0 --no-wait --json`` (a subprocess; plan included), then
``bidsbatch status RUN --json`` once.

**Per-job tools** (one job per scan): ``sbatch --hold --parsable --wrap true``
per scan in a loop; status: ``squeue -h -j ID`` and ``sacct -j ID`` per job
(both, as tools that try sacct first do). A loop that passes ``--old-budget``
seconds stops; its figures are extrapolated linearly to ``--scans`` (the
table says which).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from slurm_cluster import ensure_slurm, start_cluster  # noqa: E402

TOOLS = ("sbatch", "squeue", "sacct", "scancel", "scontrol")
BIN = Path(sys.executable).parent


def write_dataset(root: Path, scans: int) -> None:
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text(
        json.dumps({"Name": "bench", "BIDSVersion": "1.9.0"}))
    for i in range(scans // 2):
        for ses in ("1", "2"):
            d = root / f"sub-{i:05d}" / f"ses-{ses}" / "anat"
            d.mkdir(parents=True)
            (d / f"sub-{i:05d}_ses-{ses}_T1w.nii.gz").write_bytes(b"\0" * 64)


def shims(folder: Path, log: Path) -> None:
    folder.mkdir(parents=True)
    for tool in TOOLS:
        real = subprocess.run(["which", tool], capture_output=True, text=True).stdout.strip()
        path = folder / tool
        path.write_text(f'#!/bin/sh\necho {tool} >> "{log}"\nexec {real} "$@"\n')
        path.chmod(0o755)


def counts(log: Path) -> Counter[str]:
    return Counter(log.read_text().split()) if log.exists() else Counter()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scans", type=int, default=10_000)
    ap.add_argument("--old-budget", type=float, default=60.0)
    ap.add_argument("--json-out")
    ns = ap.parse_args()
    why = ensure_slurm()
    if why:
        print(why, file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="bench-slurm-"))
    cluster = start_cluster(work / "slurm", cpus=2)
    log = work / "calls.log"
    shims(work / "shims", log)
    env = {**os.environ, **cluster.env, "PATH": f"{work / 'shims'}:{os.environ['PATH']}",
           "BIDSBATCH_HOME": str(work / "home"), "COLUMNS": "200"}
    result: dict[str, object] = {"scans": ns.scans}
    try:
        write_dataset(work / "ds", ns.scans)
        # the plan alone (crawl, specs), to tell it from what the executor adds
        t = time.perf_counter()
        res = subprocess.run([str(BIN / "bidsbatch"), "plan", str(work / "ds"),
                              str(work / "out"), "--json"],
                             env={**env, "BIDSBATCH_HOME": str(work / "home-plan")},
                             capture_output=True, text=True)
        plan_wall = time.perf_counter() - t
        assert res.returncode == 0, res.stderr
        t = time.perf_counter()
        res = subprocess.run([str(BIN / "bidsbatch"), "run", "--pipeline", "demo",
                                                      str(work / "ds"), str(work / "out"),
                              "--executor", "slurm", "--slurm-extra=--hold",
                              "--slurm-poll-seconds", "0", "--no-wait", "--json"],
                             env=env, capture_output=True, text=True)
        submit_wall = time.perf_counter() - t
        assert res.returncode == 0, res.stderr
        run_id = json.loads(res.stdout)["run_id"]
        submit_calls = counts(log)
        log.unlink()
        t = time.perf_counter()
        res = subprocess.run([str(BIN / "bidsbatch"), "status", run_id, "--json"], env=env,
                             capture_output=True, text=True)
        status_wall = time.perf_counter() - t
        assert res.returncode == 0, res.stderr
        status = json.loads(res.stdout)
        assert status["counts"]["submitted"] == ns.scans, status["counts"]
        status_calls = counts(log)
        log.unlink(missing_ok=True)
        result["ours"] = {"plan_only_wall_s": round(plan_wall, 2),
                          "submit_wall_s": round(submit_wall, 2),
                          "submit_calls": dict(submit_calls),
                          "status_wall_s": round(status_wall, 2),
                          "status_calls": dict(status_calls)}
        cluster.run("scancel", "--name", f"bb-{run_id}")

        # one job per scan
        job_ids: list[str] = []
        t = time.perf_counter()
        for i in range(ns.scans):
            out = subprocess.run(["sbatch", "--hold", "--parsable", "-J", f"old-{i}",
                                  "-o", "/dev/null", "--wrap", "true"], env=env,
                                 capture_output=True, text=True, check=True).stdout
            job_ids.append(out.strip())
            if time.perf_counter() - t > ns.old_budget:
                break
        old_submit = time.perf_counter() - t
        n_sub = len(job_ids)
        t = time.perf_counter()
        polled = 0
        for job in job_ids:
            subprocess.run(["squeue", "-h", "-j", job], env=env, capture_output=True)
            subprocess.run(["sacct", "-n", "-j", job], env=env, capture_output=True)
            polled += 1
            if time.perf_counter() - t > ns.old_budget:
                break
        old_status = time.perf_counter() - t
        scale_sub, scale_st = ns.scans / n_sub, ns.scans / polled
        result["per_job"] = {
            "submitted_measured": n_sub, "submit_wall_s_measured": round(old_submit, 2),
            "submit_wall_s": round(old_submit * scale_sub, 1),
            "submit_sbatch_calls": ns.scans,
            "status_measured_jobs": polled, "status_wall_s_measured": round(old_status, 2),
            "status_wall_s": round(old_status * scale_st, 1),
            "status_calls": {"squeue": ns.scans, "sacct": ns.scans},
            "extrapolated": n_sub < ns.scans or polled < ns.scans,
        }
        for i in range(0, len(job_ids), 500):
            cluster.run("scancel", *job_ids[i:i + 500])
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(result, indent=2)
    print(text)
    if ns.json_out:
        Path(ns.json_out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
