"""The HTTP API: discovery, error statuses with OperationOutcome, feedback, health."""

from __future__ import annotations

import copy
import sqlite3
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import pytest
from flask import Flask
from flask.testing import FlaskClient

from cds_hooks.pathway.rules.schema import _TOKEN, ALLOWED_PREFETCH_TOKENS
from cds_hooks.sandbox.fixtures import fixtures_dir, load_fixture
from cds_hooks.store.database import create_db_engine
from tests.conformance import assert_no_null_or_empty

SELECT = "/cds-services/lumbar-pathway-order-select"
SIGN = "/cds-services/lumbar-pathway-order-sign"


@pytest.fixture
def premature(today: date) -> dict[str, Any]:
    return load_fixture(fixtures_dir() / "premature-mri-3-weeks.json", today).request


def _post(client: FlaskClient, url: str, body: Any) -> tuple[int, dict[str, Any]]:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    response = client.post(url, data=raw, content_type="application/json")
    return response.status_code, orjson.loads(response.get_data())


def _assert_outcome(body: dict[str, Any], *words: str) -> None:
    assert body["resourceType"] == "OperationOutcome"
    diagnostics = body["issue"][0]["diagnostics"]
    for word in words:
        assert word in diagnostics, diagnostics


def test_discovery_lists_select_and_sign_with_prefetch(client: FlaskClient) -> None:
    response = client.get("/cds-services")
    assert response.status_code == 200
    body = response.get_json()
    assert_no_null_or_empty(body)
    hooks = {s["hook"] for s in body["services"]}
    assert {"order-select", "order-sign"} <= hooks
    for service in body["services"]:
        assert set(service) == {"hook", "title", "description", "id", "prefetch", "usageRequirements"}
        assert {"patient", "conditions", "procedures", "medicationRequests", "medicationStatements",
                "serviceRequests"} <= set(service["prefetch"])
        for template in service["prefetch"].values():
            assert set(_TOKEN.findall(template)) <= ALLOWED_PREFETCH_TOKENS


def test_premature_order_gets_one_card(client: FlaskClient, premature: dict[str, Any]) -> None:
    status, body = _post(client, SELECT, premature)
    assert status == 200
    assert [c["source"]["topic"]["code"] for c in body["cards"]] == ["imaging-premature"]
    assert body["cards"][0]["summary"].startswith("Lumbar MRI likely premature: 3 weeks of symptoms")  # verdict first


def test_cards_get_fresh_uuids_per_call(client: FlaskClient, premature: dict[str, Any]) -> None:
    first = _post(client, SELECT, premature)[1]["cards"][0]
    second = _post(client, SELECT, premature)[1]["cards"][0]
    assert first["uuid"] != second["uuid"]
    assert first["suggestions"][0]["uuid"] != second["suggestions"][0]["uuid"]


def test_replace_with_pt_creates_a_referral_for_this_patient_and_encounter(
    client: FlaskClient, premature: dict[str, Any]
) -> None:
    card = _post(client, SELECT, premature)[1]["cards"][0]
    replace = card["suggestions"][0]
    assert replace["label"] == "Replace with physical-therapy referral"
    delete, create = replace["actions"]
    assert delete == {"type": "delete", "description": delete["description"], "resourceId": "ServiceRequest/mri-1"}
    referral = create["resource"]
    assert referral["resourceType"] == "ServiceRequest"
    assert referral["status"] == "draft" and referral["intent"] == "order"
    assert referral["subject"] == {"reference": "Patient/pat-lbp-3w"}
    assert referral["encounter"] == {"reference": "Encounter/enc-1"}
    assert referral["requester"] == {"reference": "Practitioner/dr-lee"}
    assert referral["reasonCode"] == premature["context"]["draftOrders"]["entry"][0]["resource"]["reasonCode"]


@pytest.mark.parametrize(
    ("mutate", "status", "words"),
    [
        (lambda b: b.pop("hook"), 422, ["hook"]),
        (lambda b: b.pop("hookInstance"), 422, ["hookInstance"]),
        (lambda b: b.pop("context"), 422, ["context"]),
        (lambda b: b.update(hook="patient-view"), 422, ["order-select"]),
        (lambda b: b.update(hookInstance=42), 422, ["hookInstance"]),
        (lambda b: b["context"].update(patientId=7), 422, ["context.patientId"]),
        (lambda b: b["context"].update(selections="ServiceRequest/mri-1"), 422, ["selections"]),
        (lambda b: b["context"].update(selections=["ServiceRequest/nope"]), 422, ["not an entry"]),
        (lambda b: b["context"].update(draftOrders=[]), 422, ["draftOrders"]),
        (lambda b: b.update(fhirAuthorization={"access_token": "x"}), 422, ["fhirServer"]),
        (lambda b: b["prefetch"].pop("conditions"), 412, ["conditions", "Condition?patient=", "no fhirServer"]),
        (lambda b: b.pop("prefetch"), 412, ["patient", "conditions"]),
        (lambda b: b["prefetch"].update(conditions={"resourceType": "OperationOutcome", "issue": [
            {"severity": "error", "code": "timeout"}]}), 412, ["conditions", "sent an OperationOutcome"]),
        (lambda b: b["prefetch"]["patient"].update(id="someone-else"), 422, ["different patient"]),
    ],
)
def test_bad_requests_get_operation_outcomes(
    client: FlaskClient, premature: dict[str, Any], mutate: Any, status: int, words: list[str]
) -> None:
    body = copy.deepcopy(premature)
    mutate(body)
    got, outcome = _post(client, SELECT, body)
    assert got == status
    _assert_outcome(outcome, *words)


def test_unparsable_json_is_400(client: FlaskClient) -> None:
    status, body = _post(client, SELECT, b'{"hook": "order-select",')
    assert status == 400
    _assert_outcome(body, "not valid JSON")


def test_json_that_is_not_an_object_is_422(client: FlaskClient) -> None:
    status, body = _post(client, SELECT, b"[1, 2]")
    assert status == 422
    _assert_outcome(body, "JSON object")


def test_unknown_service_is_404(client: FlaskClient, premature: dict[str, Any]) -> None:
    status, body = _post(client, "/cds-services/no-such-service", premature)
    assert status == 404
    _assert_outcome(body, "no-such-service", "lumbar-pathway-order-select")


def test_wrong_content_type_is_415(client: FlaskClient, premature: dict[str, Any]) -> None:
    response = client.post(SELECT, data=orjson.dumps(premature), content_type="text/plain")
    assert response.status_code == 415
    _assert_outcome(response.get_json(), "application/json")


def test_oversized_body_is_413(make_app: Any, premature: dict[str, Any]) -> None:
    client = make_app(max_body_bytes=1000).test_client()
    status, body = _post(client, SELECT, premature)
    assert status == 413
    _assert_outcome(body, "1000 bytes")


def test_unknown_route_and_method_are_operation_outcomes(client: FlaskClient) -> None:
    response = client.get("/nowhere")
    assert response.status_code == 404
    _assert_outcome(response.get_json(), "/cds-services")
    response = client.delete("/cds-services")
    assert response.status_code == 405
    _assert_outcome(response.get_json(), "DELETE")


def test_null_prefetch_means_no_data(client: FlaskClient, premature: dict[str, Any]) -> None:
    body = copy.deepcopy(premature)
    for key in body["prefetch"]:
        if key != "patient":
            body["prefetch"][key] = None
    status, response = _post(client, SELECT, body)
    assert status == 200
    # The order's reasonCode still puts the patient in the pathway; no PT, so premature.
    assert [c["source"]["topic"]["code"] for c in response["cards"]] == ["imaging-premature"]
    missing = next(line for line in response["cards"][0]["detail"].splitlines() if "Not documented" in line)
    assert "symptom onset date" in missing


def _db(app: Flask) -> sqlite3.Connection:
    path: Path = app.extensions["lumbar_cds.settings"].database_path
    return sqlite3.connect(path)


def test_issued_cards_are_recorded_without_patient_identifiers(
    app: Flask, client: FlaskClient, premature: dict[str, Any]
) -> None:
    card = _post(client, SELECT, premature)[1]["cards"][0]
    rows = _db(app).execute("SELECT * FROM issued_cards").fetchall()
    assert len(rows) == 1
    row = rows[0]
    assert row[0] == card["uuid"] and row[1] == "imaging-premature"
    assert premature["hookInstance"] in row
    dump = repr(rows)
    for identifier in ("pat-lbp-3w", "dr-lee", "enc-1", "mri-1"):
        assert identifier not in dump


def test_feedback_round_trips_through_sqlite(app: Flask, client: FlaskClient, premature: dict[str, Any]) -> None:
    card = _post(client, SELECT, premature)[1]["cards"][0]
    accepted = {
        "card": card["uuid"], "outcome": "accepted",
        "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}],
        "outcomeTimestamp": "2026-11-21T10:00:00Z",
    }
    overridden = {
        "card": card["uuid"], "outcome": "overridden",
        # The CDS Hooks Sandbox sends reasons without display.
        "overrideReason": {"reason": {"code": "conservative-care-elsewhere",
                                      "system": "http://lumbar-pathway-cds.org/fhir/CodeSystem/override-reason"},
                           "userComment": "PT done at another clinic"},
        "outcomeTimestamp": "2026-11-21T10:01:00Z",
    }
    unknown = {"card": "not-a-card-we-issued", "outcome": "overridden", "outcomeTimestamp": "2026-11-21T10:02:00Z"}
    url = SELECT + "/feedback"
    status, body = _post(client, url, {"feedback": [accepted, overridden, unknown]})
    assert status == 200 and body == {"stored": 3, "unknownCards": 1}
    status, body = _post(client, url, {"feedback": [overridden]})  # duplicate post
    assert status == 200
    rows = app.extensions["lumbar_cds.store"].feedback_rows()
    # A fresh connection sees them: they were committed before the 200.
    assert _db(app).execute("SELECT count(*) FROM feedback").fetchone()[0] == 4
    assert [r["outcome"] for r in rows] == ["accepted", "overridden", "overridden", "overridden"]
    assert rows[0]["rule_id"] == "imaging-premature" and rows[0]["known_card"] == 1
    assert orjson.loads(rows[0]["accepted_suggestions"]) == [card["suggestions"][0]["uuid"]]
    assert rows[0]["unknown_suggestions"] is None
    assert rows[1]["override_code"] == "conservative-care-elsewhere" and rows[1]["override_display"] is None
    assert rows[1]["user_comment"] == "PT done at another clinic"
    assert rows[2]["known_card"] == 0 and rows[2]["rule_id"] is None


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"feedback": []},
        {"feedback": [{"card": "x", "outcome": "ignored", "outcomeTimestamp": "t"}]},
        {"feedback": [{"card": "x", "outcome": "accepted", "outcomeTimestamp": "t"}]},
        {"feedback": "x"},
    ],
)
def test_bad_feedback_is_422_and_stores_nothing(app: Flask, client: FlaskClient, body: Any) -> None:
    status, outcome = _post(client, SELECT + "/feedback", body)
    assert status == 422
    _assert_outcome(outcome)
    assert app.extensions["lumbar_cds.store"].feedback_rows() == []


def test_healthz(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json()["status"] == "ok"


def test_readyz_reports_unwritable_database_and_healthz_stays_live(app: Flask, client: FlaskClient) -> None:
    assert client.get("/readyz").get_json()["status"] == "ready"
    path: Path = app.extensions["lumbar_cds.settings"].database_path
    store = app.extensions["lumbar_cds.store"]
    store.engine = create_db_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["resourceType"] == "OperationOutcome"
    assert client.get("/healthz").status_code == 200  # liveness: a database problem must not restart us


def test_cards_still_reach_the_clinician_when_the_database_refuses_the_write(
    app: Flask, client: FlaskClient, premature: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    path: Path = app.extensions["lumbar_cds.settings"].database_path
    app.extensions["lumbar_cds.store"].engine = create_db_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
    status, body = _post(client, SELECT, premature)
    assert status == 200
    assert [c["source"]["topic"]["code"] for c in body["cards"]] == ["imaging-premature"]
    assert "issued cards not recorded: OperationalError" in caplog.text


def test_security_and_cors_headers(client: FlaskClient) -> None:
    response = client.get("/cds-services", headers={"Origin": "https://sandbox.cds-hooks.org"})
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Access-Control-Allow-Origin"] == "https://sandbox.cds-hooks.org"
    preflight = client.options(SELECT, headers={
        "Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    })
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    other = client.get("/cds-services", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers
