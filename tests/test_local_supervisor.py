"""The local supervisor streams its queue, batches its ledger writes, and is waited for.

What the performance work of issue 15 must not lose, checked by behaviour:
the supervisor reads a spec when its scan starts (so one damaged spec fails
its own scan, not the run, and nothing is loaded up front); ``runner.wait``
wakes on the supervisor's exit instead of sleeping; a batch of ledger
writes cut off midway leaves none of it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path

import pytest

from bidsbatch import api, runner
from bidsbatch.executors import make_executor
from bidsbatch.executors.local.queue import ScanQueue
from bidsbatch.ledger import Ledger
from bidsbatch.runner import LiveRecords
from bidsbatch.runs import RunDir
from bidsbatch.states import ScanState
from bidsbatch.synth import make_dataset


@pytest.fixture(scope="module")
def ds(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    return make_dataset(tmp_path_factory.mktemp("ds") / "ds", subjects=3, sessions=None,
                        modalities=["anat"], shape=(4, 4, 4))


def test_a_damaged_spec_fails_its_scan_only_and_wait_does_not_sleep(ds: Path,
                                                                     tmp_path: Path) -> None:
    plan = api.plan(str(ds), str(tmp_path / "out"), pipeline="demo",
                    run_dir=tmp_path / "run")
    run = RunDir(tmp_path / "run")
    # Damaged after planning: runner.start does not write this same plan again.
    run.spec_path("sub-02").write_text("{not json")
    started = runner.start(plan, executor=make_executor("local", {"jobs": 1}),
                           run_dir=tmp_path / "run")
    assert started.submitted == ["sub-01", "sub-02", "sub-03"]
    slept: list[float] = []
    # The local executor waits on its supervisor's pid: no sleep between checks (the
    # injected sleep would only record them), and the wait ends when the supervisor does.
    final = runner.wait(run, interval=60, sleep=slept.append)
    assert slept == []
    assert not final.busy
    states = {r.scan_id: r for r in final.records}
    # Specs are read as their scans start: the others ran (a supervisor that loaded
    # every spec first would have died before the first scan).
    assert states["sub-01"].state == ScanState.SUCCEEDED
    assert states["sub-03"].state == ScanState.SUCCEEDED
    assert states["sub-02"].state == ScanState.FAILED
    assert "cannot read the spec" in (states["sub-02"].reason or "")
    with Ledger.open(run.ledger_path) as ledger:
        attempts = {a.scan_id: a for a in ledger.attempts()}
    # One row per attempt, each with its outcome (recorded in batches).
    assert attempts["sub-01"].exit_code == 0 and attempts["sub-01"].finished_at
    assert attempts["sub-01"].job_id and attempts["sub-01"].job_id.startswith("local:")
    assert states["sub-01"].log and Path(states["sub-01"].log).exists()


def test_the_queue_holds_one_page_of_ids_in_order_then_the_retries(tmp_path: Path) -> None:
    ids = [f"sub-{i:04d}" for i in range(1203)]
    with Ledger.open(tmp_path / "ledger.sqlite") as ledger:
        ledger.add_scans(ids)
        ledger.update_many(ids, state=ScanState.SUBMITTED)
        queue = ScanQueue(ledger, page=500)
        popped, most_held = [], 0
        while queue:
            most_held = max(most_held, queue.buffered)
            scan = queue.pop()
            popped.append(scan)
            ledger.start_attempt(scan)  # running now: not submitted any more
            if scan == "sub-0007" and popped.count(scan) == 1:  # exit 75: to the back, once
                ledger.finish_attempt(scan, state=ScanState.SUBMITTED, exit_code=75)
                queue.retry(scan)
    assert popped == [*ids, "sub-0007"]
    assert most_held <= 500 + 1  # a page, and the one retry


def test_a_batch_cut_off_midway_leaves_none_of_its_writes(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "ledger.sqlite") as ledger:
        ledger.add_scans(["a", "b"])
        ledger.update_many(["a", "b"], state=ScanState.SUBMITTED)
        with pytest.raises(RuntimeError), ledger.transaction():
            ledger.start_attempt("a", job_id="local:1")
            ledger.finish_attempt("a", state=ScanState.SUCCEEDED, exit_code=0)
            ledger.start_attempt("b", job_id="local:2")
            raise RuntimeError("the supervisor dies here")
        assert [(r.scan_id, r.state, r.attempts) for r in ledger.scans()] == [
            ("a", ScanState.SUBMITTED, 0), ("b", ScanState.SUBMITTED, 0)]
        assert ledger.attempts() == []
        with ledger.transaction():  # the same batch, whole this time
            ledger.start_attempt("a", job_id="local:1")
            ledger.finish_attempt("a", state=ScanState.SUCCEEDED, exit_code=0)
        rec = ledger.scan("a")
        assert rec is not None and rec.state == ScanState.SUCCEEDED and rec.attempts == 1


def test_progress_reads_only_the_rows_that_changed(tmp_path: Path) -> None:
    ticks = (datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=n) for n in count())
    with Ledger.open(tmp_path / "ledger.sqlite", clock=lambda: next(ticks)) as ledger:
        ledger.add_scans([f"s{i}" for i in range(50)])
        records = LiveRecords()
        assert len(records.refresh(ledger)) == 50
        ledger.update("s7", state=ScanState.FAILED, reason="boom")
        records.refresh(ledger)  # rows of the newest moment seen are read again: all here
        ledger.update("s9", state=ScanState.RUNNING)
        changed = records.refresh(ledger)
        assert sorted(r.scan_id for r in changed) == ["s7", "s9"]
        assert records.by_id["s7"].state == ScanState.FAILED
        assert records.by_id["s9"].state == ScanState.RUNNING
        assert list(records.by_id) == sorted(f"s{i}" for i in range(50))
