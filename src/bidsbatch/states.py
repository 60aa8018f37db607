"""The states a scan and a run's group step go through: one vocabulary for every engine.

``ScanState`` and ``GroupState`` are ``StrEnum``s: they are stored in the
ledger and written to ``--json`` output as their plain values (``"failed"``),
so the files and the JSON stay what they were, and code compares members,
never string literals.
"""

from __future__ import annotations

from enum import StrEnum


class ScanState(StrEnum):
    """Where a scan is, as the ledger records it."""

    PLANNED = "planned"
    SUBMITTED = "submitted"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"


class GroupState(StrEnum):
    """Where the run's group step is (a run whose pipeline has none has no state)."""

    SUBMITTED = "submitted"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


#: Every scan state, in the order tables and counts show them.
STATES: tuple[ScanState, ...] = tuple(ScanState)
#: Queued or running on the engine.
ACTIVE: tuple[ScanState, ...] = (ScanState.SUBMITTED, ScanState.RUNNING)
#: Nothing more will happen to the scan unless it is submitted again.
FINAL: tuple[ScanState, ...] = (ScanState.SUCCEEDED, ScanState.FAILED, ScanState.CANCELLED,
                                ScanState.SKIPPED)
#: The group step is queued or running.
GROUP_ACTIVE: tuple[GroupState, ...] = (GroupState.SUBMITTED, GroupState.RUNNING)
