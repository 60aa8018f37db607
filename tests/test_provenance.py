"""Provenance (issue 12, item 12): the output's dataset_description.json and the report.

bidsbatch's own ``GeneratedBy`` entry and ``SourceDatasets`` are merged into what
the app wrote (never dropping an entry, the same bytes on a rerun, whole when
scans commit at once), or written when the app writes none; the report links
each scan to its outputs and shows its command.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

import pytest
from conftest import run_cli

from bidsbatch import __version__
from bidsbatch.provenance import Provenance, merge_description
from bidsbatch.synth import make_dataset


@pytest.fixture(scope="module")
def ds(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    return make_dataset(tmp_path_factory.mktemp("prov") / "ds", subjects=3, sessions=None,
                        shape=(6, 6, 4), n_volumes=3)


def _description(out: Path) -> dict:
    return json.loads((out / "dataset_description.json").read_text())


def _names(doc: dict) -> list[str]:
    return [g["Name"] for g in doc["GeneratedBy"]]


def test_merged_into_the_apps_at_once_and_idempotent(ds: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    # an entry from an earlier tool in the output is kept, as the app's own is
    (out / "dataset_description.json").write_text(json.dumps({
        "Name": "old", "BIDSVersion": "1.9.0", "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "earlier-tool", "Version": "1"}],
        "SourceDatasets": [{"URL": "https://example.org/raw"}]}))
    res = run_cli("run", str(ds), str(out), "--pipeline", "demo", "--jobs", "3", "--json")
    assert res.returncode == 0, res.stderr
    doc = _description(out)
    assert _names(doc) == ["bidsbatch-demo-app", "earlier-tool", "bidsbatch"]  # once each
    ours = doc["GeneratedBy"][-1]
    assert ours["Version"] == __version__
    assert ours["Container"] == {"Type": "docker", "Tag": "bidsbatch/demo:0.1.0"}
    assert ours["CodeURL"].startswith("https://") and "demo" in ours["Description"]
    assert doc["SourceDatasets"] == [{"URL": "https://example.org/raw"},
                                     {"URL": ds.absolute().as_uri()}]
    assert doc["DatasetType"] == "derivative" and doc["Name"] == "bidsbatch-demo-app outputs"
    # every marker lists it as the scan committed it: the same bytes for every scan
    before = (out / "dataset_description.json").read_bytes()
    for marker in (out / ".bidsbatch/done").glob("*.json"):
        listed = {o["key"]: o for o in json.loads(marker.read_text())["outputs"]}
        assert listed["dataset_description.json"]["checksum"] == \
            "sha256:" + hashlib.sha256(before).hexdigest()
    again = run_cli("run", str(ds), str(out), "--pipeline", "demo", "-p", "02", "--force")
    assert again.returncode == 0, again.stderr
    assert (out / "dataset_description.json").read_bytes() == before  # a rerun changes nothing


def test_written_when_the_app_writes_none_and_report_links_outputs(ds: Path,
                                                                  tmp_path: Path) -> None:
    app = ("import os, sys; d = os.path.join(sys.argv[1], 'sub-' + sys.argv[2], 'anat'); "
           "os.makedirs(d); open(os.path.join(d, 'result.txt'), 'w').write('ok')")
    pipeline = tmp_path / "plain.toml"
    pipeline.write_text(
        'name = "plain"\nimage = "example/plain:2.0"\n'
        f'command = [{json.dumps(sys.executable)}, "-c", {json.dumps(app)}, "{{output_dir}}", '
        '"{participant}", "--flag", "a b"]\n[container]\nruntime = "none"\n')
    out = tmp_path / "out"
    res = run_cli("run", str(ds), str(out), "--pipeline", str(pipeline), "--executor", "fake",
                  "-p", "01", "03")
    assert res.returncode == 0, res.stderr
    doc = _description(out)
    assert _names(doc) == ["bidsbatch"] and doc["DatasetType"] == "derivative"
    assert doc["Name"] == "plain derivatives" and doc["BIDSVersion"]
    assert doc["GeneratedBy"][0]["Container"]["Tag"] == "example/plain:2.0"
    assert doc["SourceDatasets"] == [{"URL": ds.absolute().as_uri()}]
    # the report: each scan's folder in the output, and the command that ran
    report_path = Path(re.search(r"^report: (.+)$", res.stderr, re.M).group(1))
    report = report_path.read_text()
    section = report[report.index("Outputs and commands"):report.index("<h2>Failures")]
    for scan in ("sub-01", "sub-03"):
        row = re.search(rf'<tr id="scan-{scan}">.*?</tr>', section).group(0)
        href = re.search(r'href="([^"]+)"', row).group(1)
        assert (report_path.parent / href).resolve() == (out / scan).resolve()
        assert "1 file(s)" in row
        assert f"{scan[4:]} --flag &#x27;a b&#x27;" in row  # shlex-quoted, escaped


def test_merge_keeps_every_entry_and_is_idempotent() -> None:
    prov = Provenance(pipeline="fmriprep", image="nipreps/fmriprep:25.2.7",
                      dataset="s3://openneuro.org/ds000114")
    app = {"Name": "fMRIPrep - fMRI PREProcessing workflow", "BIDSVersion": "1.10.0",
           "DatasetType": "derivative",
           "GeneratedBy": [{"Name": "fMRIPrep", "Version": "25.2.7"}],
           "SourceDatasets": [{"URL": "s3://openneuro.org/ds000114", "Version": "1.0.0"}]}
    older = {"GeneratedBy": [{"Name": "bidsbatch", "Version": "0.0.1"},
                             {"Name": "fMRIPrep", "Version": "25.2.7"},
                             {"Name": "other", "Version": "3"}], "HowToAcknowledge": "cite"}
    once = merge_description(app, older, prov, name="fmriprep")
    assert [g["Name"] for g in once["GeneratedBy"]] == ["fMRIPrep", "other", "bidsbatch"]
    assert once["GeneratedBy"][-1]["Version"] == __version__  # ours replaced, not repeated
    assert once["HowToAcknowledge"] == "cite" and once["Name"] == app["Name"]
    assert once["SourceDatasets"] == app["SourceDatasets"]  # the input is named once
    other = merge_description({**app, "SourceDatasets": []}, None, prov, name="fmriprep")
    assert other["SourceDatasets"] == [{"URL": "s3://openneuro.org/ds000114"}]
    assert merge_description(None, once, prov, name="fmriprep") == once
    assert merge_description(app, once, prov, name="fmriprep") == once
