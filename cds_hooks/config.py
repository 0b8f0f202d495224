"""Settings from LUMBAR_CDS_* environment variables, with embedded defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from cds_hooks.fhir_fetch import FetchLimits, check_allowlist_entry

DEFAULT_CORS_ORIGINS = ("https://sandbox.cds-hooks.org",)


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(f"LUMBAR_CDS_{name}")
    return value if value not in (None, "") else default


def _number(name: str, value: str, kind: type[int] | type[float]) -> int | float:
    try:
        return kind(value)
    except ValueError:
        raise ValueError(f"LUMBAR_CDS_{name}={value!r} is not a number") from None


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path(".lumbar-cds")
    rules_dir: Path | None = None
    profile: str | None = None
    max_body_bytes: int = 5 * 1024 * 1024
    # Browser origins allowed to call the API (the public CDS Hooks Sandbox by
    # default); any http(s) origin on a loopback host is always allowed.
    cors_origins: tuple[str, ...] = field(default=DEFAULT_CORS_ORIGINS)
    log_level: str = "INFO"
    # FHIR fallback: one deadline per hook call for everything fetched from
    # fhirServer, and the servers that may be queried (empty: loopback only).
    fhir_timeout: float = 2.0
    fhir_allowlist: tuple[str, ...] = ()
    fhir_max_pages: int = 10
    fhir_max_resources: int = 2000

    def __post_init__(self) -> None:
        problems = [p for p in map(check_allowlist_entry, self.fhir_allowlist) if p]
        if not 0 < self.fhir_timeout <= 60:
            problems.append(f"fhir_timeout must be between 0 and 60 seconds, not {self.fhir_timeout}")
        if self.fhir_max_pages < 1 or self.fhir_max_resources < 1:
            problems.append("fhir_max_pages and fhir_max_resources must be at least 1")
        if problems:
            raise ValueError("Invalid settings: " + "; ".join(problems))

    @property
    def database_path(self) -> Path:
        return self.data_dir / "lumbar-cds.sqlite3"

    @property
    def fetch_limits(self) -> FetchLimits:
        return FetchLimits(self.fhir_timeout, self.fhir_max_pages, self.fhir_max_resources)

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        values: dict[str, object] = {}
        if (v := _env("DATA_DIR")) is not None:
            values["data_dir"] = Path(v)
        if (v := _env("RULES_DIR")) is not None:
            values["rules_dir"] = Path(v)
        if (v := _env("PROFILE")) is not None:
            values["profile"] = v
        if (v := _env("MAX_BODY_BYTES")) is not None:
            values["max_body_bytes"] = _number("MAX_BODY_BYTES", v, int)
        if (v := _env("CORS_ORIGINS")) is not None:
            values["cors_origins"] = tuple(o.strip().rstrip("/") for o in v.split(",") if o.strip())
        if (v := _env("FHIR_TIMEOUT")) is not None:
            values["fhir_timeout"] = _number("FHIR_TIMEOUT", v, float)
        if (v := _env("FHIR_ALLOWLIST")) is not None:
            values["fhir_allowlist"] = tuple(p.strip() for p in v.split(",") if p.strip())
        if (v := _env("FHIR_MAX_PAGES")) is not None:
            values["fhir_max_pages"] = _number("FHIR_MAX_PAGES", v, int)
        if (v := _env("FHIR_MAX_RESOURCES")) is not None:
            values["fhir_max_resources"] = _number("FHIR_MAX_RESOURCES", v, int)
        if (v := _env("LOG_LEVEL")) is not None:
            values["log_level"] = v.upper()
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise TypeError(f"unknown settings: {sorted(unknown)}")
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]
