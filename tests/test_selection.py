"""Selecting scans: labels with or without prefixes, excludes, labels files, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from bidsbatch.bids import Scan
from bidsbatch.errors import SelectionError
from bidsbatch.selection import Selection

SCANS = [Scan(p, s, ()) for p, s in
         [("01", "1"), ("01", "2"), ("02", "1"), ("010", None), ("a+b", "x")]]


def ids(sel: Selection) -> list[str]:
    return [s.id for s in sel.apply(SCANS)]


def test_everything_by_default() -> None:
    assert len(ids(Selection())) == 5


def test_participants_with_or_without_prefix_and_commas() -> None:
    assert ids(Selection.build(participants=["sub-01", "a+b"])) == [
        "sub-01_ses-1", "sub-01_ses-2", "sub-a+b_ses-x"]
    assert ids(Selection.build(participants=["010,02"])) == ["sub-02_ses-1", "sub-010"]


def test_sessions_and_excludes() -> None:
    assert ids(Selection.build(sessions=["ses-1"])) == ["sub-01_ses-1", "sub-02_ses-1"]
    assert ids(Selection.build(exclude=["01"])) == ["sub-02_ses-1", "sub-010", "sub-a+b_ses-x"]


def test_unknown_labels_list_a_few() -> None:
    with pytest.raises(SelectionError) as info:
        Selection.build(participants=["0"]).apply(SCANS)
    assert "unknown participant label sub-0" in info.value.message
    assert "sub-01" in (info.value.hint or "")
    with pytest.raises(SelectionError, match="unknown session label ses-9"):
        Selection.build(sessions=["9"]).apply(SCANS)


def test_labels_files(tmp_path: Path) -> None:
    plain = tmp_path / "l.txt"
    plain.write_text("# comment\nsub-01_ses-2\n\n02\n")
    assert ids(Selection.build(labels_file=plain)) == ["sub-01_ses-2", "sub-02_ses-1"]
    tsv = tmp_path / "p.tsv"
    tsv.write_text("participant_id\tage\nsub-010\t30\nsub-a+b\t40\n")
    assert ids(Selection.build(labels_file=tsv)) == ["sub-010", "sub-a+b_ses-x"]


def test_selecting_nothing_is_an_error() -> None:
    with pytest.raises(SelectionError, match="leaves no scan"):
        Selection.build(participants=["010"], sessions=["1"]).apply(SCANS)
