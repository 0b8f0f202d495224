"""Walk the validated rules generically: every content part of `Rules`, flattened to dotted paths.

Export, diff and doc read the rules through these helpers, so a setting, a value-set field or a card
template added to `rules/` tomorrow is exported, compared and documented without a code change.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pydantic import BaseModel

from cds_hooks.pathway.rules import Code, Rules
from cds_hooks.pathway.rules.schema import Exclusion, Profile, PublishedCode

# A profile's fields that describe it rather than set its behaviour.
PROFILE_TEXT = frozenset({"title", "description", "citations"})
# Rules fields that are derived or chosen at load, not content of rules/.
NOT_CONTENT = frozenset({"profile_id", "profile", "index", "source_dir"})


def plain(value: Any) -> Any:
    """JSON-like data for a model, or a dict or list holding models."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # a published code (rules.schema)
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def natural_key(item: Any) -> str | None:
    """How a record in a list is named across versions: its id, uri, or system|code."""
    if not isinstance(item, dict):
        return None
    for key in ("id", "uri"):
        if isinstance(item.get(key), str):
            return item[key]
    if isinstance(item.get("code"), str):
        return f"{item['system']}|{item['code']}" if isinstance(item.get("system"), str) else item["code"]
    return None


def leaves(value: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted path → leaf value (a scalar, or a list of scalars). Records in lists are keyed by
    `natural_key`, so reordering a list of records is no change."""
    value = plain(value)
    out: dict[str, Any] = {}
    if isinstance(value, dict):
        for key, item in value.items():
            out.update(leaves(item, f"{prefix}.{key}" if prefix else key))
    elif isinstance(value, list) and any(isinstance(x, dict | list) for x in value):
        for i, item in enumerate(value):
            out.update(leaves(item, f"{prefix}[{natural_key(item) or i}]"))
    else:
        out[prefix] = value
    return out


def content_parts(rules: Rules) -> dict[str, Any]:
    """Every part of rules/ as loaded: governance, pathway, valuesets, citations, cards, services, ..."""
    return {f.name: getattr(rules, f.name) for f in dataclasses.fields(rules) if f.name not in NOT_CONTENT}


def rule_ids(rules: Rules) -> list[str]:
    """The rules in the order cards.yaml lists them."""
    return list(rules.cards.rules)


def profile_settings(profile: Profile) -> dict[str, Any]:
    """Every threshold and switch of a profile by dotted path: each field of each settings section, and
    any other field that is not the profile's wording or citations."""
    return {path: value for path, value in leaves(profile).items()
            if path.split(".", 1)[0].split("[", 1)[0] not in PROFILE_TEXT}


def selected_settings(profile: Profile, paths: list[str]) -> dict[str, Any]:
    """The profile's values for settings named by section (`imaging`) or one by one (`imaging.x`)."""
    every = profile_settings(profile)
    out: dict[str, Any] = {}
    for path in paths:
        out.update({k: v for k, v in every.items() if k == path or k.startswith(path + ".")})
    return out


def words(value: Any) -> str:
    """A setting's value as a committee reads it."""
    if value is None:
        return "off"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) if value else "none"
    return str(value)


def code_label(rules: Rules, code: Code | PublishedCode | Exclusion) -> str:
    """A code (or an excluded code) as the committee reads it: system name, code, display."""
    return f"{rules.system_name(code.system)} {code.code} {code.display}"
