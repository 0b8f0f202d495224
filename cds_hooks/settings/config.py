"""Settings: embedded defaults, then the TOML file named by LUMBAR_CDS_CONFIG, then LUMBAR_CDS_* variables."""

from __future__ import annotations

import os
import typing
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TypeVar

from cds_hooks.netpolicy.urls import check_allowlist_entry
from cds_hooks.settings.database_url import backend_problem, sqlite_url
from cds_hooks.settings.file import load_settings_file
from cds_hooks.settings.types import ServiceSettings, SettingsError, TrustedIssuer

T = TypeVar("T")
DEFAULT_CORS_ORIGINS = ("https://sandbox.cds-hooks.org",)


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(f"LUMBAR_CDS_{name}")
    return value if value not in (None, "") else default


def _number(name: str, value: str, kind: type[int] | type[float]) -> int | float:
    try:
        return kind(value)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise SettingsError(f"LUMBAR_CDS_{name} must be {what}, not {value!r}") from None


def parse_flag(name: str, value: str) -> bool:
    word = value.strip().lower()
    if word not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        raise SettingsError(f"LUMBAR_CDS_{name} must be 1 or 0 (true or false), not {value!r}")
    return word in ("1", "true", "yes", "on")


def parse_int(name: str, value: str) -> int:
    return int(_number(name, value, int))


def read_env(name: str, parse: Callable[[str, str], T], default: T) -> T:
    """LUMBAR_CDS_<name> read with `parse` (e.g. parse_int, parse_flag); `default` when unset or empty.
    For processes that read a variable outside Settings (gunicorn_conf, the CLI)."""
    value = _env(name)
    return default if value is None else parse(name, value)


def _float(name: str, value: str) -> float:
    return float(_number(name, value, float))


def _csv(_name: str, value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _service_modes(name: str, value: str) -> dict[str, ServiceSettings]:
    """`id=silent,other-id=live` → per-service settings."""
    out = {}
    for part in _csv(name, value):
        service, _, mode = part.partition("=")
        if mode.strip() not in ("live", "silent") or not service.strip():
            raise SettingsError(f"LUMBAR_CDS_{name} must be service-id=live or service-id=silent, comma-separated, "
                                f"not {part!r}")
        out[service.strip()] = ServiceSettings(mode=mode.strip())  # type: ignore[arg-type]
    return out


def _as(convert: Callable[[str], object]) -> Callable[[str, str], object]:
    return lambda _name, value: convert(value)


# LUMBAR_CDS_<NAME> → the Settings field it sets, and how its text is read. Every one is documented
# in docs/operations.md's settings table (tests/test_readme.py checks).
ENVIRONMENT: dict[str, tuple[str, Callable[[str, str], object]]] = {
    "DATA_DIR": ("data_dir", _as(Path)),
    "DATABASE_URL": ("database_url", _as(str)),
    "RULES_DIR": ("rules_dir", _as(Path)),
    "PROFILE": ("profile", _as(str)),
    "ALLOW_DRAFT_RULES": ("allow_draft_rules", parse_flag),
    "MAX_BODY_BYTES": ("max_body_bytes", parse_int),
    "MAX_FEEDBACK_ITEMS": ("max_feedback_items", parse_int),
    "CORS_ORIGINS": ("cors_origins", lambda n, v: tuple(o.rstrip("/") for o in _csv(n, v))),
    "LOG_LEVEL": ("log_level", _as(str.upper)),
    "LOG_FORMAT": ("log_format", _as(str.lower)),
    "FHIR_TIMEOUT": ("fhir_timeout", _float),
    "FHIR_ALLOWLIST": ("fhir_allowlist", _csv),
    "FHIR_MAX_PAGES": ("fhir_max_pages", parse_int),
    "FHIR_MAX_RESOURCES": ("fhir_max_resources", parse_int),
    "FHIR_MAX_PAGE_RESOURCES": ("fhir_max_page_resources", parse_int),
    "FHIR_MAX_TOTAL_RESOURCES": ("fhir_max_total_resources", parse_int),
    "FHIR_MAX_BYTES": ("fhir_max_bytes", parse_int),
    "FHIR_ALLOW_LOOPBACK": ("fhir_allow_loopback", parse_flag),
    "ALLOWED_HOSTS": ("allowed_hosts", _csv),
    "METRICS_ENABLED": ("metrics_enabled", parse_flag),
    "PUBLIC_BASE_URL": ("public_base_url", _as(str)),
    "AUTH_ALGORITHMS": ("auth_algorithms", _csv),
    "AUTH_LEEWAY_SECONDS": ("auth_leeway_seconds", parse_int),
    "AUTH_JWKS_CACHE_SECONDS": ("auth_jwks_cache_seconds", parse_int),
    "AUTH_MAX_TOKEN_LIFETIME_SECONDS": ("auth_max_token_lifetime_seconds", parse_int),
    "SANDBOX": ("sandbox", parse_flag),
    "FIXTURES_DIR": ("fixtures_dir", _as(Path)),
    "OVERRIDE_MEMORY_DAYS": ("override_memory_days", parse_int),
    "OVERRIDE_MEMORY_SECRET": ("override_memory_secret", _as(str)),
    "BASIS_MINUTES": ("basis_minutes", parse_int),
    "SERVICE_MODES": ("services", _service_modes),
    "AUDIT_MIN_CELL": ("audit_min_cell", parse_int),
    "AUDIT_SMART_CLIENT_ID": ("audit_smart_client_id", _as(str)),
    "AUDIT_SMART_KEY": ("audit_smart_key", _as(Path)),
    "AUDIT_SMART_KEY_ID": ("audit_smart_key_id", _as(str)),
    "AUDIT_SMART_SCOPE": ("audit_smart_scope", _as(str)),
    "AUDIT_MAX_FILE_BYTES": ("audit_max_file_bytes", parse_int),
    "AUDIT_EXPORT_TIMEOUT": ("audit_export_timeout", _float),
}
# A keyed hash is only as private as its key: shorter secrets are refused.
MIN_MEMORY_SECRET_CHARS = 32
# A basis page is for the clinician at the order, not an archive: a day at most.
MAX_BASIS_MINUTES = 24 * 60


# The JSON-value budget of one hook call's FHIR answers is its byte budget / this. orjson builds at most
# ~110 bytes of Python objects per value (measured worst case: `{"a":"b"}` entries), so the values of
# a full budget take at most about 1.7x the byte cap, and a request peaks near 4x (docs/security.md).
BYTES_PER_JSON_VALUE = 64


@dataclass(frozen=True)
class FetchLimits:
    """What one hook call may read from fhirServer (see fhir/fetch.py for how each is counted)."""

    timeout: float = 2.0  # seconds, one deadline for the whole hook call
    max_pages: int = 10  # per search, counting the first page
    max_resources: int = 2000  # per search
    max_bytes: int = 32 * 1024 * 1024  # per hook call, every answer together; more is refused, not read
    max_page_resources: int = 2000  # entries per Bundle page
    max_total_resources: int = 10000  # per hook call, every search together
    max_json_values: int = 32 * 1024 * 1024 // BYTES_PER_JSON_VALUE  # per hook call, counted while streaming


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path(".lumbar-cds")
    rules_dir: Path | None = None
    profile: str | None = None
    # Serve rules whose governance status is draft, or active rules before their effective date.
    allow_draft_rules: bool = False
    max_body_bytes: int = 5 * 1024 * 1024
    # Browser origins allowed to call the API (the public CDS Hooks Sandbox by
    # default); any http(s) origin on a loopback host is always allowed.
    cors_origins: tuple[str, ...] = field(default=DEFAULT_CORS_ORIGINS)
    log_level: str = "INFO"
    log_format: str = "json"  # or "text"; see logs.py
    # Feedback items per request; more is refused (413) before any is stored.
    max_feedback_items: int = 100
    # FHIR fallback: one deadline per hook call for everything fetched from
    # fhirServer, and the servers that may be queried (empty: loopback only).
    fhir_timeout: float = 2.0
    fhir_allowlist: tuple[str, ...] = ()
    fhir_max_pages: int = 10
    fhir_max_resources: int = 2000
    fhir_max_page_resources: int = 2000
    fhir_max_total_resources: int = 10000
    fhir_max_bytes: int = 32 * 1024 * 1024
    # Loopback FHIR servers: None means allowed exactly when no allow-list is configured (development);
    # with trusted issuers that default is refused at start-up, so production says so explicitly.
    fhir_allow_loopback: bool | None = None
    # Host header values served (`*`: any); None means loopback names only while authentication is off.
    allowed_hosts: tuple[str, ...] | None = None
    # Storage: an SQLAlchemy URL (sqlite:///... or postgresql+psycopg://...); unset means SQLite under data_dir.
    database_url: str | None = None
    # Create the schema in a brand-new, empty SQLite database at start-up (`lumbar-cds serve`, tests).
    # Anything else must be migrated with `lumbar-cds db upgrade` first.
    auto_migrate: bool = False
    # GET /metrics (Prometheus, no authentication: scrape it on a private network).
    metrics_enabled: bool = True

    # CDS Hooks JWT authentication is on when at least one issuer is trusted. The JWT `aud`
    # must equal public_base_url + the request path; the Host header is never used.
    public_base_url: str | None = None
    auth_issuers: tuple[TrustedIssuer, ...] = ()
    auth_algorithms: tuple[str, ...] = ("ES384", "RS384")
    auth_leeway_seconds: int = 60
    auth_jwks_cache_seconds: int = 600
    # Longest accepted token lifetime, exp - iat (CDS Hooks advises short-lived tokens, about 5 minutes).
    auth_max_token_lifetime_seconds: int = 300

    # The scenario sandbox page (/sandbox). None means "not set": off under the
    # WSGI factory (production), switched on by `lumbar-cds serve` (development).
    sandbox: bool | None = None
    # Scenario fixtures the sandbox lists; None means the built-in ones.
    fixtures_dir: Path | None = None

    # Override memory: after an override for a reason the rules mark durable, the same rule stays silent
    # for the same patient this many days (0: off). Patients are stored only as an HMAC keyed with the
    # secret, which memory cannot run without; never logged or printed.
    override_memory_days: int = 0
    override_memory_secret: str | None = field(default=None, repr=False)
    # Basis pages: each card links to its whole basis, served by the service for this many minutes after
    # the card (0: no basis pages, and the card carries no basis link). See docs/integration.md.
    basis_minutes: int = 60
    # Per-service settings by service id; a service not listed is live.
    services: dict[str, ServiceSettings] = field(default_factory=dict)

    # The retrospective audit (`lumbar-cds audit`, docs/audit.md): counts from 1 to audit_min_cell-1 are
    # suppressed; SMART Backend Services credentials for running a Bulk $export; download limits.
    audit_min_cell: int = 11
    audit_smart_client_id: str | None = None
    audit_smart_key: Path | None = None  # PEM private key (RSA for RS384, EC P-384 for ES384)
    audit_smart_key_id: str | None = None  # the `kid` the server knows the public key by
    audit_smart_scope: str = "system/*.read"
    audit_max_file_bytes: int = 8 * 1024**3
    audit_export_timeout: float = 6 * 3600.0

    def __post_init__(self) -> None:
        problems = [p for p in map(check_allowlist_entry, self.fhir_allowlist) if p]
        if self.database_url is not None and (problem := backend_problem(self.database_url)):
            problems.append(problem)
        if not 0 < self.fhir_timeout <= 60:
            problems.append(f"fhir_timeout must be between 0 and 60 seconds, not {self.fhir_timeout}")
        fhir_counts = (self.fhir_max_pages, self.fhir_max_resources, self.fhir_max_page_resources,
                       self.fhir_max_total_resources)
        if min(fhir_counts) < 1 or self.fhir_max_bytes < BYTES_PER_JSON_VALUE:
            problems.append("fhir_max_pages, fhir_max_resources, fhir_max_page_resources and fhir_max_total_resources "
                            f"must be at least 1, fhir_max_bytes at least {BYTES_PER_JSON_VALUE}")
        if self.max_body_bytes < 1 or self.max_feedback_items < 1:
            problems.append("max_body_bytes and max_feedback_items must be at least 1")
        if self.log_format not in ("json", "text"):
            problems.append(f"log format must be json or text, not {self.log_format!r}")
        if self.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            problems.append(f"log_level must be DEBUG, INFO, WARNING, ERROR or CRITICAL, not {self.log_level!r}")
        if self.override_memory_days < 0:
            problems.append("override_memory_days must be 0 (off) or more")
        elif self.override_memory_days and len(self.override_memory_secret or "") < MIN_MEMORY_SECRET_CHARS:
            problems.append(
                f"override memory ({self.override_memory_days} days) needs a secret of at least "
                f"{MIN_MEMORY_SECRET_CHARS} characters in LUMBAR_CDS_OVERRIDE_MEMORY_SECRET (or override_memory_secret "
                "in the settings file), to key the hash that stands for each patient; e.g. the output of "
                "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`")
        if not 0 <= self.basis_minutes <= MAX_BASIS_MINUTES:
            problems.append(f"basis_minutes must be between 0 (off) and {MAX_BASIS_MINUTES} (a day), "
                            f"not {self.basis_minutes}")
        if self.sandbox and self.auth_issuers:
            problems.append("the sandbox page cannot run with JWT authentication on: its browser calls carry no "
                            "JWT. Serve it from a separate loopback instance without [[auth.issuers]]")
        if self.audit_min_cell < 1 or self.audit_max_file_bytes < 1 or self.audit_export_timeout <= 0:
            problems.append("audit_min_cell, audit_max_file_bytes and audit_export_timeout must be positive")
        if bool(self.audit_smart_client_id) != bool(self.audit_smart_key):
            problems.append("audit_smart_client_id and audit_smart_key go together (SMART Backend Services)")
        if problems:
            raise SettingsError("Invalid settings: " + "; ".join(problems))

    def service_mode(self, service_id: str) -> str:
        """`live` or `silent`."""
        chosen = self.services.get(service_id)
        return chosen.mode if chosen else "live"

    @property
    def auth_enabled(self) -> bool:
        return bool(self.auth_issuers)

    @property
    def override_memory_enabled(self) -> bool:
        return self.override_memory_days > 0

    @property
    def database_path(self) -> Path:
        return self.data_dir / "lumbar-cds.sqlite3"

    @property
    def store_url(self) -> str:
        return self.database_url or sqlite_url(self.database_path)

    @property
    def fetch_limits(self) -> FetchLimits:
        return FetchLimits(self.fhir_timeout, self.fhir_max_pages, self.fhir_max_resources, self.fhir_max_bytes,
                           self.fhir_max_page_resources, self.fhir_max_total_resources,
                           self.fhir_max_bytes // BYTES_PER_JSON_VALUE)

    @property
    def fhir_loopback_allowed(self) -> bool:
        """May the FHIR fallback query a loopback server (in addition to the allow-list)?"""
        return not self.fhir_allowlist if self.fhir_allow_loopback is None else self.fhir_allow_loopback

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        values: dict[str, object] = {}
        if (v := _env("CONFIG")) is not None:
            hints = typing.get_type_hints(cls)
            values.update(load_settings_file(Path(v), {f.name: hints[f.name] for f in fields(cls)}))
        for name, (field_name, parse) in ENVIRONMENT.items():
            if (v := _env(name)) is not None:
                values[field_name] = parse(name, v)
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise TypeError(f"unknown settings: {sorted(unknown)}")
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]
