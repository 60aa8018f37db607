"""Run the official BIDS validator (``bids-validator-deno``) from tests.

``validate(path)`` returns the error-level issues (an empty list means the
dataset is valid); ``run_validator(path)`` returns every issue, warnings
included. The validator is the PyPI package ``bids-validator-deno`` (a Deno
bundle plus the ``deno`` wheel): it needs no network, only a writable cache
directory (``$HOME/.cache/deno`` or ``$DENO_DIR``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

Issue = dict[str, Any]


def validator_command() -> list[str]:
    """The validator executable: next to the running interpreter, else on PATH."""
    beside = Path(sys.executable).with_name("bids-validator-deno")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("bids-validator-deno")
    if found is None:
        pytest.skip("bids-validator-deno is not installed (pip install bids-validator-deno)")
    return [found]


def run_validator(path: Path | str, *extra: str) -> list[Issue]:
    """Validate the dataset at ``path``; return all issues as the validator's dicts.

    Each issue has at least ``code``, ``severity`` (``"error"`` or
    ``"warning"``) and usually ``location`` (dataset-relative path) and
    ``subCode``/``issueMessage``. ``extra`` is passed to the validator.
    """
    # --max-rows -1: check every TSV row, not the first 1000 only.
    argv = [*validator_command(), "--format", "json", "--max-rows", "-1", *extra, str(path)]
    # NO_COLOR keeps ANSI codes out of the JSON on every deno version.
    env = {**os.environ, "NO_COLOR": "1"}
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError as err:
        raise RuntimeError(
            f"bids-validator-deno gave no JSON (exit {result.returncode}): "
            f"{result.stderr.strip() or result.stdout[:500]}"
        ) from err
    return list(report["issues"]["issues"])


def validate(path: Path | str, *extra: str) -> list[Issue]:
    """Validate the dataset at ``path``; return the error-level issues only."""
    return [issue for issue in run_validator(path, *extra) if issue["severity"] == "error"]


def describe(issues: list[Issue]) -> str:
    """One line per issue, for assertion messages."""
    return "\n".join(
        f"{i['severity']}: {i['code']}"
        + (f"/{i['subCode']}" if i.get("subCode") else "")
        + f" at {i.get('location', '?')}"
        for i in issues
    )
