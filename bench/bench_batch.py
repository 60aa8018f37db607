#!/usr/bin/env python
"""AWS Batch submission and first status of N scans, bidsbatch against the old scripts' way.

    .venv/bin/python bench/bench_batch.py [--scans 10000] [--repeats 3] \
        [--old-scans 10000] [--old-budget 300] [--json-out FILE]

One moto server on 127.0.0.1 (``tests/moto_server.py``: it records every request)
in simple Batch mode (``use_docker: False``: a submitted job, or every child of an
array, succeeds at once). Set-up, as tests/test_awsbatch.py does it: an IAM job
role, an UNMANAGED compute environment, a job queue, two buckets, and a dataset of
``--scans`` scans on S3 (``scans / 2`` subjects x 2 sessions, one small T1w file
per session, plus ``dataset_description.json``), uploaded on a thread pool.

**The old way** (m2g_cloud's shape, written here from /work/shared/ANCHORS.md):
list the bucket, find subjects and sessions with regexes, write one job JSON per
scan to a local jobs folder, register one job definition, then one ``SubmitJob``
per scan in a sequential loop; status is one ``DescribeJobs`` per job, also
sequential. No AWS keys are put in the jobs here (m2g did; that is not what is
measured). When the submit loop passes ``--old-budget`` seconds it stops, the
status is taken of the jobs submitted, and both are extrapolated linearly to
``--scans`` (the table says which figures are measured and which extrapolated).

**Ours**, ``--repeats`` times, each with a fresh output prefix and bidsbatch home
(a second run would skip done scans): ``bidsbatch run s3://… s3://…/out-K
--executor aws-batch --job-queue Q --job-role ARN --no-wait --json`` as a
subprocess, then ``bidsbatch status RUN --json`` (the first status), then the
same status again (nothing changed).

The old way runs first, so that its DescribeJobs loop meets a moto holding only
its own jobs: moto's DescribeJobs walks every job it holds (O(jobs) per call, a
moto artifact; real Batch answers by id), so ours, which runs after, pays a
little for the old way's 10,000 jobs, never the other way round.

Counts come from the moto request log, reset before each phase: Batch calls are
the REST paths ``/v1/<operation>``; everything else is "other" (S3 here, by
method: PUT, GET, HEAD, LIST). Wall time is ``time.perf_counter`` around the
phase; client CPU is the subprocess's (``RUSAGE_CHILDREN``) for ours and this
process's for the old way; moto CPU is the server process's user+system time.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime
import importlib.util
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BIN = Path(sys.executable).parent

DATA_BUCKET = "bench-batch-bids"
OUT_BUCKET = "bench-batch-out"
PREFIX = "ds"
QUEUE = "bench-batch-queue"
OLD_QUEUE = QUEUE  # the old scripts submit to the same queue

# Fake credentials only; never a real account.
FAKE_KEY_ID = "AKIAFAKEBENCHBATCH12"
FAKE_SECRET = "fakeSecret/benchbatch+NotReal0123456789abcd"

BATCH_OPS = {
    "submitjob": "SubmitJob", "describejobs": "DescribeJobs", "listjobs": "ListJobs",
    "registerjobdefinition": "RegisterJobDefinition",
    "describejobdefinitions": "DescribeJobDefinitions", "terminatejob": "TerminateJob",
    "canceljob": "CancelJob", "describejobqueues": "DescribeJobQueues",
    "describecomputeenvironments": "DescribeComputeEnvironments",
}
TRUST = json.dumps({"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"},
    "Action": "sts:AssumeRole"}]})


def load_moto_server() -> Any:
    spec = importlib.util.spec_from_file_location("moto_server", REPO / "tests" / "moto_server.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["moto_server"] = module  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- counting


@dataclass
class Calls:
    """The requests of one phase, split into Batch operations and other (S3) calls."""

    batch: collections.Counter[str] = field(default_factory=collections.Counter)
    other: collections.Counter[str] = field(default_factory=collections.Counter)
    describe_ids: int = 0  # job ids asked about in DescribeJobs, in all

    @classmethod
    def of(cls, requests: list[dict[str, str]]) -> Calls:
        out = cls()
        for r in requests:
            path = r["path"]
            if path.startswith("/v1/"):
                op = path[len("/v1/"):]
                out.batch[BATCH_OPS.get(op, op)] += 1
                if op == "describejobs":
                    with contextlib.suppress(ValueError, TypeError):
                        out.describe_ids += len(json.loads(r.get("body") or "{}")["jobs"])
            elif r.get("target"):
                out.other[r["target"].split(".")[-1]] += 1
            else:
                method, query = r["method"], r.get("query", "")
                kind = "LIST" if method == "GET" and ("list-type" in query or (
                    path.rstrip("/").count("/") <= 1 and "prefix=" in query)) else method
                out.other[f"S3 {kind}"] += 1
        return out

    @property
    def n_batch(self) -> int:
        return sum(self.batch.values())

    @property
    def n_other(self) -> int:
        return sum(self.other.values())

    def describe(self) -> str:
        def part(c: collections.Counter[str]) -> str:
            return ", ".join(f"{k} {v:,}" for k, v in sorted(c.items(), key=lambda kv: -kv[1]))
        return f"Batch: {part(self.batch) or '-'}; other: {part(self.other) or '-'}"


def cpu_of(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


@dataclass
class Phase:
    phase: str
    tool: str
    scans: int
    calls: Calls
    wall: float
    client_cpu: float
    moto_cpu: float
    note: str = ""
    #: The submit step alone, by the server's clock (see ``submit_step``); None elsewhere.
    step: float | None = None


@contextlib.contextmanager
def measure(server: Any, *, child: bool) -> Iterator[dict[str, float]]:
    """Wall, client CPU and moto CPU of the block; the moto log is reset before it."""
    server.reset_requests()
    out: dict[str, float] = {}
    m0 = cpu_of(server.process.pid)
    c0 = children_cpu() if child else time.process_time()
    t0 = time.perf_counter()
    yield out
    out["wall"] = time.perf_counter() - t0
    out["client_cpu"] = (children_cpu() if child else time.process_time()) - c0
    out["moto_cpu"] = cpu_of(server.process.pid) - m0


def submit_step(requests: list[dict[str, Any]], *, ours: bool) -> float | None:
    """Seconds from the submit step's first request to its last SubmitJob, as moto saw them.

    Ours: from the first request to the run's folder on S3 (``.bidsbatch/runs/``: the
    executor's first, after the crawl and the plan); the old way: from its
    RegisterJobDefinition (after its listing) to its last SubmitJob.
    """
    def starts(r: dict[str, Any]) -> bool:
        if ours:
            return ".bidsbatch/runs/" in r["path"] or ".bidsbatch%2Fruns%2F" in r["query"]
        return r["path"] == "/v1/registerjobdefinition"

    first = next((r["t"] for r in requests if starts(r)), None)
    last = max((r["t"] for r in requests if r["path"] == "/v1/submitjob"), default=None)
    if os.environ.get("BENCH_TRACE") and first is not None and ours:
        for r in requests:
            if r["t"] >= first:
                print(f"    +{r['t'] - first:7.3f} s {r['method']} {r['path'][:70]} "
                      f"{r['query'][:50]}", file=sys.stderr)
    return None if first is None or last is None else last - first


# --------------------------------------------------------------------------- set-up


def client(url: str, service: str, *, pool: int = 10) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(service, endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id=FAKE_KEY_ID, aws_secret_access_key=FAKE_SECRET,
                        config=Config(max_pool_connections=pool))


def set_up_batch(url: str) -> str:
    """An IAM job role, a compute environment and a job queue (as tests/test_awsbatch.py)."""
    iam = client(url, "iam")
    role = iam.create_role(RoleName="bench-batch-job", AssumeRolePolicyDocument=TRUST,
                           Path="/bidsbatch/")["Role"]["Arn"]
    service = iam.create_role(RoleName="bench-batch-service",
                              AssumeRolePolicyDocument=TRUST)["Role"]["Arn"]
    batch = client(url, "batch")
    ce = batch.create_compute_environment(computeEnvironmentName="bench-batch-ce",
                                          type="UNMANAGED", serviceRole=service)
    batch.create_job_queue(jobQueueName=QUEUE, state="ENABLED", priority=1,
                           computeEnvironmentOrder=[{
                               "order": 1, "computeEnvironment": ce["computeEnvironmentArn"]}])
    return str(role)


def scan_labels(n: int) -> list[tuple[str, str]]:
    if n % 2:
        raise SystemExit("--scans must be even (subjects x 2 sessions)")
    return [(f"{i:05d}", ses) for i in range(1, n // 2 + 1) for ses in ("1", "2")]


def upload_dataset(url: str, labels: list[tuple[str, str]], workers: int = 32) -> float:
    """The dataset on S3: one small T1w per session, plus dataset_description.json."""
    s3 = client(url, "s3", pool=workers)
    for bucket in (DATA_BUCKET, OUT_BUCKET):
        s3.create_bucket(Bucket=bucket)
    t0 = time.perf_counter()
    s3.put_object(Bucket=DATA_BUCKET, Key=f"{PREFIX}/dataset_description.json",
                  Body=json.dumps({"Name": "bench-batch", "BIDSVersion": "1.10.0"}).encode())
    body = b"\x1f\x8b" + b"\0" * 30  # 32 bytes; nothing reads it

    def put(label: tuple[str, str]) -> None:
        sub, ses = label
        key = f"{PREFIX}/sub-{sub}/ses-{ses}/anat/sub-{sub}_ses-{ses}_T1w.nii.gz"
        s3.put_object(Bucket=DATA_BUCKET, Key=key, Body=body)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(put, labels))
    return time.perf_counter() - t0


def cli_env(url: str, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BIDSBATCH_"))}
    env.update({
        "AWS_ENDPOINT_URL": url, "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": FAKE_KEY_ID, "AWS_SECRET_ACCESS_KEY": FAKE_SECRET,
        "AWS_CONFIG_FILE": str(home / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "BIDSBATCH_HOME": str(home / "bidsbatch-home"),
        "BIDSBATCH_CONFIG_DIR": str(home / "bidsbatch-config"),
        "COLUMNS": "200",
    })
    return env


def bidsbatch(*args: str, env: dict[str, str]) -> dict[str, Any]:
    exe = shutil.which("bidsbatch", path=str(BIN)) or "bidsbatch"
    proc = subprocess.run([exe, *args], capture_output=True, text=True, env=env, timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f"bidsbatch {args[0]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout)


# --------------------------------------------------------------------------- ours


def run_ours(server: Any, role: str, work: Path, k: int, n: int, *, url: str,
             src: Path | None = None, tool: str = "ours") -> list[Phase]:
    """One run of ours; with ``src``, of the bidsbatch in that source tree (a baseline)."""
    tag = f"{tool.replace(' ', '-').strip('()')}-{k}"
    home = work / tag
    home.mkdir()
    env = cli_env(url, home)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    dataset, output = f"s3://{DATA_BUCKET}/{PREFIX}", f"s3://{OUT_BUCKET}/out-{tag}"
    argv = ["run", dataset, output, "--pipeline", "demo", "--executor", "aws-batch",
            "--job-queue", QUEUE,
            "--job-role", role, "--no-wait", "--json"]
    with measure(server, child=True) as m:
        submitted = bidsbatch(*argv, env=env)
    seen = server.requests()
    sub_calls = Calls.of(seen)
    if len(submitted["submitted"]) != n:
        raise SystemExit(f"ours submitted {len(submitted['submitted'])} scans, not {n}")
    phases = [Phase("submit", tool, n, sub_calls, m["wall"], m["client_cpu"], m["moto_cpu"],
                    step=submit_step(seen, ours=True))]
    for label in ("status (first)", "status (again)"):
        with measure(server, child=True) as m:
            status = bidsbatch("status", submitted["run_dir"], "--json", env=env)
        calls = Calls.of(server.requests())
        if status["counts"].get("succeeded") != n:
            raise SystemExit(f"ours: status counts {status['counts']}, expected {n} succeeded")
        phases.append(Phase(label, tool, n, calls, m["wall"], m["client_cpu"], m["moto_cpu"],
                            note=f"group step {status['group_state']}"))
    return phases


# --------------------------------------------------------------------------- the old way

_SCAN_RE = re.compile(r"sub-([^/]+)/ses-([^/]+)/")


def run_old(server: Any, work: Path, n_max: int, budget: float, *,
            url: str) -> tuple[list[Phase], int]:
    """m2g_cloud's shape: regex the listing, a JSON per scan, SubmitJob per scan, then
    DescribeJobs per job. Stops submitting after ``budget`` seconds."""
    s3 = client(url, "s3")
    batch = client(url, "batch")
    jobs_dir = work / "old-jobs" / "jobs"
    jobs_dir.mkdir(parents=True)
    with measure(server, child=False) as m:
        found: set[tuple[str, str]] = set()
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=DATA_BUCKET,
                                                                  Prefix=f"{PREFIX}/"):
            for obj in page.get("Contents", ()):
                hit = _SCAN_RE.search(obj["Key"])
                if hit:
                    found.add(hit.groups())
        scans = sorted(found)[:n_max]
        files = []
        for sub, ses in scans:
            job = {
                "jobName": f"m2g_sub-{sub}_ses-{ses}", "jobQueue": OLD_QUEUE,
                "jobDefinition": "bench-old-m2g",
                "containerOverrides": {"command": [
                    "--bucket", DATA_BUCKET, "--remote_path", PREFIX,
                    "--participant_label", sub, "--session_label", ses,
                    "--modif", "m2g-out"]},
            }
            path = jobs_dir / f"{job['jobName']}.json"
            path.write_text(json.dumps(job, indent=2))
            files.append(path)
        batch.register_job_definition(
            jobDefinitionName="bench-old-m2g", type="container",
            containerProperties={"image": "busybox", "command": ["m2g"],
                                 "resourceRequirements": [
                                     {"type": "VCPU", "value": "2"},
                                     {"type": "MEMORY", "value": "15200"}]})
        ids: list[str] = []
        t_loop = time.perf_counter()
        for path in files:
            ids.append(batch.submit_job(**json.loads(path.read_text()))["jobId"])
            if time.perf_counter() - t_loop > budget:
                break
    done = len(ids)
    seen = server.requests()
    sub_calls = Calls.of(seen)
    note = "" if done == len(scans) else f"stopped at the {budget:.0f} s budget"
    phases = [Phase("submit", "old way", done, sub_calls, m["wall"], m["client_cpu"],
                    m["moto_cpu"], note=note, step=submit_step(seen, ours=False))]
    with measure(server, child=False) as m:
        summary: collections.Counter[str] = collections.Counter()
        for job_id in ids:
            summary[batch.describe_jobs(jobs=[job_id])["jobs"][0]["status"]] += 1
    calls = Calls.of(server.requests())
    if summary["SUCCEEDED"] != done:
        raise SystemExit(f"old way: statuses {dict(summary)}, expected {done} SUCCEEDED")
    phases.append(Phase("status (first)", "old way", done, calls, m["wall"], m["client_cpu"],
                        m["moto_cpu"], note=f"{dict(summary)}"))
    return phases, len(scans)


def extrapolate(p: Phase, n: int) -> Phase:
    """Linear in the number of scans: calls per scan and seconds per scan (fixed calls kept)."""
    f = n / p.scans

    def scale(c: collections.Counter[str], per_scan: set[str]) -> collections.Counter[str]:
        return collections.Counter({k: round(v * f) if k in per_scan else v for k, v in c.items()})

    calls = Calls(scale(p.calls.batch, {"SubmitJob", "DescribeJobs"}), p.calls.other,
                  round(p.calls.describe_ids * f))
    return Phase(p.phase, "old way (extrapolated)", n, calls, p.wall * f, p.client_cpu * f,
                 p.moto_cpu * f, note=f"x{f:g} from {p.scans:,} measured",
                 step=None if p.step is None else p.step * f)


# --------------------------------------------------------------------------- report


def median_phase(phases: list[Phase]) -> Phase:
    first = phases[0]
    return Phase(first.phase, first.tool, first.scans, first.calls,
                 statistics.median(p.wall for p in phases),
                 statistics.median(p.client_cpu for p in phases),
                 statistics.median(p.moto_cpu for p in phases),
                 note=f"median of {len(phases)}" if len(phases) > 1 else "",
                 step=None if first.step is None else statistics.median(
                     p.step or 0.0 for p in phases))


def table(rows: list[tuple[Phase, Phase | None]]) -> str:
    out = ["| phase | tool | scans | Batch calls | other calls | wall s | submit step s "
           "| client CPU s | moto CPU s | Batch calls ratio | wall ratio | step ratio |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for p, ours in rows:
        step_ratio = "–"
        if ours is None or p is ours:
            calls_ratio = wall_ratio = "1x"
            step_ratio = "1x" if p.step is not None else "–"
        else:
            calls_ratio = f"{p.calls.n_batch / max(1, ours.calls.n_batch):,.0f}x"
            wall_ratio = f"{p.wall / ours.wall:,.1f}x"
            if p.step is not None and ours.step:
                step_ratio = f"{p.step / ours.step:,.1f}x"
        step = f"{p.step:.2f}" if p.step is not None else "–"
        out.append(f"| {p.phase} | {p.tool} | {p.scans:,} | {p.calls.n_batch:,} | "
                   f"{p.calls.n_other:,} | {p.wall:.2f} | {step} | {p.client_cpu:.2f} | "
                   f"{p.moto_cpu:.2f} | {calls_ratio} | {wall_ratio} | {step_ratio} |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scans", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--old-scans", type=int, default=None,
                    help="scans the old way submits (default: --scans)")
    ap.add_argument("--old-budget", type=float, default=300.0,
                    help="seconds after which the old way's submit loop stops")
    ap.add_argument("--json-out", type=Path, default=None)
    ap.add_argument("--latency-ms", type=float, default=None,
                    help="put bench/latency_proxy.py with this delay per round trip between "
                         "every client and moto")
    ap.add_argument("--baseline-src", type=Path, default=None,
                    help="also run the bidsbatch of this source tree (e.g. /work/main/src), "
                         "alternating with ours, as 'baseline'")
    ap.add_argument("--skip-old", action="store_true", help="do not run the old way")
    ns = ap.parse_args()
    moto_server = load_moto_server()
    sys.path.insert(0, str(HERE))
    import latency_proxy
    started = datetime.datetime.now(datetime.UTC)
    log: Callable[[str], None] = lambda msg: print(  # noqa: E731
        f"[{time.perf_counter() - t_start:7.1f}s] {msg}", file=sys.stderr, flush=True)
    t_start = time.perf_counter()
    labels = scan_labels(ns.scans)
    server = moto_server.start(env={"MOTO_ALLOW_NONEXISTENT_REGION": "true"})
    stack = contextlib.ExitStack()
    old: list[Phase] = []
    base_runs: list[list[Phase]] = []
    try:
        url = server.url
        if ns.latency_ms is not None:
            url = stack.enter_context(latency_proxy.start(server.url, ns.latency_ms)).url
            log(f"latency proxy {url}: {ns.latency_ms:g} ms per round trip")
        server.configure({"batch": {"use_docker": False}})
        role = set_up_batch(server.url)
        up = upload_dataset(server.url, labels)
        log(f"set-up: {len(labels):,} scans uploaded in {up:.1f} s")
        with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
            work = Path(tmp)
            if not ns.skip_old:
                old, n_found = run_old(server, work, ns.old_scans or ns.scans, ns.old_budget,
                                       url=url)
                if n_found != ns.scans:
                    raise SystemExit(f"the old way's regexes found {n_found} scans, "
                                     f"not {ns.scans}")
            for p in old:
                log(f"old way {p.phase}: {p.scans:,} scans, {p.wall:.1f} s; "
                    f"{p.calls.describe()}")
            ours_runs = []
            for k in range(1, ns.repeats + 1):
                # Paired and alternating: a busy minute hits both, in turn first.
                order = ["ours", "baseline"] if k % 2 else ["baseline", "ours"]
                for tool in order:
                    if tool == "baseline" and ns.baseline_src is None:
                        continue
                    phases = run_ours(server, role, work, k, ns.scans, url=url,
                                      src=ns.baseline_src if tool == "baseline" else None,
                                      tool=tool)
                    for p in phases:
                        log(f"{tool} #{k} {p.phase}: {p.wall:.1f} s (step {p.step}); "
                            f"{p.calls.describe()} ({p.calls.describe_ids:,} ids described)")
                    (base_runs if tool == "baseline" else ours_runs).append(phases)
    finally:
        stack.close()
        server.stop()
    finished = datetime.datetime.now(datetime.UTC)
    ours = {p.phase: median_phase([run[i] for run in ours_runs])
            for i, p in enumerate(ours_runs[0])}
    base = ({p.phase: median_phase([run[i] for run in base_runs])
             for i, p in enumerate(base_runs[0])} if base_runs else {})
    rows: list[tuple[Phase, Phase | None]] = []
    for phase in ("submit", "status (first)"):
        mine = ours[phase]
        rows.append((mine, mine))
        if phase in base:
            rows.append((base[phase], mine))
        for old_p in (p for p in old if p.phase == phase):
            rows.append((old_p, mine))
            if old_p.scans != ns.scans:
                rows.append((extrapolate(old_p, ns.scans), mine))
    rows.append((ours["status (again)"], None))
    if ns.latency_ms is not None:
        print(f"\nThrough bench/latency_proxy.py: {ns.latency_ms:g} ms per round trip.")
    print(f"\n{started:%Y-%m-%d %H:%M}–{finished:%H:%M} UTC, {platform.node()}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, Python "
          f"{platform.python_version()}\n")
    print(table(rows))
    print()
    for p, _ in rows:
        print(f"- {p.phase}, {p.tool}: {p.calls.describe()}"
              + (f"; DescribeJobs ids {p.calls.describe_ids:,}" if p.calls.describe_ids else "")
              + (f" ({p.note})" if p.note else ""))
    print("\nours, every repeat (wall s):")
    for i, p in enumerate(ours_runs[0]):
        walls = ", ".join(f"{run[i].wall:.2f}" for run in ours_runs)
        batch_calls = ", ".join(str(run[i].calls.n_batch) for run in ours_runs)
        print(f"- {p.phase}: {walls} (Batch calls {batch_calls})")
    if ns.json_out:
        dump = {"started": started.isoformat(), "finished": finished.isoformat(),
                "scans": ns.scans, "latency_ms": ns.latency_ms,
                "old": [_as_dict(p) for p in old],
                "ours": [[_as_dict(p) for p in run] for run in ours_runs],
                "baseline": [[_as_dict(p) for p in run] for run in base_runs]}
        ns.json_out.write_text(json.dumps(dump, indent=2))
    return 0


def _as_dict(p: Phase) -> dict[str, Any]:
    return {"phase": p.phase, "tool": p.tool, "scans": p.scans, "batch": dict(p.calls.batch),
            "other": dict(p.calls.other), "describe_ids": p.calls.describe_ids,
            "wall": p.wall, "client_cpu": p.client_cpu, "moto_cpu": p.moto_cpu, "note": p.note,
            "step": p.step}


if __name__ == "__main__":
    sys.exit(main())
