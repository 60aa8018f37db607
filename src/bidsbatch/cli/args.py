"""The single options and arguments several commands share (``Annotated`` aliases).

Apart from ``options.py`` (the groups of options: planning, executors) so that
``status``, ``logs`` and ``runs`` import typer and nothing of the planner or
the executors to declare them. ``options.py`` exports them too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

RunArg = Annotated[
    str | None, typer.Argument(help="Run id or run directory (default: the latest run).")
]
#: ``plan``'s and ``run``'s positionals; optional, since item sources need none.
DatasetArg = Annotated[str | None, typer.Argument(
    help="BIDS dataset: a folder, file:// or s3:// URI (none with --items/--items-glob; "
         "with --tiles, the bucket).", show_default=False, metavar="DATASET")]
OutputArg = Annotated[str | None, typer.Argument(
    help="Where outputs go: a folder or s3:// URI.", show_default=False, metavar="OUTPUT")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
PipelineOpt = Annotated[
    str, typer.Option("--pipeline", help="A preset (demo, m2g, fmriprep, mriqc) or a TOML file.")
]
#: ``run``'s: no default, so real data never meets the demo app by omission.
RequiredPipelineOpt = Annotated[
    str, typer.Option("--pipeline", help="The pipeline to run (required): a preset (demo, m2g, "
                      "fmriprep, mriqc) or a TOML file.", show_default=False)
]
RunDirOpt = Annotated[
    Path | None, typer.Option("--run-dir", help="Where to keep the run (default: runs home).")
]
