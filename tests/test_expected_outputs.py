"""An app that exits 0 without writing what the pipeline expects is a failed scan."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_cli

from bidsbatch.pipelines import load_pipeline
from bidsbatch.synth import make_dataset


def test_presets_say_what_a_scan_produces() -> None:
    for name in ("demo", "fmriprep", "m2g", "mriqc"):
        assert load_pipeline(name).expected_outputs, name
    (fmriprep,) = load_pipeline("fmriprep").expected_outputs
    assert "sub-{participant}.html" in fmriprep
    assert any("desc-preproc" in g for g in fmriprep)


def test_exit_0_without_the_outputs_fails_with_the_reason(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path / "ds", subjects=1, sessions=("1",), shape=(8, 8, 6),
                      n_volumes=4)
    toml = tmp_path / "demo-expects-preproc.toml"
    # the demo app, expected to write what fMRIPrep writes: it exits 0 without it
    toml.write_text(
        'name = "demo-expects-preproc"\nimage = "bidsbatch/demo:0.1.0"\n'
        'command = ["bidsbatch-demo-app", "{bids_dir}", "{output_dir}", "participant",'
        ' "--participant_label", "{participant}", ["--session_label", "{session}"]]\n'
        '[output]\nexpect = ["sub-{participant}/ses-{session}/anat/'
        '*_desc-preproc_T1w.nii.gz"]\n')
    out, run_dir = tmp_path / "out", tmp_path / "run"
    # a plain process (on a machine with podman an image would otherwise be pulled)
    res = run_cli("run", str(ds), str(out), "--pipeline", str(toml), "--run-dir", str(run_dir),
                  "--container", "none", "--json")
    assert res.returncode == 1, res.stderr
    (scan,) = json.loads(res.stdout)["scans"]
    missing = "the app exited 0 but wrote no sub-01/ses-1/anat/*_desc-preproc_T1w.nii.gz"
    assert scan["state"] == "failed" and missing in scan["reason"]
    assert not (out / ".bidsbatch/done/sub-01_ses-1.json").exists()
    record = json.loads((out / ".bidsbatch/failed/sub-01_ses-1.json").read_text())
    assert missing in record["reason"] and record["exit_code"] == 1
    assert missing in (run_dir / "report.html").read_text()
    assert not list(out.rglob("*_desc-brain_mask.nii.gz"))  # nothing uploaded


def test_a_bad_expect_is_one_line_naming_file_and_field(tmp_path: Path) -> None:
    toml = tmp_path / "bad.toml"
    toml.write_text('name = "x"\nimage = "x:1"\ncommand = ["app", "{participant}"]\n'
                    '[output]\nexpect = ["{scan}/x"]\n')
    res = run_cli("plan", str(tmp_path), str(tmp_path / "out"), "--pipeline", str(toml))
    assert res.returncode == 2
    assert f"{toml}: output.expect: unknown placeholder {{scan}}" in res.stderr
