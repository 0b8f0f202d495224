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
from flask import Blueprint, Response, current_app, request

from cds_hooks import metrics
from cds_hooks.errors import ServiceError, operation_outcome
from cds_hooks.ruleset import Rules
from cds_hooks.service import evaluate_hook, parse_as
from cds_hooks.store import Store
from cds_hooks.wire import Discovery, FeedbackItem, FeedbackRequest, ServiceDescription

log = logging.getLogger("cds_hooks.api")
bp = Blueprint("cds_hooks", __name__)

JSON_TYPES = ("application/json", "application/fhir+json")


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status=status, mimetype="application/json")


def error_response(status: int, message: str, expression: list[str] | None = None) -> Response:
    return json_response(operation_outcome(status, message, expression), status)


def _rules() -> Rules:
    return current_app.extensions["lumbar_cds.rules"]


def _store() -> Store:
    return current_app.extensions["lumbar_cds.store"]


def _body() -> Any:
    """The JSON body, parsed once. Refuses other media types and broken JSON."""
    mimetype = request.mimetype
    if mimetype and mimetype not in JSON_TYPES:
        raise ServiceError(415, f"Send the request as application/json, not {mimetype}.")
    raw = request.get_data(cache=False)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ServiceError(400, f"The request body is not valid JSON: {exc}") from None


def _service(service_id: str) -> Any:
    service = _rules().services.get(service_id)
    if service is None:
        known = ", ".join(sorted(_rules().services))
        raise ServiceError(404, f"No CDS service {service_id!r}. Services: {known}.")
    return service


@bp.get("/cds-services")
def discovery() -> Response:
    services = [
        ServiceDescription(
            hook=s.hook, title=s.title, description=s.description.strip(), id=s.id,
            prefetch=s.prefetch, usageRequirements=s.usageRequirements.strip(),
        )
        for s in _rules().services.values()
    ]
    return json_response(Discovery(services=services).model_dump(mode="json", exclude_none=True))


@bp.post("/cds-services/<service_id>")
def call_service(service_id: str) -> Response:
    started = time.perf_counter()
    deadline = time.monotonic() + current_app.extensions["lumbar_cds.settings"].fhir_timeout
    service = _service(service_id)
    body = _body()
    rules = _rules()
    outcome = evaluate_hook(rules, service, body, fetcher=current_app.extensions["lumbar_cds.fetcher"],
                            deadline=deadline)
    _store().record_cards(
        service.id, service.hook, outcome.request.hookInstance, rules.profile_id, outcome.issued
    )
    by_rule = Counter(i.rule_id for i in outcome.issued)
    for issued in outcome.issued:
        metrics.CARDS.labels(service.id, issued.rule_id, issued.card.indicator).inc()
    if outcome.record.skipped:
        metrics.SKIPPED.labels(service.id).inc(len(outcome.record.skipped))
    log.info(
        "hook service=%s hook=%s cards=%s skipped=%d unavailable=%d ms=%.1f",
        service.id, service.hook, dict(by_rule) or "{}", len(outcome.record.skipped),
        len(outcome.record.unavailable), (time.perf_counter() - started) * 1000,
    )
    return json_response(outcome.response())


@bp.post("/cds-services/<service_id>/feedback")
def feedback(service_id: str) -> Response:
    service = _service(service_id)
    parsed = parse_as(FeedbackRequest, _body(), 'CDS Hooks feedback: {"feedback": [...]}')
    results = _store().record_feedback(service.id, parsed.feedback)
    _count_feedback(service.id, parsed.feedback, results)
    unknown = sum(1 for r in results if not r["knownCard"])
    log.info("feedback service=%s items=%d unknown_cards=%d", service.id, len(results), unknown)
    return json_response({"stored": len(results), "unknownCards": unknown})


def _count_feedback(service_id: str, items: list[FeedbackItem], results: list[dict[str, Any]]) -> None:
    offered = {reason.code for reason in _rules().cards.override_reasons}
    for item, result in zip(items, results, strict=True):
        coding = item.overrideReason.reason if item.overrideReason else None
        reason = metrics.label(coding.code, offered, metrics.OTHER) if coding else metrics.NONE
        rule = result.get("ruleId") or metrics.UNKNOWN  # ids come from our own issued_cards table
        metrics.FEEDBACK.labels(service_id, rule, item.outcome, reason).inc()


def _rules_summary(status: str) -> dict[str, Any]:
    rules = _rules()
    return {"status": status, "rulesProfile": rules.profile_id, "valueSets": len(rules.valuesets),
            "services": len(rules.services)}


@bp.get("/healthz")
def healthz() -> Response:
    """Liveness: the process answers. It touches no database, so an outage of a shared database
    makes instances unready (/readyz) instead of getting every one of them restarted."""
    return json_response(_rules_summary("ok"))


@bp.get("/readyz")
def readyz() -> Response:
    """Readiness: the rules are loaded (create_app refuses to build without them) and the database
    takes a write, which is what acknowledging feedback needs."""
    if not _store().writable():
        return error_response(503, "Not ready: the database cannot be written.")
    return json_response(_rules_summary("ready"))
