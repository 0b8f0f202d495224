"""The patient record: normalised facts from prefetch FHIR JSON and draft orders.

The reader (`reader`) walks plain dicts once. A resource is looked at closely
(status, dates, R4B validation) only when one of its codes is in a value set the
rules use; everything else is skipped for free. A malformed resource the rules
would have used is skipped and counted, never fatal. This module is the public
seam (`read_record`, `read_draft_orders`); the facts themselves live in `facts`.
"""

from __future__ import annotations

from typing import Any

from cds_hooks.fhir.bundles import bundle_resources
from cds_hooks.fhir.resources import concept_text
from cds_hooks.pathway.facts import (
    READ_ELEMENTS,
    REGIONAL_KINDS,
    DraftOrder,
    Evidence,
    PatientRecord,
    body_region,
    by_region,
    code_label,
    match_concepts,
    read_part,
)
from cds_hooks.pathway.reader import EVIDENCE_KINDS, ReadMemo, read_prefetch
from cds_hooks.pathway.rules import Rules

__all__ = [
    "EVIDENCE_KINDS", "READ_ELEMENTS", "DraftOrder", "Evidence", "PatientRecord", "ReadMemo", "code_label",
    "match_concepts", "read_draft_orders", "read_part", "read_record",
]


def read_record(prefetch: dict[str, Any], patient_id: str, rules: Rules,
                memo: ReadMemo | None = None) -> PatientRecord:
    """Normalise the prefetch data into a PatientRecord.

    `prefetch` maps keys to a Bundle, a resource, None (no data) or an
    OperationOutcome (unavailable). Keys absent are the caller's concern.
    A caller reading the same resource objects again may pass one `memo` to every read.
    """
    return read_prefetch(prefetch, patient_id, rules, memo)


def read_draft_orders(draft_orders: Any, rules: Rules) -> list[DraftOrder]:
    """Draft ServiceRequests from context.draftOrders (a Bundle, `type` optional).

    A region-agnostic code (MRI of spine, CPT 63048) counts as lumbar only with a lumbar
    bodySite; without one the order is kept but marked `region_skipped` and not judged.
    """
    orders: list[DraftOrder] = []
    for res in bundle_resources(draft_orders):
        rtype = res.get("resourceType")
        rid = res.get("id")
        if rtype != "ServiceRequest" or not isinstance(rid, str):
            continue
        matches, first = match_concepts(rules, res.get("code"), res.get("performerType"))
        region = body_region(rules, res.get("bodySite"))
        kept, dropped = by_region(matches, region)
        skipped = dropped and not any(m.valueset.kind in REGIONAL_KINDS for m in kept)
        reasons, _ = match_concepts(rules, res.get("reasonCode"))
        refs = tuple(r["reference"] for r in res.get("reasonReference") or ()
                     if isinstance(r, dict) and isinstance(r.get("reference"), str))
        states = bool(res.get("reasonCode") or res.get("reasonReference") or region)
        orders.append(DraftOrder(
            ref=f"ServiceRequest/{rid}", resource=res,
            name=concept_text(res.get("code")) or concept_text(res.get("performerType")) or "Draft order",
            code_label=code_label(rules, first), matches=tuple(kept), reasons=tuple(reasons),
            reason_refs=refs, states_reason=states, body_site=region, region_skipped=skipped,
        ))
    return orders
