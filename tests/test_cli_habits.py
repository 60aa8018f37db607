"""The command line a BIDS user expects (issue 12, items 7, 9, 10), through the CLI.

Space-separated labels and the underscore spellings, a required ``--pipeline``
on ``run``, ``-w/--work-dir``, ``--app-args``/``--vcpus``/``--memory``,
``pipelines NAME --toml``, ``runs``, the latest-run pointer, help pages and
shell completion. Plans and the fake executor keep it quick.
"""

from __future__ import annotations

import io
import json
import os
import re
from contextlib import redirect_stdout
from pathlib import Path

import pytest
from conftest import BIN, run_cli

from bidsbatch.pipelines import load_pipeline, preset_names
from bidsbatch.synth import make_dataset


@pytest.fixture(scope="module")
def ds(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    return make_dataset(tmp_path_factory.mktemp("habits") / "ds", subjects=3,
                        sessions=("1", "2"), shape=(8, 8, 6), n_volumes=4)


def _plan(*args: str) -> dict:
    res = run_cli("plan", *args, "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def _scans(plan: dict) -> list[str]:
    return sorted(s["scan_id"] for s in plan["specs"])


# --------------------------------------------------------------------------- item 7


def test_labels_space_separated_and_underscore_spellings(ds: Path, tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    plan = _plan(str(ds), out, "--participant-label", "01", "sub-03", "--session-label", "2")
    assert _scans(plan) == ["sub-01_ses-2", "sub-03_ses-2"]
    # argparse's spelling of BIDS Apps, values up to the next option (here a flag); the
    # repeated and comma forms still work alongside
    plan = _plan(str(ds), out, "--participant_label", "02", "03", "-p", "01,02",
                 "--session_label", "1", "2", "--exclude_participant", "03", "--force")
    assert _scans(plan) == ["sub-01_ses-1", "sub-01_ses-2", "sub-02_ses-1", "sub-02_ses-2"]
    # the short forms; another option's value is never taken for a label, even "-p 01"
    plan = _plan(str(ds), out, "--app-args", "-p 01", "-p", "02", "03", "-s", "1")
    assert _scans(plan) == ["sub-02_ses-1", "sub-03_ses-1"]
    assert plan["specs"][0]["argv"][-2:] == ["-p", "01"]


def test_run_requires_a_pipeline_and_work_dir_holds_scratch(ds: Path, tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    missing = run_cli("run", str(ds), out, "-p", "01")
    assert missing.returncode == 2 and "Missing option '--pipeline'" in missing.stderr
    assert not Path(out).exists()
    # -w/--work-dir: the local workers' scratch folders go there (kept for a failed scan)
    work = tmp_path / "work"
    res = run_cli("run", str(ds), out, "--pipeline", "demo", "-p", "01", "02", "-s", "1",
                  "-w", str(work), "--keep-scratch", "--json",
                  env={"BIDSBATCH_DEMO_FAIL": "02"})
    assert res.returncode == 1, res.stderr
    states = {s["scan_id"]: s["state"] for s in json.loads(res.stdout)["scans"]}
    assert states == {"sub-01_ses-1": "succeeded", "sub-02_ses-1": "failed"}
    kept = sorted(p.name for p in work.iterdir())
    assert len(kept) == 1 and kept[0].startswith("bidsbatch-sub-02_ses-1-")
    assert (work / kept[0] / "bids" / "sub-02").is_dir()
    assert f"sub-02_ses-1: scratch folder kept: {work / kept[0]}" in res.stderr
    # where -w cannot reach, it is refused with what to do there
    slurm = run_cli("run", str(ds), out, "--pipeline", "demo", "--executor", "slurm",
                    "--work-dir", str(work))
    assert slurm.returncode == 2
    assert "--work-dir is an option of the local executor, not of slurm" in slurm.stderr
    assert "$BIDSBATCH_SCRATCH" in slurm.stderr


# --------------------------------------------------------------------------- item 9


def test_app_args_vcpus_memory_override_the_pipeline(ds: Path, tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    plain = _plan(str(ds), out, "-p", "01", "-s", "1")
    custom = _plan(str(ds), out, "-p", "01", "-s", "1",
                   "--app-args", "--smooth 'a b' $HOME *.nii {n_cpus}",
                   "--vcpus", "2", "--memory", "3G")
    spec, base = custom["specs"][0], plain["specs"][0]
    # split like a shell would, never run by one: no variables, no globs; placeholders filled
    assert spec["argv"] == [*base["argv"], "--smooth", "a b", "$HOME", "*.nii", "2"]
    assert spec["resources"]["vcpus"] == 2 and spec["resources"]["memory_mib"] == 3072
    assert custom["run"]["pipeline"]["command"][-5:] == ["--smooth", "a b", "$HOME", "*.nii",
                                                         "{n_cpus}"]  # recorded in run.json
    assert spec["config_hash"] != base["config_hash"]  # other arguments, other results
    resources_only = _plan(str(ds), out, "-p", "01", "-s", "1", "--vcpus", "4",
                           "--memory", "1500M")
    assert resources_only["specs"][0]["config_hash"] == base["config_hash"]
    assert resources_only["specs"][0]["resources"]["memory_mib"] == 1500
    for bad, needle in ((["--memory", "lots"], "is not an amount of memory"),
                        (["--app-args", "{nope}"], "unknown placeholder {nope}")):
        res = run_cli("plan", str(ds), out, *bad)
        assert res.returncode == 2 and needle in res.stderr, res.stderr


def test_overrides_are_checked() -> None:
    from bidsbatch.customise import PipelineOverrides, parse_memory
    from bidsbatch.errors import UsageError

    assert [parse_memory(t) for t in ("8G", "8GiB", "8gb", "7500M", "2048", "1.5G")] == \
        [8192, 8192, 8192, 7500, 2048, 1536]
    for kwargs, needle in (({"vcpus": 500}, "--vcpus must be from"),
                           ({"memory": "12"}, "it must be from 128"),
                           ({"app_args": "'unclosed"}, "No closing quotation"),
                           ({"app_args": "  "}, "names no argument"),
                           ({"app_args": "{"}, "bad braces")):
        with pytest.raises(UsageError, match=re.escape(needle)):
            PipelineOverrides.parse(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", preset_names())
def test_pipelines_toml_round_trips(name: str, tmp_path: Path) -> None:
    res = run_cli("pipelines", name, "--toml")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"# the {name} preset of bidsbatch")
    path = tmp_path / f"my-{name}.toml"
    path.write_text(res.stdout)
    assert load_pipeline(path).to_dict() == load_pipeline(name).to_dict()
    assert "#" in res.stdout.split("name =", 1)[1]  # the preset's own comments are kept


# --------------------------------------------------------------------------- item 10


def test_runs_lists_newest_first_and_plan_keeps_the_latest(ds: Path, tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    first = run_cli("run", str(ds), out, "--pipeline", "demo", "-p", "01", "-s", "1",
                    "--executor", "fake", "--json")
    assert first.returncode == 0, first.stderr
    started = json.loads(first.stdout)["run_id"]
    planned = _plan(str(ds), out, "-p", "02", "03", "--run-dir", str(tmp_path / "elsewhere"))
    # a dry run leaves "the latest run" alone: status and logs still mean the run started
    status = run_cli("status", "--json")
    assert json.loads(status.stdout)["run_id"] == started
    logs = run_cli("logs", "sub-01_ses-1")
    assert logs.returncode == 0 and "done: sub-01_ses-1" in logs.stdout
    listed = run_cli("runs", "--json")
    assert listed.returncode == 0, listed.stderr
    runs = json.loads(listed.stdout)
    assert [r["run_id"] for r in runs] == [planned["run_id"], started]  # newest first
    newest, older = runs
    assert newest["executor"] is None and newest["counts"] == {"planned": 4}
    assert newest["run_dir"] == str(tmp_path / "elsewhere") and not newest["latest"]
    assert older["executor"] == "fake" and older["counts"] == {"succeeded": 1}
    assert older["latest"] and older["pipeline"] == "demo" and older["dataset"] == str(ds)
    table = run_cli("runs")
    assert started in table.stderr and "succeeded 1" in table.stderr
    assert "(planned)" in table.stderr


def _commands(command, path=()):  # type: ignore[no-untyped-def]
    yield path, command
    for name, sub in (getattr(command, "commands", None) or {}).items():
        yield from _commands(sub, (*path, name))


def test_help_pages_name_values_not_types_and_short_options_agree() -> None:
    from bidsbatch.cli.app import click_command, main

    root = click_command()
    shorts: dict[str, list[tuple[str, set[str]]]] = {}
    type_name = re.compile(r"<(bool|str|int|float|path|list\[[^\]]*\]|[a-z_|\[\]]+)>")
    for path, command in _commands(root):
        buffer = io.StringIO()
        with redirect_stdout(buffer):
            code = main([*path, "--help"])
        text = buffer.getvalue()
        where = " ".join(path) or "bidsbatch"
        assert code == 0 and "Usage:" in text, where
        assert not type_name.search(text), f"{where}: {type_name.search(text).group(0)}"
        assert "Example:" in text, f"{where} --help has no example"
        for param in command.params:
            opts = getattr(param, "opts", []) + getattr(param, "secondary_opts", [])
            for short in (o for o in opts if len(o) == 2):
                shorts.setdefault(short, []).append(
                    (where, {o for o in opts if o.startswith("--")}))
    for short, uses in shorts.items():
        common = set.intersection(*(longs for _w, longs in uses))
        assert common, f"{short} means different things: {uses}"
    assert {"-p", "-s", "-j", "-w", "-e", "-o"} <= set(shorts)
    root_options = {o for p in root.params for o in getattr(p, "opts", [])}
    assert {"--install-completion", "--show-completion"} <= root_options


def test_shell_completion(tmp_path: Path) -> None:
    script = run_cli("--show-completion", "bash", env={"SHELL": "/bin/bash"})
    assert script.returncode == 0 and "_BIDSBATCH_COMPLETE=complete_bash" in script.stdout
    # the script's own protocol: what bash asks when the user types `bidsbatch ru<TAB>`
    import subprocess

    done = subprocess.run([str(BIN / "bidsbatch")], capture_output=True, text=True, env={
        **os.environ, "_BIDSBATCH_COMPLETE": "complete_bash", "COMP_WORDS": "bidsbatch ru",
        "COMP_CWORD": "1"}, timeout=60)
    assert set(done.stdout.split()) == {"run", "runs"}
