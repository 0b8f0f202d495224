"""CDS Hooks 2.0 wire models: forgiving on the way in, exact on the way out.

Requests accept unknown fields (the spec reserves `extension`, and CRD says
to ignore unrecognised context elements) but the fields we use must have the
right JSON types: no silent coercion of 42 into "42". Responses forbid extra
fields and are serialised without nulls or empty lists.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_ID = r"^[A-Za-z0-9\-.]{1,64}$"
_REF = r"^[A-Za-z]+/[A-Za-z0-9\-.]{1,64}$"


class _In(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class FhirAuthorization(_In):
    access_token: str = Field(min_length=1)
    token_type: str | None = None
    expires_in: int | None = None
    scope: str | None = None
    subject: str | None = None
    patient: str | None = None


class HookRequest(_In):
    hook: str = Field(min_length=1)
    hookInstance: str = Field(min_length=1, max_length=200)
    fhirServer: str | None = Field(default=None, pattern=r"^https?://")
    fhirAuthorization: FhirAuthorization | None = None
    context: dict[str, Any]
    prefetch: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _authorization_needs_server(self) -> HookRequest:
        # CDS Hooks cds-r-1: fhirAuthorization implies fhirServer.
        if self.fhirAuthorization is not None and self.fhirServer is None:
            raise ValueError("fhirAuthorization is present but fhirServer is missing")
        return self


class OrderSignContext(_In):
    userId: str = Field(pattern=r"^(Practitioner|PractitionerRole)/.+")
    patientId: str = Field(pattern=_ID)
    encounterId: str | None = Field(default=None, pattern=_ID)
    # The schema states what the validator below checks, for the OpenAPI document.
    draftOrders: dict[str, Any] = Field(json_schema_extra={
        "required": ["resourceType"],
        "properties": {
            "resourceType": {"const": "Bundle"},
            "entry": {"type": ["array", "null"], "items": {
                "type": "object", "required": ["resource"],
                "properties": {"resource": {"type": "object", "required": ["resourceType"],
                                            "properties": {"resourceType": {"type": "string"}}}},
            }},
        },
    })

    @model_validator(mode="after")
    def _draft_orders_is_bundle(self) -> OrderSignContext:
        if self.draftOrders.get("resourceType") != "Bundle":
            raise ValueError("context.draftOrders must be a FHIR Bundle")
        entries = self.draftOrders.get("entry", [])
        if entries is not None and not isinstance(entries, list):
            raise ValueError("context.draftOrders.entry must be an array")
        refs: set[str] = set()
        for i, entry in enumerate(entries or []):
            if not isinstance(entry, dict) or not isinstance(entry.get("resource"), dict):
                raise ValueError(f"context.draftOrders.entry[{i}] has no resource object")
            resource = entry["resource"]
            if not isinstance(resource.get("resourceType"), str):
                raise ValueError(f"context.draftOrders.entry[{i}].resource has no resourceType")
            # Suggestions name a draft order by resourceId: two drafts under one id
            # would make "delete ServiceRequest/x" ambiguous.
            ref = f"{resource['resourceType']}/{resource.get('id')}"
            if isinstance(resource.get("id"), str) and ref in refs:
                raise ValueError(f"context.draftOrders has two entries {ref}")
            refs.add(ref)
        return self


class OrderSelectContext(OrderSignContext):
    selections: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _selections_are_drafts(self) -> OrderSelectContext:
        drafts = {
            f"{e['resource'].get('resourceType')}/{e['resource'].get('id')}"
            for e in self.draftOrders.get("entry") or []
        }
        for i, ref in enumerate(self.selections):
            if ref not in drafts:
                raise ValueError(f"context.selections[{i}] {ref!r} is not an entry in draftOrders")
        return self


CONTEXT_MODELS: dict[str, type[OrderSignContext]] = {
    "order-select": OrderSelectContext,
    "order-sign": OrderSignContext,
}


# --------------------------------------------------------------------------- responses


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Coding(_Out):
    system: str
    code: str
    display: str | None = None


class Source(_Out):
    label: str
    url: str | None = Field(default=None, pattern=r"^https?://")
    icon: str | None = None
    topic: Coding | None = None


class Link(_Out):
    label: str
    url: str = Field(pattern=r"^https?://")
    type: Literal["absolute", "smart"]
    appContext: str | None = None


class Action(_Out):
    type: Literal["create", "update", "delete"]
    description: str
    resource: dict[str, Any] | None = None
    resourceId: str | None = Field(default=None, pattern=_REF)

    @model_validator(mode="after")
    def _shape(self) -> Action:
        if self.type in ("create", "update") and self.resource is None:
            raise ValueError(f"{self.type} action needs a resource")
        if self.type == "delete" and self.resourceId is None:
            raise ValueError("delete action needs a resourceId")
        return self


class Suggestion(_Out):
    label: str
    uuid: str
    isRecommended: bool | None = None
    actions: list[Action] = Field(min_length=1)


class Card(_Out):
    uuid: str
    summary: str = Field(min_length=1, max_length=139)
    detail: str | None = None
    indicator: Literal["info", "warning", "critical"]
    source: Source
    suggestions: list[Suggestion] | None = Field(default=None, min_length=1)
    selectionBehavior: Literal["at-most-one", "any"] | None = None
    overrideReasons: list[Coding] | None = Field(default=None, min_length=1)
    links: list[Link] | None = Field(default=None, min_length=1)
    # CDS Hooks 2.0 extensions: namespaced keys (docs/integration.md lists ours).
    extension: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _rules(self) -> Card:
        if self.suggestions and self.selectionBehavior is None:
            raise ValueError("selectionBehavior is required with suggestions")
        if self.overrideReasons and any(not r.display for r in self.overrideReasons):
            raise ValueError("override reasons need a display")
        return self


class CardsResponse(_Out):
    cards: list[Card]
    # Updates the service proposes to apply without asking: each draft order's appropriateness rating.
    systemActions: list[Action] | None = Field(default=None, min_length=1)
    # CDS Hooks 2.0 extensions; the Argonaut PAMA guide (and the CDS Hooks Sandbox) read `systemActions` here.
    extension: dict[str, Any] | None = None


class ServiceDescription(_Out):
    hook: str
    title: str
    description: str
    id: str
    prefetch: dict[str, str] | None = None
    usageRequirements: str | None = None


class Discovery(_Out):
    services: list[ServiceDescription]


# --------------------------------------------------------------------------- feedback


# Override reasons reach the committee report, a terminal and spreadsheets: no control characters, no
# invisible bidirectional overrides, no line or paragraph separators, and FHIR's shapes for code and uri.
_HIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ufeff]")
_FHIR_CODE = r"^[^\s]+( [^\s]+)*$"  # FHIR R4 code: no leading, trailing or repeated whitespace
_URI = r"^\S+$"
# RFC 3339 date-time (CDS Hooks: "ISO8601 ... date and time"); the zone may be left out (read as UTC).
DATE_TIME = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})?$"


def _visible(value: str | None) -> str | None:
    if value is not None and _HIDDEN.search(value):
        raise ValueError("must not contain control, bidirectional-override or line-separator characters")
    return value


class FeedbackCoding(_In):
    code: str = Field(min_length=1, max_length=200, pattern=_FHIR_CODE)
    system: str | None = Field(default=None, max_length=500, pattern=_URI)
    display: str | None = Field(default=None, max_length=1000)

    _checked = field_validator("code", "system", "display")(_visible)


class OverrideReason(_In):
    reason: FeedbackCoding | None = None
    userComment: str | None = Field(default=None, max_length=10_000)


class AcceptedSuggestion(_In):
    id: str = Field(min_length=1, max_length=200)


class FeedbackItem(_In):
    card: str = Field(min_length=1, max_length=200)
    outcome: Literal["accepted", "overridden"]
    acceptedSuggestions: list[AcceptedSuggestion] | None = Field(default=None, max_length=50)
    overrideReason: OverrideReason | None = None
    outcomeTimestamp: str = Field(min_length=1, max_length=64, pattern=DATE_TIME)

    @field_validator("outcomeTimestamp")
    @classmethod
    def _real_date_time(cls, value: str) -> str:
        # The pattern says the shape; this says the date and time exist (no 2026-02-30T25:00:00Z).
        try:
            datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", value).replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("outcomeTimestamp is not a real date and time") from None
        return value

    @model_validator(mode="after")
    def _accepted_has_suggestions(self) -> FeedbackItem:
        if self.outcome == "accepted" and not self.acceptedSuggestions:
            raise ValueError("an accepted outcome needs acceptedSuggestions")
        return self


class FeedbackRequest(_In):
    # The number of items is bounded by the max_feedback_items setting (413), checked before parsing.
    feedback: list[FeedbackItem] = Field(min_length=1)


class FeedbackResponse(_Out):
    stored: int = Field(ge=0)
    unknownCards: int = Field(ge=0)


# --------------------------------------------------------------------------- service


class Health(_Out):
    status: Literal["ok", "ready"]
    rulesProfile: str
    rulesVersion: str  # rules/governance.yaml: what an operator checks after a rules release
    valueSets: int
    services: int


class Issue(_Out):
    severity: Literal["fatal", "error", "warning", "information"]
    code: str
    diagnostics: str
    expression: list[str] | None = None


class OperationOutcome(_Out):
    """Every error body (errors.operation_outcome builds it)."""

    resourceType: Literal["OperationOutcome"]
    issue: list[Issue] = Field(min_length=1)
