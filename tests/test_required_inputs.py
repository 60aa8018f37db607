"""A pipeline plans only the scans that hold the data it needs, and says which it left out."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import BIDS_EXAMPLES, run_cli

from bidsbatch.pipelines import load_pipeline
from bidsbatch.synth import make_dataset


def _example(name: str) -> Path:
    root = BIDS_EXAMPLES / name
    if not root.is_dir():
        pytest.skip(f"bids-examples not found at {BIDS_EXAMPLES}")
    return root


def test_presets_declare_what_a_scan_needs() -> None:
    assert load_pipeline("fmriprep").required_inputs == ("anat/T1w", "anat/T2w")
    assert load_pipeline("m2g").required_inputs == ("dwi",)
    assert load_pipeline("mriqc").required_inputs == ("anat", "func")


@pytest.mark.parametrize("name", ["eeg_cbm", "eeg_matchingpennies", "micr_SEM", "micr_SPIM"])
def test_fmriprep_plans_no_eeg_or_microscopy_scan(name: str, tmp_path: Path) -> None:
    res = run_cli("plan", str(_example(name)), str(tmp_path / "out"), "--pipeline", "fmriprep",
                  "--fs-license-file", str(_license(tmp_path)))
    assert res.returncode == 2, res.stderr
    assert "fmriprep can process none of the" in res.stderr
    assert "no anat/T1w or anat/T2w data" in res.stderr and "Traceback" not in res.stderr


def test_meg_only_scan_is_left_out_and_listed(tmp_path: Path) -> None:
    root = _example("ds000246")
    res = run_cli("plan", str(root), str(tmp_path / "out"), "--pipeline", "fmriprep",
                  "--fs-license-file", str(_license(tmp_path)), "--json")
    assert res.returncode == 0, res.stderr
    plan = json.loads(res.stdout)
    planned = {s["scan_id"] for s in plan["specs"]}
    left_out = plan["run"]["left_out"]
    assert planned and left_out and not planned & set(left_out)
    assert all(why == "no anat/T1w or anat/T2w data" for why in left_out.values())
    for sid in left_out:
        assert sid in res.stderr  # the table of left-out scans
    assert "left out" in res.stderr


def test_run_runs_none_of_the_left_out_scans(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path / "ds", subjects=2, sessions=None, shape=(8, 8, 6),
                      n_volumes=4)
    shutil.rmtree(ds / "sub-02/anat")
    preset = (Path(__import__("bidsbatch").__file__).parent / "presets/demo.toml").read_text()
    toml = tmp_path / "anat-only.toml"
    toml.write_text(preset.replace('require = ["anat/T1w", "func/bold"]',
                                   'require = ["anat/T1w"]'))
    assert 'require = ["anat/T1w"]' in toml.read_text()
    res = run_cli("run", str(ds), str(tmp_path / "out"), "--pipeline", str(toml), "--json")
    assert res.returncode == 0, res.stderr
    status = json.loads(res.stdout)
    assert [s["scan_id"] for s in status["scans"]] == ["sub-01"]
    assert "sub-02" in res.stderr and "no anat/T1w data" in res.stderr


def test_a_bad_requirement_is_one_line_naming_file_and_field(tmp_path: Path) -> None:
    toml = tmp_path / "bad.toml"
    toml.write_text('name = "x"\nimage = "x:1"\ncommand = ["app", "{participant}"]\n'
                    '[inputs]\nrequire = ["T1w"]\n')
    res = run_cli("plan", str(tmp_path), str(tmp_path / "out"), "--pipeline", str(toml))
    assert res.returncode == 2
    assert f"{toml}: inputs.require: 'T1w' is not DATATYPE or DATATYPE/SUFFIX" in res.stderr
    assert "Traceback" not in res.stderr


def _license(tmp_path: Path) -> Path:
    """fMRIPrep's preset needs a FreeSurfer license file (checked before planning)."""
    path = tmp_path / "license.txt"
    path.write_text("user@example.org\n12345\n *Cabc\n FSxyz\n")
    return path
