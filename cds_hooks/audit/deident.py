"""De-identified example cards for the committee.

A sample card is built by the live card code from a scrubbed copy of the patient's record: every
resource id and reference replaced by a made-up one, the Patient reduced to a birth year, and names,
identifiers, contact details, narrative, notes, extensions and reference displays removed (a coded
concept keeps its code's display, not the free text the EHR typed). Dates in the card are then told
relative to the order date. A last pass drops any sample that still holds one of the patient's ids
or names.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

import orjson

DROPPED = frozenset({"identifier", "name", "telecom", "address", "contact", "note", "extension",
                     "modifierExtension", "photo", "link", "generalPractitioner", "managingOrganization",
                     "requester", "performer", "recorder", "asserter", "encounter", "location", "referrer",
                     "meta", "fullUrl"})
_ISO_DATE = re.compile(r"\b(\d{4}-\d{2}-\d{2})(?:T[0-9:.]+(?:Z|[+\-]\d{2}:\d{2})?)?\b")
PATIENT = "example-patient"


class Scrubber:
    """Consistent new ids for one patient's resources."""

    def __init__(self, patient_id: str) -> None:
        self.ids: dict[str, str] = {f"Patient/{patient_id}": f"Patient/{PATIENT}"}
        self.counter = 0

    def new_ref(self, ref: str) -> str:
        rtype, _, rid = ref.rpartition("/")
        key = f"{rtype.rsplit('/', 1)[-1]}/{rid}" if rtype else ref
        if key not in self.ids:
            self.counter += 1
            self.ids[key] = f"{key.split('/', 1)[0]}/{self.counter}" if "/" in key else f"ref-{self.counter}"
        return self.ids[key]

    def resource(self, res: dict[str, Any]) -> dict[str, Any]:
        rtype = str(res.get("resourceType"))
        if rtype == "Patient":
            born = res.get("birthDate")
            out: dict[str, Any] = {"resourceType": "Patient", "id": PATIENT}
            if isinstance(born, str) and len(born) >= 4:
                out["birthDate"] = born[:4]
            return out
        scrubbed = self._walk(res)
        if isinstance(res.get("id"), str):
            scrubbed["id"] = self.new_ref(f"{rtype}/{res['id']}").split("/", 1)[1]
        return scrubbed

    def _walk(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self._walk(v) for v in value]
        if not isinstance(value, dict):
            return value
        out = {}
        coded = isinstance(value.get("coding"), list) and any(
            isinstance(c, dict) and c.get("display") for c in value["coding"])
        for key, item in value.items():
            if key in DROPPED or (key == "text" and (coded or isinstance(item, dict))):
                continue
            if key == "display" and "reference" in value:
                continue
            if key == "reference" and isinstance(item, str):
                out[key] = item if item.startswith("#") else self.new_ref(item)
            elif key == "id":
                if "resourceType" in value:  # a contained resource: "#id" references point at it
                    out[key] = item
            else:
                out[key] = self._walk(item)
        return out


def relative_dates(text: str, day: date) -> str:
    """'2026-03-02' → 'order date − 21 days' style, so a card carries no calendar date."""
    def repl(m: re.Match[str]) -> str:
        try:
            delta = (date.fromisoformat(m[1]) - day).days
        except ValueError:
            return "a date"
        if delta == 0:
            return "the order date"
        return f"order date {'+' if delta > 0 else '−'} {abs(delta)} day{'s' if abs(delta) != 1 else ''}"
    return _ISO_DATE.sub(repl, text)


def sample(card: dict[str, Any], day: date, forbidden: set[str]) -> dict[str, Any] | None:
    """The card with relative dates, or None when an identifier of the patient survived."""
    text = relative_dates(orjson.dumps(card).decode(), day)
    if any(word in text for word in forbidden if len(word) >= 4):
        return None
    return orjson.loads(text)


def identifiers(resources: list[dict[str, Any]], patient_id: str) -> set[str]:
    """What must never appear in a sample: the patient's id, every resource id, names and identifiers."""
    found = {patient_id}
    for res in resources:
        if isinstance(res.get("id"), str):
            found.add(res["id"])
        if res.get("resourceType") == "Patient":
            for name in res.get("name") or ():
                if isinstance(name, dict):
                    found.update(p for p in (name.get("family"), name.get("text"), *(name.get("given") or ()))
                                 if isinstance(p, str))
            for ident in res.get("identifier") or ():
                if isinstance(ident, dict) and isinstance(ident.get("value"), str):
                    found.add(ident["value"])
    return found
