"""Start-up discipline: a command imports what it needs, and ``--help`` lists all without them.

No timing (the machine is shared): what is checked is which modules a real
``bidsbatch status`` of a finished local run, and ``bidsbatch --help``, leave
in ``sys.modules`` (typer's pydantic adapters, boto3, numpy, the planner, the
other commands' modules, the cost commands); that the top-level help made
from the command table in ``cli/app.py`` is the help made from the commands
themselves; and that the table lists exactly the commands the modules register.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import run_cli

#: Loaded by none of status, logs, runs and --help.
NEVER = ("boto3", "botocore", "numpy", "nibabel", "bidsschematools", "pydantic",
         "pathspec", "importlib.metadata", "bidsbatch.planning", "bidsbatch.report",
         "bidsbatch.cli.options", "bidsbatch.cli.plan", "bidsbatch.cli.run",
         "bidsbatch.cli.cost", "bidsbatch.cli.cost_usage", "bidsbatch.cli.aws",
         "bidsbatch.executors.awsbatch", "bidsbatch.executors.slurm")

_MODULES_AFTER = """
import json, sys
from bidsbatch.cli.app import click_command, main
if sys.argv[1] == "--everything":
    dict(click_command().commands.items())  # every command built first
    del sys.argv[1]
code = main(sys.argv[1:])
print(json.dumps(sorted(sys.modules)), file=sys.__stderr__)
sys.exit(code)
"""


def _in_process(*args: str) -> tuple[int, str, set[str]]:
    """Run the CLI's ``main(args)`` in a new interpreter: its code, stdout and modules."""
    proc = subprocess.run([sys.executable, "-c", _MODULES_AFTER, *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "COLUMNS": "100"})
    modules = json.loads(proc.stderr.strip().splitlines()[-1])
    return proc.returncode, proc.stdout, set(modules)


def _loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return [n for n in names if any(m == n or m.startswith(n + ".") for m in modules)]


def test_status_logs_and_runs_import_only_what_they_read(tmp_path: Path) -> None:
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
    run_id = json.loads(done.stdout)["run_id"]

    code, _out, modules = _in_process("status", run_id)
    assert code == 0
    assert _loaded(modules, NEVER) == []
    # what status does read: its own module, the ledger, the run's executor (only that one)
    assert {"bidsbatch.cli.status", "bidsbatch.ledger", "bidsbatch.executors.local"} <= modules
    for args in (["logs", run_id, "sub-01"], ["runs"], ["status", run_id, "--json"]):
        code, _out, modules = _in_process(*args)
        assert code == 0 and _loaded(modules, NEVER) == [], args


def test_top_level_help_is_made_from_the_table_without_importing_the_commands() -> None:
    code, lazy, modules = _in_process("--help")
    assert code == 0 and "status" in lazy and "Example:" in lazy
    commands = sorted(m for m in modules if m.startswith("bidsbatch.cli."))
    assert set(commands) <= {"bidsbatch.cli.app", "bidsbatch.cli.coercion",
                             "bidsbatch.cli.entry", "bidsbatch.cli.helpnames",
                             "bidsbatch.cli.helpoption", "bidsbatch.cli.lazy",
                             "bidsbatch.cli.multivalue", "bidsbatch.cli.outcome"}, commands
    assert _loaded(modules, NEVER) == []
    code, eager, modules = _in_process("--everything", "--help")
    assert code == 0 and "bidsbatch.cli.aws" in modules
    assert lazy == eager  # the table's names and lines are the commands' own


def test_the_command_table_is_every_command_and_its_first_line() -> None:
    from bidsbatch.cli.app import COMMANDS, click_command

    root = click_command()
    built = dict(root.commands.items())  # builds every command
    assert list(built) == [c.name for c in COMMANDS]  # nothing registered outside the table
    for entry in COMMANDS:
        command = built[entry.name]
        first = (command.help or "").split("\n\n")[0]
        assert (entry.help, entry.hidden) == (first, command.hidden), entry.name
