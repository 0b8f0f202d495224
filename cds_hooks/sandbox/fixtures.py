"""Scenario fixtures: CDS Hooks requests with relative dates, plus the expected outcome.

Dates in fixtures are written `{{today-21d}}` (d, w, m or y), optionally inside
a longer string such as `{{today-3d}}T09:30:00`, so fixtures never age.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

from cds_hooks.pathway.evaluate import months_before

_RELATIVE = re.compile(r"\{\{today(?:([+-])(\d+)([dwmy]))?\}\}")


def shift(today: date, sign: str, amount: int, unit: str) -> date:
    n = amount if sign == "+" else -amount
    if unit == "d":
        return today + timedelta(days=n)
    if unit == "w":
        return today + timedelta(weeks=n)
    months = n * (12 if unit == "y" else 1)
    return months_before(today, -months)


def resolve_dates(value: Any, today: date) -> Any:
    """Replace every {{today±N unit}} in strings, recursively."""
    if isinstance(value, str):
        if "{{today" not in value:
            return value
        return _RELATIVE.sub(
            lambda m: (shift(today, m[1], int(m[2]), m[3]) if m[1] else today).isoformat(), value
        )
    if isinstance(value, dict):
        return {k: resolve_dates(v, today) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_dates(v, today) for v in value]
    return value


@dataclass(frozen=True)
class Fixture:
    name: str
    title: str
    description: str
    service: str
    profile: str | None
    expect: dict[str, Any]
    request: dict[str, Any]


def fixtures_dir() -> Path:
    """Fixtures shipped in the wheel, else the repository's top-level fixtures/."""
    packaged = resources.files("cds_hooks") / "builtin_fixtures"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "fixtures"


def fixture_paths(directory: Path) -> dict[str, Path]:
    """Scenario name (file stem) → file, sorted by name; empty if the directory is missing."""
    if not directory.is_dir():
        return {}
    return {path.stem: path for path in sorted(directory.glob("*.json"))}


def load_fixture(path: Path, today: date) -> Fixture:
    raw = orjson.loads(path.read_bytes())
    return Fixture(
        name=path.stem,
        title=raw["title"],
        description=raw.get("description", ""),
        service=raw["service"],
        profile=raw.get("profile"),
        expect=resolve_dates(raw["expect"], today),
        request=resolve_dates(raw["request"], today),
    )
