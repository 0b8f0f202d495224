"""Which draft orders the pathway judges, and whether they concern the lumbar spine.

Imaging: a lumbar-imaging code (a region-agnostic code only with a lumbar bodySite,
see record.read_draft_orders), for a patient with an active back-pain diagnosis or an
order whose reason is back pain. Spine surgery: a lumbar decompression or fusion code.
Surgical referral (by `code` or `performerType`): when it states a reason or a body site,
it is judged only if that points at the lumbar spine or a back diagnosis (an orthopaedic
referral for a knee is not judged; one for a referenced lumbar MRI is); without one, when the
patient has an active back-pain diagnosis.
"""

from __future__ import annotations

from typing import Literal

from cds_hooks.pathway.facts import REGIONAL_KINDS, DraftOrder, PatientRecord
from cds_hooks.pathway.rules import LUMBAR_SITE

OrderKind = Literal["imaging", "surgery", "referral"]
_POINTS_AT_BACK = ("population", "red-flag")
# A referenced record item also points at the back when it is lumbar imaging or a lumbar operation: the
# reader keeps those only when their code or body site is lumbar (a stated reasonCode is not so checked).
_RECORD_POINTS_AT_BACK = (*_POINTS_AT_BACK, *REGIONAL_KINDS)


def order_kind(order: DraftOrder) -> OrderKind | None:
    if order.region_skipped:
        return None
    if order.has("lumbar-imaging"):
        return "imaging"
    if order.has("lumbar-spine-surgery"):
        return "surgery"
    if order.has("surgical-referral") or order.has("surgeon-specialty"):
        return "referral"
    return None


def _reason_points_at_back(order: DraftOrder, record: PatientRecord) -> bool:
    if any(order.reason_has(kind) for kind in _POINTS_AT_BACK) or order.body_site == LUMBAR_SITE:
        return True
    for ref in order.reason_refs:
        e = record.find(ref)
        if e is not None and any(e.has(kind) for kind in _RECORD_POINTS_AT_BACK):
            return True
    return False


def in_scope(order: DraftOrder, kind: OrderKind, record: PatientRecord, in_population: bool) -> bool:
    """Whether this order is for the back of a patient in the pathway's population."""
    if kind == "referral" and order.states_reason:
        return _reason_points_at_back(order, record)
    return in_population or _reason_points_at_back(order, record)
