"""Start-up: ``bidsbatch --version``, ``status`` of a finished 1,000-scan run, and more.

    .venv/bin/python bench/bench_startup.py [--scans 1000] [--repeats 15]
        [--baseline-src DIR] [--keep DIR] [--quick]

Paired with the floor, ``python -c pass`` of the same interpreter, run
alternately (the machine is shared: the ratio to the floor of the same moment
says more than a wall time). The run is a real one: ``bidsbatch run`` of the
demo-sized no-op pipeline over N tiny scans (``true``), then ``status RUN``
(the table, the counts), ``logs RUN SCAN``, ``runs``, ``--help``, ``plan --help``
and ``run --help`` are timed; each child's CPU time (user + system, from
``wait4``) is reported next to its wall time, since CPU time is what a loaded
machine inflates least. ``--quick`` times ``--version`` and ``status`` only.

Bytecode is cached as for an installed package (``PYTHONDONTWRITEBYTECODE`` is
dropped, the cache goes to a folder of the bench; one warm-up run per command):
otherwise every start would compile the sources and measure the compiler.

With ``--baseline-src DIR`` (a ``src`` folder of another bidsbatch, e.g. a
``git archive`` of main) each command is also run with ``PYTHONPATH=DIR``, in
the same rounds: ours, baseline, floor. ``--keep DIR`` keeps the run (and the
dataset) in DIR and reuses it on the next call.
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


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one child."""
    t = time.perf_counter()
    child = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _pid, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - t
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"{argv} exited {child.returncode}")
    return wall, usage.ru_utime + usage.ru_stime


def make_run(work: Path, scans: int, env: dict[str, str]) -> Path:
    run_dir = work / "run"
    if (run_dir / "ledger.sqlite").exists():
        return run_dir
    ds = make_tiny_dataset(work / "ds", scans)
    pipeline = work / "noop.toml"
    pipeline.write_text('name = "noop"\nimage = "busybox:latest"\n'
                        'command = ["true", "{participant}"]\n'
                        '[inputs]\nrequire = ["anat/T1w"]\n'
                        '[resources]\nvcpus = 1\nmemory_mib = 128\n'
                        '[container]\nruntime = "none"\n')
    subprocess.run([str(BIN / "bidsbatch"), "run", str(ds), str(work / "out"),
                    "--pipeline", str(pipeline), "--run-dir", str(run_dir), "--json"],
                   env=env, stdout=subprocess.DEVNULL, check=True)
    return run_dir


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scans", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--baseline-src", type=Path, default=None)
    ap.add_argument("--keep", type=Path, default=None)
    ap.add_argument("--quick", action="store_true")
    ns = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        work = ns.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env |= {"BIDSBATCH_HOME": str(work / "state"),
                "PYTHONPYCACHEPREFIX": str(Path(tmp) / "pycache")}
        run_dir = make_run(work, ns.scans, env)
        bb = str(BIN / "bidsbatch")
        cases = {
            "`bidsbatch --version`": [bb, "--version"],
            f"`bidsbatch status RUN` ({ns.scans} scans)": [bb, "status", str(run_dir)],
        }
        if not ns.quick:
            cases |= {
                f"`bidsbatch status RUN --json` ({ns.scans} scans)":
                    [bb, "status", str(run_dir), "--json"],
                "`bidsbatch logs RUN SCAN`": [bb, "logs", str(run_dir), _first_scan(run_dir)],
                "`bidsbatch runs`": [bb, "runs"],
                "`bidsbatch --help`": [bb, "--help"],
                "`bidsbatch plan --help`": [bb, "plan", "--help"],
                "`bidsbatch run --help`": [bb, "run", "--help"],
            }
        tools = {"ours": env}
        if ns.baseline_src is not None:
            tools["baseline"] = env | {"PYTHONPATH": str(ns.baseline_src.absolute()),
                                       "PYTHONPYCACHEPREFIX": str(Path(tmp) / "pycache-base")}
        floor = [sys.executable, "-c", "pass"]
        for argv in cases.values():  # warm-up: the bytecode caches
            for tool_env in tools.values():
                timed(argv, tool_env)
        print(f"\nmedians of {ns.repeats} rounds (ours, {'baseline, ' * (len(tools) > 1)}"
              f"`python -c pass`), load average {os.getloadavg()[0]:.1f} at the start\n")
        head = " | ".join(f"{t} wall / CPU (ms)" for t in tools)
        print(f"| command | {head} | floor wall / CPU (ms) | ours / floor (CPU) |"
              + (" baseline / ours (CPU) |" if len(tools) > 1 else ""))
        print("|---|" + "---:|" * (len(tools) + 2 + (len(tools) > 1)))
        for name, argv in cases.items():
            got: dict[str, list[tuple[float, float]]] = {t: [] for t in [*tools, "floor"]}
            for _ in range(ns.repeats):
                for tool, tool_env in tools.items():
                    got[tool].append(timed(argv, tool_env))
                got["floor"].append(timed(floor, env))
            med = {t: (statistics.median(w for w, _c in v), statistics.median(c for _w, c in v))
                   for t, v in got.items()}
            ratio = statistics.median(o[1] / max(f[1], 1e-3) for o, f in
                                      zip(got["ours"], got["floor"], strict=True))
            cells = " | ".join(f"{med[t][0] * 1000:.0f} / {med[t][1] * 1000:.0f}"
                               for t in [*tools, "floor"])
            line = f"| {name} | {cells} | {ratio:.1f}× |"
            if len(tools) > 1:
                base = statistics.median(b[1] / max(o[1], 1e-3) for b, o in
                                         zip(got["baseline"], got["ours"], strict=True))
                line += f" {base:.1f}× |"
            print(line, flush=True)
        print(f"\nload average {os.getloadavg()[0]:.1f} at the end")
    return 0


def _first_scan(run_dir: Path) -> str:
    return sorted(p.stem for p in (run_dir / "specs").glob("*.json"))[0]


if __name__ == "__main__":
    sys.exit(main())
