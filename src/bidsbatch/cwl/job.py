"""The job object of a CWL tool: the template filled per item, then with local paths.

Plan time fills the item's placeholders (``{input_file}`` → ``{bids_dir}/a/b.fastq``);
run time fills ``{bids_dir}``, ``{output_dir}`` and ``{work_dir}`` with this job's
folders. A ``File`` or ``Directory`` is given by ``path`` (a local path then), never
an ``s3://`` location: cwltool cannot read those (a Directory at one ran the tool on
an empty folder and reported success).
"""

from __future__ import annotations

from typing import Any

from ..pipelines import _fill


def fill_job(template: Any, values: dict[str, str]) -> Any:
    """``template`` with every string's known placeholders filled (others kept)."""
    if isinstance(template, str):
        return _fill(template, values)
    if isinstance(template, dict):
        return {k: fill_job(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [fill_job(v, values) for v in template]
    return template
