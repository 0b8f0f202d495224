"""What-if requests for the sandbox page: a scenario's CDS Hooks request, changed.

Pure data in, data out (no Flask). Every code put into a generated resource is
read from the loaded rules: the draft orders and therapy codes rules/sandbox.yaml
names, or the first code of a value set of a given kind and category. This module
never names a clinical code or matches clinical words. The generated resources are
plain FHIR R4.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from cds_hooks.fhir.bundles import bundle_resources
from cds_hooks.pathway.record import match_concepts
from cds_hooks.pathway.rules import FORMAL_PT, Code, Rules, ServiceDef

REMOVE_RED_FLAGS = "remove"
MAX_ONSET_DAYS = 3650
MAX_PT_WEEKS = 52

# FHIR R4's own status code systems (not clinical terminology).
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"


# Orders the pathway judges; the one the page replaces is the first of these.
JUDGED_KINDS = ("lumbar-imaging", "surgical-referral", "surgeon-specialty", "lumbar-spine-surgery")


class WhatIfError(ValueError):
    """A what-if the rules cannot express (unknown choice, missing value set)."""


def _pick(codes: list[Code]) -> Code | None:
    """The first verified code (a specific code before an ICD-10-CM header)."""
    pool = [c for c in codes if c.verified] or list(codes)
    specific = [c for c in pool if not c.descendants]
    chosen = specific or pool
    return chosen[0] if chosen else None


def _codes(rules: Rules, kind: str, category: str | None = None) -> list[Code]:
    return [
        code
        for vs in rules.valuesets.values()
        if vs.kind == kind and (category is None or vs.category == category)
        for code in vs.codes
    ]


def _coding(code: Code) -> dict[str, str]:
    return {"system": code.system, "code": code.code, "display": code.display}


def order_menu(rules: Rules) -> list[dict[str, Any]]:
    """The draft orders the page offers (rules/sandbox.yaml), each with the code it will use."""
    return [{"id": choice.id, "label": choice.label, "coding": _coding(rules.code(choice)),
             "system": rules.system_name(choice.system)} for choice in rules.sandbox.orders]


def red_flag_menu(rules: Rules) -> list[dict[str, Any]]:
    """One entry per red-flag category, with the code an added Condition will carry."""
    menu = []
    for category, label in rules.pathway.red_flag_categories.items():
        code = _pick(_codes(rules, "red-flag", category))
        if code is not None:
            menu.append({"category": category, "label": label, "coding": _coding(code),
                         "system": rules.system_name(code.system)})
    return menu


@dataclass(frozen=True)
class WhatIf:
    """Changes to apply; None leaves that part of the scenario as recorded."""

    hook: str | None = None
    order: str | None = None
    onset_days_ago: int | None = None
    pt_weeks: int | None = None
    red_flag: str | None = None  # a red-flag category to add, or REMOVE_RED_FLAGS


@dataclass
class BuiltRequest:
    service: ServiceDef
    request: dict[str, Any]
    changes: list[str] = field(default_factory=list)


def service_for(rules: Rules, hook: str, preferred: str | None = None) -> ServiceDef:
    if preferred in rules.services and rules.services[preferred].hook == hook:  # type: ignore[index]
        return rules.services[preferred]  # type: ignore[index]
    for service in rules.services.values():
        if service.hook == hook:
            return service
    raise WhatIfError(f"no service answers the {hook!r} hook")


def _bundles(prefetch: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for value in prefetch.values():
        if isinstance(value, dict) and value.get("resourceType") == "Bundle":
            yield value


def _remove(prefetch: dict[str, Any], doomed: Callable[[dict[str, Any]], bool]) -> int:
    """Drop every bundle entry whose resource `doomed(resource)` says; returns how many."""
    removed = 0
    for bundle in _bundles(prefetch):
        entries = bundle.get("entry") or []
        kept = [e for e in entries if not (isinstance(e, dict) and isinstance(e.get("resource"), dict)
                                           and doomed(e["resource"]))]
        removed += len(entries) - len(kept)
        if entries:
            bundle["entry"] = kept
        if "total" in bundle and isinstance(bundle["total"], int):
            bundle["total"] = len(kept)
    return removed


def _search_key(service: ServiceDef, resource_type: str) -> str | None:
    """The prefetch key whose template searches `resource_type` (e.g. Procedure?...)."""
    for key, template in service.prefetch.items():
        if template.startswith(f"{resource_type}?"):
            return key
    return None


def _add(prefetch: dict[str, Any], service: ServiceDef, resource: dict[str, Any]) -> None:
    """Add a resource to the search bundle for its type, creating the bundle when the
    key is absent, null or an OperationOutcome (the what-if says the data exists)."""
    key = _search_key(service, resource["resourceType"])
    if key is None:
        raise WhatIfError(f"service {service.id} has no prefetch search for {resource['resourceType']}")
    bundle = prefetch.get(key)
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        bundle = prefetch[key] = {"resourceType": "Bundle", "type": "searchset", "entry": []}
    bundle.setdefault("entry", []).append({"resource": resource})
    if isinstance(bundle.get("total"), int):
        bundle["total"] = len(bundle["entry"])


def _is(rules: Rules, resource: dict[str, Any], kind: str, category: str | None = None) -> bool:
    matches, _ = match_concepts(rules, resource.get("code"), resource.get("type"), resource.get("serviceType"))
    return any(m.valueset.kind == kind and (category is None or m.valueset.category == category) for m in matches)


def _condition(rid: str, patient: str, code: Code, onset: date, recorded: date) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": rid,
        "clinicalStatus": {"coding": [{"system": CONDITION_CLINICAL, "code": "active"}]},
        "verificationStatus": {"coding": [{"system": CONDITION_VERIFICATION, "code": "confirmed"}]},
        "code": {"coding": [_coding(code)], "text": code.display},
        "subject": {"reference": f"Patient/{patient}"},
        "onsetDateTime": onset.isoformat(),
        "recordedDate": recorded.isoformat(),
    }


def _draft_entries(context: dict[str, Any]) -> list[dict[str, Any]]:
    """context.draftOrders entries that hold a resource (junk dropped), written back."""
    bundle = context.get("draftOrders")
    if not isinstance(bundle, dict):
        bundle = context["draftOrders"] = {"resourceType": "Bundle", "entry": []}
    raw = bundle.get("entry")
    entries = [e for e in raw if isinstance(e, dict) and isinstance(e.get("resource"), dict)] \
        if isinstance(raw, list) else []
    bundle["entry"] = entries
    return entries


def _primary_index(rules: Rules, context: dict[str, Any], entries: list[dict[str, Any]]) -> int | None:
    """The draft order the order panel replaces: the first selection, else the first
    order the pathway judges, else the first ServiceRequest."""
    refs = [f"{e['resource'].get('resourceType')}/{e['resource'].get('id')}" for e in entries]
    for ref in context.get("selections") or ():
        if ref in refs:
            return refs.index(ref)
    requests = [i for i, e in enumerate(entries) if e["resource"].get("resourceType") == "ServiceRequest"]
    for i in requests:
        if any(_is(rules, entries[i]["resource"], k) or _performer_is(rules, entries[i]["resource"], k)
               for k in JUDGED_KINDS):
            return i
    return requests[0] if requests else None


def _performer_is(rules: Rules, resource: dict[str, Any], kind: str) -> bool:
    matches, _ = match_concepts(rules, resource.get("performerType"))
    return any(m.valueset.kind == kind for m in matches)


def _replace_order(rules: Rules, context: dict[str, Any], choice_id: str, patient: str, changes: list[str]) -> None:
    choice = next((c for c in rules.sandbox.orders if c.id == choice_id), None)
    if choice is None:
        known = ", ".join(c.id for c in rules.sandbox.orders)
        raise WhatIfError(f"unknown draft order {choice_id!r}; choose one of: {known}")
    code = rules.code(choice)
    entries = _draft_entries(context)
    index = _primary_index(rules, context, entries)
    old = entries[index]["resource"] if index is not None else {}
    order: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": old.get("id") if isinstance(old.get("id"), str) else "sandbox-order-1",
        "status": "draft",
        "intent": old.get("intent") if isinstance(old.get("intent"), str) else "order",
        "code": {"coding": [_coding(code)], "text": choice.label},
        "subject": {"reference": f"Patient/{patient}"},
    }
    for element in ("encounter", "requester", "authoredOn", "reasonCode"):
        if element in old:  # the order's context and reasons stay; only what is ordered changes
            order[element] = copy.deepcopy(old[element])
    if index is None:
        entries.append({"resource": order})
    else:
        entries[index] = {"resource": order}
    changes.append(f"Draft order ServiceRequest/{order['id']}: {choice.label} "
                   f"({rules.system_name(code.system)} {code.code})")


def _set_hook(context: dict[str, Any], hook: str, rules: Rules) -> None:
    if hook == "order-sign":
        context.pop("selections", None)
        return
    if not context.get("selections"):
        entries = _draft_entries(context)
        index = _primary_index(rules, context, entries)
        if index is not None:
            res = entries[index]["resource"]
            context["selections"] = [f"{res['resourceType']}/{res['id']}"]


def _shift_onset(rules: Rules, prefetch: dict[str, Any], service: ServiceDef, patient: str,
                 days: int, today: date, changes: list[str]) -> None:
    onset = today - timedelta(days=days)
    shifted = 0
    for bundle in _bundles(prefetch):
        for res in bundle_resources(bundle):
            if res.get("resourceType") == "Condition" and _is(rules, res, "population"):
                for element in ("onsetPeriod", "onsetAge", "onsetString", "onsetRange"):
                    res.pop(element, None)
                res["onsetDateTime"] = onset.isoformat()
                recorded = res.get("recordedDate")
                if isinstance(recorded, str) and recorded[:10] < onset.isoformat():
                    res["recordedDate"] = onset.isoformat()  # not recorded before it began
                shifted += 1
    if shifted:
        changes.append(f"Episode onset set to {onset.isoformat()} ({days} days ago) on {shifted} back condition(s)")
        return
    code = _pick(_codes(rules, "population"))
    if code is None:
        raise WhatIfError("the rules have no population value set to create a back condition from")
    _add(prefetch, service, _condition("whatif-episode", patient, code, onset, onset))
    changes.append(f"Added back condition {code.display} ({rules.system_name(code.system)} {code.code}), "
                   f"onset {onset.isoformat()}")


def _set_pt_weeks(rules: Rules, prefetch: dict[str, Any], service: ServiceDef, patient: str,
                  weeks: int, today: date, changes: list[str]) -> None:
    pt_types = ("Procedure", "Encounter", "ServiceRequest")
    removed = _remove(prefetch, lambda r: r.get("resourceType") in pt_types
                      and _is(rules, r, "conservative-care", FORMAL_PT))
    if removed:
        changes.append(f"Removed {removed} formal physical therapy record(s)")
    if weeks == 0:
        return
    evaluation, session = rules.code(rules.sandbox.pt_evaluation), rules.code(rules.sandbox.pt_session)
    # Weekly sessions spanning exactly `weeks` weeks, the last one two days ago.
    first = today - timedelta(days=7 * weeks + 2)
    for k in range(weeks + 1):
        code = evaluation if k == 0 else session
        _add(prefetch, service, {
            "resourceType": "Procedure",
            "id": f"whatif-pt-{k + 1}",
            "status": "completed",
            "code": {"coding": [_coding(code)], "text": code.display},
            "subject": {"reference": f"Patient/{patient}"},
            "performedDateTime": (first + timedelta(weeks=k)).isoformat(),
        })
    last = first + timedelta(weeks=weeks)
    changes.append(f"Added {weeks + 1} completed physical therapy sessions, weekly from "
                   f"{first.isoformat()} to {last.isoformat()} ({weeks} weeks)")


def _red_flag(rules: Rules, request: dict[str, Any], service: ServiceDef, patient: str,
              choice: str, today: date, changes: list[str]) -> None:
    prefetch = request["prefetch"]
    if choice == REMOVE_RED_FLAGS:
        removed = _remove(prefetch, lambda r: r.get("resourceType") == "Condition" and _is(rules, r, "red-flag"))
        stripped = 0
        for entry in _draft_entries(request["context"]):
            order = entry["resource"]
            reasons = order.get("reasonCode")
            if isinstance(reasons, list):
                kept = [r for r in reasons if not _is(rules, {"code": r}, "red-flag")]
                stripped += len(reasons) - len(kept)
                if kept:
                    order["reasonCode"] = kept
                else:
                    del order["reasonCode"]
        changes.append(f"Removed {removed} red-flag condition(s) and {stripped} red-flag order reason(s)")
        return
    entry = next((m for m in red_flag_menu(rules) if m["category"] == choice), None)
    if entry is None:
        known = ", ".join(m["category"] for m in red_flag_menu(rules))
        raise WhatIfError(f"unknown red-flag category {choice!r}; choose {REMOVE_RED_FLAGS!r} or one of: {known}")
    code = _pick(_codes(rules, "red-flag", choice))
    assert code is not None  # the menu only lists categories with a code
    onset = today - timedelta(days=3)
    _add(prefetch, service, _condition(f"whatif-red-flag-{choice}", patient, code, onset, onset))
    changes.append(f"Added red flag {entry['label']}: {code.display} ({rules.system_name(code.system)} {code.code})")


def build_request(
    rules: Rules, scenario_request: dict[str, Any], scenario_service: str | None, what_if: WhatIf, today: date
) -> BuiltRequest:
    """The scenario's request with the what-ifs applied and a fresh hookInstance.

    With no what-ifs it is the scenario's request as recorded (dates already resolved).
    """
    request = copy.deepcopy(scenario_request)
    # CDS Hooks: hookInstance is unique per call, so every (re-)fire gets a new one.
    request["hookInstance"] = str(uuid.uuid4())
    hook = what_if.hook or request.get("hook")
    if not isinstance(hook, str):
        raise WhatIfError("the scenario has no hook")
    service = service_for(rules, hook, scenario_service)
    changes: list[str] = []
    if hook != request.get("hook"):
        changes.append(f"Hook changed from {request.get('hook')} to {hook}")
    request["hook"] = hook
    context = request.setdefault("context", {})
    patient = context.get("patientId")
    if not isinstance(patient, str):
        raise WhatIfError("the scenario has no context.patientId")
    if what_if.order:
        _replace_order(rules, context, what_if.order, patient, changes)
    _set_hook(context, hook, rules)
    prefetch = request.get("prefetch")
    if not isinstance(prefetch, dict):
        prefetch = request["prefetch"] = {}
    if what_if.onset_days_ago is not None:
        _shift_onset(rules, prefetch, service, patient, what_if.onset_days_ago, today, changes)
    if what_if.pt_weeks is not None:
        _set_pt_weeks(rules, prefetch, service, patient, what_if.pt_weeks, today, changes)
    if what_if.red_flag:
        _red_flag(rules, request, service, patient, what_if.red_flag, today, changes)
    return BuiltRequest(service, request, changes)

