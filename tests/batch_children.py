"""Play the part of AWS Batch's compute on a moto server: run each submitted child's command.

moto's Batch without Docker marks jobs done without running them; this runs each
array child's ``bidsbatch worker`` command here, with the index variables Batch
sets, as ``tests/test_executor_contract.py``'s harness does.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent


def run_children(batch: Any, run_id: str, env: dict[str, str], *, attempt: int = 1,
                 only: set[int] | None = None) -> list[int]:
    """Run the array children (all, or the indexes ``only``) once; their exit codes.

    ``attempt``: what Batch's ``AWS_BATCH_JOB_ATTEMPT`` says (2 when its retry
    strategy runs a failed child again).
    """
    from bidsbatch.ledger import Ledger
    from bidsbatch.runs import runs_root

    with Ledger.open(runs_root() / run_id / "ledger.sqlite") as ledger:
        jobs = [j for j in ledger.jobs() if j.kind == "array"]
    described = {j["jobId"]: j for j in batch.batch.describe_jobs(
        jobs=[j.job_id for j in jobs])["jobs"]} if jobs else {}
    codes = []
    for job in jobs:
        command = described[job.job_id]["container"]["command"]
        for i in range(len(job.scans)):
            if only is not None and i not in only:
                continue
            proc = subprocess.run(
                [str(BIN / "bidsbatch"), *command[1:]],
                env={**os.environ, **env, "AWS_BATCH_JOB_ATTEMPT": str(attempt),
                     "AWS_BATCH_JOB_ARRAY_INDEX": str(i), "AWS_BATCH_JOB_ID": f"{job.job_id}:{i}"},
                capture_output=True, text=True, timeout=120)
            codes.append(proc.returncode)
            assert proc.returncode in (0, 3), proc.stdout[-2000:] + proc.stderr[-2000:]
    return codes
