"""A failed scan can be debugged (issue 12, item 8): its crash files and its scratch folder.

The app is a few lines of Python named by a pipeline file: it writes nipype-style
``crash-*.txt`` files (one too big, more than the bound allows) into its work and
output folders and fails, as fMRIPrep does. Through the CLI, on the fake executor
(the real worker, in one process) and on the local one.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from conftest import run_cli

from bidsbatch.crashfiles import MAX_FILE_BYTES, MAX_FILES
from bidsbatch.synth import make_dataset

# No braces: the pipeline's command treats them as placeholders.
APP = r"""
import os, sys
work, out, participant = sys.argv[1:4]
if participant == "01":
    os.makedirs(os.path.join(out, "sub-01"), exist_ok=True)
    open(os.path.join(out, "sub-01", "ok.txt"), "w").write("fine\n")
    sys.exit(0)
node = os.path.join(work, "wf", "node")
os.makedirs(node, exist_ok=True)
for i in range(25):
    with open(os.path.join(node, "crash-2026%02d-root-node%d.txt" % (i, i)), "w") as fh:
        fh.write("Node: node%d\nTraceback (most recent call last):\nValueError: bad %d\n"
                 % (i, i))
logs = os.path.join(out, "sub-" + participant, "log", "run-1")
os.makedirs(logs, exist_ok=True)
with open(os.path.join(logs, "crash-big.txt"), "w") as fh:
    fh.write("x" * 400_000 + "\nValueError: the end of a big crash file\n")
os.utime(os.path.join(logs, "crash-big.txt"), (4e9, 4e9))  # the newest: saved first
open(os.path.join(work, "notes.txt"), "w").write("not a crash file\n")
print("the app failed; see its crash files")
sys.exit(3)
"""


@pytest.fixture(scope="module")
def ds(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    return make_dataset(tmp_path_factory.mktemp("dbg") / "ds", subjects=2, sessions=None,
                        shape=(6, 6, 4), n_volumes=3)


@pytest.fixture
def crashy(tmp_path: Path) -> Path:
    path = tmp_path / "crashy.toml"
    path.write_text(
        'name = "crashy"\nimage = "local/crashy:1"\n'
        f"command = [{json.dumps(sys.executable)}, \"-c\", {json.dumps(APP)}, "
        '"{work_dir}", "{output_dir}", "{participant}"]\n'
        '[retry]\nattempts = 1\n[container]\nruntime = "none"\n')
    return path


def test_crash_files_are_saved_and_shown_and_scratch_is_kept(ds: Path, tmp_path: Path,
                                                           crashy: Path) -> None:
    out = tmp_path / "out"
    scratch = tmp_path / "scratch"
    env = {"BIDSBATCH_SCRATCH": str(scratch)}
    res = run_cli("run", str(ds), str(out), "--pipeline", str(crashy), "--executor", "fake",
                  "--keep-scratch", env=env)
    assert res.returncode == 1, res.output
    record = json.loads((out / ".bidsbatch/failed/sub-02.json").read_text())
    crash = record["crash_files"]
    assert len(crash) == MAX_FILES  # 26 written, the bound kept
    big = crash[0]  # the newest first
    assert big["source"] == "out/sub-02/log/run-1/crash-big.txt"
    assert big["size"] > MAX_FILE_BYTES and big["saved"] == MAX_FILE_BYTES
    saved = (out / big["key"]).read_bytes()
    assert saved.endswith(b"ValueError: the end of a big crash file\n")  # its end is kept
    assert all(c["source"].startswith(("work/wf/node/crash-", "out/")) for c in crash)
    assert not any("notes.txt" in c["source"] for c in crash)
    assert (out / ".bidsbatch/failed/sub-02.crash/work/wf/node").is_dir()
    # the failed scan's scratch folder is kept (and said where); the good one's is not
    kept = Path(record["kept_scratch"])
    assert kept.parent == scratch and (kept / "work/wf/node").is_dir()
    assert not (kept / "worker.pid").exists()  # no later clean-up takes it for a dead worker
    assert [p for p in scratch.iterdir()] == [kept]
    assert f"sub-02: scratch folder kept: {kept}" in res.stderr
    assert "sub-02: 20 crash file(s) saved: bidsbatch logs" in res.stderr
    # bidsbatch logs (the latest run) prints the log, then the crash files and where
    logs = run_cli("logs", "sub-02")
    assert logs.returncode == 0, logs.stderr
    assert "the app failed; see its crash files" in logs.stdout
    assert "----- crash file out/sub-02/log/run-1/crash-big.txt" in logs.stdout
    assert "ValueError: bad" in logs.stdout
    assert f"----- scratch folder kept: {kept}" in logs.stdout
    # the report lists them with the failure
    report = Path(re.search(r"^report: (.+)$", res.stderr, re.M).group(1)).read_text()
    assert "crash-big.txt" in report and str(kept) in report
    # a later success removes the old crash files with the failure record
    again = run_cli("run", str(ds), str(out), "--pipeline", str(_succeeding(crashy, tmp_path)),
                    "--executor", "fake", "-p", "02", env=env)
    assert again.returncode == 0, again.output
    assert not (out / ".bidsbatch/failed/sub-02.json").exists()
    assert not [p for p in (out / ".bidsbatch/failed").rglob("*") if p.is_file()]


def _succeeding(crashy: Path, tmp_path: Path) -> Path:
    """The same app told it is participant 01 (which succeeds), still planned per scan."""
    path = tmp_path / "fixed.toml"
    text = crashy.read_text().replace('"{output_dir}", "{participant}"]',
                                      '"{output_dir}", "01", "{participant}"]')
    path.write_text(text.replace('name = "crashy"', 'name = "fixed"'))
    return path


def test_without_keep_scratch_nothing_is_left(ds: Path, tmp_path: Path, crashy: Path) -> None:
    scratch = tmp_path / "scratch"
    res = run_cli("run", str(ds), str(tmp_path / "out"), "--pipeline", str(crashy),
                  "--executor", "fake", "-p", "02", env={"BIDSBATCH_SCRATCH": str(scratch)})
    assert res.returncode == 1
    assert list(scratch.iterdir()) == []
    assert "scratch folder kept" not in res.stderr
    record = json.loads((tmp_path / "out/.bidsbatch/failed/sub-02.json").read_text())
    assert record["kept_scratch"] is None and len(record["crash_files"]) == MAX_FILES
