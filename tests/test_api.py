"""The Python API as a user calls it in a notebook: crawl, plan, run, status."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import bidsbatch
from bidsbatch.errors import SelectionError
from bidsbatch.states import GroupState, ScanState
from bidsbatch.synth import make_dataset


@pytest.fixture(scope="module")
def ds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("ds") / "ds", subjects=2, sessions=("1", "2"),
                        shape=(8, 8, 6), n_volumes=5)


def test_crawl_plan_run_status(ds: Path, tmp_path: Path) -> None:
    dataset = bidsbatch.crawl(str(ds))
    assert [s.id for s in dataset.scans] == ["sub-01_ses-1", "sub-01_ses-2", "sub-02_ses-1",
                                             "sub-02_ses-2"]
    out = tmp_path / "out"
    plan = bidsbatch.plan(dataset, str(out), pipeline="demo", participants=["01"])
    assert [s.scan_id for s in plan.specs] == ["sub-01_ses-1", "sub-01_ses-2"]
    result = bidsbatch.run(plan, executor="fake")
    assert result.submitted == ["sub-01_ses-1", "sub-01_ses-2"] and result.skipped == []
    assert result.status.ok and not result.status.busy
    assert result.status.counts[ScanState.SUCCEEDED] == 2
    assert result.status.group.state == GroupState.SUCCEEDED
    marker = json.loads((out / ".bidsbatch/done/sub-01_ses-2.json").read_text())
    assert marker["run_id"] == result.run_id and marker["exit_code"] == 0
    # by id, later: the same facts
    again = bidsbatch.status(result.run_id)
    assert {r.scan_id: r.state for r in again.scans} == dict.fromkeys(
        ["sub-01_ses-1", "sub-01_ses-2"], ScanState.SUCCEEDED)
    # a second run of the same plan does nothing
    second = bidsbatch.run(bidsbatch.plan(str(ds), str(out), participants=["01"]),
                           executor="fake")
    assert second.submitted == [] and sorted(second.skipped) == ["sub-01_ses-1",
                                                                 "sub-01_ses-2"]


def test_executor_settings_are_keywords_and_failures_are_typed(ds: Path,
                                                               tmp_path: Path) -> None:
    plan = bidsbatch.plan(str(ds), str(tmp_path / "out"), participants=["02"])
    result = bidsbatch.run(plan, executor="fake", fake_fail="sub-02_ses-1")
    assert not result.status.ok
    states = {r.scan_id: r.state for r in result.status.scans}
    assert states == {"sub-02_ses-1": ScanState.FAILED, "sub-02_ses-2": ScanState.SUCCEEDED}
    with pytest.raises(SelectionError):
        bidsbatch.plan(str(ds), str(tmp_path / "out2"), participants=["09"])
    queued = bidsbatch.run(bidsbatch.plan(str(ds), str(tmp_path / "out3")), executor="fake",
                           wait=False)
    assert len(queued.submitted) == 4
    assert queued.status.counts[ScanState.SUCCEEDED] == 4  # the fake engine ran on status
