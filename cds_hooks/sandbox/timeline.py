"""A patient timeline for the sandbox page, read the way the service reads it.

The events are the record reader's own evidence (`read_record`): the
conditions, therapy, medications, imaging and red flags the rules recognise,
with their dates. What the service would skip or could not check is listed too,
so the page never shows more than the service sees.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from cds_hooks.pathway.record import Evidence, read_draft_orders, read_record
from cds_hooks.pathway.rules import Rules, ServiceDef


def _lane(rules: Rules, e: Evidence) -> tuple[str, str]:
    """(lane key, label); labels from rules/sandbox.yaml, one conservative-care lane per modality."""
    lanes = rules.sandbox.timeline_lanes
    if e.has("red-flag"):
        labels = [rules.pathway.red_flag_categories.get(c, c) for c in sorted(e.categories("red-flag"))]
        return "red-flag", f"{lanes['red-flag']}: {', '.join(labels)}"
    if e.has("prior-lumbar-surgery") or e.has("lumbar-spine-surgery"):
        return "surgery", lanes["surgery"]
    if e.has("lumbar-imaging"):
        return "imaging", lanes["imaging"]
    if e.has("population"):
        return "episode", lanes["episode"]
    if e.has("conservative-care"):
        category = sorted(e.categories("conservative-care"))[0]
        return f"care:{category}", rules.pathway.modalities.get(category, lanes["care"])
    if e.has("surgical-referral") or e.has("surgeon-specialty"):
        return "referral", lanes["referral"]
    return "other", lanes["other"]


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day else None


def build_timeline(rules: Rules, service: ServiceDef, request: dict[str, Any], today: date) -> dict[str, Any]:
    context = request.get("context") if isinstance(request.get("context"), dict) else {}
    prefetch = request.get("prefetch") if isinstance(request.get("prefetch"), dict) else {}
    patient = context.get("patientId") if isinstance(context.get("patientId"), str) else ""
    record = read_record({k: v for k, v in prefetch.items() if k in service.prefetch}, patient, rules)
    events = []
    for e in record.items:
        lane, label = _lane(rules, e)
        events.append({
            "lane": lane, "laneLabel": label, "label": e.label, "code": e.code_label,
            "start": _iso(e.start), "end": _iso(e.end), "status": e.status, "active": e.active,
            "ref": e.ref,
        })
    events.sort(key=lambda ev: ev["start"] or "")
    for order in read_draft_orders(context.get("draftOrders"), rules):
        events.append({
            "lane": "draft-order", "laneLabel": rules.sandbox.timeline_lanes["draft-order"], "label": order.name,
            "code": order.code_label, "start": today.isoformat(), "end": None,
            "status": order.resource.get("status"), "active": True, "ref": order.ref,
        })
    missing = [key for key in service.prefetch if key not in prefetch]
    labels = rules.cards.history_labels
    return {
        "today": today.isoformat(),
        "events": events,
        "skipped": record.skipped,
        "notChecked": sorted(labels.get(k, k) for k in (*record.unavailable, *missing)),
    }
