"""One timestamp format for every file bidsbatch writes: UTC, milliseconds, ``Z``.

``2024-05-01T12:00:00.123Z`` in the ledger, markers, failure records and
logs alike; :func:`datetime.fromisoformat` reads it back (and the ``+00:00``
form that older ledgers hold).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

#: What gives "now" (injected in tests).
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """``2024-05-01T12:00:00.123Z``: UTC, milliseconds."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_or_none(moment: datetime | None) -> str | None:
    return iso(moment) if moment else None
