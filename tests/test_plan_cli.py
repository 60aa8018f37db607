"""``bidsbatch plan`` end to end, as a user types it: local and S3, good and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import FAKE_KEY_ID, FAKE_SECRET, FAKE_TOKEN, run_cli, unique_bucket, upload_tree

from bidsbatch.synth import make_dataset


@pytest.fixture(scope="module")
def synth_ds(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    return make_dataset(tmp_path_factory.mktemp("synth") / "ds", subjects=3,
                        sessions=("1", "2"), shape=(8, 8, 6), n_volumes=5)


def _plan_json(*args: str, env: dict[str, str] | None = None) -> dict:
    res = run_cli("plan", *args, "--json", env=env)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_plan_writes_one_spec_per_scan(synth_ds: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    res = run_cli("plan", str(synth_ds), str(tmp_path / "out"), "--run-dir", str(run_dir))
    assert res.returncode == 0, res.stderr
    specs = sorted(p.name for p in (run_dir / "specs").glob("*.json"))
    assert specs == [f"sub-0{i}_ses-{s}.json" for i in (1, 2, 3) for s in (1, 2)]
    assert "6 scan(s) of 3 participant(s)" in res.stderr
    spec = json.loads((run_dir / "specs" / "sub-02_ses-1.json").read_text())
    keys = {f["key"] for f in spec["inputs"]}
    assert "task-rest_bold.json" in keys and "dwi.bval" in keys  # inherited root sidecars
    assert "participants.tsv" in keys and "dataset_description.json" in keys
    assert not any(k.startswith(("sub-01/", "sub-03/", "sub-02/ses-2/")) for k in keys)
    assert spec["argv"][-4:] == ["--participant_label", "02", "--session_label", "1"]
    assert all(f["size"] > 0 for f in spec["inputs"])
    run = json.loads((run_dir / "run.json").read_text())
    assert run["run_id"] == spec["run_id"] and run["scans"][0] == "sub-01_ses-1"
    assert run["pipeline"]["name"] == "demo"


def test_plan_is_deterministic(synth_ds: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    out = str(tmp_path / "out")
    assert run_cli("plan", str(synth_ds), out, "--run-dir", str(a)).returncode == 0
    assert run_cli("plan", str(synth_ds), out, "--run-dir", str(b)).returncode == 0
    files_a = sorted(p.relative_to(a) for p in a.rglob("*.json"))
    assert files_a == sorted(p.relative_to(b) for p in b.rglob("*.json"))
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    # a different selection is a different run
    c = _plan_json(str(synth_ds), out, "-p", "sub-01")
    assert c["run_id"] != json.loads((a / "run.json").read_text())["run_id"]


def test_sessionless_scan_drops_the_optional_session_part(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path / "ds", subjects=2, sessions=None, shape=(8, 8, 6), n_volumes=5)
    plan = _plan_json(str(ds), str(tmp_path / "out"))
    argv = plan["specs"][0]["argv"]
    assert "--session_label" not in argv
    assert argv[-2:] == ["--participant_label", "01"]


def test_selection_options(synth_ds: Path, tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    ids = lambda p: [s["scan_id"] for s in p["specs"]]  # noqa: E731
    assert ids(_plan_json(str(synth_ds), out, "-p", "sub-01", "-p", "03")) == [
        "sub-01_ses-1", "sub-01_ses-2", "sub-03_ses-1", "sub-03_ses-2"]
    assert ids(_plan_json(str(synth_ds), out, "--session-label", "ses-2",
                          "--exclude-participant", "02")) == ["sub-01_ses-2", "sub-03_ses-2"]
    labels = tmp_path / "labels.txt"
    labels.write_text("# two scans\nsub-02\nsub-03_ses-1\n")
    assert ids(_plan_json(str(synth_ds), out, "--labels-file", str(labels))) == [
        "sub-02_ses-1", "sub-02_ses-2", "sub-03_ses-1"]


def test_plan_from_s3_matches_local(synth_ds: Path, tmp_path: Path, s3, aws) -> None:  # type: ignore[no-untyped-def]
    bucket = unique_bucket()
    upload_tree(s3, synth_ds, bucket, "datasets/ds")
    remote = _plan_json(f"s3://{bucket}/datasets/ds", f"s3://{bucket}/out")
    local = _plan_json(str(synth_ds), str(tmp_path / "out"))
    for r, loc in zip(remote["specs"], local["specs"], strict=True):
        assert r["scan_id"] == loc["scan_id"]
        assert [(f["key"], f["size"]) for f in r["inputs"]] == [
            (f["key"], f["size"]) for f in loc["inputs"]]
        assert all(f["etag"] for f in r["inputs"])  # S3 gives checksums
    assert remote["run"]["dataset"] == f"s3://{bucket}/datasets/ds"


def test_no_credentials_in_specs_run_or_output(synth_ds: Path, tmp_path: Path, s3, aws) -> None:  # type: ignore[no-untyped-def]
    bucket = unique_bucket()
    upload_tree(s3, synth_ds, bucket, "ds")
    run_dir = tmp_path / "run"
    res = run_cli("plan", f"s3://{bucket}/ds", f"s3://{bucket}/out", "--run-dir", str(run_dir),
                  "--json", env={"AWS_SESSION_TOKEN": FAKE_TOKEN})
    assert res.returncode == 0, res.stderr
    secrets = (FAKE_KEY_ID, FAKE_SECRET, FAKE_TOKEN)
    texts = [res.stdout, res.stderr] + [p.read_text() for p in run_dir.rglob("*.json")]
    assert len(texts) == 2 + 1 + 6
    for text in texts:
        for secret in secrets:
            assert secret not in text


def test_pipeline_env_with_keys_is_refused(synth_ds: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\nimage = "x:1"\ncommand = ["app", "{participant}"]\n'
                   '[env]\nAWS_SECRET_ACCESS_KEY = "abc"\n')
    res = run_cli("plan", str(synth_ds), str(tmp_path / "out"), "--pipeline", str(bad))
    assert res.returncode == 2
    assert "refusing to pass AWS_SECRET_ACCESS_KEY" in res.stderr


BAD_PIPELINES = {
    "unknown placeholder": ('name = "x"\nimage = "i:1"\ncommand = ["app", "{participant}", '
                            '"{subject}"]\n', "unknown placeholder {subject}"),
    "missing image": ('name = "x"\ncommand = ["app", "{participant}"]\n', "'image' is missing"),
    "bad resources": ('name = "x"\nimage = "i:1"\ncommand = ["app", "{participant}"]\n'
                      '[resources]\nmemory_mib = -5\n', "resources.memory_mib must be"),
    "not toml": ('name = "x\n', "not valid TOML"),
    "no participant": ('name = "x"\nimage = "i:1"\ncommand = ["app"]\n',
                       "never uses {participant}"),
}


@pytest.mark.parametrize("case", sorted(BAD_PIPELINES))
def test_bad_pipeline_file_is_one_clear_line(case: str, synth_ds: Path, tmp_path: Path) -> None:
    text, message = BAD_PIPELINES[case]
    path = tmp_path / "p.toml"
    path.write_text(text)
    res = run_cli("plan", str(synth_ds), str(tmp_path / "out"), "--pipeline", str(path))
    assert res.returncode == 2
    assert message in res.stderr and str(path) in res.stderr
    assert "Traceback" not in res.output
    assert not (tmp_path / "out").exists()


def _bad(tmp_path: Path, synth_ds: Path) -> dict[str, tuple[list[str], int, str]]:
    no_desc = tmp_path / "no_desc"
    (no_desc / "sub-01/anat").mkdir(parents=True)
    (no_desc / "sub-01/anat/sub-01_T1w.nii.gz").write_text("x")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "dataset_description.json").write_text("{oops")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "dataset_description.json").write_text('{"Name": "e", "BIDSVersion": "1.10.0"}')
    out = str(tmp_path / "out")
    return {
        "missing folder": ([str(tmp_path / "nope"), out], 2, "does not exist"),
        "no description": ([str(no_desc), out], 2, "dataset_description.json is missing"),
        "malformed description": ([str(broken), out], 2, "not valid JSON"),
        "empty dataset": ([str(empty), out], 2, "no scans"),
        "unknown participant": ([str(synth_ds), out, "-p", "sub-99"], 2,
                                "unknown participant label sub-99"),
        "unknown session": ([str(synth_ds), out, "-s", "7"], 2, "unknown session label ses-7"),
        "unknown pipeline": ([str(synth_ds), out, "--pipeline", "nope"], 2,
                             "unknown pipeline 'nope'"),
        "bad scheme": (["gs://bucket/ds", out], 2, "unsupported location scheme 'gs'"),
        "output inside dataset": ([str(synth_ds), str(synth_ds / "out")], 2,
                                  "is inside the dataset"),
        "bad labels file": ([str(synth_ds), out, "--labels-file", str(tmp_path / "x.txt")], 2,
                            "cannot read labels file"),
    }


CASES = ["missing folder", "no description", "malformed description", "empty dataset",
         "unknown participant", "unknown session", "unknown pipeline", "bad scheme",
         "output inside dataset", "bad labels file"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_clear_line(case: str, synth_ds: Path, tmp_path: Path) -> None:
    args, code, message = _bad(tmp_path, synth_ds)[case]
    res = run_cli("plan", *args)
    assert res.returncode == code, res.output
    assert message in res.stderr
    assert res.stderr.startswith("error:")
    assert "Traceback" not in res.output
    assert not (tmp_path / "out").exists()


def test_unknown_label_lists_available(synth_ds: Path, tmp_path: Path) -> None:
    res = run_cli("plan", str(synth_ds), str(tmp_path / "o"), "-p", "9")
    assert "available: sub-01, sub-02, sub-03" in res.stderr


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    res = run_cli("--debug", "plan", str(tmp_path / "nope"), str(tmp_path / "o"))
    assert res.returncode != 0 and "Traceback" in res.stderr


def test_missing_bucket(aws, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    res = run_cli("plan", "s3://no-such-bucket-bb/ds", str(tmp_path / "o"))
    assert res.returncode == 1
    assert "bucket 'no-such-bucket-bb' does not exist" in res.stderr
    assert "Traceback" not in res.output


def test_absent_credentials(aws, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    res = run_cli("plan", "s3://some-bucket-bb/ds", str(tmp_path / "o"),
                  env={"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""})
    assert res.returncode == 1
    assert "no AWS credentials found" in res.stderr and "--no-sign-request" in res.stderr


def test_no_sign_request_reads_a_public_bucket(synth_ds: Path, s3, aws, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bucket = unique_bucket()
    upload_tree(s3, synth_ds, bucket, "ds")
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({  # public, like OpenNeuro's
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
             "Resource": f"arn:aws:s3:::{bucket}/*"},
            {"Effect": "Allow", "Principal": "*", "Action": "s3:ListBucket",
             "Resource": f"arn:aws:s3:::{bucket}"},
        ]}))
    res = run_cli("plan", f"s3://{bucket}/ds", str(tmp_path / "o"), "--no-sign-request",
                  env={"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""})
    assert res.returncode == 0, res.stderr
    auth = [r["auth"] for r in aws.requests() if "list-type" in r["query"]]
    assert auth and not any(auth)  # unsigned requests


def test_requester_pays_header_is_sent(synth_ds: Path, s3, aws, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bucket = unique_bucket()
    upload_tree(s3, synth_ds, bucket, "ds")
    s3.put_bucket_request_payment(Bucket=bucket,
                                  RequestPaymentConfiguration={"Payer": "Requester"})
    res = run_cli("plan", f"s3://{bucket}/ds", str(tmp_path / "o"), "--requester-pays",
                  "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["specs"][0]["requester_pays"] is True


def test_synth_command_writes_a_dataset(tmp_path: Path) -> None:
    res = run_cli("synth", str(tmp_path / "ds"), "--subjects", "2", "--sessions", "")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "ds/sub-02/anat/sub-02_T1w.nii.gz").exists()
    again = run_cli("synth", str(tmp_path / "ds"))
    assert again.returncode == 2 and "not empty" in again.stderr
