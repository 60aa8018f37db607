"""Names and tags of a run's Batch jobs: they carry the run id, so the jobs can be found again.

``bidsbatch-<run-id>-<kind><n>-<dataset>``: ``a`` an array job, ``s`` a
single job, ``g`` the group step, ``d`` a dependency barrier (when the group
step depends on more than 20 jobs); ``n`` is the submission number, the same
as the manifest's (``manifest-<n>.json``). A ``ListJobs`` filter on the name
prefix finds every job of a run when the ledger is lost.
"""

from __future__ import annotations

import re

KIND_LETTERS = {"array": "a", "single": "s", "group": "g", "barrier": "d"}
_LETTER_KINDS = {v: k for k, v in KIND_LETTERS.items()}
#: Batch job names: letters, digits, hyphens and underscores, 128 at most.
MAX_NAME = 128

RUN_TAG = "bidsbatch:run-id"
DATASET_TAG = "bidsbatch:dataset"
KIND_TAG = "bidsbatch:kind"
SUBMISSION_TAG = "bidsbatch:submission"


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")


def name_prefix(run_id: str) -> str:
    """The prefix every job name of the run starts with."""
    return f"bidsbatch-{_safe(run_id)}-"


def job_name(run_id: str, *, kind: str, n: int, dataset: str) -> str:
    """The job's name: run id, kind and submission number, then as much of the dataset as fits."""
    head = f"{name_prefix(run_id)}{KIND_LETTERS[kind]}{n}"
    tail = _safe(dataset)[: MAX_NAME - len(head) - 1]
    return f"{head}-{tail}" if tail else head


def parse_job_name(run_id: str, name: str) -> tuple[str, int] | None:
    """(kind, submission number) of one of the run's job names; None for anything else."""
    prefix = name_prefix(run_id)
    if not name.startswith(prefix):
        return None
    m = re.match(r"([asgd])(\d+)(?:-|$)", name[len(prefix):])
    if not m:
        return None
    return _LETTER_KINDS[m.group(1)], int(m.group(2))


def job_tags(run_id: str, *, kind: str, n: int, dataset_uri: str) -> dict[str, str]:
    """Tags of a job (propagated to its ECS tasks, for cost allocation)."""
    return {RUN_TAG: run_id, DATASET_TAG: dataset_uri[:256], KIND_TAG: kind,
            SUBMISSION_TAG: str(n)}
