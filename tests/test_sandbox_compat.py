"""Compatibility with the public CDS Hooks Sandbox (cds-hooks/sandbox, a React app
in the browser): CORS, its PAMA Imaging order-select / order-sign requests, and
its feedback POSTs, replayed over HTTP in the exact shape it sends.

Request shape: src/components/Pama/pama.jsx `generateContext` (draftOrders Bundle
without `type`; one ServiceRequest id `example-request-id`, status draft, intent
plan, code = the chosen CPT coding with its display as text, reasonCode = chosen
SNOMED codings) and src/retrieve-data-helpers/service-exchange.js `callServices`
(hookInstance uuid, fhirServer, context patientId/userId + the hook context,
prefetch only for the keys its FHIR server answered, an ES384 JWT bearer).
Codings are from its src/assets/pama-procedure-codes.json and pama-reason-codes.json.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from flask import Flask
from flask.testing import FlaskClient

from cds_hooks.protocol.pama import rating_of
from tests.conformance import assert_conformant

SANDBOX = "https://sandbox.cds-hooks.org"
FHIR_SERVER = "https://launch.smarthealthit.org/v/r4/fhir"  # an open R4 server: no fhirAuthorization
PATIENT = "SMART-1288992"  # the sandbox's default patient
USER = "Practitioner/COREPRACTITIONER1"  # the sandbox's default user
SELECT = "/cds-services/lumbar-pathway-order-select"
SIGN = "/cds-services/lumbar-pathway-order-sign"
CPT = "http://www.ama-assn.org/go/cpt"
LOW_BACK_PAIN = {"system": "http://snomed.info/sct", "code": "279039007", "display": "Low back pain"}

# Lumbar studies in the sandbox's PAMA procedure list, with its displays.
LUMBAR_STUDIES = {
    "72131": "Computed tomography, lumbar spine; without contrast material",
    "72132": "Computed tomography, lumbar spine; with contrast material",
    "72133": "Computed tomography, lumbar spine; without contrast material, followed by contrast material(s) "
             "and further sections",
    "72148": "Magnetic resonance (eg, proton) imaging, spinal canal and contents, lumbar; without contrast material",
    "72149": "Magnetic resonance (eg, proton) imaging, spinal canal and contents, lumbar; with contrast material(s)",
    "72158": "Magnetic resonance (eg, proton) imaging, spinal canal and contents, without contrast material, "
             "followed by contrast material(s) and further sequences; lumbar",
}
# Each study's name on the card (cards.yaml order_names, by the value set the code is in).
SHORT_NAMES = {"72131": "Lumbar CT", "72132": "Lumbar CT", "72133": "Lumbar CT", "72148": "Lumbar MRI",
               "72149": "Lumbar MRI with contrast", "72158": "Lumbar MRI with contrast"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sandbox_headers(url: str) -> dict[str, str]:
    """What the sandbox's axios call sends: JSON, and a JWT whose aud is the endpoint URL.

    The service does not verify JWTs yet; when it does, trust must be configured here.
    """
    now = int(time.time())
    header = {"alg": "ES384", "typ": "JWT", "kid": "44823f3d-0b01-4a6c-a80e-b9d3e8a7226f",
              "jku": f"{SANDBOX}/.well-known/jwks.json"}
    claims = {"iss": SANDBOX, "aud": f"http://localhost{url}", "exp": now + 300, "iat": now, "jti": str(uuid.uuid4())}
    token = ".".join([_b64(json.dumps(header).encode()), _b64(json.dumps(claims).encode()), _b64(b"\x00" * 96)])
    return {"Origin": SANDBOX, "Accept": "application/json", "Content-Type": "application/json;charset=utf-8",
            "Authorization": f"Bearer {token}"}


def _searchset(resource_type: str) -> dict[str, Any]:
    """An empty search result as FHIR servers return it (no `entry`)."""
    return {"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": "searchset", "total": 0,
            "link": [{"relation": "self", "url": f"{FHIR_SERVER}/{resource_type}?patient={PATIENT}"}]}


def pama_request(code: str, display: str, reasons: list[dict[str, str]], hook: str = "order-select",
                 prefetch_keys: tuple[str, ...] | None = None) -> dict[str, Any]:
    study = {"system": CPT, "code": code, "display": display}
    draft = {
        "resourceType": "ServiceRequest",
        "id": "example-request-id",
        "status": "draft",
        "intent": "plan",
        "code": {"coding": [study], "text": display},
        "subject": {"reference": f"Patient/{PATIENT}"},
        "reasonCode": [{"coding": [r], "text": r["display"]} for r in reasons],
    }
    prefetch = {
        "patient": {"resourceType": "Patient", "id": PATIENT, "active": True, "gender": "male",
                    "birthDate": "1925-12-23",
                    "name": [{"use": "official", "family": "Adams", "given": ["Daniel", "X."]}]},
        "conditions": _searchset("Condition"),
        "procedures": _searchset("Procedure"),
        "encounters": _searchset("Encounter"),
        "medicationRequests": _searchset("MedicationRequest"),
        "medicationStatements": _searchset("MedicationStatement"),
        "serviceRequests": _searchset("ServiceRequest"),
        "imagingStudies": _searchset("ImagingStudy"),
        "diagnosticReports": _searchset("DiagnosticReport"),
    }
    if prefetch_keys is not None:  # the sandbox leaves out keys its FHIR server did not answer
        prefetch = {k: v for k, v in prefetch.items() if k in prefetch_keys}
    return {
        "hookInstance": str(uuid.uuid4()),
        "hook": hook,
        "fhirServer": FHIR_SERVER,
        "context": {
            "patientId": PATIENT,
            "userId": USER,
            # pama.jsx sends selections for order-sign too; the service must ignore them there.
            "selections": ["ServiceRequest/example-request-id"],
            "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": draft}]},
        },
        "prefetch": prefetch,
    }


def post(client: FlaskClient, url: str, body: dict[str, Any]) -> Any:
    return client.post(url, data=orjson.dumps(body), headers=sandbox_headers(url))


# --------------------------------------------------------------------------- CORS


@pytest.mark.parametrize(("url", "method"), [
    ("/cds-services", "GET"), (SELECT, "POST"), (SIGN, "POST"), (f"{SELECT}/feedback", "POST"),
])
def test_cors_preflight_from_the_sandbox(client: FlaskClient, url: str, method: str) -> None:
    """The browser's preflight carries no Authorization header and must not need one."""
    response = client.options(url, headers={
        "Origin": SANDBOX, "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization,content-type",
    })
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == SANDBOX
    assert method in response.headers["Access-Control-Allow-Methods"]
    allowed = {h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type"} <= allowed
    assert "Origin" in response.headers["Vary"]


def test_cors_headers_on_real_answers_and_refusals(client: FlaskClient) -> None:
    discovery = client.get("/cds-services", headers=sandbox_headers("/cds-services"))
    assert discovery.status_code == 200
    assert discovery.headers["Access-Control-Allow-Origin"] == SANDBOX
    assert {s["id"] for s in discovery.json["services"]} == {SELECT.rsplit("/", 1)[1], SIGN.rsplit("/", 1)[1]}
    answer = post(client, SELECT, pama_request("72148", LUMBAR_STUDIES["72148"], [LOW_BACK_PAIN]))
    assert answer.status_code == 200
    assert answer.headers["Access-Control-Allow-Origin"] == SANDBOX
    # The sandbox must be able to read a refusal too.
    refused = post(client, SELECT, {"hook": "order-select"})
    assert refused.status_code == 422
    assert refused.headers["Access-Control-Allow-Origin"] == SANDBOX
    assert refused.json["resourceType"] == "OperationOutcome"


# --------------------------------------------------------------------------- PAMA Imaging requests


@pytest.mark.parametrize("code", sorted(LUMBAR_STUDIES))
@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_pama_lumbar_study_for_low_back_pain_gets_the_premature_imaging_card(
    client: FlaskClient, code: str, hook: str
) -> None:
    request = pama_request(code, LUMBAR_STUDIES[code], [LOW_BACK_PAIN], hook=hook)
    response = post(client, SELECT if hook == "order-select" else SIGN, request)
    assert response.status_code == 200, response.get_data(as_text=True)
    body = orjson.loads(response.get_data())
    assert_conformant(body, request)
    [card] = body["cards"]
    assert card["source"]["topic"]["code"] == "imaging-premature"
    assert card["indicator"] == "warning"
    # Verdict first, with our short name for the study, never the Sandbox's 100-character CPT wording.
    assert card["summary"].startswith(f"{SHORT_NAMES[code]} likely premature: ")
    assert LUMBAR_STUDIES[code][:20] not in card["summary"]
    assert "No formal PT this episode" in card["detail"]
    replace, remove = card["suggestions"]
    assert [a["type"] for a in replace["actions"]] == ["delete", "create"]
    assert replace["actions"][0]["resourceId"] == "ServiceRequest/example-request-id"
    assert remove["actions"] == [{"type": "delete", "description": remove["actions"][0]["description"],
                                  "resourceId": "ServiceRequest/example-request-id"}]
    # The sandbox's takeSuggestion reads code.coding[0] and reasonCode[0].coding[0] of created resources.
    created = replace["actions"][1]["resource"]
    assert created["code"]["coding"][0]["code"]
    assert created["reasonCode"][0]["coding"][0] == LOW_BACK_PAIN
    assert created["subject"] == {"reference": f"Patient/{PATIENT}"}


def test_pama_with_only_some_prefetch_answered(client: FlaskClient) -> None:
    """Keys the sandbox's FHIR server did not answer are left out: the card says what was not checked."""
    request = pama_request("72148", LUMBAR_STUDIES["72148"], [LOW_BACK_PAIN], prefetch_keys=("patient", "conditions"))
    response = post(client, SELECT, request)
    assert response.status_code == 200
    [card] = response.json["cards"]
    [not_read] = [line for line in card["detail"].splitlines() if line.startswith("- **Not read:**")]
    # Every key the server left unanswered is counted (three named, then "and N more"); none it answered.
    *named, more = not_read.removeprefix("- **Not read:** ").split(", ")
    declared = next(x for x in client.get("/cds-services").json["services"] if x["id"] == SELECT.rsplit("/", 1)[-1])
    unanswered = len(declared["prefetch"]) - 2
    assert len(named) + int(more.removeprefix("and ").removesuffix(" more")) == unanswered
    assert "diagnoses" not in not_read and "demographics" not in not_read


def test_pama_without_conditions_prefetch_is_412(client: FlaskClient) -> None:
    request = pama_request("72148", LUMBAR_STUDIES["72148"], [LOW_BACK_PAIN], prefetch_keys=("patient",))
    response = post(client, SELECT, request)
    assert response.status_code == 412
    assert "conditions" in response.json["issue"][0]["diagnostics"]


def sandbox_rating(body: dict[str, Any]) -> str | None:
    """The PAMA rating the sandbox shows: the first pama-rating on an update in extension.systemActions."""
    actions = body.get("extension", {}).get("systemActions", [])
    ratings = [rating_of(a["resource"]) for a in actions if a["type"] == "update"]
    return next((r for r in ratings if r), None)


@pytest.mark.parametrize(("code", "display", "reason", "rating"), [
    # The sandbox's other default study and reason: not an order this service judges, so no rating.
    ("75561", "Cardiac magnetic resonance imaging for morphology and function without contrast material",
     {"system": "http://snomed.info/sct", "code": "13213009", "display": "Congenital heart disease"}, None),
    # A lumbar MRI without a back-pain reason and no back condition on record: no criteria of ours apply.
    ("72148", LUMBAR_STUDIES["72148"], None, "no-criteria-apply"),
])
def test_pama_outside_the_pathway_gets_no_card(
    client: FlaskClient, code: str, display: str, reason: dict[str, str] | None, rating: str | None
) -> None:
    request = pama_request(code, display, [reason] if reason else [])
    response = post(client, SELECT, request)
    assert response.status_code == 200
    assert response.json["cards"] == []
    assert_conformant(response.json, request)
    assert sandbox_rating(response.json) == rating


def test_pama_rating_follows_the_reason(client: FlaskClient) -> None:
    """Low back pain alone: not appropriate yet; with a lumbar fracture (a red flag): appropriate, and silent."""
    fracture = {"system": "http://snomed.info/sct", "code": "125608002", "display": "Fracture of lumbar spine"}
    premature = post(client, SELECT, pama_request("72148", LUMBAR_STUDIES["72148"], [LOW_BACK_PAIN])).json
    flagged = post(client, SELECT, pama_request("72148", LUMBAR_STUDIES["72148"], [LOW_BACK_PAIN, fracture])).json
    assert (len(premature["cards"]), sandbox_rating(premature)) == (1, "not-appropriate")
    assert (flagged["cards"], sandbox_rating(flagged)) == ([], "appropriate")


# --------------------------------------------------------------------------- feedback


def _feedback_rows(app: Flask) -> list[dict[str, Any]]:
    with sqlite3.connect(Path(app.extensions["lumbar_cds.settings"].database_path)) as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM feedback ORDER BY id")]


def test_sandbox_feedback_posts_are_accepted_and_stored(app: Flask, client: FlaskClient) -> None:
    answer = post(client, SELECT, pama_request("72133", LUMBAR_STUDIES["72133"], [LOW_BACK_PAIN]))
    [card] = answer.json["cards"]
    suggestion = card["suggestions"][0]
    reason = card["overrideReasons"][1]
    url = f"{SELECT}/feedback"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    accepted = post(client, url, {"feedback": [{
        "card": card["uuid"], "outcome": "accepted",
        "acceptedSuggestions": [{"id": suggestion["uuid"]}], "outcomeTimestamp": stamp,
    }]})
    # The sandbox sends the reason as {code, system}: no display, no userComment.
    overridden = post(client, url, {"feedback": [{
        "card": card["uuid"], "outcome": "overridden",
        "overrideReason": {"reason": {"code": reason["code"], "system": reason["system"]}},
        "outcomeTimestamp": stamp,
    }]})
    for response in (accepted, overridden):
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.json == {"stored": 1, "unknownCards": 0}
        assert response.headers["Access-Control-Allow-Origin"] == SANDBOX
    rows = _feedback_rows(app)
    assert [(r["card_uuid"], r["outcome"], r["known_card"], r["rule_id"]) for r in rows] == [
        (card["uuid"], "accepted", 1, "imaging-premature"),
        (card["uuid"], "overridden", 1, "imaging-premature"),
    ]
    assert json.loads(rows[0]["accepted_suggestions"]) == [suggestion["uuid"]]
    assert (rows[1]["override_code"], rows[1]["override_system"], rows[1]["override_display"]) == (
        reason["code"], reason["system"], None)
