"""Small, forgiving helpers for FHIR R4 JSON as EHRs really send it.

Plain-dict access for the cheap filter, a lenient date reader, and targeted
validation with fhir.resources R4B models for the few resources the rules use.
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Iterable, Iterator
from datetime import date, timedelta
from functools import cache, lru_cache
from typing import Any

from pydantic import ValidationError

from cds_hooks.fhir.element_verdicts import ElementVerdicts, plain_json
from cds_hooks.fhir.limits import MAX_DEPTH, deeper_than

_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")
_NAIVE_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?")  # fullmatch


def parse_date(value: Any) -> date | None:
    """The calendar date of a FHIR date/dateTime/instant; partial dates round down.

    Day resolution is all the pathway needs, so a missing timezone is harmless here.
    """
    if not isinstance(value, str):
        return None
    return _day(value[:10])  # `_DATE` reads at most 10 characters


@lru_cache(maxsize=4096)  # a chart's dates recur: an audit reads millions of them, of a few thousand days
def _day(prefix: str) -> date | None:
    m = _DATE.match(prefix)
    if not m:
        return None
    try:
        return date(int(m[1]), int(m[2] or 1), int(m[3] or 1))
    except ValueError:
        return None


def completed_years(born: date, on: date) -> int:
    """Completed years from `born` to `on`: an age, a year older on each anniversary."""
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def add_days(day: date, days: int) -> date:
    """`day` moved by `days`, held at the calendar's ends (1 January of year 1, 31 December 9999) rather
    than raising: FHIR allows any year up to 9999, and a prescription may state any supply."""
    try:
        return day + timedelta(days=days)
    except OverflowError:  # past the calendar, or more days than a timedelta holds
        return date.max if days > 0 else date.min


def codings(concept: Any) -> Iterator[dict[str, Any]]:
    """The codings of a CodeableConcept (or a list of them), skipping junk."""
    concepts = concept if isinstance(concept, list) else [concept]
    for cc in concepts:
        items = cc.get("coding") if isinstance(cc, dict) else None
        for coding in items if isinstance(items, list) else ():
            if isinstance(coding, dict):
                yield coding


def concept_text(concept: Any) -> str | None:
    """Human text of a CodeableConcept: its text, else the first coding display."""
    concepts = concept if isinstance(concept, list) else [concept]
    for cc in concepts:
        if isinstance(cc, dict):
            if isinstance(cc.get("text"), str) and cc["text"]:
                return cc["text"]
            for coding in codings(cc):
                if isinstance(coding.get("display"), str) and coding["display"]:
                    return coding["display"]
    return None


def referenced_id(reference: Any, resource_type: str) -> str | None:
    """The id a Reference.reference names for `resource_type`: relative (`Medication/x`), absolute (the
    server's full URL) or versioned (`.../_history/2`); None for a contained (`#x`) or other reference."""
    if not isinstance(reference, str):
        return None
    head, found, rest = reference.rpartition(f"{resource_type}/")
    if not found or (head and not head.endswith("/")):
        return None
    return rest.split("/", 1)[0] or None


def status_code(concept: Any) -> str | None:
    """First code of a status CodeableConcept (clinicalStatus, verificationStatus)."""
    for coding in codings(concept):
        code = coding.get("code")
        if isinstance(code, str):
            return code
    return None


@cache
def _model(resource_type: str) -> Any:
    from fhir.resources.R4B import get_fhir_model_class  # slow import, needed late

    return get_fhir_model_class(resource_type)


def load_models(resource_types: Iterable[str]) -> None:
    """Import the model classes now rather than on the first request that needs them."""
    for resource_type in resource_types:
        _model(resource_type)


def _drop(target: Any, loc: tuple[Any, ...]) -> bool:
    node = target
    for part in loc[:-1]:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return False
    if isinstance(node, dict) and loc[-1] in node:
        del node[loc[-1]]
        return True
    return False


def _fix_naive_datetimes(node: Any) -> Any:
    """Give timezone-less datetimes a UTC offset so R4B accepts them."""
    if isinstance(node, dict):
        return {k: _fix_naive_datetimes(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_fix_naive_datetimes(v) for v in node]
    if isinstance(node, str) and _NAIVE_DATETIME.fullmatch(node):
        return node + ("Z" if node.count(":") == 2 else ":00Z")
    return node


_VERDICTS: dict[bytes, str | None] = {}
_VERDICTS_MAX = 8192
_ELEMENTS = ElementVerdicts()


def validate_resource(resource: dict[str, Any], remember: bool = True) -> str | None:
    """Validate one resource with its R4B model. None if valid, else a short reason.

    A verdict depends only on the resource's content, and order-select re-fires
    with the same history on every edit, so verdicts are memoised by a digest of
    the JSON (no patient data is kept as a key). A resource made only of elements
    already seen in valid resources of its type is valid without running its model
    (`element_verdicts` says why that is exact); any other is validated in full.
    `remember=False` for a caller that keeps each resource's verdict itself (the
    audit's `ReadMemo`): it never asks twice, so the digest would cost and not serve.
    """
    # Not serialisable (e.g. nested past orjson's limit) or bytes another value could share (`plain_json`):
    # judged, never cached.
    data = plain_json(resource) if remember else None
    key = None if data is None else hashlib.blake2b(data, digest_size=16).digest()
    if key is not None and key in _VERDICTS:
        return _VERDICTS[key]
    model = _model_of(resource)
    if model is not None and _ELEMENTS.known_valid(resource, model):
        verdict = None
    else:
        # The depth walk is only needed when judging: a cached verdict already reflects it.
        verdict = f"nesting: more than {MAX_DEPTH} levels" if deeper_than(resource) else _validate(resource)
    if key is not None:
        if len(_VERDICTS) >= _VERDICTS_MAX:
            _VERDICTS.clear()
        _VERDICTS[key] = verdict
    return verdict


def clear_validation_cache() -> None:
    _VERDICTS.clear()
    _ELEMENTS.clear()


def _model_of(resource: dict[str, Any]) -> Any:
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str):
        return None
    try:
        return _model(resource_type)
    except (KeyError, ValueError, AttributeError, ImportError):
        return None


def _validate(resource: dict[str, Any]) -> str | None:
    """Validate one resource with its R4B model. None if valid, else a short reason.

    Real EHR data carries vendor elements and timezone-less datetimes. Those do
    not make a resource unreadable, so they are repaired on a copy and the
    resource is validated again; anything else is a real defect.
    """
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str):
        return "no resourceType"
    try:
        model = _model(resource_type)
    except (KeyError, ValueError, AttributeError, ImportError):
        return f"unknown resourceType {resource_type!r}"
    try:
        instance = model.model_validate(resource)
    except ValidationError as exc:
        errors = exc.errors()
    except (TypeError, ValueError) as exc:  # fhir_core raises these for some junk
        return str(exc)[:200]
    else:
        _ELEMENTS.learn(resource, model, instance)  # valid at the first try: its parts are known valid
        return None

    repaired = _fix_naive_datetimes(resource)
    extras = [tuple(e["loc"]) for e in errors if e["type"] == "extra_forbidden"]
    for loc in extras:
        _drop(repaired, loc)
    if not extras and repaired == resource:
        return _describe(errors)
    try:
        model.model_validate(repaired)
        return None
    except ValidationError as exc:
        return _describe(exc.errors())
    except (TypeError, ValueError) as exc:
        return str(exc)[:200]


def _describe(errors: list[Any]) -> str:
    first = errors[0]
    loc = ".".join(str(p) for p in first["loc"])
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{loc}: {first['msg']}{more}"


def build(resource_type: str, data: dict[str, Any]) -> dict[str, Any]:
    """Build a resource through its R4B model and return exact FHIR JSON."""
    model = _model(resource_type)
    instance = model.model_validate(copy.deepcopy(data))
    return instance.model_dump(mode="json", by_alias=True, exclude_none=True)
