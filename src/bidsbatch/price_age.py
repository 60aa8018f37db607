"""How old the price table is, and the one line that says so when it is too old.

Every layer of the table states when it was retrieved (``retrieved`` in
``data/prices.json``: a month such as ``2024-12``, or a date and time as a
refresh writes it). The newest layer counts: a table refreshed from AWS last
week is fresh even though the shipped one under it is old.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from .pricing import PriceTable

#: Older than this, prices get a warning (AWS changes prices, Spot moves daily).
MAX_AGE_DAYS = 180
REFRESH_COMMAND = "bidsbatch cost prices --refresh"


def retrieved_on(text: str) -> date | None:
    """The date a layer was retrieved: ``2024-12`` is the first of the month; None if unknown."""
    text = text.strip()
    for parse in (lambda t: datetime.fromisoformat(t.replace("Z", "+00:00")).date(),
                  lambda t: datetime.strptime(t, "%Y-%m").date()):
        try:
            return parse(text)
        except ValueError:
            continue
    return None


def table_date(table: PriceTable) -> date | None:
    """The newest retrieval date of the table's layers (None when none says)."""
    dates = [d for s in table.sources if (d := retrieved_on(s.retrieved)) is not None]
    return max(dates) if dates else None


def age_warning(table: PriceTable, *, today: date | None = None) -> str | None:
    """One line when the table is older than :data:`MAX_AGE_DAYS` (or undated), else None."""
    today = today or datetime.now(UTC).date()
    when = table_date(table)
    if when is None:
        return f"the price table does not say when it was retrieved; refresh it: {REFRESH_COMMAND}"
    days = (today - when).days
    if days <= MAX_AGE_DAYS:
        return None
    return (f"the prices are from {when.isoformat()}, {days} days ago (over {MAX_AGE_DAYS}); "
            f"refresh them: {REFRESH_COMMAND}")
