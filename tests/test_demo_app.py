"""Tests of the demo BIDS App, run as a user or a worker runs it: a subprocess."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from validator import describe, validate

from bidsbatch.synth import make_dataset

APP = [sys.executable, "-m", "bidsbatch.apps.demo"]


def run_app(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*APP, *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def truth(bids_dir: Path) -> dict[str, float]:
    with (bids_dir / "participants.tsv").open() as f:
        rows = csv.DictReader(f, delimiter="\t")
        return {r["participant_id"]: float(r["synth_brain_volume_mm3"]) for r in rows}


def read_edges(path: Path) -> list[tuple[int, int, float]]:
    lines = path.read_text().splitlines()
    assert lines[0] == "source,target,weight"
    return [(int(s), int(t), float(w)) for s, t, w in (line.split(",") for line in lines[1:])]


@pytest.fixture(scope="module")
def sessions_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list]:
    """Participant level for 4 scans (sub-01/02 x ses-1/2) in parallel, one output dir.

    Parallel on purpose: that is how the runner uses the app, and every
    process writes the same dataset_description.json.
    """
    base = tmp_path_factory.mktemp("demo-ses")
    bids = make_dataset(base / "bids", subjects=3)
    out = base / "out"
    procs = [
        subprocess.Popen(
            [
                *APP,
                str(bids),
                str(out),
                "participant",
                "--participant_label",
                sub,
                "--session_label",
                ses,
                "-v",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for sub in ("01", "02")
        for ses in ("1", "2")
    ]
    results = [(p.args, p.wait(timeout=120), *p.communicate()) for p in procs]
    return bids, out, results


@pytest.fixture(scope="module")
def no_sessions_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, Path, subprocess.CompletedProcess]:
    base = tmp_path_factory.mktemp("demo-noses")
    bids = make_dataset(base / "bids", subjects=3, sessions=None, runs=2)
    out = base / "out"
    return bids, out, run_app(bids, out, "participant", "--participant_label", "sub-02")


def test_parallel_scans_succeed_and_share_one_description(sessions_run: tuple) -> None:
    _, out, results = sessions_run
    for args, code, stdout, stderr in results:
        assert code == 0, (args, stderr)
        assert "brain volume" in stdout and "mean connectivity" in stdout
        assert "Traceback" not in stderr
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert description["GeneratedBy"][0]["Name"] == "bidsbatch-demo-app"
    assert description["GeneratedBy"][0]["Version"]
    assert not [p for p in out.rglob("*.tmp")]  # no temporary file left behind


def test_brain_volume_is_measured_from_the_image(sessions_run: tuple) -> None:
    bids, out, _ = sessions_run
    expected = truth(bids)
    volumes = {}
    for sub in ("01", "02"):
        for ses in ("1", "2"):
            anat = out / f"sub-{sub}" / f"ses-{ses}" / "anat"
            assert (anat / f"sub-{sub}_ses-{ses}_desc-brain_mask.nii.gz").is_file()
            sidecar = json.loads((anat / f"sub-{sub}_ses-{ses}_desc-brain_mask.json").read_text())
            assert sidecar["Type"] == "Brain" and sidecar["VolumeUnits"] == "mm^3"
            # Within 5% of the synthetic ground truth (same subject, any session).
            assert sidecar["Volume"] == pytest.approx(expected[f"sub-{sub}"], rel=0.05)
            volumes[sub, ses] = sidecar["Volume"]
    assert volumes["01", "1"] != volumes["02", "1"]
    assert not (out / "sub-03").exists()  # not selected


def test_connectome_is_an_upper_triangle_of_correlations(sessions_run: tuple) -> None:
    _, out, _ = sessions_run
    path = out / "sub-01/ses-1/func/sub-01_ses-1_task-rest_desc-grid3_connectome.csv"
    edges = read_edges(path)
    nodes = {n for s, t, _ in edges for n in (s, t)}
    assert 2 <= len(nodes) <= 27 and all(1 <= n <= 27 for n in nodes)
    assert len(edges) == len(nodes) * (len(nodes) - 1) // 2  # every pair exactly once
    assert all(s < t for s, t, _ in edges)
    assert len({(s, t) for s, t, _ in edges}) == len(edges)
    weights = [w for _, _, w in edges]
    assert all(-1.0 <= w <= 1.0 for w in weights)
    assert max(weights) - min(weights) > 0.2  # not a constant matrix


def test_scan_without_sessions(no_sessions_run: tuple) -> None:
    bids, out, result = no_sessions_run
    assert result.returncode == 0, result.stderr
    sidecar = json.loads((out / "sub-02/anat/sub-02_desc-brain_mask.json").read_text())
    assert sidecar["Volume"] == pytest.approx(truth(bids)["sub-02"], rel=0.05)
    func = sorted(p.name for p in (out / "sub-02" / "func").iterdir())
    assert func == [
        "sub-02_task-rest_run-1_desc-grid3_connectome.csv",
        "sub-02_task-rest_run-2_desc-grid3_connectome.csv",
    ]


def test_derivatives_are_valid_bids(sessions_run: tuple, no_sessions_run: tuple) -> None:
    for _, out, *_ in (sessions_run, no_sessions_run):
        errors = validate(out)
        assert errors == [], describe(errors)


def test_group_level_writes_one_row_per_scan(sessions_run: tuple, no_sessions_run: tuple) -> None:
    bids, out, _ = sessions_run
    result = run_app(bids, out, "group")
    assert result.returncode == 0, result.stderr
    with (out / "group_brainvolume.tsv").open() as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert [(r["participant_id"], r["session_id"]) for r in rows] == [
        ("sub-01", "ses-1"),
        ("sub-01", "ses-2"),
        ("sub-02", "ses-1"),
        ("sub-02", "ses-2"),
    ]
    for row in rows:
        assert float(row["brain_volume_mm3"]) > 0
        assert int(row["n_regions"]) >= 2
        assert -1 <= float(row["mean_connectivity"]) <= 1
    assert "sub-03" not in result.stdout  # no results for it in the output: not a row
    errors = validate(out)
    assert errors == [], describe(errors)

    bids, out, _ = no_sessions_run
    assert run_app(bids, out, "group", "--participant_label", "02").returncode == 0
    with (out / "group_brainvolume.tsv").open() as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert [(r["participant_id"], r["session_id"]) for r in rows] == [("sub-02", "n/a")]


def test_outputs_are_reproducible(sessions_run: tuple, tmp_path: Path) -> None:
    bids, out, _ = sessions_run
    again = tmp_path / "again"
    result = run_app(
        bids, again, "participant", "--participant_label", "01", "--session_label", "1"
    )
    assert result.returncode == 0, result.stderr
    for path in (again / "sub-01").rglob("*"):
        if path.is_file():
            assert path.read_bytes() == (out / path.relative_to(again)).read_bytes(), path


def test_missing_t1w_or_bold_is_a_warning(tmp_path: Path) -> None:
    bids = make_dataset(tmp_path / "bids", subjects=1, sessions=None, modalities=["anat"])
    result = run_app(bids, tmp_path / "out", "participant")
    assert result.returncode == 0, result.stderr
    assert "warning: sub-01: no BOLD image; connectome skipped" in result.stderr
    assert (tmp_path / "out/sub-01/anat/sub-01_desc-brain_mask.nii.gz").is_file()
    assert not (tmp_path / "out/sub-01/func").exists()


def test_injected_failure_exits_3(sessions_run: tuple, tmp_path: Path) -> None:
    bids, _, _ = sessions_run
    out = tmp_path / "out"
    result = run_app(
        bids,
        out,
        "participant",
        "--participant_label",
        "01",
        "02",
        env={"BIDSBATCH_DEMO_FAIL": "03,02"},
    )
    assert result.returncode == 3
    assert "error: sub-02_ses-1: injected failure" in result.stderr
    assert "Traceback" not in result.stderr
    assert (out / "sub-01/ses-2/anat").is_dir()  # scans before it did run
    assert not (out / "sub-02").exists()


def test_sleep_per_scan(sessions_run: tuple, tmp_path: Path) -> None:
    bids, _, _ = sessions_run
    args = (bids, tmp_path / "out", "participant", "--participant_label", "03")
    started = time.monotonic()
    result = run_app(*args, env={"BIDSBATCH_DEMO_SLEEP": "0.3"})
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started >= 0.6  # two sessions
    assert "sleeping 0.3 s" in result.stdout

    result = run_app(*args, env={"BIDSBATCH_DEMO_SLEEP": "soon"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: BIDSBATCH_DEMO_SLEEP must be a number of seconds >= 0, got 'soon'"
    ]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing", "does not exist"),
        ("not-bids", "no dataset_description.json"),
        ("unknown-participant", "participant label(s) 42 not found"),
        ("unknown-session", "session label(s) 9 not found"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    case: str, expected: str, sessions_run: tuple, tmp_path: Path
) -> None:
    bids, _, _ = sessions_run
    extra: list[str] = []
    if case == "missing":
        bids = tmp_path / "nowhere"
    elif case == "not-bids":
        bids = tmp_path / "empty"
        bids.mkdir()
    elif case == "unknown-participant":
        extra = ["--participant_label", "01", "42"]
    else:
        extra = ["--session_label", "9"]
    result = run_app(bids, tmp_path / "out", "participant", *extra)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()  # nothing written before the check


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).with_name("bidsbatch-demo-app")
    if not script.exists():
        pytest.skip("bidsbatch is not installed with its console scripts")
    result = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "{participant,group}" in result.stdout and "--participant_label" in result.stdout
