"""The local executor's slot workers: scan after scan in one process; a dead one costs its scan.

``executors/local/slotworker.py``: the supervisor forks one worker a slot, not one a
scan. What a fork a scan gave must hold: a worker killed mid-scan fails that scan
only (said why), a fresh worker takes the next, and the others succeed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bidsbatch.ledger import Ledger
from bidsbatch.synth import make_dataset

#: Kills its own worker (its parent) for participant 02; else writes one file.
APP = (
    "import os, signal, sys\n"
    "out, label = sys.argv[1], sys.argv[2]\n"
    "if label == '02':\n"
    "    os.kill(os.getppid(), signal.SIGKILL)\n"
    "    signal.pause()\n"
    "open(os.path.join(out, 'sub-' + label + '.txt'), 'w').write(str(os.getppid()))\n"
)


def test_one_worker_runs_many_scans_and_a_killed_one_costs_its_scan(tmp_path: Path,
                                                                     cli) -> None:  # type: ignore[no-untyped-def]
    ds = make_dataset(tmp_path / "ds", subjects=5, sessions=None, modalities=["anat"],
                      shape=(4, 4, 4))
    pipeline = tmp_path / "killer.toml"
    pipeline.write_text(
        'name = "killer"\nimage = "local/killer:1"\n'
        f'command = [{json.dumps(sys.executable)}, "-c", {json.dumps(APP)}, '
        '"{output_dir}", "{participant}"]\n'
        '[retry]\nattempts = 1\n[container]\nruntime = "none"\n')
    out, run = tmp_path / "out", tmp_path / "run"
    res = cli("run", str(ds), str(out), "--pipeline", str(pipeline), "--jobs", "1",
              "--run-dir", str(run), env={"BIDSBATCH_HOME": str(tmp_path / "home")})
    assert res.returncode == 1, res.stdout + res.stderr
    with Ledger.open(run / "ledger.sqlite") as ledger:
        states = {r.scan_id: r for r in ledger.scans()}
        jobs = {a.scan_id: a.job_id for a in ledger.attempts()}
    assert states["sub-02"].state.value == "failed"
    assert "killed by signal 9" in (states["sub-02"].reason or "")
    ok = ["sub-01", "sub-03", "sub-04", "sub-05"]
    assert all(states[s].state.value == "succeeded" for s in ok), states
    # One slot: sub-01 and sub-02 ran in the first worker, the rest in the one after it.
    assert jobs["sub-01"] == jobs["sub-02"] != jobs["sub-03"]
    assert jobs["sub-03"] == jobs["sub-04"] == jobs["sub-05"]
    # The apps saw it too: each ran under the worker the ledger names (the app's parent).
    for scan in ok:
        parent = (out / f"{scan}.txt").read_text()
        assert jobs[scan] == f"local:{parent}"
    # The killed scan's log says it started; the next scan's log is its own.
    assert "attempt 1" in (run / "logs" / "sub-02.log").read_text()
    assert "sub-02" not in (run / "logs" / "sub-03.log").read_text()
