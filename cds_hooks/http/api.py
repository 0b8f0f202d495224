"""The HTTP edge: CDS Hooks discovery, service calls, feedback and health.

Parses each body once with orjson, hands plain data to `service`, and turns
every refusal into a 4xx with an OperationOutcome. Logs carry no patient data.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

import orjson
from flask import Blueprint, Response, current_app, g, request
from sqlalchemy.exc import SQLAlchemyError

from cds_hooks.http import openapi
from cds_hooks.http.basis import attach_basis_links
from cds_hooks.pathway.cards import IssuedCard
from cds_hooks.pathway.rules import Rules
from cds_hooks.protocol.errors import ServiceError, operation_outcome
from cds_hooks.protocol.wire import (
    Discovery,
    FeedbackItem,
    FeedbackRequest,
    FeedbackResponse,
    Health,
    ServiceDescription,
)
from cds_hooks.service.hook import HookOutcome, evaluate_hook, parse_as
from cds_hooks.settings.config import Settings
from cds_hooks.store import memory
from cds_hooks.store.repository import Store
from cds_hooks.telemetry import logs, metrics

log = logging.getLogger("cds_hooks.http.api")
bp = Blueprint("cds_hooks", __name__)

FETCH_SHARE = 0.9
JSON_TYPES = ("application/json", "application/fhir+json")


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status=status, mimetype="application/json")


def error_response(status: int, message: str, expression: list[str] | None = None) -> Response:
    return json_response(operation_outcome(status, message, expression), status)


def current_rules() -> Rules:
    return current_app.extensions["lumbar_cds.rules"]


def current_store() -> Store:
    return current_app.extensions["lumbar_cds.store"]


def current_settings() -> Settings:
    return current_app.extensions["lumbar_cds.settings"]


def request_json() -> Any:
    """The JSON body, parsed once. Refuses other media types and broken JSON."""
    mimetype = request.mimetype  # required: a body without a media type is not read as anything
    if mimetype not in JSON_TYPES:
        raise ServiceError(415, f"Send the request as application/json, not {mimetype or 'without a Content-Type'}.")
    raw = request.get_data(cache=False)
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is None and limit is not None and len(raw) >= limit:
        # werkzeug cuts a chunked body at the limit without complaint; reading on raises its 413.
        request.stream.read(1)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ServiceError(400, f"The request body is not valid JSON: {exc}") from None


def _service(service_id: str) -> Any:
    service = current_rules().services.get(service_id)
    if service is None:
        known = ", ".join(sorted(current_rules().services))
        raise ServiceError(404, f"No CDS service {service_id!r}. Services: {known}.")
    logs.annotate(service=service.id, hook=service.hook)
    return service


@bp.get("/cds-services")
def discovery() -> Response:
    services = [
        ServiceDescription(
            hook=s.hook, title=s.title, description=s.description.strip(), id=s.id,
            prefetch=s.prefetch, usageRequirements=s.usageRequirements.strip(),
        )
        for s in current_rules().services.values()
    ]
    return json_response(Discovery(services=services).model_dump(mode="json", exclude_none=True))


@bp.post("/cds-services/<service_id>")
def call_service(service_id: str) -> Response:
    # The timeout bounds the whole hook call: fetching stops at 90 % of it, leaving the rest for
    # reading, judging and answering, so the EHR hears back within the timeout.
    deadline = time.monotonic() + FETCH_SHARE * current_settings().fhir_timeout
    service = _service(service_id)
    body = request_json()
    rules = current_rules()
    outcome = evaluate_hook(rules, service, body, fetcher=current_app.extensions["lumbar_cds.fetcher"],
                            deadline=deadline)
    store = current_store()
    subject = _memory_subject(store, outcome.patient_id)
    silenced = _apply_memory(store, subject, outcome)
    instance = outcome.request.hookInstance
    # Silent mode (a pilot): judge and record as usual, show the clinician nothing.
    silent = current_settings().service_mode(service.id) == "silent"
    try:
        store.record_cards(service.id, service.hook, instance, rules.profile_id, outcome.issued, subject, silent)
        store.record_silenced(service.id, service.hook, instance, rules.profile_id, silenced)
    except SQLAlchemyError as exc:
        # The clinician still gets the cards: the audit row is what is lost, and /readyz reports
        # the database. Feedback on these cards will be stored and flagged as an unknown card.
        log.error("issued cards not recorded: %s", type(exc).__name__)
        logs.annotate(cardsRecorded=False)
    if not silent:  # each card shown links to its whole basis (http/basis.py)
        attach_basis_links(outcome.issued, [i for i, _ in silenced], rules, current_settings(), store)
    for issued in outcome.issued:
        counter = metrics.SILENT_CARDS if silent else metrics.CARDS
        counter.labels(service.id, issued.rule_id, issued.card.indicator).inc()
    for issued, _ in silenced:
        metrics.SILENCED.labels(service.id, issued.rule_id).inc()
    if outcome.record.skipped:
        metrics.SKIPPED.labels(service.id).inc(len(outcome.record.skipped))
    for kind, skipped in (("order", outcome.record.region_skipped_orders), ("history", outcome.record.region_skipped)):
        if skipped:
            metrics.REGION_SKIPPED.labels(service.id, kind).inc(len(skipped))
    logs.annotate(
        hookInstance=logs.safe_token(outcome.request.hookInstance),
        cards=dict(Counter(i.rule_id for i in outcome.issued)),
        silencedByMemory=dict(Counter(i.rule_id for i, _ in silenced)),
        skipped=len(outcome.record.skipped), unavailable=len(outcome.record.unavailable),
        **({"mode": "silent"} if silent else {}),
    )
    return json_response({"cards": []} if silent else outcome.response())


def _memory_subject(store: Store, patient_id: str) -> str | None:
    """Who the patient is for override memory (None when memory is off): the patient id within the
    authenticated client and tenant, since ids are unique only within one EHR."""
    if store.memory is None:
        return None
    client = g.get("cds_client")
    return memory.subject(patient_id, client.iss if client else None, client.tenant if client else None)


def _apply_memory(store: Store, subject: str | None, outcome: HookOutcome) -> list[tuple[IssuedCard, str]]:
    """Withhold the cards whose rule an earlier durable override silenced for this patient; each withheld
    card with the overridden card behind it. The ratings stay: memory spares the clinician, not the record."""
    if subject is None or not outcome.issued:
        return []
    try:
        remembered = store.recall(subject, {i.rule_id for i in outcome.issued})
    except SQLAlchemyError as exc:
        # Without the memory the card is shown again: better a repeated warning than a lost one.
        log.error("override memory not read: %s", type(exc).__name__)
        return []
    silenced = [(i, remembered[i.rule_id]) for i in outcome.issued if i.rule_id in remembered]
    outcome.issued = [i for i in outcome.issued if i.rule_id not in remembered]
    return silenced


@bp.post("/cds-services/<service_id>/feedback")
def feedback(service_id: str) -> Response:
    service = _service(service_id)
    body = request_json()
    items = body.get("feedback") if isinstance(body, dict) else None
    limit = current_settings().max_feedback_items
    if isinstance(items, list) and len(items) > limit:
        raise ServiceError(413, f"At most {limit} feedback items per request; send the rest in another.",
                           ["feedback"])
    parsed = parse_as(FeedbackRequest, body, 'CDS Hooks feedback: {"feedback": [...]}')
    results = current_store().record_feedback(service.id, parsed.feedback)
    _count_feedback(service.id, parsed.feedback, results)
    unknown = sum(1 for r in results if not r["knownCard"])
    logs.annotate(items=len(results), unknownCards=unknown)
    return json_response(FeedbackResponse(stored=len(results), unknownCards=unknown).model_dump())


def _count_feedback(service_id: str, items: list[FeedbackItem], results: list[dict[str, Any]]) -> None:
    offered = {reason.code for reason in current_rules().cards.override_reasons}
    for item, result in zip(items, results, strict=True):
        coding = item.overrideReason.reason if item.overrideReason else None
        reason = metrics.label(coding.code, offered, metrics.OTHER) if coding else metrics.NONE
        rule = result.get("ruleId") or metrics.UNKNOWN  # ids come from our own issued_cards table
        metrics.FEEDBACK.labels(service_id, rule, item.outcome, reason).inc()


def _rules_summary(status: str) -> dict[str, Any]:
    rules = current_rules()
    return Health(status=status, rulesProfile=rules.profile_id, rulesVersion=rules.governance.version,
                  valueSets=len(rules.valuesets),
                  services=len(rules.services)).model_dump()


@bp.get("/healthz")
def healthz() -> Response:
    """Liveness: the process answers. It touches no database, so an outage of a shared database
    makes instances unready (/readyz) instead of getting every one of them restarted."""
    return json_response(_rules_summary("ok"))


@bp.get("/readyz")
def readyz() -> Response:
    """Readiness: the rules are loaded (create_app refuses to build without them) and the database
    takes a write, which is what acknowledging feedback needs."""
    if not current_store().writable():
        return error_response(503, "Not ready: the database cannot be written.")
    return json_response(_rules_summary("ready"))


@bp.get("/openapi.json")
def openapi_document() -> Response:
    # Built once per app from the wire models and the loaded services.
    cached = current_app.extensions.get("lumbar_cds.openapi")
    if cached is None:
        cached = current_app.extensions["lumbar_cds.openapi"] = orjson.dumps(
            openapi.document(current_rules(), auth_required=current_settings().auth_enabled))
    return Response(cached, mimetype="application/json")
