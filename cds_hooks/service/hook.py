"""One hook call, end to end, without HTTP: request → record → pathway → cards.

The Flask blueprint and the `lumbar-cds evaluate` command both call
`evaluate_hook`, so what the CLI prints is what the EHR gets.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from cds_hooks.fhir.bundles import is_operation_outcome, prefetch_problem
from cds_hooks.fhir.fetch import FetchFailure, FhirFetcher, render_template
from cds_hooks.fhir.limits import MAX_DEPTH, deeper_than
from cds_hooks.fhir.resources import validate_resource
from cds_hooks.netpolicy.urls import normalise_url
from cds_hooks.pathway.cards import IssuedCard, OrderingContext, build_cards
from cds_hooks.pathway.evaluate import evaluate, selected
from cds_hooks.pathway.rating import rate_orders, rate_suggestions, system_actions
from cds_hooks.pathway.record import PatientRecord, read_draft_orders, read_record
from cds_hooks.pathway.rules import Rules, ServiceDef
from cds_hooks.protocol.errors import ServiceError
from cds_hooks.protocol.wire import CONTEXT_MODELS, Action, HookRequest, OrderSelectContext, OrderSignContext

Model = TypeVar("Model", bound=BaseModel)


@dataclass
class HookOutcome:
    request: HookRequest
    patient_id: str
    record: PatientRecord
    issued: list[IssuedCard]
    # One update per rated draft order, carrying its appropriateness rating (pathway/rating.py).
    system_actions: list[Action] = field(default_factory=list)

    def response(self) -> dict[str, Any]:
        body: dict[str, Any] = {"cards": [i.card.model_dump(mode="json", exclude_none=True) for i in self.issued]}
        if self.system_actions:
            actions = [a.model_dump(mode="json", exclude_none=True) for a in self.system_actions]
            body["systemActions"] = actions  # CDS Hooks 2.0
            # The Argonaut PAMA guide, and the CDS Hooks Sandbox that follows it, read them here.
            body["extension"] = {"systemActions": actions}
        return body


def today_utc() -> date:
    return datetime.now(UTC).date()


def invalid_request(exc: ValidationError, prefix: str = "") -> ServiceError:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"] if p != "__root__")
        loc = f"{prefix}{loc}" if loc else prefix.rstrip(".")
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    expression = [p.split(":")[0] for p in parts if ":" in p]
    return ServiceError(422, "Not a conformant CDS Hooks request: " + "; ".join(parts), expression or None)


def parse_as(model: type[Model], body: Any, what: str, unread: tuple[str, ...] = ()) -> Model:
    """Validate a parsed JSON body against a wire model; refusals are 422.

    `unread` names top-level members not walked for depth here because the
    reader checks only the parts of them it uses (see limits.py).
    """
    if not isinstance(body, dict):
        raise ServiceError(422, f"The request body must be a JSON object ({what}).")
    if deeper_than({k: v for k, v in body.items() if k not in unread}):
        raise ServiceError(422, f"The request nests JSON arrays or objects more than {MAX_DEPTH} levels deep.")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise invalid_request(exc) from None


def _tokens(context: OrderSignContext) -> dict[str, str | None]:
    """CDS Hooks 2.0 prefetch tokens from the hook context."""
    kind, _, user = context.userId.partition("/")
    return {
        "context.patientId": context.patientId,
        "context.encounterId": context.encounterId,
        "context.userId": context.userId,
        "userPractitionerId": user if kind == "Practitioner" else None,
        "userPractitionerRoleId": user if kind == "PractitionerRole" else None,
    }


def gather_prefetch(
    service: ServiceDef,
    request: HookRequest,
    context: OrderSignContext,
    fetcher: FhirFetcher | None,
    deadline: float,
) -> tuple[dict[str, Any], dict[str, str]]:
    """The data for each prefetch key, and why any key could not be had.

    Keys the client sent are used as sent (`null` is a valid "no data"; an
    OperationOutcome means the client failed). Keys it left out are fetched
    from `fhirServer` when the deployment allows that server. Without
    required data the service cannot judge, so the answer is 412.
    """
    supplied = request.prefetch or {}
    data = {key: supplied[key] for key in service.prefetch if key in supplied}
    for key, value in data.items():
        problem = prefetch_problem(value)
        if problem:
            raise ServiceError(422, f"prefetch.{key} {problem}.", [f"prefetch.{key}"])
    unavailable = {key: "ehr-error" for key, value in data.items() if is_operation_outcome(value)}
    missing = [key for key in service.prefetch if key not in supplied]
    if missing and request.fhirServer is None:
        unavailable.update(dict.fromkeys(missing, "not-sent"))
    elif missing and (fetcher is None or not fetcher.allowed(request.fhirServer or "")):
        # No connection at all to a server the deployment has not allowed (SSRF). Without
        # required data that is a 412; optional history is reported on the card instead,
        # so a sandbox whose public FHIR server answered only some templates still works.
        if any(key in service.required for key in missing):
            # The reason's category only: the caller's URL is not echoed, and no server was contacted.
            why = ("it is not on this deployment's allow-list" if normalise_url(request.fhirServer or "")
                   else "it is not a plain http(s) base URL (no credentials, query, fragment, dot or empty "
                        "segments, escaped or control characters)")
            raise ServiceError(
                412,
                f"fhirServer is not a FHIR server this deployment may query: {why}, so "
                f"{', '.join(missing)} could not be fetched. No request was sent to it. Send the prefetch, "
                "or ask the service's operators to add the server to LUMBAR_CDS_FHIR_ALLOWLIST (https only).",
                ["fhirServer"],
            )
        unavailable.update(dict.fromkeys(missing, "not-allowed"))
    elif missing and fetcher is not None and request.fhirServer is not None:
        queries: dict[str, str] = {}
        for key in missing:
            query = render_template(service.prefetch[key], _tokens(context))
            if query is None:
                unavailable[key] = "no-context"
            else:
                queries[key] = query
        token = request.fhirAuthorization.access_token if request.fhirAuthorization else None
        fetched = fetcher.fetch(request.fhirServer, queries, token, deadline)
        data.update(fetched.data)
        fetched_patient = fetched.data.get("patient")
        if isinstance(fetched_patient, dict) and fetched_patient.get("id") not in (None, context.patientId):
            # The server answered a read of this patient with someone else: its fault, not the caller's.
            del data["patient"]
            fetched.failures["patient"] = FetchFailure("bad-response", "a different patient")
        for key, failure in (fetched.failures | fetched.truncated).items():
            unavailable[key] = failure.reason
    lacking = [key for key in service.required if unavailable.get(key, "truncated") != "truncated"]
    if lacking:
        raise ServiceError(
            412,
            "Required data is unavailable, so this service cannot judge the order: "
            + "; ".join(_why(key, unavailable[key], service) for key in lacking) + ".",
            [f"prefetch.{key}" for key in lacking],
        )
    return data, unavailable


def _why(key: str, reason: str, service: ServiceDef) -> str:
    # For integrators: the key, its template and the reason's category. Never a URL, a token, a transport
    # error or a status: those would make the service a port and status oracle (the log has them).
    explained = {
        "not-sent": "not in prefetch and no fhirServer to query",
        "not-allowed": "fhirServer is not on this deployment's allow-list",
        "ehr-error": "the EHR sent an OperationOutcome instead",
        "no-context": "its template needs a context value the request lacks",
        "timeout": "fhirServer did not answer within the deadline",
        "refused": "fhirServer refused the query (check fhirAuthorization)",
        "server-error": "fhirServer returned an error",
        "bad-response": "fhirServer's answer was not a usable FHIR response",
        "unreachable": "fhirServer could not be reached",
    }.get(reason, reason)
    return f"{key} ({service.prefetch[key]}): {explained}"


def evaluate_hook(
    rules: Rules,
    service: ServiceDef,
    body: Any,
    today: date | None = None,
    fetcher: FhirFetcher | None = None,
    deadline: float | None = None,
) -> HookOutcome:
    """Judge one parsed request body. Raises ServiceError for requests we refuse.

    `fetcher` fetches what prefetch lacks, until `deadline` (a monotonic
    instant; by default the fetcher's timeout from now).
    """
    if deadline is None:
        deadline = time.monotonic() + (fetcher.limits.timeout if fetcher else 0)
    request = parse_as(HookRequest, body, "a CDS Hooks request", unread=("prefetch",))
    if request.hook != service.hook:
        raise ServiceError(
            422, f"Service {service.id!r} answers the {service.hook!r} hook, not {request.hook!r}.", ["hook"]
        )
    try:
        context = CONTEXT_MODELS[service.hook].model_validate(request.context)
    except ValidationError as exc:
        raise invalid_request(exc, "context.") from None

    today = today or today_utc()
    prefetch, unavailable = gather_prefetch(service, request, context, fetcher, deadline)
    patient = prefetch.get("patient")
    if isinstance(patient, dict) and patient.get("resourceType") == "Patient" \
            and patient.get("id") not in (None, context.patientId):
        raise ServiceError(422, "prefetch.patient is a different patient than context.patientId.",
                           ["prefetch.patient"])
    record = read_record(prefetch, context.patientId, rules)
    record.unavailable.update(unavailable)

    orders = read_draft_orders(context.draftOrders, rules)
    record.region_skipped_orders = [o.ref for o in orders if o.region_skipped]  # counted in the metrics
    selections = context.selections if isinstance(context, OrderSelectContext) else None
    findings = evaluate(record, orders, rules, today, selections)
    judged = selected(orders, selections)
    ratings = rate_orders(record, judged, rules, today, findings)
    # Only orders we comment on (a card or a rating) need to be valid R4.
    for order in [o for o in judged if o.ref in ratings]:
        problem = validate_resource(order.resource)
        if problem:
            raise ServiceError(
                422, f"Draft order {order.ref} is not a valid FHIR R4 ServiceRequest: {problem}",
                ["context.draftOrders"],
            )
    who = OrderingContext(context.patientId, context.userId, context.encounterId, today)
    issued = build_cards(rules, findings, record, who)
    rate_suggestions(issued, record, rules, today)
    return HookOutcome(request, context.patientId, record, issued, system_actions(judged, ratings, rules))
