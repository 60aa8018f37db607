"""The local supervisor alone: CPU time and wall a scan, RSS, against ``xargs -P 2``.

    .venv/bin/python bench/bench_local_supervisor.py [--scans 500] [--repeats 3] [--jobs 2]
        [--app true|python] [--profile OUT.pstats]

Plans a run of N no-op scans (``bidsbatch plan``, not timed), marks them
submitted in the ledger as ``bidsbatch run`` does, then runs the supervisor
(``python -m bidsbatch.executors.local.supervisor RUN --jobs J``) in the
foreground and reads its ``wait4`` rusage: the CPU of the supervisor, its
forked workers and their apps (all waited for), and its peak RSS. Interleaved
with ``xargs -P J -n 1`` running the same app once per scan, whose rusage is
read the same way. CPU time is what load on a shared machine does not inflate:
(ours - xargs) / N is the CPU overhead a scan; wall figures are given too.

``--against SRC`` also runs the supervisor of another checkout's ``src`` (through
``PYTHONPATH``) in each repeat, interleaved: before and after a change, at the
same moment. ``--profile OUT`` runs the supervisor once under cProfile, and every forked
worker too (one .pstats per worker next to OUT, merged into OUT).
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
sys.path.insert(0, str(Path(__file__).parent))

from bench_local_executor import APPS, pipeline_file  # noqa: E402
from bench_plan import make_tiny_dataset  # noqa: E402


def plan_run(ds: Path, work: Path, pipeline: Path, n: int) -> Path:
    """A planned run of every scan, submitted in its ledger (what ``run`` does before it forks)."""
    from bidsbatch.ledger import Ledger
    from bidsbatch.states import ScanState

    run = work / f"run{n}"
    out = work / f"out{n}"
    shutil.rmtree(run, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "BIDSBATCH_HOME": str(work / "state")}
    subprocess.run([str(BIN / "bidsbatch"), "plan", str(ds), str(out), "--pipeline",
                    str(pipeline), "--run-dir", str(run), "--json"],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    ids = sorted(p.name[:-len(".json")] for p in (run / "specs").glob("*.json"))
    with Ledger.open(run / "ledger.sqlite") as ledger:
        ledger.add_scans(ids)
        ledger.update_many(ids, state=ScanState.SUBMITTED)
        ledger.record_executor("local", {})
    return run


def run_measured(argv: list[str], *, stdin: bytes | None = None,
                 env: dict[str, str] | None = None) -> tuple[float, float, float]:
    """Wall s, CPU s (user + sys of it and every descendant it waited for), peak RSS MiB."""
    t = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE if stdin is not None else None,
                            stdout=subprocess.DEVNULL, env=env)
    if stdin is not None:
        assert proc.stdin is not None
        proc.stdin.write(stdin)
        proc.stdin.close()
    _pid, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{argv[0]} failed: exit {os.waitstatus_to_exitcode(status)}")
    cpu = ru.ru_utime + ru.ru_stime
    return wall, cpu, ru.ru_maxrss / 1024


def supervisor_argv(run: Path, jobs: int) -> list[str]:
    return [sys.executable, "-m", "bidsbatch.executors.local.supervisor", str(run),
            "--jobs", str(jobs)]


def profile_once(run: Path, jobs: int, out: Path) -> None:
    """The supervisor and every forked worker under cProfile, merged into ``out``."""
    folder = out.with_suffix(".d")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    code = (
        "import cProfile, os, sys\n"
        "from bidsbatch.executors.local import supervisor as s\n"
        f"folder = {str(folder)!r}\n"
        "real_fork = os.fork\n"
        "import time\nprof = cProfile.Profile(time.process_time)\n"
        "def fork():\n"
        "    pid = real_fork()\n"
        "    if pid == 0:\n"
        "        prof.disable()\n"
        "        child = cProfile.Profile(time.process_time)\n"
        "        exit_ = os._exit\n"
        "        def _exit(code):\n"
        "            child.disable(); child.dump_stats(f'{folder}/w{os.getpid()}.pstats')\n"
        "            exit_(code)\n"
        "        os._exit = _exit\n"
        "        child.enable()\n"
        "    return pid\n"
        "os.fork = fork\n"
        "prof.enable()\n"
        f"rc = s.supervise([{str(run)!r}, '--jobs', '{jobs}'])\n"
        "prof.disable()\n"
        "prof.dump_stats(f'{folder}/supervisor.pstats')\n"
        "sys.exit(rc)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    import pstats

    workers = sorted(folder.glob("w*.pstats"))
    stats = pstats.Stats(str(workers[0]))
    for w in workers[1:]:
        stats.add(str(w))
    stats.dump_stats(str(out))
    print(f"{len(workers)} worker profiles merged into {out}; supervisor: "
          f"{folder / 'supervisor.pstats'}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scans", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--app", choices=("true", "python"), default="true")
    ap.add_argument("--profile", type=Path)
    ap.add_argument("--against", type=Path, help="another checkout's src folder, run alongside")
    ap.add_argument("--keep", type=Path, help="work here (kept) rather than in a temporary folder")
    ns = ap.parse_args()
    argv = APPS["true" if ns.app == "true" else "python -c pass"]
    with tempfile.TemporaryDirectory(prefix="bench-sup-") as tmp:
        work = ns.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        ds = work / f"ds{ns.scans}"
        if not ds.exists():
            make_tiny_dataset(ds, ns.scans)
        labels = sorted(p.name[4:] for p in ds.glob("sub-*"))
        pipeline = pipeline_file(work, ns.app, argv)
        if ns.profile:
            profile_once(plan_run(ds, work, pipeline, ns.scans), ns.jobs, ns.profile)
            return 0
        rows = []
        for _ in range(ns.repeats):
            xw, xc, _xr = run_measured(["xargs", "-P", str(ns.jobs), "-n", "1", *argv],
                                       stdin=("\n".join(labels) + "\n").encode())
            row = [xw, xc]
            if ns.against:
                run = plan_run(ds, work, pipeline, ns.scans)
                env = {**os.environ, "PYTHONPATH": str(ns.against.absolute())}
                row += run_measured(supervisor_argv(run, ns.jobs), env=env)
            run = plan_run(ds, work, pipeline, ns.scans)
            row += run_measured(supervisor_argv(run, ns.jobs))
            rows.append(row)
        med = [statistics.median(r[i] for r in rows) for i in range(len(rows[0]))]
        xw, xc = med[:2]
        n = ns.scans
        print(f"\n{n} scans of `{' '.join(argv)}`, --jobs {ns.jobs}, medians of {ns.repeats}; "
              f"load average {os.getloadavg()[0]:.1f}\n")
        print("| | wall (s) | CPU (s) | CPU a scan (ms) | CPU overhead a scan (ms) | "
              "wall overhead a scan a slot (ms) | wall ratio | peak RSS (MiB) |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        names = ([f"supervisor of {ns.against}"] if ns.against else []) + ["supervisor"]
        for i, name in enumerate(names):
            sw, sc, sr = med[2 + 3 * i: 5 + 3 * i]
            print(f"| {name} | {sw:.2f} | {sc:.2f} | {sc / n * 1000:.2f} | "
                  f"{(sc - xc) / n * 1000:.2f} | {(sw - xw) / n * ns.jobs * 1000:.1f} | "
                  f"{sw / xw:.2f}x | {sr:.0f} |")
        print(f"| xargs -P {ns.jobs} | {xw:.2f} | {xc:.2f} | {xc / n * 1000:.2f} | | | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
