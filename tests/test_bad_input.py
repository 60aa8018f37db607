"""Bad and hostile input, as a user types it (issue 14): each case exits with the right
code, prints one error line (click's usage errors: their usage line and one error
line) and no traceback, and changes nothing anywhere: the whole test folder (the
dataset, the output, the runs home) has the same checksums before and after."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
from conftest import CliResult, run_cli
from treesum import changes, tree_sums

from bidsbatch.synth import make_dataset


@pytest.fixture(scope="module")
def base_ds(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    return make_dataset(tmp_path_factory.mktemp("ds") / "ds", subjects=2, sessions=None,
                        shape=(8, 8, 6), n_volumes=4, modalities=("anat",))


@pytest.fixture
def ds(base_ds: Path, tmp_path: Path) -> Path:
    """A copy of the dataset inside the test's own folder (so its sums cover it)."""
    import shutil

    return Path(shutil.copytree(base_ds, tmp_path / "ds", symlinks=True))


def one_error(res: CliResult, code: int, *needles: str) -> str:
    """Exit ``code``, one error line holding every needle, no traceback; the line."""
    assert res.returncode == code, res.output
    assert "Traceback" not in res.output, res.output
    lines = res.stderr.splitlines()
    errors = [ln for ln in lines if ln.startswith(("error:", "Error:"))]
    assert len(errors) == 1, res.stderr
    if errors[0].startswith("error:"):  # ours: the error line, at most a hint (and warnings)
        assert all(ln.startswith(("error:", "  hint:", "warning:")) for ln in lines), res.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def refused_unchanged(root: Path, code: int, *args: str, needles: tuple[str, ...] = (),
                      env: dict[str, str] | None = None) -> str:
    """Run ``bidsbatch ARGS``; check it is refused and that nothing under ``root`` changed."""
    before = tree_sums(root)
    res = run_cli(*args, env=env)
    line = one_error(res, code, *needles)
    assert changes(before, tree_sums(root)) == [], res.stderr
    return line


# --------------------------------------------------------------------------- 1. overlap


def test_output_reached_through_a_symlink_is_the_dataset(ds: Path, tmp_path: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(ds)
    refused_unchanged(tmp_path, 2, "run", "--pipeline", "demo", str(ds), str(link), "-p", "01",
                      needles=("is the dataset", "through symlinks"))
    # the reverse: the dataset through the link, the output the dataset itself
    refused_unchanged(tmp_path, 2, "run", "--pipeline", "demo", str(link), str(ds), "-p", "01",
                      needles=("is the dataset",))
    refused_unchanged(tmp_path, 2, "plan", str(ds), str(ds), needles=("is the dataset",))


def test_output_inside_or_holding_the_dataset(ds: Path, tmp_path: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(ds)
    refused_unchanged(tmp_path, 2, "plan", str(ds), str(link / "sub-01" / "out"),
                      needles=("is inside the dataset",))
    refused_unchanged(tmp_path, 2, "plan", str(ds), str(tmp_path),
                      needles=("holds the dataset",))
    up = tmp_path / "up"
    up.symlink_to(tmp_path)
    refused_unchanged(tmp_path, 2, "run", "--pipeline", "demo", str(ds), str(up),
                                   needles=("holds the dataset",))
    # the BIDS place for derivatives stays allowed
    res = run_cli("plan", str(ds), str(ds / "derivatives" / "demo"), "--run-dir",
                  str(tmp_path / "r"))
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize(("dataset", "output", "needle"), [
    ("s3://bkt/ds", "s3://bkt/ds/derivs", "is inside the dataset"),
    ("s3://bkt/ds", "s3://bkt//ds/", "is the dataset"),
    ("s3://bkt/a/ds", "s3://bkt/a", "holds the dataset"),
    ("s3://bkt/ds", "s3://bkt", "holds the dataset"),
    ("s3://bkt/ds", "s3://bkt/ds/../x", "'..' are not allowed"),
])
def test_s3_overlap_by_bucket_and_normalised_prefix(dataset: str, output: str, needle: str,
                                                    tmp_path: Path) -> None:
    refused_unchanged(tmp_path, 2, "plan", dataset, output, needles=(needle,))


def test_s3_neighbours_do_not_overlap() -> None:
    from bidsbatch.safety import check_output_apart

    check_output_apart("s3://bkt/ds", "s3://bkt/ds2")
    check_output_apart("s3://bkt/ds", "s3://other/ds")
    check_output_apart("s3://bkt/ds", "s3://bkt/ds/derivatives/m2g")


# --------------------------------------------------------------------------- 2. run dirs


def test_run_dir_with_user_files_is_refused(ds: Path, tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    (proj / "specs").mkdir(parents=True)
    (proj / "specs" / "my-notes.json").write_text("{}")
    refused_unchanged(tmp_path, 2, "plan", str(ds), str(tmp_path / "out"), "--run-dir",
                      str(proj), needles=("is not a bidsbatch run directory",))
    assert (proj / "specs" / "my-notes.json").read_text() == "{}"


def test_run_dir_is_never_inside_the_dataset(ds: Path, tmp_path: Path) -> None:
    for run_dir in (ds, ds / "sub-01" / "run", ds / "code" / "run"):
        refused_unchanged(tmp_path, 2, "plan", str(ds), str(tmp_path / "out"), "--run-dir",
                          str(run_dir), needles=("is inside the dataset",))
    link = tmp_path / "link"
    link.symlink_to(ds)
    refused_unchanged(tmp_path, 2, "plan", str(ds), str(tmp_path / "out"), "--run-dir",
                      str(link / "run"), needles=("is inside the dataset",))


def test_replanning_deletes_only_what_bidsbatch_wrote(ds: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    out = str(tmp_path / "out")
    assert run_cli("plan", str(ds), out, "--run-dir", str(run_dir)).returncode == 0
    assert (run_dir / ".bidsbatch-run").is_file()
    (run_dir / "specs" / "my-notes.json").write_text("{}")
    (run_dir / "notes.txt").write_text("mine")
    res = run_cli("plan", str(ds), out, "-p", "02", "--run-dir", str(run_dir))
    assert res.returncode == 0, res.stderr
    names = sorted(p.name for p in (run_dir / "specs").iterdir())
    assert names == ["my-notes.json", "sub-02.json"]  # sub-01's spec was ours: gone
    assert (run_dir / "notes.txt").read_text() == "mine"


def test_an_empty_folder_becomes_a_run_dir(ds: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "empty"
    run_dir.mkdir()
    res = run_cli("plan", str(ds), str(tmp_path / "out"), "--run-dir", str(run_dir))
    assert res.returncode == 0, res.stderr
    assert (run_dir / ".bidsbatch-run").is_file() and (run_dir / "run.json").is_file()


# --------------------------------------------------------------------------- 5. usage


@pytest.mark.parametrize("args", [
    ["plan"],                                  # MissingParameter
    ["plan", "a", "b", "--nope"],              # NoSuchOption
    ["run", "a", "b", "--jobs", "many"],       # BadParameter
    ["plna", "a", "b"],                        # a mistyped command
    ["status", "--watch", "--json", "extra", "more"],  # an extra argument
])
def test_usage_errors_exit_2_with_clicks_message(args: list[str], tmp_path: Path) -> None:
    before = tree_sums(tmp_path)
    res = run_cli(*args)
    one_error(res, 2)
    assert res.stderr.startswith("Usage: bidsbatch"), res.stderr
    assert "error: unexpected" not in res.stderr
    assert changes(before, tree_sums(tmp_path)) == []


def test_typer_pin_allows_the_installed_version() -> None:
    """The installed typer is one the pins allow (and the one these tests just ran)."""
    from importlib.metadata import requires, version

    from packaging.specifiers import SpecifierSet

    spec = next(r for r in requires("bidsbatch") or [] if r.startswith("typer"))
    assert version("typer") in SpecifierSet(spec[len("typer"):].split(";")[0])


# --------------------------------------------------------------------------- 7. run records


@pytest.fixture
def done_run(ds: Path, tmp_path: Path) -> Path:
    """A finished local run of one scan; its run directory."""
    run_dir = tmp_path / "run"
    res = run_cli("run", "--pipeline", "demo", str(ds), str(tmp_path / "out"), "-p", "01",
                  "--run-dir", str(run_dir))
    assert res.returncode == 0, res.stderr
    return run_dir


def test_run_json_that_is_not_an_object(done_run: Path, tmp_path: Path) -> None:
    (done_run / "run.json").write_text("[]")
    for cmd in ("status", "retry", "report", "cancel"):
        refused_unchanged(tmp_path, 2, cmd, str(done_run), needles=(str(done_run / "run.json"),
                                                      "not a valid run record"))


@pytest.mark.parametrize("damage", ["random bytes", "truncated", "a directory"])
def test_damaged_ledger_names_the_file_and_rebuild_mends_it(damage: str, done_run: Path,
                                                            tmp_path: Path) -> None:
    ledger = done_run / "ledger.sqlite"
    for extra in ("ledger.sqlite-wal", "ledger.sqlite-shm"):
        (done_run / extra).unlink(missing_ok=True)
    if damage == "random bytes":
        ledger.write_bytes(os.urandom(8192))
    elif damage == "truncated":
        data = ledger.read_bytes()
        ledger.write_bytes(data[: len(data) // 3 or 100])
    else:
        ledger.unlink()
        ledger.mkdir()
    for cmd in ("status", "cancel", "retry"):
        line = refused_unchanged(tmp_path, 1, cmd, str(done_run),
                                 needles=(str(ledger), "damaged"))
        assert "--rebuild" in run_cli(cmd, str(done_run)).stderr, line
    res = run_cli("status", str(done_run), "--rebuild", "--json")
    assert res.returncode == 0, res.stderr
    status = json.loads(res.stdout)
    assert {s["scan_id"]: s["state"] for s in status["scans"]} == {"sub-01": "succeeded"}
    assert "rebuilt" in res.stderr and "damaged" in res.stderr  # says where the old one went
    with sqlite3.connect(ledger) as conn:
        assert conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    assert run_cli("status", str(done_run)).returncode == 0


# --------------------------------------------------------------------------- 8. bad paths


def test_labels_tsv_with_a_short_row(ds: Path, tmp_path: Path) -> None:
    labels = tmp_path / "labels.tsv"
    labels.write_text("age\tparticipant_id\n30\tsub-01\n41\n")
    refused_unchanged(tmp_path, 2, "plan", str(ds), str(tmp_path / "out"), "--labels-file",
                      str(labels), needles=(str(labels), "line 3"))


def test_run_dir_that_is_a_file(ds: Path, tmp_path: Path) -> None:
    f = tmp_path / "afile"
    f.write_text("x")
    refused_unchanged(tmp_path, 2, "plan", str(ds), str(tmp_path / "out"), "--run-dir",
                      str(f), needles=("is a file",))


def test_bidsbatch_home_that_is_a_file(ds: Path, tmp_path: Path) -> None:
    home = tmp_path / "home-file"
    home.write_text("x")
    for args in (["plan", str(ds), str(tmp_path / "out")], ["status"]):
        refused_unchanged(tmp_path, 2, *args, env={"BIDSBATCH_HOME": str(home)},
                          needles=("BIDSBATCH_HOME", "is a file"))


def test_report_to_an_impossible_path(done_run: Path, tmp_path: Path) -> None:
    refused_unchanged(tmp_path, 1, "report", str(done_run), "-o", "/proc/nope/x.html",
                      needles=("/proc/nope/x.html",))


def test_worker_with_a_missing_spec_exits_2(tmp_path: Path) -> None:
    refused_unchanged(tmp_path, 2, "worker", "--spec", "/nonexistent/spec.json",
                      needles=("/nonexistent/spec.json",))


# --------------------------------------------------------------------------- 6. not UTF-8


def test_labels_file_that_is_not_utf8(ds: Path, tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_bytes(b"sub-01\nsub-0\xff\n")
    refused_unchanged(tmp_path, 2, "plan", str(ds), str(tmp_path / "out"), "--labels-file",
                      str(labels), needles=(str(labels), "not UTF-8", "0xff", "offset 12"))


def test_pipeline_toml_that_is_not_utf8(ds: Path, tmp_path: Path) -> None:
    pipe = tmp_path / "p.toml"
    pipe.write_bytes(b'name = "caf\xe9"\n')
    refused_unchanged(tmp_path, 2, "plan", str(ds), str(tmp_path / "out"), "--pipeline",
                      str(pipe), needles=(str(pipe), "not UTF-8", "offset 11"))


def test_bidsignore_that_is_not_utf8(ds: Path, tmp_path: Path) -> None:
    (ds / ".bidsignore").write_bytes(b"extra/\n\xff\n")
    refused_unchanged(tmp_path, 2, "plan", str(ds), str(tmp_path / "out"),
                      needles=(str(ds / ".bidsignore"), "not UTF-8", "offset 7"))


def test_a_file_name_that_is_not_utf8_is_refused_not_fatal(ds: Path, tmp_path: Path) -> None:
    bad = os.path.join(os.fsencode(ds / "sub-01" / "anat"), b"sub-01_\xff_T1w.json")
    with open(bad, "wb") as fh:
        fh.write(b"{}")
    before = tree_sums(ds)
    res = run_cli("plan", str(ds), str(tmp_path / "out"), "--json")
    assert res.returncode == 0, res.stderr
    assert "refused unsafe key" in res.stderr and "not UTF-8" in res.stderr
    keys = {f["key"] for s in json.loads(res.stdout)["specs"] for f in s["inputs"]}
    assert "sub-01/anat/sub-01_T1w.nii.gz" in keys and not any("\udcff" in k for k in keys)
    assert changes(before, tree_sums(ds)) == []


# --------------------------------------------------------------------------- 9. plan time


def test_invalid_exclude_glob_fails_the_plan(ds: Path, tmp_path: Path) -> None:
    pipe = tmp_path / "p.toml"
    pipe.write_text('name = "x"\nimage = "x:1"\ncommand = ["app", "{participant}"]\n'
                    '[output]\nexclude = ["tmp/**", "[z-a]"]\n')
    refused_unchanged(tmp_path, 2, "plan", str(ds), str(tmp_path / "out"), "--pipeline",
                      str(pipe), needles=("'[z-a]' is not a valid glob", str(pipe)))


def test_requester_pays_and_no_sign_request_together(tmp_path: Path) -> None:
    refused_unchanged(tmp_path, 2, "plan", "s3://openneuro.org/ds000114", str(tmp_path / "o"),
                      "--requester-pays", "--no-sign-request",
                      needles=("--requester-pays and --no-sign-request",))


@pytest.mark.parametrize(("args", "needle"), [
    (["--executor", "local", "--platform", "fargate"], "--platform is an option of the"),
    (["--image", "me/app:1", "--job-queue", "q"], "is an option of the aws-batch executor"),
    (["--executor", "aws-batch", "--jobs", "2"], "--jobs is an option of the local"),
    (["--jobs", "0"], "--jobs must be at least 1"),
    (["--executor", "nope"], "unknown executor 'nope'"),
])
def test_option_combinations_checked_before_anything_runs(args: list[str], needle: str,
                                                          ds: Path, tmp_path: Path) -> None:
    refused_unchanged(tmp_path, 2, "run", "--pipeline", "demo", str(ds), str(tmp_path / "out"),
                                   *args,
                      needles=(needle,))


@pytest.mark.parametrize(("toml", "needle"), [
    ('name = "x"\nimage = "x:1"\ncommand = ["app"]\n', "never uses {participant}"),
    ('name = "x"\nimage = "x:1"\ncommand = ["app", "{participant}"]\n[resources]\nvcpus = 0\n',
     "vcpus must be a number"),
    ('name = "x"\nimage = "x:1"\ncommand = ["app", "{participant}", "{nope}"]\n',
     "unknown placeholder {nope}"),
    ('name = "x"\nimage = "x:1"\ncommand = ["app", "{participant}"]\n[retry]\nattempts = 0\n',
     "retry.attempts"),
    ('name = "x"\ncommand = ["app", "{participant}"]\n', "'image' is missing"),
    ('name = "x"\nimage = "x:1"\ncommand = ["app", "{participant}"]\nextra = 1\n',
     "unknown key(s) extra"),
    ('name = "x"\nimage = "x:1"\ncommand = ["app", "{participant}"]\n[env]\n'
     'AWS_SECRET_ACCESS_KEY = "k"\n', "AWS_SECRET_ACCESS_KEY"),
])
def test_pipeline_fields_checked_at_plan_time(toml: str, needle: str, ds: Path,
                                              tmp_path: Path) -> None:
    pipe = tmp_path / "p.toml"
    pipe.write_text(toml)
    refused_unchanged(tmp_path, 2, "plan", str(ds), str(tmp_path / "out"), "--pipeline",
                      str(pipe), needles=(needle,))


# --------------------------------------------------------------------------- 10. symlinks


def test_symlinks_out_of_the_dataset_are_refused_by_default(ds: Path, tmp_path: Path) -> None:
    secret = tmp_path / "elsewhere" / "secret.json"
    secret.parent.mkdir()
    secret.write_text('{"password": "x"}')
    (ds / "sub-01" / "anat" / "sub-01_T1w.json").symlink_to(secret)
    before = tree_sums(tmp_path, skip=(tmp_path / "bidsbatch-home",))
    res = run_cli("plan", str(ds), str(tmp_path / "out"), "--json")
    assert res.returncode == 0, res.stderr
    assert "refused unsafe key 'sub-01/anat/sub-01_T1w.json': symlink out of the dataset" \
        in res.stderr
    keys = {f["key"] for s in json.loads(res.stdout)["specs"] for f in s["inputs"]}
    assert "sub-01/anat/sub-01_T1w.json" not in keys
    assert changes(before, tree_sums(tmp_path, skip=(tmp_path / "bidsbatch-home",))) == []
    allowed = run_cli("plan", str(ds), str(tmp_path / "out"), "--json", "--follow-symlinks")
    assert allowed.returncode == 0, allowed.stderr
    keys = {f["key"] for s in json.loads(allowed.stdout)["specs"] for f in s["inputs"]}
    assert "sub-01/anat/sub-01_T1w.json" in keys


def test_git_annex_symlinks_inside_the_dataset_keep_working(ds: Path, tmp_path: Path) -> None:
    """DataLad/git-annex: every data file is a symlink into .git/annex/objects."""
    objects = ds / ".git" / "annex" / "objects"
    for path in sorted(ds.glob("sub-*/anat/*.nii.gz")):
        target = objects / "Xx" / "Yy" / path.name / path.name
        target.parent.mkdir(parents=True)
        path.rename(target)
        path.symlink_to(os.path.relpath(target, path.parent))
    out = tmp_path / "out"
    res = run_cli("run", "--pipeline", "demo", str(ds), str(out), "-p", "01", "--json")
    assert res.returncode == 0, res.stderr
    assert "refused unsafe key" not in res.stderr
    assert json.loads(res.stdout)["counts"]["succeeded"] == 1
    marker = json.loads((out / ".bidsbatch/done/sub-01.json").read_text())
    assert marker["outputs"]


# --------------------------------------------------------------------------- 11. smaller


def test_logs_cannot_read_outside_the_run_dir(done_run: Path, tmp_path: Path) -> None:
    (tmp_path / "x.log").write_text("secret")
    (tmp_path / "x.json").write_text("{}")
    for scan in ("../../x", "../x", "/etc/passwd", "sub-01/../../x"):
        line = refused_unchanged(tmp_path, 2, "logs", str(done_run), scan)
        assert "secret" not in line


def test_tampered_spec_with_dotdot_scan_id_and_s3_output(tmp_path: Path, s3, aws) -> None:  # type: ignore[no-untyped-def]
    from conftest import unique_bucket

    bucket = unique_bucket()
    s3.create_bucket(Bucket=bucket)
    spec = {
        "spec_version": 1, "run_id": "r", "scan_id": "../../escape", "participant": "01",
        "session": None, "dataset": f"s3://{bucket}/ds", "output": f"s3://{bucket}/out",
        "pipeline": "demo", "image": "x", "argv": ["true"], "inputs": [],
        "resources": {"vcpus": 1, "memory_mib": 512, "gpus": 0, "disk_gib": 1,
                      "timeout_minutes": 1},
        "attempts": 1, "config_hash": "h", "env": {}, "output_excludes": [],
    }
    from bidsbatch.specs import SPEC_VERSION

    spec["spec_version"] = SPEC_VERSION
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    refused_unchanged(tmp_path, 2, "worker", "--spec", str(path),
                      needles=("scan id '../../escape' is not a plain name",))
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)  # nothing written there


@pytest.mark.parametrize("args", [
    ["--participant-label", ""], ["-p", ","], ["-p", "sub-"], ["--session-label", ""],
])
def test_empty_labels_are_refused(args: list[str], ds: Path, tmp_path: Path) -> None:
    refused_unchanged(tmp_path, 2, "plan", str(ds), str(tmp_path / "out"), *args,
                      needles=("names no label",))


def test_empty_labels_file_is_refused(ds: Path, tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("# nobody yet\n\n")
    refused_unchanged(tmp_path, 2, "plan", str(ds), str(tmp_path / "out"), "--labels-file",
                      str(labels), needles=(str(labels), "names no participant"))
