"""A rerun redoes exactly the scans whose result can change, and ``plan`` says why.

Real demo app, real synthetic dataset, through the CLI.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from conftest import run_cli

from bidsbatch.synth import make_dataset


def _add_subject(ds: Path, src: str, new: str) -> None:
    """Copy sub-SRC to sub-NEW (files renamed) and append its participants.tsv row."""
    for path in sorted((ds / f"sub-{src}").rglob("*")):
        rel = path.relative_to(ds).as_posix().replace(f"sub-{src}", f"sub-{new}")
        dest = ds / rel
        if path.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
    rows = (ds / "participants.tsv").read_text().splitlines()
    src_row = next(r for r in rows if r.startswith(f"sub-{src}\t"))
    rows.append(src_row.replace(f"sub-{src}", f"sub-{new}", 1))
    (ds / "participants.tsv").write_text("\n".join(rows) + "\n")


def _plan(ds: Path, out: Path) -> tuple[dict, str]:
    res = run_cli("plan", str(ds), str(out), "--json", "--explain")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout), res.stderr


def _run(ds: Path, out: Path) -> dict:
    res = run_cli("run", "--pipeline", "demo", str(ds), str(out), "--json", "--no-wait")
    assert res.returncode == 0, res.stderr
    run_id = json.loads(res.stdout)["run_id"]
    status = run_cli("status", run_id, "--watch", "--json")
    assert status.returncode == 0, status.stderr
    return json.loads(res.stdout)


def test_new_subject_readme_and_a_root_sidecar(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path / "ds", subjects=3, sessions=("1", "2"), shape=(8, 8, 6),
                      n_volumes=4)
    # a root sidecar that only the first sessions' BOLD runs inherit
    sidecar = ds / "ses-1_task-rest_bold.json"
    sidecar.write_text('{"Instructions": "eyes open"}\n')
    out = tmp_path / "out"
    first = _run(ds, out)
    assert len(first["submitted"]) == 6

    # 1. a new subject: its folder and its participants.tsv row
    _add_subject(ds, "03", "09")
    plan, text = _plan(ds, out)
    why = {sid: r["why"] for sid, r in plan["will_run"].items()}
    assert why == {"sub-09_ses-1": "new", "sub-09_ses-2": "new"}
    assert "will run 2 of 8 scan(s): 2 new; 6 done" in text
    assert "sub-09_ses-1" in text and "new" in text  # --explain lists them
    second = _run(ds, out)
    assert sorted(second["submitted"]) == ["sub-09_ses-1", "sub-09_ses-2"]
    assert len(second["skipped"]) == 6

    # 2. a line appended to README: nothing to redo
    readme = next(p for p in ds.iterdir() if p.name.startswith("README"))
    readme.write_text(readme.read_text() + "\nAcquired on a sunny day.\n")
    plan, text = _plan(ds, out)
    assert plan["will_run"] == {} and "will run 0 of 8 scan(s)" in text
    third = _run(ds, out)
    assert third["submitted"] == [] and len(third["skipped"]) == 8

    # 3. a root sidecar some scans inherit: just those
    sidecar.write_text('{"Instructions": "eyes open, fixate the cross"}\n')
    plan, text = _plan(ds, out)
    reasons = plan["will_run"]
    assert set(reasons) == {f"sub-{p}_ses-1" for p in ("01", "02", "03", "09")}
    for r in reasons.values():
        assert r["why"] == "inputs changed" and r["files"] == ["ses-1_task-rest_bold.json"]
    assert "inputs changed: ses-1_task-rest_bold.json" in text
    fourth = _run(ds, out)
    assert sorted(fourth["submitted"]) == sorted(reasons)

    # 4. the participant's own row counts
    rows = (ds / "participants.tsv").read_text().splitlines()
    edited = []
    for row in rows:
        cells = row.split("\t")
        if cells[0] == "sub-02":
            cells[1] = str(int(cells[1]) + 1)  # age
        edited.append("\t".join(cells))
    (ds / "participants.tsv").write_text("\n".join(edited) + "\n")
    plan, _text = _plan(ds, out)
    assert {sid: r["files"] for sid, r in plan["will_run"].items()} == {
        "sub-02_ses-1": ["participants.tsv[sub-02]"],
        "sub-02_ses-2": ["participants.tsv[sub-02]"]}


def test_a_changed_pipeline_and_force_are_said(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path / "ds", subjects=1, sessions=None, shape=(8, 8, 6),
                      n_volumes=4)
    out = tmp_path / "out"
    _run(ds, out)
    preset = (Path(__import__("bidsbatch").__file__).parent / "presets/demo.toml").read_text()
    changed = tmp_path / "grid3.toml"
    changed.write_text(preset.replace('"participant",', '"participant", '
                                      '"--parcellation-grid", "3",', 1))
    res = run_cli("plan", str(ds), str(out), "--pipeline", str(changed), "--json", "--explain")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["will_run"]["sub-01"]["why"] == "pipeline changed"
    assert "pipeline changed" in res.stderr
    forced = run_cli("plan", str(ds), str(out), "--force", "--json")
    assert json.loads(forced.stdout)["will_run"]["sub-01"]["why"] == "forced"
