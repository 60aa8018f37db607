"""A pipeline as a TOML file to start one's own from (``bidsbatch pipelines NAME --toml``).

The presets are TOML files with comments that say why each setting is what it
is; a copy of the file keeps those comments, which a file written from the
parsed :class:`~bidsbatch.pipelines.Pipeline` would lose. So the text is the
preset's own (or the named file's), under a header that says how to use it,
and it loads back as the same pipeline (``tests/test_cli_habits.py`` checks).
"""

from __future__ import annotations

from importlib import resources as importlib_resources
from pathlib import Path

from . import __version__
from .pipelines import PLAN_PLACEHOLDERS, RUNTIME_PLACEHOLDERS, load_pipeline, preset_names
from .safety import read_utf8


def pipeline_toml(name_or_path: str) -> str:
    """The commented TOML text of a preset or a pipeline file (checked: it must load)."""
    pipeline = load_pipeline(name_or_path)  # an unknown or bad one is its clear error
    if name_or_path in preset_names():
        res = importlib_resources.files("bidsbatch") / "presets" / f"{name_or_path}.toml"
        body = res.read_text(encoding="utf-8")
        origin = f"the {name_or_path} preset of bidsbatch {__version__}"
    else:
        body = read_utf8(Path(name_or_path), what="pipeline file")
        origin = f"pipeline file {name_or_path}"
    stem = "".join(c if c.isalnum() or c in "-_" else "-" for c in pipeline.name)
    placeholders = ", ".join("{" + p + "}" for p in sorted(PLAN_PLACEHOLDERS)) + "; " + \
        ", ".join("{" + p + "}" for p in sorted(RUNTIME_PLACEHOLDERS)) + " (filled in the job)"
    header = [
        f"# {origin}, as a file to start your own pipeline from:",
        f"#   bidsbatch pipelines {name_or_path} --toml > my-{stem}.toml",
        f"#   bidsbatch run DATASET OUTPUT --pipeline my-{stem}.toml",
        "# Placeholders in command: " + placeholders + ".",
        "# A nested list in command is an optional part: it vanishes when a placeholder in it",
        "# has no value. Tables: [resources] [retry] [inputs] [output] [group] [container]",
        "# [env] [assets.NAME] (see the README, section Pipelines).",
        "",
    ]
    return "\n".join(header) + body if body.endswith("\n") else "\n".join(header) + body + "\n"
