"""The appropriateness rating on a draft order, in the Argonaut "CDS Hooks for PAMA" form.

A rating travels as a FHIR extension on the ServiceRequest of an `update` action: in the response's
`systemActions` (the draft order as sent, plus the rating) and on every suggestion's update (the order
as the suggestion would leave it). The URLs are the ones the CDS Hooks Sandbox reads and its reference
PAMA service writes (docs/integration.md names the sources); the Argonaut guide's three codes are the
only values.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

RATING_URL = "http://fhir.org/argonaut/Extension/pama-rating"
RATING_SYSTEM = "http://fhir.org/argonaut/CodeSystem/pama-rating"
Rating = Literal["appropriate", "not-appropriate", "no-criteria-apply"]
RATINGS: tuple[Rating, ...] = ("appropriate", "not-appropriate", "no-criteria-apply")


def rating_extension(rating: Rating) -> dict[str, Any]:
    return {"url": RATING_URL, "valueCodeableConcept": {"coding": [{"system": RATING_SYSTEM, "code": rating}]}}


def with_rating(resource: dict[str, Any], rating: Rating) -> dict[str, Any]:
    """A copy of `resource` carrying `rating`; a rating it already carried (an EHR echoing an earlier
    answer back) is replaced, every other extension is kept."""
    rated = copy.deepcopy(resource)
    existing = rated.get("extension")
    kept = [e for e in existing if not (isinstance(e, dict) and e.get("url") == RATING_URL)] \
        if isinstance(existing, list) else []
    rated["extension"] = [*kept, rating_extension(rating)]
    return rated


def rating_of(resource: dict[str, Any]) -> str | None:
    """The rating code a resource carries, if any (as the Sandbox reads it: the first one)."""
    extensions = resource.get("extension")
    for ext in extensions if isinstance(extensions, list) else ():
        if isinstance(ext, dict) and ext.get("url") == RATING_URL:
            for coding in (ext.get("valueCodeableConcept") or {}).get("coding") or ():
                if isinstance(coding, dict) and coding.get("system") == RATING_SYSTEM:
                    return coding.get("code")
    return None
