"""What the reader works out from single FHIR elements: a period's dates, a Duration in days, a body
temperature in degrees Celsius and the last day a prescription covers. Pure functions of plain JSON."""

from __future__ import annotations

from datetime import MAXYEAR, MINYEAR, date
from typing import Any

from cds_hooks.fhir.resources import add_days, parse_date

# UCUM and the spellings EHRs use for the two temperature scales.
_CELSIUS = {"Cel", "C", "°C", "degC", "cel", "celsius", "Celsius"}
_FAHRENHEIT = {"[degF]", "F", "°F", "degF", "[degf]", "fahrenheit", "Fahrenheit"}
# Units of a Duration (expectedSupplyDuration, boundsDuration), in days.
_DAYS = {"d": 1, "day": 1, "days": 1, "wk": 7, "week": 7, "weeks": 7, "mo": 30, "month": 30, "months": 30,
         "a": 365, "year": 365, "years": 365}
_CALENDAR_DAYS = (date.max - date.min).days


def period(res: dict[str, Any], instant_key: str | None, period_key: str) -> tuple[date | None, date | None]:
    """(start, end) from an instant element if present (both the same day), else from a Period."""
    if instant_key and res.get(instant_key) is not None:
        when = parse_date(res.get(instant_key))
        return when, when
    value = res.get(period_key)
    if isinstance(value, dict):
        return parse_date(value.get("start")), parse_date(value.get("end"))
    return None, None


def add_years(born: date, years: int) -> date | None:
    """The day `years` after `born` (28 February for 29 February), or None outside the calendar."""
    year = born.year + years
    if not MINYEAR <= year <= MAXYEAR:
        return None
    try:
        return born.replace(year=year)
    except ValueError:  # 29 February
        return born.replace(year=year, day=28)


def duration_days(duration: Any) -> int | None:
    if not isinstance(duration, dict) or not isinstance(duration.get("value"), int | float):
        return None
    factor = _DAYS.get(str(duration.get("code") or duration.get("unit") or "").strip())
    # Longer than the whole calendar is the whole calendar (a float this large would not round).
    return round(min(duration["value"] * factor, _CALENDAR_DAYS)) if factor else None


def celsius(quantity: Any) -> float | None:
    """A temperature valueQuantity in degrees Celsius, or None if its unit is not a temperature unit."""
    if not isinstance(quantity, dict) or not isinstance(quantity.get("value"), int | float):
        return None
    units = {str(u) for u in (quantity.get("code"), quantity.get("unit")) if u}
    if units & _CELSIUS:
        return float(quantity["value"])
    if units & _FAHRENHEIT:
        return (float(quantity["value"]) - 32) * 5 / 9
    return None


def request_end(res: dict[str, Any], start: date | None) -> tuple[date | None, int | None]:
    """The last day of a prescription's supply, from what it states: bounds, supply and refills, validity.

    A stated end is its last day (a FHIR Period's end is inclusive); a duration of N days from the start
    ends N - 1 days later (a 30-day supply from the 1st lasts to the 30th, not the 31st)."""
    dispense = res.get("dispenseRequest") if isinstance(res.get("dispenseRequest"), dict) else {}
    for dosage in res.get("dosageInstruction") or ():
        repeat = ((dosage.get("timing") or {}).get("repeat") or {}) if isinstance(dosage, dict) else {}
        if isinstance(repeat, dict):
            bounds = repeat.get("boundsPeriod")
            if isinstance(bounds, dict) and parse_date(bounds.get("end")):
                return parse_date(bounds.get("end")), None
            days = duration_days(repeat.get("boundsDuration"))
            if days and start:
                return add_days(start, days - 1), days
    days = duration_days(dispense.get("expectedSupplyDuration"))
    if days:
        refills = dispense.get("numberOfRepeatsAllowed")
        days *= 1 + (refills if isinstance(refills, int) and refills > 0 else 0)
        return (add_days(start, days - 1) if start else None), days
    validity = dispense.get("validityPeriod")
    if isinstance(validity, dict) and parse_date(validity.get("end")):
        return parse_date(validity.get("end")), None
    return None, None
