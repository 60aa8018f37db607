"""``.bidsignore`` tells the validator what to skip; it never drops a scan's inputs."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import BIDS_EXAMPLES

from bidsbatch.bids import bidsignore_spec, crawl
from bidsbatch.pipelines import Pipeline
from bidsbatch.planning import make_plan


def _example(name: str) -> Path:
    root = BIDS_EXAMPLES / name
    if not root.is_dir():
        pytest.skip(f"bids-examples not found at {BIDS_EXAMPLES}")
    return root


def _files_on_disk(folder: Path, root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in folder.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.parts)}


def test_fmriprep_derivatives_stage_every_file_of_the_subject() -> None:
    root = _example("ds000001-fmriprep")
    scan = next(s for s in crawl(str(root)).scans if s.participant == "10")
    staged = {f.key for f in scan.files if f.key.startswith("sub-10/")}
    assert staged == _files_on_disk(root / "sub-10", root)
    assert len(staged) == 118
    assert any(k.endswith("desc-confounds_timeseries.tsv") for k in staged)
    assert any(k.endswith("_xfm.h5") for k in staged)


def test_ds000117_flash_images_are_staged() -> None:
    root = _example("ds000117")
    flash = {p.relative_to(root).as_posix() for p in root.glob("sub-*/ses-*/anat/*_FLASH.nii.gz")}
    assert flash
    staged = {f.key for s in crawl(str(root)).scans for f in s.files}
    assert flash <= staged


def _tiny(root: Path, bidsignore: str) -> Path:
    (root / "sub-01/anat").mkdir(parents=True)
    (root / "dataset_description.json").write_text('{"Name": "t", "BIDSVersion": "1.9.0"}')
    (root / ".bidsignore").write_text(bidsignore)
    for name in ("sub-01_T1w.nii.gz", "notes.txt", "keep.txt", "extra.dat"):
        (root / "sub-01/anat" / name).write_bytes(b"x")
    return root


def test_bidsignore_has_gitignore_semantics_for_names_only(tmp_path: Path) -> None:
    root = _tiny(tmp_path / "ds", "# comment\n*.txt\n!keep.txt\n/sub-01/anat/extra.dat\n")
    ds = crawl(str(root))
    (scan,) = ds.scans
    keys = {f.key for f in scan.files}
    # staged, ignored or not
    assert {"sub-01/anat/notes.txt", "sub-01/anat/keep.txt", "sub-01/anat/extra.dat"} <= keys
    # names: the re-included (!) file is checked and reported, the ignored ones are not
    assert "sub-01/anat/keep.txt" in ds.invalid_names
    assert "sub-01/anat/notes.txt" not in ds.invalid_names
    assert "sub-01/anat/extra.dat" not in ds.invalid_names
    spec = bidsignore_spec("**/logs/\n/top.txt\n")
    assert spec.match_file("sub-01/logs/a.txt") and spec.match_file("top.txt")
    assert not spec.match_file("sub-01/top.txt")


def test_a_pipeline_excludes_inputs_itself(tmp_path: Path) -> None:
    root = _tiny(tmp_path / "ds", "")
    pipe = Pipeline.from_dict({
        "name": "p", "image": "x:1", "command": ["app", "{participant}"],
        "inputs": {"exclude": ["**/*.txt"]},
    }, source="p.toml")
    (spec,) = make_plan(str(root), str(tmp_path / "out"), pipeline=pipe).specs
    keys = {f.key for f in spec.inputs}
    assert "sub-01/anat/extra.dat" in keys and not any(k.endswith(".txt") for k in keys)
