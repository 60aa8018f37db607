"""Tests of bidsbatch.synth: valid BIDS (official validator), real images, determinism."""

from __future__ import annotations

import csv
import json
import shutil
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from validator import describe, validate

from bidsbatch.synth import N_B0, REPETITION_TIME, make_dataset


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _participants(root: Path) -> list[dict[str, str]]:
    with (root / "participants.tsv").open() as f:
        return list(csv.DictReader(f, delimiter="\t"))


@pytest.fixture(scope="module")
def with_sessions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The defaults: 8 subjects, sessions 1 and 2, all modalities, inherited sidecars."""
    return make_dataset(tmp_path_factory.mktemp("synth") / "ds")


def test_default_dataset_with_sessions_is_valid_bids(with_sessions: Path) -> None:
    errors = validate(with_sessions)
    assert errors == [], describe(errors)

    root = with_sessions
    assert [r["participant_id"] for r in _participants(root)] == [
        f"sub-{i:02d}" for i in range(1, 9)
    ]
    description = json.loads((root / "dataset_description.json").read_text())
    assert description["BIDSVersion"] == "1.10.0"
    assert description["DatasetType"] == "raw"
    assert description["License"] and description["Authors"]
    assert (root / "README.md").is_file() and (root / "participants.json").is_file()
    sessions_tsv = (root / "sub-03" / "sub-03_sessions.tsv").read_text().split()
    assert sessions_tsv == ["session_id", "ses-1", "ses-2"]
    for session in ("1", "2"):
        scan = root / "sub-03" / f"ses-{session}"
        prefix = f"sub-03_ses-{session}"
        assert (scan / "anat" / f"{prefix}_T1w.nii.gz").is_file()
        assert (scan / "func" / f"{prefix}_task-rest_bold.nii.gz").is_file()
        assert (scan / "dwi" / f"{prefix}_dwi.nii.gz").is_file()

    # Inherited: the shared metadata is at the root, the per-file sidecars are minimal.
    root_bold = json.loads((root / "task-rest_bold.json").read_text())
    assert root_bold["RepetitionTime"] == REPETITION_TIME and root_bold["TaskName"] == "rest"
    assert (root / "dwi.bval").is_file() and (root / "dwi.bvec").is_file()
    assert (root / "T1w.json").is_file() and (root / "dwi.json").is_file()
    per_file = json.loads((root / "sub-03/ses-1/func/sub-03_ses-1_task-rest_bold.json").read_text())
    assert "RepetitionTime" not in per_file and "TaskName" not in per_file
    assert not list(root.rglob("sub-*_dwi.bval"))


def test_inherited_sidecars_are_what_makes_it_valid(with_sessions: Path, tmp_path: Path) -> None:
    """Negative control: the validator must see the inheritance, and our helper its errors."""
    broken = tmp_path / "broken"
    shutil.copytree(with_sessions, broken)
    (broken / "task-rest_bold.json").unlink()
    (broken / "dwi.bval").unlink()
    codes = {(e["code"], e.get("subCode")) for e in validate(broken)}
    assert ("SIDECAR_KEY_REQUIRED", "RepetitionTime") in codes
    assert ("SIDECAR_KEY_REQUIRED", "TaskName") in codes
    assert ("DWI_MISSING_BVAL", None) in codes


def test_dataset_without_sessions_and_per_file_sidecars_is_valid(tmp_path: Path) -> None:
    root = make_dataset(
        tmp_path / "ds", subjects=3, sessions=None, runs=2, inherited_sidecars=False
    )
    errors = validate(root)
    assert errors == [], describe(errors)

    assert not list(root.rglob("ses-*")) and not list(root.rglob("*_sessions.tsv"))
    assert not (root / "task-rest_bold.json").exists() and not (root / "dwi.bval").exists()
    func = root / "sub-02" / "func"
    assert sorted(p.name for p in func.glob("*.nii.gz")) == [
        "sub-02_task-rest_run-1_bold.nii.gz",
        "sub-02_task-rest_run-2_bold.nii.gz",
    ]
    sidecar = json.loads((func / "sub-02_task-rest_run-1_bold.json").read_text())
    assert sidecar["RepetitionTime"] == REPETITION_TIME and sidecar["TaskName"] == "rest"
    assert (root / "sub-02" / "dwi" / "sub-02_dwi.bvec").is_file()


def test_subset_of_modalities_and_explicit_labels_is_valid(tmp_path: Path) -> None:
    root = make_dataset(
        tmp_path / "ds",
        subject_labels=["control1", "patient1"],
        sessions=["pre"],
        modalities=["anat"],
        shape=(8, 8, 6),
    )
    errors = validate(root)
    assert errors == [], describe(errors)
    assert sorted(p.name for p in root.glob("sub-*")) == ["sub-control1", "sub-patient1"]
    assert not list(root.rglob("func")) and not list(root.rglob("dwi"))
    assert not (root / "task-rest_bold.json").exists()
    assert nib.load(root / "sub-patient1/ses-pre/anat/sub-patient1_ses-pre_T1w.nii.gz").shape == (
        8,
        8,
        6,
    )


def test_same_arguments_give_byte_identical_files(tmp_path: Path) -> None:
    a = _files(make_dataset(tmp_path / "a", subjects=3))
    b = _files(make_dataset(tmp_path / "b", subjects=3))
    assert a.keys() == b.keys()
    different = [name for name in a if a[name] != b[name]]
    assert different == []

    c = _files(make_dataset(tmp_path / "c", subjects=3, seed=1))
    t1w = "sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz"
    assert c[t1w] != a[t1w]


def test_images_are_real_head_bold_and_dwi(with_sessions: Path) -> None:
    scan = with_sessions / "sub-01" / "ses-1"
    t1w = nib.load(scan / "anat" / "sub-01_ses-1_T1w.nii.gz")
    assert t1w.shape == (16, 16, 12)
    assert t1w.header.get_zooms() == (2.0, 2.0, 2.0)
    assert t1w.header["qform_code"] == 1 and t1w.header["sform_code"] == 1
    data = t1w.get_fdata()
    centre, corner = data[6:10, 6:10, 5:7].mean(), data[:2, :2, :2].mean()
    assert centre > 500 > 100 > corner  # bright brain, near-zero background

    # A threshold at half the robust maximum recovers the true brain volume:
    # brain (>= 600) sits far above skull (250), CSF and air.
    truth = {
        r["participant_id"]: float(r["synth_brain_volume_mm3"])
        for r in _participants(with_sessions)
    }
    mask = data > 0.5 * np.percentile(data, 99)
    assert mask.sum() * 8.0 == pytest.approx(truth["sub-01"], rel=0.02)
    assert len(set(truth.values())) > 4  # varies by subject

    bold = nib.load(scan / "func" / "sub-01_ses-1_task-rest_bold.nii.gz")
    assert bold.shape == (16, 16, 12, 20)
    assert bold.header.get_zooms()[3] == REPETITION_TIME
    series = bold.get_fdata()[mask]
    assert series.std(axis=1).mean() > 5  # the brain signal fluctuates
    r = np.corrcoef(series[::10])
    off_diagonal = r[np.triu_indices_from(r, k=1)]
    assert off_diagonal.std() > 0.1  # correlations differ between voxel pairs

    dwi = nib.load(scan / "dwi" / "sub-01_ses-1_dwi.nii.gz")
    bvals = np.loadtxt(with_sessions / "dwi.bval")
    bvecs = np.loadtxt(with_sessions / "dwi.bvec")
    assert dwi.shape[3] == len(bvals) == bvecs.shape[1] == N_B0 + 6
    assert bvecs.shape[0] == 3
    b0 = dwi.get_fdata()[..., bvals == 0].mean()
    weighted = dwi.get_fdata()[..., bvals > 0].mean()
    assert weighted < b0  # diffusion weighting attenuates the signal


def test_labels_are_zero_padded_to_the_count(tmp_path: Path) -> None:
    root = make_dataset(
        tmp_path / "ds", subjects=100, sessions=None, modalities=["anat"], shape=(4, 4, 4)
    )
    labels = sorted(p.name for p in root.glob("sub-*"))
    assert labels[0] == "sub-001" and labels[-1] == "sub-100" and len(labels) == 100


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="alphanumeric"):
        make_dataset(tmp_path / "a", subject_labels=["sub-01"])
    with pytest.raises(ValueError, match="alphanumeric"):
        make_dataset(tmp_path / "b", sessions=["pre_op"])
    with pytest.raises(ValueError, match="modalities"):
        make_dataset(tmp_path / "c", modalities=["pet"])
    with pytest.raises(ValueError, match="runs"):
        make_dataset(tmp_path / "d", runs=0)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(FileExistsError):
        make_dataset(tmp_path / "full")


def test_generation_is_fast(tmp_path: Path) -> None:
    started = time.perf_counter()
    make_dataset(tmp_path / "ds")  # 8 subjects x 2 sessions x anat, func, dwi
    assert time.perf_counter() - started < 2.0
