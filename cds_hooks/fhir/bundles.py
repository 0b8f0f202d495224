"""Bundles and prefetch values as EHRs send them: the resources inside, and whether a value is data,
"no data" (null) or the client's report that it could not get the data (an OperationOutcome)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def _entries(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """A Bundle's entries that are objects; junk entries are ignored."""
    entries = bundle.get("entry")
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


def bundle_resources(value: Any) -> Iterator[dict[str, Any]]:
    """Resources in a Bundle (type optional) or a single resource; junk is ignored."""
    if not isinstance(value, dict):
        return
    if value.get("resourceType") == "Bundle":
        for entry in _entries(value):
            if isinstance(entry.get("resource"), dict):
                yield entry["resource"]
    else:
        yield value


def prefetch_problem(value: Any) -> str | None:
    """Why a prefetch value is not FHIR the reader can use, or None.

    Null (no data) is fine, and so are junk entries inside a Bundle (skipped); a
    value that is not a resource at all is a non-conformant request, not "no data".
    """
    if value is None:
        return None
    if not isinstance(value, dict):
        return "is neither a FHIR resource nor null"
    if not isinstance(value.get("resourceType"), str):
        return "has no resourceType"
    if value["resourceType"] == "Bundle" and not isinstance(value.get("entry", []), list | None):
        return "is a Bundle whose entry is not an array"
    return None


def is_operation_outcome(value: Any) -> bool:
    """An OperationOutcome in place of data means the client could not get it."""
    if not isinstance(value, dict):
        return False
    if value.get("resourceType") == "OperationOutcome":
        return True
    if value.get("resourceType") != "Bundle" or not isinstance(value.get("entry"), list):
        return False
    found = False
    for entry in value["entry"]:  # stops at the first entry that is data: a Bundle of data is not walked
        if not isinstance(entry, dict):
            continue  # junk entries are ignored
        resource = entry.get("resource")
        if not isinstance(resource, dict) or resource.get("resourceType") != "OperationOutcome":
            return False
        found = True
    return found
