"""The OpenAPI 3.1 document served at /openapi.json.

Schemas come from the pydantic wire models (OpenAPI 3.1 uses JSON Schema 2020-12,
which is what pydantic emits), so the document cannot drift from what the API
validates and returns. Service ids and prefetch keys come from the loaded rules.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.json_schema import models_json_schema

from cds_hooks import __version__
from cds_hooks.pathway.rules import Rules, ServiceDef
from cds_hooks.protocol.wire import (
    CONTEXT_MODELS,
    CardsResponse,
    Discovery,
    FeedbackRequest,
    FeedbackResponse,
    Health,
    HookRequest,
    OperationOutcome,
)

_REF = "#/components/schemas/{model}"
JSON = "application/json"

ERRORS = {
    400: "The body is not valid JSON (including bytes that are not UTF-8).",
    401: "Authentication failed (only when trusted issuers are configured). No detail is given.",
    404: "A service id that discovery does not list (any path below /cds-services other than those here).",
    412: "Required prefetch data is missing or the EHR reported it could not supply it.",
    413: "The body is larger than the configured limit, or holds too many feedback items.",
    415: "The body is not application/json.",
    422: "Valid JSON, but not a conformant CDS Hooks request (wrong types, missing members, "
         "selections not in draftOrders, another hook, nesting deeper than the limit).",
}


class FhirResource(BaseModel):
    """Any FHIR R4 resource. Only `resourceType` is checked at the door."""

    model_config = ConfigDict(extra="allow", strict=True)
    resourceType: str


def _camel(text: str) -> str:
    return "".join(part.title() for part in text.replace(".", "-").replace("_", "-").split("-"))


def _request_model(service: ServiceDef) -> type[BaseModel]:
    """HookRequest as this service accepts it: its hook, that hook's context model, and
    the prefetch keys it asks for (each a FHIR resource or null; others are ignored)."""
    # Field names are internal; the JSON names are the aliases (prefetch keys come from rules).
    prefetch: Any = create_model(
        f"{_camel(service.id)}Prefetch", __config__=ConfigDict(extra="allow"),
        **{f"key{i}": (FhirResource | None, Field(default=None, alias=key))
           for i, key in enumerate(service.prefetch)},
    )
    return create_model(
        f"{_camel(service.id)}Request", __base__=HookRequest,
        hook=(Literal[service.hook], ...), context=(CONTEXT_MODELS[service.hook], ...),
        prefetch=(prefetch | None, None),
    )


def _response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {"X-Request-ID": {"$ref": "#/components/headers/RequestId"}},
        "content": {JSON: {"schema": schema}},
    }


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(status): {"$ref": f"#/components/responses/Error{status}"} for status in statuses}


def document(rules: Rules, auth_required: bool = False) -> dict[str, Any]:
    services = list(rules.services.values())
    requests = {service.id: _request_model(service) for service in services}
    refs, defs = models_json_schema(
        [(m, "validation") for m in (*requests.values(), FeedbackRequest)]
        + [(m, "serialization") for m in (Discovery, CardsResponse, FeedbackResponse, Health, OperationOutcome)],
        ref_template=_REF,
    )

    def ref(model: type[BaseModel], mode: str = "serialization") -> dict[str, Any]:
        return refs[(model, mode)]  # type: ignore[index]

    def body(model: type[BaseModel]) -> dict[str, Any]:
        return {"required": True, "content": {JSON: {"schema": ref(model, "validation")}}}

    paths: dict[str, Any] = {
        "/cds-services": {"get": {
            "operationId": "discovery", "summary": "CDS Hooks discovery: the services and their prefetch",
            "responses": {"200": _response("The services.", ref(Discovery)), **_errors(401)},
        }},
    }
    for service in services:
        paths[f"/cds-services/{service.id}"] = {"post": {
            "operationId": f"call-{service.id}", "summary": f"{service.title} ({service.hook})",
            "requestBody": body(requests[service.id]),
            "responses": {"200": _response("Cards; an empty list when there is nothing to say.",
                                           ref(CardsResponse)),
                          **_errors(400, 401, 412, 413, 415, 422)},
        }}
        paths[f"/cds-services/{service.id}/feedback"] = {"post": {
            "operationId": f"feedback-{service.id}",
            "summary": f"Feedback on {service.id} cards: stored durably, all items or none",
            "requestBody": body(FeedbackRequest),
            "responses": {"200": _response("Stored.", ref(FeedbackResponse)),
                          **_errors(400, 401, 413, 415, 422)},
        }}
    paths["/healthz"] = {"get": {
        "operationId": "health", "summary": "Rules loaded and database writable",
        "security": [{}],
        "responses": {"200": _response("Healthy.", ref(Health)),
                      "503": _response("The database is not writable.", ref(Health))},
    }}
    paths["/openapi.json"] = {"get": {
        "operationId": "openapi", "summary": "This document",
        "security": [{}],
        "responses": {"200": _response("The OpenAPI 3.1 document.", {"type": "object"})},
    }}
    bearer = (
        "CDS Hooks 2.0 client JWT (`Authorization: Bearer <JWT>`, signed ES384/RS384 by a trusted issuer). "
        + ("Required." if auth_required else "Optional: no trusted issuers are configured.")
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "lumbar-pathway-cds",
            "version": __version__,
            "description": "CDS Hooks 2.0 service for the lumbar conservative-care pathway. Every error "
                           "body is a FHIR OperationOutcome. A service id not listed here gets 404 "
                           "(components.responses.Error404).",
        },
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "security": [{"cdsHooksJwt": []}] if auth_required else [{}, {"cdsHooksJwt": []}],
        "paths": paths,
        "components": {
            "schemas": defs["$defs"],
            "securitySchemes": {"cdsHooksJwt": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                                                "description": bearer}},
            "headers": {"RequestId": {
                "description": "The caller's X-Request-ID when it is a plain token, else a new one; "
                               "also in the log line for this request.",
                "required": True, "schema": {"type": "string"},
            }},
            "responses": {f"Error{status}": _response(text, ref(OperationOutcome))
                          for status, text in ERRORS.items()},
        },
    }
