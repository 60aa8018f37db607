"""What ``bidsbatch status`` and ``bidsbatch logs`` do, without typer.

The typer commands (``status.py``) and the entry point's fast path
(``fastpath.py``) both call these: the same work, the same output, whichever
parsed the command line.
"""

from __future__ import annotations

import json


def show_status(run_ref: str | None = None, *, watch: bool = False, as_json: bool = False,
                rebuild: bool = False) -> None:
    """The state of every scan of a run, and the counts (``status``)."""
    from .. import runner
    from ..console import err_console, print_json
    from ..ledger import Ledger
    from ..progress import counts_line, status_table
    from ..runs import find_run
    from .cost_lines import status_cost
    from .plain_table import print_table

    run = find_run(run_ref)
    info = run.info()
    if rebuild:
        from rich.markup import escape

        from ..rebuild import rebuild_ledger

        done = rebuild_ledger(run)
        aside = f"; the old one is {done.moved_aside}" if done.moved_aside else ""
        err_console.print(f"ledger rebuilt: {done.succeeded} succeeded, {done.failed} failed, "
                          f"{done.unknown} not known{escape(aside)}", highlight=False)
    if watch:
        from .run import _watch

        final = _watch(run, title=info.run_id, total=len(info.scans))
        records, counts, group = final.records, final.counts, final.group
    else:
        with Ledger.open(run.ledger_path) as ledger:
            if ledger.executor_name:
                runner.executor_for(run, ledger).poll(run, ledger)
            else:
                ledger.add_scans(info.scans)
            records, counts, group = ledger.scans(), ledger.counts(), ledger.group()
    if as_json:
        from .render import status_dict

        print_json(json.dumps(status_dict(run, records, counts, group), indent=2))
        return
    with Ledger.open(run.ledger_path) as ledger:
        cost_column, cost_values, cost_lines = status_cost(
            run, ledger, runner.submitted_executor(run, ledger))
    print_table(err_console, status_table(
        records, title=f"run {info.run_id} · {info.dataset_name} · {info.pipeline.name}",
        extra=(cost_column, cost_values)))
    err_console.print(counts_line(counts))
    if group.state:
        err_console.print(f"group step: {group.state}")
    for line in cost_lines:
        err_console.print(line)


def show_logs(first: str, second: str | None = None, *, follow: bool = False) -> None:
    """A scan's log (every attempt), then the crash files of its failure (``logs``)."""
    from .. import runner
    from ..ledger import Ledger
    from ..runs import find_run
    from .crash_output import print_crash_files

    # One argument is the scan of the latest run, as status takes no RUN for it.
    run_ref, scan = (None, first) if second is None else (first, second)
    run = find_run(run_ref)
    if scan != "group":
        run.spec(scan)  # an unknown scan is a clear error
    with Ledger.open(run.ledger_path) as ledger:
        executor = runner.executor_for(run, ledger)
    for line in executor.logs(run, scan, follow=follow):
        print(line, flush=follow)
    if scan != "group":
        print_crash_files(run, scan)
