"""Conformance: every dataset of the BIDS standard's examples, planned, against pybids.

The scans we plan must be exactly the (subject, session) pairs that pybids finds in
data files; datasets with no subjects (atlases, derivative-only) get a clear
"no scans" error.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from conftest import BIDS_EXAMPLES, run_cli

from bidsbatch.bids import crawl
from bidsbatch.errors import DatasetError

EXAMPLES = sorted(
    p for p in BIDS_EXAMPLES.glob("*") if (p / "dataset_description.json").is_file()
) if BIDS_EXAMPLES.is_dir() else []


def _pybids_pairs(root: Path) -> set[tuple[str, str | None]]:
    from bids import BIDSLayout

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        layout = BIDSLayout(root, validate=False, derivatives=False)
        pairs = set()
        for f in layout.get(return_type="object"):
            rel = Path(f.path).relative_to(root)
            if len(rel.parts) <= 2:
                continue  # root files and subject-level metadata (sessions.tsv...): not data
            ents = f.get_entities()
            if "subject" in ents:
                ses = ents.get("session")
                pairs.add((str(ents["subject"]), str(ses) if ses is not None else None))
    return pairs


def test_the_examples_are_here() -> None:
    if not EXAMPLES and __import__("os").environ.get("CI"):
        pytest.fail(f"bids-examples not found at {BIDS_EXAMPLES}")
    if not EXAMPLES:
        pytest.skip(f"bids-examples not found at {BIDS_EXAMPLES}")
    assert len(EXAMPLES) > 50


@pytest.mark.parametrize("root", EXAMPLES, ids=lambda p: p.name)
def test_scans_agree_with_pybids(root: Path) -> None:
    expected = _pybids_pairs(root)
    try:
        got = {(s.participant, s.session) for s in crawl(str(root)).scans}
    except DatasetError as exc:
        assert "no scans" in exc.message
        got = set()
    assert got == expected


def test_cli_plans_an_example_and_refuses_an_atlas(tmp_path: Path) -> None:
    if not EXAMPLES:
        pytest.skip("bids-examples not found")
    ok = run_cli("plan", str(BIDS_EXAMPLES / "ds114"), str(tmp_path / "out"), "--json")
    assert ok.returncode == 0, ok.stderr
    assert '"scan_id": "sub-01_ses-retest"' in ok.stdout
    atlas = run_cli("plan", str(BIDS_EXAMPLES / "atlas-AAL"), str(tmp_path / "out2"))
    assert atlas.returncode == 2
    assert "no scans" in atlas.stderr and "Traceback" not in atlas.stderr
