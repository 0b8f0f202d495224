"""Which feedback counts for a card: the later one.

A client may report one card more than once, and even both ways (the CDS Hooks Sandbox lets a
clinician accept a suggestion and then dismiss the card). The card's outcome is its latest feedback by
`outcomeTimestamp` (RFC 3339, any offset), then by arrival; a timestamp that cannot be read counts as
the time the service received it. The committee report and override memory both use this rule.
Also how the store writes times (`stamp`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

Row = TypeVar("Row", bound=Mapping[str, Any])
_EARLIEST = datetime.min.replace(tzinfo=UTC)


def stamp(when: datetime) -> str:
    """How the store writes times: ISO 8601 UTC with milliseconds and Z, so text order is time order."""
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def instant(text: str | None) -> datetime | None:
    """An RFC 3339 / ISO 8601 time as an aware UTC datetime; a time without offset is taken as UTC."""
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def _order(row: Mapping[str, Any]) -> tuple[datetime, int]:
    when = instant(row["outcome_timestamp"]) or instant(row["received_at"]) or _EARLIEST
    return when, row["id"]


def latest_per_card(rows: Iterable[Row]) -> dict[str, Row]:
    """Each card's latest feedback row (rows need card_uuid, outcome_timestamp, received_at and id)."""
    chosen: dict[str, Row] = {}
    for row in rows:
        held = chosen.get(row["card_uuid"])
        if held is None or _order(row) > _order(held):
            chosen[row["card_uuid"]] = row
    return chosen
