"""The TOML settings file named by LUMBAR_CDS_CONFIG.

Top-level keys are `Settings` field names (`data_dir`, `public_base_url`, ...; settings/config.py passes their
types in). The `[auth]` table
holds the `auth_*` fields without the prefix, and `[[auth.issuers]]` lists the trusted CDS Clients.
Every value is checked against the field's type, so a typo or a wrong type fails at start-up with
the file and key named. Relative paths are relative to the file, not to the working directory.
"""

from __future__ import annotations

import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, TypeAdapter, ValidationError

from cds_hooks.settings.types import SettingsError, TrustedIssuer

AUTH_TABLE = "auth"
STRICT_KEYS = ConfigDict(extra="forbid")  # a misspelt key in an issuer entry is an error, not ignored


def _flatten(document: dict[str, Any], where: str) -> dict[str, Any]:
    """TOML keys -> Settings field names."""
    flat = {key: value for key, value in document.items() if key != AUTH_TABLE}
    auth = document.get(AUTH_TABLE, {})
    if not isinstance(auth, dict):
        raise SettingsError(f"{where}: [{AUTH_TABLE}] must be a table")
    flat.update({f"auth_{key}": value for key, value in auth.items()})
    return flat


def _key_name(field_name: str) -> str:
    return f"{AUTH_TABLE}.{field_name.removeprefix('auth_')}" if field_name.startswith("auth_") else field_name


def _resolve(value: Any, base: Path) -> Any:
    if isinstance(value, Path) and not value.is_absolute():
        return base / value
    if isinstance(value, TrustedIssuer) and value.jwks and "://" not in value.jwks:
        jwks = Path(value.jwks)
        return value if jwks.is_absolute() else replace(value, jwks=str(base / jwks))
    if isinstance(value, tuple):
        return tuple(_resolve(item, base) for item in value)
    return value


def load_settings_file(path: Path, types: dict[str, Any]) -> dict[str, Any]:
    """Settings field values from the file, given each field's type; raises SettingsError naming the file and
    key."""
    where = f"settings file {path} (LUMBAR_CDS_CONFIG)"
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingsError(f"{where} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{where} cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{where} is not valid TOML: {exc}") from None
    values: dict[str, Any] = {}
    for name, raw in _flatten(document, where).items():
        if name not in types:
            known = ", ".join(sorted(_key_name(n) for n in types))
            raise SettingsError(f"{where}: unknown setting {_key_name(name)!r}; known settings: {known}")
        try:
            value = TypeAdapter(types[name], config=STRICT_KEYS).validate_python(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in (_key_name(name), *e['loc']))}: {e['msg']}" for e in exc.errors()
            )
            raise SettingsError(f"{where}: {problems}") from None
        values[name] = _resolve(value, path.parent)
    return values
