"""Which orders to audit: lumbar imaging orders, spine-surgery referrals and lumbar operations.

An order is a ServiceRequest, dated by `authoredOn`. An ImagingStudy or Procedure is audited in its
own right only when no order explains it: it names none in `basedOn`, and no order of the same kind
was placed in the `match_days` before it. Everything an order caused (its studies and reports) is
its *footprint*, hidden from the record it is judged on, as it did not exist when it was placed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from cds_hooks.audit.adapter import ORDER_KINDS, LivePathway
from cds_hooks.audit.asof import event_date
from cds_hooks.fhir.resources import add_days, referenced_id

NOT_PLACED = frozenset({"draft", "entered-in-error"})  # FHIR request status: never signed, or a mistake
NOT_DONE = frozenset({"entered-in-error", "not-done", "cancelled", "preparation", "registered"})
SURGICAL_REFERRAL = "spine-surgery referral"
OPERATION = "lumbar operation"


@dataclass
class AuditedOrder:
    ref: str  # "ServiceRequest/x", or the study or procedure audited in its own right
    day: date
    source: str  # the resource type it came from
    category: str  # the imaging modality, "spine-surgery referral" or "lumbar operation"
    draft: dict[str, Any]  # the ServiceRequest as the EHR would send it in draftOrders
    resource: dict[str, Any]
    footprint: list[dict[str, Any]] = field(default_factory=list)


def category_of(pathway: LivePathway, resource: dict[str, Any]) -> str | None:
    """The kind of audited order a resource is, or None when the pathway does not judge it."""
    matches = [m for m in pathway.matches(resource) if m.valueset.kind in ORDER_KINDS]
    if not matches:
        return None
    for m in matches:
        if m.valueset.kind == "lumbar-imaging":
            return m.valueset.modality or "imaging"
    if any(m.valueset.kind == "lumbar-spine-surgery" for m in matches):
        return OPERATION if resource.get("resourceType") == "Procedure" else SURGICAL_REFERRAL
    return SURGICAL_REFERRAL


def _draft(resource: dict[str, Any], code_key: str) -> dict[str, Any]:
    """The ServiceRequest a study or operation without an order would have been ordered as."""
    concept = resource.get(code_key)
    if isinstance(concept, list):  # ImagingStudy.procedureCode is a list: one concept of all codings
        concept = {"coding": [c for cc in concept if isinstance(cc, dict) for c in cc.get("coding") or ()
                              if isinstance(c, dict)]}
    draft = {
        "resourceType": "ServiceRequest", "id": f"{resource['resourceType']}-{resource.get('id')}",
        "status": "draft", "intent": "order", "code": concept, "subject": resource.get("subject"),
    }
    if resource.get("reasonCode"):
        draft["reasonCode"] = resource["reasonCode"]
    return draft


def _based_on(resource: dict[str, Any]) -> list[str]:
    refs = resource.get("basedOn")
    return [r["reference"] for r in refs if isinstance(r, dict) and isinstance(r.get("reference"), str)] \
        if isinstance(refs, list) else []


def find_orders(pathway: LivePathway, by_type: dict[str, list[dict[str, Any]]],
                period: tuple[date, date], match_days: int) -> list[AuditedOrder]:
    """The patient's orders to audit in `period` (inclusive), with their footprints."""
    orders: dict[str, AuditedOrder] = {}  # by "ServiceRequest/id", every placed order, in period or not
    for sr in by_type.get("ServiceRequest", ()):
        day = event_date(sr)
        category = category_of(pathway, sr)
        if category is None or day is None or sr.get("status") in NOT_PLACED or not isinstance(sr.get("id"), str):
            continue
        draft = {**sr, "status": "draft"}
        orders[f"ServiceRequest/{sr['id']}"] = AuditedOrder(f"ServiceRequest/{sr['id']}", day, "ServiceRequest",
                                                            category, draft, sr)
    events: list[AuditedOrder] = []
    for rtype, code_key in (("ImagingStudy", "procedureCode"), ("Procedure", "code"), ("DiagnosticReport", "code")):
        for resource in by_type.get(rtype, ()):
            category = category_of(pathway, resource)
            day = event_date(resource)
            if category is None or day is None or resource.get("status") in NOT_DONE:
                continue
            order = _explaining_order(orders, resource, category, day, match_days)
            if order is not None:
                order.footprint.append(resource)
            elif rtype != "DiagnosticReport" and isinstance(resource.get("id"), str):
                ref = f"{rtype}/{resource['id']}"
                events.append(AuditedOrder(ref, day, rtype, category, _draft(resource, code_key), resource,
                                           [resource]))
    start, end = period
    chosen = [o for o in (*orders.values(), *events) if start <= o.day <= end]
    return sorted(chosen, key=lambda o: (o.day, o.ref))


def _explaining_order(orders: dict[str, AuditedOrder], resource: dict[str, Any], category: str, day: date,
                      match_days: int) -> AuditedOrder | None:
    for ref in _based_on(resource):
        rid = referenced_id(ref, "ServiceRequest")  # relative, absolute or versioned
        if rid is not None and f"ServiceRequest/{rid}" in orders:
            return orders[f"ServiceRequest/{rid}"]
    earliest = add_days(day, -match_days)
    candidates = [o for o in orders.values() if o.category == category and earliest <= o.day <= day]
    return max(candidates, key=lambda o: (o.day, o.ref)) if candidates else None


def by_day(orders: list[AuditedOrder]) -> dict[date, list[AuditedOrder]]:
    """Orders placed on the same day are judged together, as one order-sign call."""
    out: dict[date, list[AuditedOrder]] = {}
    for order in orders:
        out.setdefault(order.day, []).append(order)
    return out
