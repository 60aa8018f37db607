"""What the group job runs: the group step, only when every scan of the run is done.

The group job waits for every array with ``--dependency=afterany:`` (so it
starts when they end, failed or not, instead of pending forever), and this
guard decides: every scan has its completion marker → run the group step;
else print why and exit 0 without running it (``status`` then says
"skipped", as on the other executors, and ``retry`` submits a new one).
"""

from __future__ import annotations

import sys
from pathlib import Path

from ...markers import done_scans
from ...runs import RunDir
from ...storage import open_location

SKIPPED_LINE = "bidsbatch group job: skipped"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m bidsbatch.executors.slurm.group_job RUN_DIR", file=sys.stderr)
        return 2
    run = RunDir(Path(args[0]))
    specs = run.specs()
    done = done_scans(open_location(run.info().output), specs)
    missing = [s.scan_id for s in specs if s.scan_id not in done]
    if missing:
        print(f"{SKIPPED_LINE}: {len(missing)} scan(s) not done "
              f"({', '.join(missing[:5])}{' …' if len(missing) > 5 else ''})", flush=True)
        return 0
    from ...group import run_group_step

    return run_group_step(str(run.path))


if __name__ == "__main__":
    sys.exit(main())
