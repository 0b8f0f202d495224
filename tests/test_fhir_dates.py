"""`parse_date` reads the calendar day of a FHIR date, dateTime or instant, partial dates rounded down. It
remembers the days it has read by their first ten characters, so any text must read as a fresh reading of
the whole text would."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cds_hooks.fhir.resources import parse_date


def _fresh(value: Any) -> date | None:
    """The whole text read with the expression, as before the days were remembered."""
    if not isinstance(value, str):
        return None
    m = re.match(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?", value)
    try:
        return date(int(m[1]), int(m[2] or 1), int(m[3] or 1)) if m else None
    except ValueError:
        return None


@pytest.mark.parametrize(("value", "day"), [
    ("2024-03-17", date(2024, 3, 17)), ("2024-03-17T23:59:59-11:00", date(2024, 3, 17)),
    ("2024-03", date(2024, 3, 1)), ("2024", date(2024, 1, 1)), ("2024-03-1", date(2024, 3, 1)),
    ("2024-03-1x", date(2024, 3, 1)), ("2024-02-30", None), ("2024-13", None), ("0000", None),
    ("9999-12-31T00:00:00Z", date(9999, 12, 31)), ("", None), ("x2024", None), (None, None), (20240317, None),
])
def test_a_fhir_date_reads_as_its_calendar_day(value: Any, day: date | None) -> None:
    assert parse_date(value) == day
    assert parse_date(value) == day  # read again, from what was remembered


@given(st.one_of(
    st.text(alphabet="0123456789-T:Z+.x٢٠", max_size=16),
    st.from_regex(r"\A\d{4}(-\d{2}(-\d{2}(T\d{2}:\d{2}(:\d{2})?)?)?)?", fullmatch=True),
))
def test_any_text_reads_as_a_fresh_reading_of_the_whole(value: str) -> None:
    assert parse_date(value) == _fresh(value)
    assert parse_date(value + "T12:00:00Z") == _fresh(value + "T12:00:00Z")
