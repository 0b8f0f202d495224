"""One hook call, end to end, without HTTP: request → record → pathway → cards.

The Flask blueprint and the `lumbar-cds evaluate` command both call
`evaluate_hook`, so what the CLI prints is what the EHR gets.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from cds_hooks.cards import IssuedCard, OrderingContext, build_cards
from cds_hooks.errors import ServiceError
from cds_hooks.fhir import validate_resource
from cds_hooks.limits import MAX_DEPTH, deeper_than
from cds_hooks.pathway import evaluate
from cds_hooks.record import (
    PatientRecord,
    is_operation_outcome,
    prefetch_problem,
    read_draft_orders,
    read_record,
)
from cds_hooks.ruleset import Rules, ServiceDef
from cds_hooks.wire import CONTEXT_MODELS, HookRequest, OrderSelectContext

Model = TypeVar("Model", bound=BaseModel)


@dataclass
class HookOutcome:
    request: HookRequest
    record: PatientRecord
    issued: list[IssuedCard]

    def response(self) -> dict[str, Any]:
        return {"cards": [i.card.model_dump(mode="json", exclude_none=True) for i in self.issued]}


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


def resolve_prefetch(service: ServiceDef, request: HookRequest) -> tuple[dict[str, Any], list[str]]:
    """The prefetch data to read, and the optional keys the client did not send.

    `null` is a valid "no data" answer. A missing required key cannot be judged
    without, so the answer is 412.
    """
    supplied = request.prefetch or {}
    data = {key: supplied[key] for key in service.prefetch if key in supplied}
    for key, value in data.items():
        problem = prefetch_problem(value)
        if problem:
            raise ServiceError(422, f"prefetch.{key} {problem}.", [f"prefetch.{key}"])
    missing = [key for key in service.prefetch if key not in supplied]
    required_missing = [key for key in missing if key in service.required]
    failed = [key for key in service.required if is_operation_outcome(data.get(key))]
    if required_missing or failed:
        parts = []
        if required_missing:
            parts.append("missing: " + ", ".join(f"{k} ({service.prefetch[k]})" for k in required_missing))
        if failed:
            parts.append("the EHR reported it could not supply: " + ", ".join(failed))
        raise ServiceError(
            412,
            f"Required prefetch data is unavailable ({'; '.join(parts)}). "
            "This service cannot judge the order without it.",
            [f"prefetch.{k}" for k in (*required_missing, *failed)],
        )
    return data, missing


def evaluate_hook(
    rules: Rules, service: ServiceDef, body: Any, today: date | None = None
) -> HookOutcome:
    """Judge one parsed request body. Raises ServiceError for requests we refuse."""
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
    prefetch, missing = resolve_prefetch(service, request)
    patient = prefetch.get("patient")
    if isinstance(patient, dict) and patient.get("resourceType") == "Patient" \
            and patient.get("id") not in (None, context.patientId):
        raise ServiceError(422, "prefetch.patient is a different patient than context.patientId.",
                           ["prefetch.patient"])
    record = read_record(prefetch, context.patientId, rules)
    record.unavailable.extend(missing)

    orders = read_draft_orders(context.draftOrders, rules)
    selections = context.selections if isinstance(context, OrderSelectContext) else None
    findings = evaluate(record, orders, rules, today, selections)
    for finding in findings:  # only orders we comment on need to be valid R4
        problem = validate_resource(finding.order.resource)
        if problem:
            raise ServiceError(
                422, f"Draft order {finding.order.ref} is not a valid FHIR R4 ServiceRequest: {problem}",
                ["context.draftOrders"],
            )
    who = OrderingContext(context.patientId, context.userId, context.encounterId, today)
    return HookOutcome(request, record, build_cards(rules, findings, record, who))
