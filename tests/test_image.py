"""``bidsbatch image dockerfile``: the job image's Dockerfile, through the CLI.

No image is built here (no Docker engine, no registry); what can be checked
without one is: the base, the pinned version, both install paths, the cleared
entry point, and that the shell of every RUN step parses.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from conftest import run_cli

from bidsbatch import __version__

KEYWORDS = {"ARG", "FROM", "ENV", "USER", "RUN", "ENTRYPOINT", "CMD"}


def _instructions(text: str) -> list[tuple[str, str]]:
    """(keyword, arguments) per instruction, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        # Docker drops an escaped newline: the lines join as they are.
        pending += line[:-1] if line.endswith("\\") else line
        if line.endswith("\\"):
            continue
        keyword, _, args = pending.strip().partition(" ")
        out.append((keyword, args))
        pending = ""
    assert not pending, "a continuation line runs off the end"
    return out


def test_m2g_dockerfile_layers_bidsbatch_onto_the_app() -> None:
    res = run_cli("image", "dockerfile", "--pipeline", "m2g")
    assert res.returncode == 0, res.stderr
    text = res.stdout
    steps = _instructions(text)
    assert {k for k, _ in steps} <= KEYWORDS
    args = dict(a.split("=", 1) for k, a in steps if k == "ARG" and "=" in a)
    assert args["BASE_IMAGE"] == "neurodata/m2g:latest"
    assert args["BIDSBATCH_VERSION"] == __version__
    assert ("FROM", "${BASE_IMAGE}") in steps
    # the app's entry point is cleared, so Batch's `bidsbatch worker ...` reaches bidsbatch
    assert ("ENTRYPOINT", "[]") in steps
    assert steps[-1] == ("CMD", '["bidsbatch", "--help"]')
    run = next(a for k, a in steps if k == "RUN")
    assert '"bidsbatch==$BIDSBATCH_VERSION"' in run  # PyPI, pinned to our version
    assert '"/tmp/context/$BIDSBATCH_WHEEL"' in run  # or a local wheel (build arg)
    assert "ln -sf /opt/bidsbatch/venv/bin/bidsbatch /usr/local/bin/bidsbatch" in run
    # the shell of the RUN step parses (its --mount flags are BuildKit's, not the shell's)
    shell = re.sub(r"^(--mount=\S+\s+)+", "", run.strip())
    proc = subprocess.run(["sh", "-n", "-c", shell], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "docker build -t bidsbatch-m2g:latest-bb" in text


def test_bundled_app_gets_a_python_base_and_its_command_linked(tmp_path: Path) -> None:
    out = tmp_path / "Dockerfile"
    res = run_cli("image", "dockerfile", "--pipeline", "demo", "-o", str(out))
    assert res.returncode == 0, res.stderr
    text = out.read_text()
    assert "ARG BASE_IMAGE=python:3.12-slim" in text
    assert "/usr/local/bin/bidsbatch-demo-app" in text
    assert f"wrote {out}" in res.stderr
    other = run_cli("image", "dockerfile", "--pipeline", "demo", "--base", "me/app:2")
    assert "ARG BASE_IMAGE=me/app:2" in other.stdout


def test_pipeline_file_and_unknown_pipeline(tmp_path: Path) -> None:
    toml = tmp_path / "mine.toml"
    toml.write_text('name = "mine"\nimage = "me/mine@sha256:' + "a" * 64 + '"\n'
                    'command = ["mine", "{bids_dir}", "{output_dir}", "{participant}"]\n')
    res = run_cli("image", "dockerfile", "--pipeline", str(toml))
    assert res.returncode == 0, res.stderr
    assert "ARG BASE_IMAGE=me/mine@sha256:" in res.stdout
    assert "bidsbatch-mine:pinned-bb" in res.stdout
    bad = run_cli("image", "dockerfile", "--pipeline", "nope")
    assert bad.returncode == 2 and "unknown pipeline 'nope'" in bad.stderr
