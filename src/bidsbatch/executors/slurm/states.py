"""Slurm job states as scan states.

Slurm says what the *job* did; whether the *scan* is done is the completion
marker's to say (a task can exit 0 without one, e.g. when its worker was
stopped before committing). So COMPLETED maps to "ended", and the poll asks
the markers. PREEMPTED and REQUEUED tasks come back: their attempt ended,
another one follows (a Spot reclaim on Batch is the same thing).
"""

from __future__ import annotations

from enum import Enum

from ...states import ScanState


class Phase(Enum):
    """What a Slurm state means for a scan."""

    QUEUED = ScanState.SUBMITTED.value
    RUNNING = ScanState.RUNNING.value
    ENDED = "ended"  # the job ended; the marker says succeeded, its absence failed
    FAILED = ScanState.FAILED.value
    CANCELLED = ScanState.CANCELLED.value
    REQUEUED = "requeued"  # the attempt ended and the task waits to run again


_PHASES: dict[str, Phase] = {
    "PENDING": Phase.QUEUED,
    "CONFIGURING": Phase.QUEUED,
    "RESV_DEL_HOLD": Phase.QUEUED,
    "REQUEUE_HOLD": Phase.REQUEUED,
    "REQUEUE_FED": Phase.REQUEUED,
    "REQUEUED": Phase.REQUEUED,
    "PREEMPTED": Phase.REQUEUED,
    "RESIZING": Phase.RUNNING,
    "RUNNING": Phase.RUNNING,
    "COMPLETING": Phase.RUNNING,
    "SIGNALING": Phase.RUNNING,
    "STAGE_OUT": Phase.RUNNING,
    "SUSPENDED": Phase.RUNNING,
    "STOPPED": Phase.RUNNING,
    "COMPLETED": Phase.ENDED,
    "FAILED": Phase.FAILED,
    "TIMEOUT": Phase.FAILED,
    "NODE_FAIL": Phase.FAILED,
    "OUT_OF_MEMORY": Phase.FAILED,
    "BOOT_FAIL": Phase.FAILED,
    "DEADLINE": Phase.FAILED,
    "SPECIAL_EXIT": Phase.FAILED,
    "REVOKED": Phase.CANCELLED,
    "CANCELLED": Phase.CANCELLED,
}

#: Why Slurm ended a task, in words, for the states whose name says little.
_WORDS = {
    "TIMEOUT": "the Slurm time limit was reached",
    "NODE_FAIL": "the node failed",
    "OUT_OF_MEMORY": "out of memory (Slurm's limit, raise [resources] memory_mib)",
    "BOOT_FAIL": "the node failed to boot",
    "DEADLINE": "the job's deadline passed",
    "PREEMPTED": "preempted",
    "REVOKED": "revoked by a sibling cluster",
}


def phase(state: str) -> Phase:
    """The phase of a Slurm state (``CANCELLED by 0`` and unknown states included)."""
    word = state.split()[0].upper().rstrip("+") if state.strip() else ""
    return _PHASES.get(word, Phase.QUEUED if not word else Phase.FAILED)


def describe(state: str) -> str:
    """A few words on a Slurm end state, for a scan's reason."""
    word = state.split()[0].upper().rstrip("+") if state.strip() else "UNKNOWN"
    return _WORDS.get(word, f"Slurm state {word}")
