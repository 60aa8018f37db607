"""The entry point's fast path for ``status``, ``logs`` and ``runs``: same answers, fewer modules.

No timing (the machine is shared): what is checked is that a plain ``status``
of a finished local run, through the installed entry point, loads neither
typer nor click nor boto3 nor the S3 code nor every container runtime; that
it writes what the typer app writes for the same command line (a run, an
error); and that the fast path's table of flags and positionals is the click
commands' own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import run_cli

#: Not loaded by a plain ``status`` of a local run.
NEVER = ("typer", "click", "boto3", "botocore", "obstore", "pydantic", "importlib.metadata",
         "bidsbatch.storage.s3", "bidsbatch.containers.apptainer",
         "bidsbatch.containers.podman", "bidsbatch.containers.docker", "bidsbatch.pricing_refresh",
         "bidsbatch.markers", "bidsbatch.planning", "bidsbatch.cli.app", "bidsbatch.cli.status",
         "rich.live", "rich.progress")

_ENTRY = """
import json, sys
from bidsbatch.cli import entry
try:
    entry.run()
finally:
    print(json.dumps(sorted(sys.modules)), file=sys.__stderr__)
"""
_APP = """
import sys
from bidsbatch.cli.app import main
sys.exit(main(sys.argv[1:]))
"""


def _run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "_BIDSBATCH_COMPLETE")}
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True,
                          timeout=120, env=env)


def _loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return [n for n in names if any(m == n or m.startswith(n + ".") for m in modules)]


def _finished_run(tmp_path: Path) -> str:
    ds = tmp_path / "ds"
    for sub in ("01", "02"):
        (ds / f"sub-{sub}" / "anat").mkdir(parents=True)
        (ds / f"sub-{sub}" / "anat" / f"sub-{sub}_T1w.nii.gz").write_bytes(b"\x1f\x8b")
    (ds / "dataset_description.json").write_text('{"Name": "t", "BIDSVersion": "1.9.0"}')
    noop = tmp_path / "noop.toml"
    noop.write_text('name = "noop"\nimage = "busybox:latest"\n'
                    'command = ["true", "{participant}"]\n[inputs]\nrequire = ["anat/T1w"]\n'
                    '[resources]\nvcpus = 1\nmemory_mib = 128\n[container]\nruntime = "none"\n')
    done = run_cli("run", str(ds), str(tmp_path / "out"), "--pipeline", str(noop), "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["run_id"]


def test_status_of_a_local_run_loads_no_typer_rich_layout_s3_or_runtimes(tmp_path: Path) -> None:
    run_id = _finished_run(tmp_path)
    for args in (["status", run_id], ["status", run_id, "--json"], ["--debug", "status"],
                 ["logs", run_id, "sub-01"], ["runs"], ["runs", "--json"]):
        fast = _run(_ENTRY, *args)
        *text, modules = fast.stderr.rstrip("\n").split("\n")
        assert fast.returncode == 0, fast.stderr
        never = NEVER if "status" in args else tuple(n for n in NEVER if n != "bidsbatch.markers")
        assert _loaded(set(json.loads(modules)), never) == [], args
        app = _run(_APP, *args)  # the typer app: the same output, byte for byte
        assert (app.returncode, app.stdout, app.stderr) == (0, fast.stdout, "\n".join(text)
                                                            + "\n" * bool(text)), args
    assert "succeeded 2" in _run(_ENTRY, "status", run_id).stderr


def test_errors_and_everything_else_read_as_the_typer_app_has_them(tmp_path: Path) -> None:
    run_id = _finished_run(tmp_path)
    cases = (["status", "no-such-run"], ["logs", run_id, "sub-99"], ["status", run_id, "--jsn"],
             ["status", run_id, "extra"], ["status", "--help"], ["status", run_id, "--json=1"],
             ["runs", "x"], ["logs"], ["status", ""], ["status", "--", run_id])
    for args in cases:
        fast = _run(_ENTRY, *args)
        *text, _modules = fast.stderr.rstrip("\n").split("\n")
        app = _run(_APP, *args)
        assert (fast.returncode, fast.stdout) == (app.returncode, app.stdout), args
        assert "\n".join(text) == app.stderr.rstrip("\n"), args
    missing = _run(_ENTRY, "status", "no-such-run")
    assert missing.returncode != 0 and "error:" in missing.stderr and "hint:" in missing.stderr
    bad = _run(_ENTRY, "status", run_id, "--jsn")
    assert bad.returncode == 2 and "--jsn" in bad.stderr


def test_the_fast_table_is_the_click_commands_own() -> None:
    from bidsbatch.cli.app import click_command
    from bidsbatch.cli.fastpath import FAST, parse

    root = click_command()
    for fast in FAST:
        command = root.commands[fast.name]
        flags = {opt: p.name for p in command.params if getattr(p, "is_flag", False)
                 for opt in p.opts}
        assert {o: flags.get(o) for o in fast.flags} == dict(fast.flags), fast.name
        arguments = [p for p in command.params if p.param_type_name == "argument"]
        assert fast.most == len(arguments), fast.name
        assert fast.least == sum(1 for p in arguments if p.required), fast.name
    assert parse(["status", "--watch"]) is None  # a long watch: the typer app's
    assert parse(["status", "-h"]) is None and parse(["status", "r1", "r2"]) is None
    call = parse(["--debug", "status", "r1", "--json"])
    assert call is not None and call.debug and call.positionals == ("r1",)
    assert call.flags == {"as_json"}
