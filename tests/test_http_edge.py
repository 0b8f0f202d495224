"""The HTTP edge: CORS, security headers, request ids, methods, and the OpenAPI document."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from datetime import date
from typing import Any

import orjson
import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from cds_hooks.app import create_app
from cds_hooks.sandbox.fixtures import fixtures_dir, load_fixture
from cds_hooks.settings.config import Settings
from cds_hooks.telemetry.logs import safe_token
from tests.conftest import REPO

SELECT = "/cds-services/lumbar-pathway-order-select"
SANDBOX = "https://sandbox.cds-hooks.org"
# Every API route, with the methods it serves.
ROUTES = {
    "/cds-services": "GET",
    SELECT: "POST",
    SELECT + "/feedback": "POST",
    "/cds-services/lumbar-pathway-order-sign": "POST",
    "/healthz": "GET",
    "/openapi.json": "GET",
}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlaskClient]:
    """One app for the module: these tests only read."""
    app = create_app(Settings(data_dir=tmp_path_factory.mktemp("edge"), rules_dir=REPO / "rules", auto_migrate=True))
    with app.test_client() as c:
        yield c


def preflight(client: FlaskClient, path: str, origin: str, method: str = "POST") -> TestResponse:
    return client.options(path, headers={
        "Origin": origin, "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type",
    })


@pytest.mark.parametrize("path", ROUTES)
@pytest.mark.parametrize("origin", [SANDBOX, "http://localhost:3000", "http://127.0.0.1:8000", "http://[::1]:5173"])
def test_preflight_from_allowed_origins(client: FlaskClient, path: str, origin: str) -> None:
    # No Authorization header: browsers never send credentials on a preflight.
    response = preflight(client, path, origin, ROUTES[path])
    assert response.status_code == 204
    assert response.get_data() == b"" and "Content-Type" not in response.headers
    assert response.headers["Access-Control-Allow-Origin"] == origin
    allowed_headers = {h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type"} <= allowed_headers
    methods = {m.strip() for m in response.headers["Access-Control-Allow-Methods"].split(",")}
    assert ROUTES[path] in methods and "OPTIONS" in methods
    assert methods <= {"GET", "POST", "OPTIONS"}
    assert int(response.headers["Access-Control-Max-Age"]) > 0
    assert "Origin" in response.headers["Vary"]
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("origin", ["https://evil.example", "https://sandbox.cds-hooks.org.evil.example",
                                    "http://localhost.evil.example", "null", "file://", "ftp://localhost"])
def test_disallowed_origins_get_no_cors_headers(client: FlaskClient, origin: str) -> None:
    for response in (preflight(client, SELECT, origin), client.get("/cds-services", headers={"Origin": origin})):
        assert not [k for k, _ in response.headers.items() if k.lower().startswith("access-control-")]
        assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_cors_allow_list_comes_from_settings(make_app: Callable[..., Flask]) -> None:
    client = make_app(cors_origins=("https://ehr.example.org",)).test_client()
    assert preflight(client, SELECT, "https://ehr.example.org").headers["Access-Control-Allow-Origin"] \
        == "https://ehr.example.org"
    assert "Access-Control-Allow-Origin" not in preflight(client, SELECT, SANDBOX).headers
    # Loopback stays allowed for development whatever the list says.
    assert preflight(client, SELECT, "http://localhost:3000").headers["Access-Control-Allow-Origin"]


def test_actual_cross_origin_call_exposes_the_request_id(client: FlaskClient, today: date) -> None:
    body = load_fixture(fixtures_dir() / "premature-mri-3-weeks.json", today).request
    response = client.post(SELECT, json=body, headers={"Origin": SANDBOX})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == SANDBOX
    assert response.headers["Access-Control-Expose-Headers"] == "X-Request-ID"
    assert "Access-Control-Allow-Methods" not in response.headers  # preflight only


def test_preflight_on_an_unknown_path_is_a_404_outcome(client: FlaskClient) -> None:
    response = preflight(client, "/nowhere", SANDBOX)
    assert response.status_code == 404
    assert response.get_json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/cds-services", 200),
    ("GET", "/healthz", 200),
    ("GET", "/openapi.json", 200),
    ("GET", "/nowhere", 404),
    ("DELETE", "/cds-services", 405),
    ("POST", SELECT, 400),
    ("POST", "/cds-services/unknown", 404),
    ("OPTIONS", SELECT, 200),  # a plain OPTIONS (not a preflight) gets Flask's Allow answer
])
def test_security_headers_on_every_response(client: FlaskClient, method: str, path: str, status: int) -> None:
    response = client.open(path, method=method, data=b"" if method == "POST" else None,
                           content_type="application/json")
    assert response.status_code == status
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Request-ID"]
    if status >= 400:
        assert response.mimetype == "application/json"
        assert response.get_json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(("path", "method", "allow"), [
    ("/cds-services", "DELETE", {"GET", "HEAD", "OPTIONS"}),
    (SELECT, "GET", {"POST", "OPTIONS"}),
    (SELECT + "/feedback", "PUT", {"POST", "OPTIONS"}),
])
def test_405_names_the_allowed_methods(client: FlaskClient, path: str, method: str, allow: set[str]) -> None:
    response = client.open(path, method=method)
    assert response.status_code == 405
    assert {m.strip() for m in response.headers["Allow"].split(",")} == allow
    assert method in response.get_json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize(("sent", "echoed"), [
    ("4f1c2a9e-trace.7", True),
    ("a" * 128, True),
    ("a" * 129, False),  # too long to be an id
    ("id;status=200", False),
    ("has space", False),
    ('{"json": 1}', False),
])
def test_request_id_is_echoed_only_when_it_is_a_plain_token(client: FlaskClient, sent: str, echoed: bool) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": sent})
    got = response.headers["X-Request-ID"]
    if echoed:
        assert got == sent
    else:
        assert got != sent and len(got) == 32 and int(got, 16) >= 0


@pytest.mark.parametrize("value", ["abc\n", "abc\r\n", "\nabc", "ab\ncd"])
def test_a_value_with_a_line_break_is_no_log_token(value: str) -> None:
    # A final newline passes a `^...$` match in Python; a logged id must not end a log line early.
    assert safe_token(value) is None
    assert safe_token("abc") == "abc"


def test_request_ids_are_minted_fresh(client: FlaskClient) -> None:
    ids = {client.get("/healthz").headers["X-Request-ID"] for _ in range(3)}
    assert len(ids) == 3


# ---- the OpenAPI document ----------------------------------------------------------------


@pytest.fixture
def document(client: FlaskClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    return orjson.loads(response.get_data())


def _resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        *_, section, name = node["$ref"].split("/")
        node = document["components"][section][name]
    return node


def test_openapi_documents_every_route_and_error(document: dict[str, Any], client: FlaskClient) -> None:
    assert document["openapi"].startswith("3.1")
    services = [s["id"] for s in client.get("/cds-services").get_json()["services"]]
    expected = {"/cds-services", "/healthz", "/openapi.json",
                *(f"/cds-services/{s}" for s in services), *(f"/cds-services/{s}/feedback" for s in services)}
    assert set(document["paths"]) == expected
    call = document["paths"][SELECT]["post"]
    assert set(call["responses"]) == {"200", "400", "401", "412", "413", "415", "422"}
    assert set(document["paths"][SELECT + "/feedback"]["post"]["responses"]) == {
        "200", "400", "401", "413", "415", "422"}
    for status in ("400", "401", "404", "412", "413", "415", "422"):
        error = document["components"]["responses"][f"Error{status}"]
        assert error["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/OperationOutcome"}
    request = _resolve(document, call["requestBody"]["content"]["application/json"]["schema"])
    assert request["properties"]["hook"] == {"const": "order-select", "title": "Hook", "type": "string"}
    context = _resolve(document, request["properties"]["context"])
    assert {"userId", "patientId", "draftOrders", "selections"} <= set(context["required"])
    ok = _resolve(document, call["responses"]["200"])
    assert ok["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/CardsResponse"}
    assert ok["headers"]["X-Request-ID"]


def test_openapi_bearer_jwt_is_optional_without_issuers(document: dict[str, Any]) -> None:
    scheme = document["components"]["securitySchemes"]["cdsHooksJwt"]
    assert scheme == {**scheme, "type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    assert {} in document["security"] and {"cdsHooksJwt": []} in document["security"]


def test_openapi_card_schema_is_the_wire_model(document: dict[str, Any]) -> None:
    """Generated from pydantic, so a limit in the model is a limit in the document."""
    card = document["components"]["schemas"]["Card"]
    assert card["properties"]["summary"]["maxLength"] == 139
    assert card["additionalProperties"] is False
    outcome = document["components"]["schemas"]["OperationOutcome"]
    assert outcome["properties"]["resourceType"]["const"] == "OperationOutcome"


LIMIT = 5 * 1024 * 1024


@pytest.mark.parametrize(("body", "status"), [
    (b"x" * (LIMIT + 1), 413),
    # Cut at the limit this would be valid JSON: the rest must not be silently dropped.
    (b'{"hook": 1}' + b" " * LIMIT, 413),
    (b'{"hook": 1}', 422),
])
def test_body_limit_holds_without_content_length(client: FlaskClient, body: bytes, status: int) -> None:
    """A chunked body (no Content-Length) is counted as it is read, so the limit still holds."""
    response = client.post(SELECT, input_stream=io.BytesIO(body), content_type="application/json",
                           headers={"Transfer-Encoding": "chunked"},
                           environ_overrides={"wsgi.input_terminated": True})
    assert response.status_code == status
    assert response.get_json()["resourceType"] == "OperationOutcome"
