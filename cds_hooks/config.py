"""Settings from LUMBAR_CDS_* environment variables, with embedded defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

DEFAULT_CORS_ORIGINS = ("https://sandbox.cds-hooks.org",)


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(f"LUMBAR_CDS_{name}")
    return value if value not in (None, "") else default


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
    log_format: str = "json"  # or "text"; see logs.py
    # Feedback items per request; more is refused (413) before any is stored.
    max_feedback_items: int = 100

    @property
    def database_path(self) -> Path:
        return self.data_dir / "lumbar-cds.sqlite3"

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
            values["max_body_bytes"] = int(v)
        if (v := _env("CORS_ORIGINS")) is not None:
            values["cors_origins"] = tuple(o.strip().rstrip("/") for o in v.split(",") if o.strip())
        if (v := _env("LOG_LEVEL")) is not None:
            values["log_level"] = v.upper()
        if (v := _env("LOG_FORMAT")) is not None:
            values["log_format"] = v.lower()
        if (v := _env("MAX_FEEDBACK_ITEMS")) is not None:
            values["max_feedback_items"] = int(v)
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise TypeError(f"unknown settings: {sorted(unknown)}")
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]
