"""The HTML report at scale: a 10,000-scan synthetic AWS Batch run, rendered and loaded.

    .venv/bin/python bench/bench_report.py [--scans 10000] [--repeats 3] [--keep DIR]

Builds a run directory by hand through the real Ledger API (Spot and
On-Demand attempts, Spot reclaims that were retried, failed scans), then
measures, median of the repeats:

- ``write_report`` (read the ledger, price every attempt, render, write),
  in process, and ``bidsbatch report RUN`` as a user runs it (a new process);
- the size of the file;
- with Debian's Chromium (when installed): the time from navigation to the
  load event, and until the scan table's script has rendered its first page,
  plus a check that the page asked for nothing over the network.

``synthetic_run`` is also what the report tests use to make runs to look at.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# Spot reclaims as AWS Batch reports them (statusReason of the attempt).
RECLAIM = "Host EC2 (instance i-{:017x}) terminated."
APP_FAILURE = "Essential container in task exited"


def synthetic_run(root: Path, *, scans: int, seed: int = 0, slots: int = 128,
                  reclaim_rate: float = 0.06, failure_rate: float = 0.02,
                  on_demand_rate: float = 0.1, running: int = 0):  # type: ignore[no-untyped-def]
    """A run directory for the m2g pipeline on AWS Batch with ``scans`` scans, made up.

    Scans take about an hour (log-normal), ``slots`` run at once; attempts go
    to Spot (``on_demand_rate`` of them to On-Demand), a Spot attempt is
    reclaimed with ``reclaim_rate`` and runs again, an app fails with
    ``failure_rate`` (no retry: the app's own exit code). ``running`` scans are
    still running at the end. Deterministic for a seed.
    """
    sys.path.insert(0, str(ROOT / "src"))
    from bidsbatch.ledger import AttemptRecord, Ledger
    from bidsbatch.pipelines import load_pipeline
    from bidsbatch.runs import RunDir
    from bidsbatch.specs import RunInfo
    from bidsbatch.timestamps import iso

    rng = random.Random(seed)
    ids = [f"sub-{i // 2 + 1:05d}_ses-{i % 2 + 1}" for i in range(scans)]
    run = RunDir(root / f"m2g-synthetic-{scans}")
    run.logs_dir.mkdir(parents=True, exist_ok=True)
    info = RunInfo(
        run_id=run.path.name, dataset="s3://example-bucket/bids/ds-synthetic",
        dataset_name="Synthetic diffusion study", output="s3://example-bucket/derivatives/m2g",
        pipeline=load_pipeline("m2g").to_dict(), pipeline_source="preset m2g",
        selection={}, scans=ids, bidsbatch_version="0.1.0",
    )
    run.run_json.write_text(info.to_json())
    t0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    free = [0.0] * slots  # when each slot is free, seconds from t0
    queue = [(sid, 1) for sid in ids]
    attempts: list[AttemptRecord] = []
    final: dict[str, tuple[str, int | None, str | None, str, str, int, str]] = {}
    n_running = 0
    while queue:
        sid, attempt = queue.pop(0)
        slot = min(range(slots), key=free.__getitem__)
        start = free[slot] + rng.uniform(5, 90)  # placement and container start
        length = rng.lognormvariate(8.15, 0.25)  # median ~58 min
        market = "on-demand" if rng.random() < on_demand_rate else "spot"
        job = f"{rng.getrandbits(64):016x}-{attempt}"
        roll = rng.random()
        if n_running < running and len(queue) < running:
            n_running += 1
            attempts.append(AttemptRecord(sid, attempt, job, iso(t0 + timedelta(seconds=start)),
                                          None, None, None, None, market, "r5.large"))
            final[sid] = ("running", None, None, iso(t0 + timedelta(seconds=start)) or "", "",
                          attempt, job)
            free[slot] = 1e12
            continue
        if market == "spot" and roll < reclaim_rate and attempt < 3:
            end = start + length * rng.uniform(0.1, 0.9)
            code, reason, outcome = None, RECLAIM.format(rng.getrandbits(64)), "submitted"
            queue.insert(min(len(queue), slots // 4), (sid, attempt + 1))  # Batch: soon
        elif roll > 1 - failure_rate:
            end = start + length * rng.uniform(0.05, 0.6)
            code, reason, outcome = 1, f"{APP_FAILURE}: exit 1", "failed"
        else:
            end = start + length
            code, reason, outcome = 0, None, "succeeded"
        free[slot] = end
        started, finished = iso(t0 + timedelta(seconds=start)), iso(t0 + timedelta(seconds=end))
        attempts.append(AttemptRecord(sid, attempt, job, started, finished, code, reason,
                                      None, market, "r5.large"))
        if outcome != "submitted":
            final[sid] = (outcome, code, reason, started or "", finished or "", attempt, job)
    with Ledger.open(run.ledger_path) as ledger:
        ledger.add_scans(ids)
        ledger.set_meta("executor", "aws-batch")
        ledger.set_meta("executor_settings", {
            "job_queue": "arn:aws:batch:us-east-1:123456789012:job-queue/bidsbatch-default",
            "job_role": "arn:aws:iam::123456789012:role/bidsbatch/bidsbatch-default-job",
            "region": "us-east-1", "log_group": "/bidsbatch/default", "environment": None,
        })
        ledger.set_meta("group_state", None)
        with ledger.transaction():
            for a in attempts:
                ledger.record_attempt(a)
            for sid, (state, code, reason, started, finished, n, job) in final.items():
                ledger.update(sid, state=state, attempts=n, job_id=job, started_at=started,
                              finished_at=finished or None, exit_code=code, reason=reason,
                              log=f"m2g/default/{job.split('-')[0]}")
    return run


def _median_time(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scans", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="Build the run here and keep it.")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    sys.path.insert(0, str(ROOT / "tests"))
    from bidsbatch.pricing import load_prices
    from bidsbatch.report import collect, render, write_report

    work = args.keep or Path(tempfile.mkdtemp(prefix="bb-bench-report-"))
    os.environ.setdefault("BIDSBATCH_CONFIG_DIR", str(work / "config"))
    t = time.perf_counter()
    run = synthetic_run(work, scans=args.scans, seed=1)
    built = time.perf_counter() - t
    table = load_prices()
    collect_s = _median_time(lambda: collect(run, table=table), args.repeats)
    data = collect(run, table=table)
    render_s = _median_time(lambda: render(data, out_dir=run.path), args.repeats)
    total_s = _median_time(lambda: write_report(run, table=table), args.repeats)
    path = run.path / "report.html"
    size = path.stat().st_size
    cli = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        subprocess.run([str(BIN / "bidsbatch"), "report", str(run.path)], check=True,
                       capture_output=True)
        cli.append(time.perf_counter() - t)
    results = {
        "scans": args.scans, "attempts": len(data.cost.attempts), "build_s": round(built, 2),
        "collect_s": round(collect_s, 3), "render_s": round(render_s, 3),
        "write_report_s": round(total_s, 3), "cli_s": round(statistics.median(cli), 3),
        "size_bytes": size, "svg_shapes": (text := path.read_text()).count("<rect"),
    }
    try:
        from browser import Browser, find_chromium
    except ImportError:
        chromium, why = None, "tests/browser.py not found"
    else:
        chromium, why = find_chromium()
    if chromium:
        loads, readies = [], []
        for _ in range(args.repeats):
            with Browser(chromium) as browser:
                t = time.perf_counter()
                page = browser.load(path.as_uri())
                ready = browser.evaluate("document.getElementById('scans').dataset.ready")
                readies.append(time.perf_counter() - t)
                loads.append(page.load_seconds)
                assert int(ready) == args.scans, ready
                outside = [u for u in page.requests if not u.startswith(("file:", "data:"))]
                assert not outside and not page.errors, (outside, page.errors)
        results.update(chromium_load_s=round(statistics.median(loads), 3),
                       chromium_table_ready_s=round(statistics.median(readies), 3))
    else:
        results["chromium"] = f"skipped: {why}"
    del text
    print(json.dumps(results, indent=2))
    if args.keep:
        print(f"report: {path}", file=sys.stderr)
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
