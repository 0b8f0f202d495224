"""Logs: one structured line per request, and never a token, a JWT or patient data.

Every fixture scenario goes through the real app with a fhirAuthorization access
token, a JWT-shaped Authorization header and a named patient added, with every
logger captured at DEBUG through the service's own JSON formatter.
"""

from __future__ import annotations

import base64
import io
import logging
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from flask import Flask

from cds_hooks.app import create_app
from cds_hooks.fhir.bundles import bundle_resources
from cds_hooks.sandbox.fixtures import Fixture, fixtures_dir, load_fixture
from cds_hooks.service.hook import today_utc
from cds_hooks.settings.config import Settings
from cds_hooks.telemetry.logs import REQUEST_LOGGER, JsonFormatter, TextFormatter
from tests.conftest import REPO

ACCESS_TOKEN = "opaque-access-token-Zx81Qm"
FAMILY, GIVEN = "Quillfeather", "Ottoline"


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=").decode()


JWT_HEADER = _b64({"alg": "ES384", "typ": "JWT", "kid": "key-logtest"})
JWT_PAYLOAD = _b64({"iss": "https://ehr.example", "aud": "https://cds.example/cds-services", "jti": "jti-logtest"})
JWT = f"{JWT_HEADER}.{JWT_PAYLOAD}.c2lnbmF0dXJlLW5vdC1jaGVja2Vk"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Everything any logger emits at DEBUG and above, as the JSON formatter writes it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


FHIR_CODE_WORD = re.compile(r"^[a-z]+(-[a-z]+)*$")  # active, entered-in-error, order: not patient data


def _never_logged(fixture: Fixture) -> set[str]:
    """Identifiers, dates and clinical content of this request: none may reach a log."""
    request, context = fixture.request, fixture.request["context"]
    ids = {context["patientId"], context["userId"], context["userId"].split("/", 1)[1]}
    if context.get("encounterId"):
        ids.add(context["encounterId"])
    content: set[str] = {ACCESS_TOKEN, JWT, JWT_HEADER, JWT_PAYLOAD, FAMILY, GIVEN}
    resources = [res for value in (request.get("prefetch") or {}).values() for res in bundle_resources(value)]
    resources += [entry["resource"] for entry in context["draftOrders"].get("entry", [])]
    for res in resources:
        if isinstance(res.get("id"), str):
            ids.add(res["id"])
        # Codes, displays, texts, dates, references: everything but FHIR's own code words and URLs.
        content.update(s for s in _strings({k: v for k, v in res.items() if k != "resourceType"})
                       if not FHIR_CODE_WORD.match(s) and not s.startswith(("http://", "https://", "urn:")))
    return {s for s in ids | content if len(s) >= 3}


def _appears(value: str, text: str) -> bool:
    """As a whole token: a code such as 5640 must not match inside an unrelated number."""
    return re.search(rf"(?<![0-9A-Za-z]){re.escape(value)}(?![0-9A-Za-z])", text) is not None


def _with_credentials_and_name(fixture: Fixture) -> dict[str, Any]:
    request = dict(fixture.request)
    request["fhirServer"] = "https://ehr.example/fhir"
    request["fhirAuthorization"] = {"access_token": ACCESS_TOKEN, "token_type": "Bearer", "expires_in": 300,
                                    "scope": "patient/*.read", "subject": "lumbar-cds"}
    patient = (request.get("prefetch") or {}).get("patient")
    if isinstance(patient, dict) and patient.get("resourceType") == "Patient":
        patient["name"] = [{"family": FAMILY, "given": [GIVEN]}]
    return request


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> dict[str | None, Flask]:
    """One app per profile the fixtures use."""
    profiles = {load_fixture(p, today_utc()).profile for p in fixtures_dir().glob("*.json")}
    return {
        profile: create_app(Settings(data_dir=tmp_path_factory.mktemp("logs"), rules_dir=REPO / "rules",
                                     profile=profile, auto_migrate=True))
        for profile in profiles
    }


def test_fixture_suite_logs_one_line_per_request_and_nothing_private(
    apps: dict[str | None, Flask], captured: io.StringIO
) -> None:
    paths = sorted(fixtures_dir().glob("*.json"))
    never: dict[str, set[str]] = {}
    responses: dict[str, tuple[int, Counter[str]]] = {}
    for n, path in enumerate(paths):
        fixture = load_fixture(path, today_utc())
        request_id = f"req{n:03d}"  # not the fixture name: its words could look like content
        response = apps[fixture.profile].test_client().post(
            f"/cds-services/{fixture.service}", json=_with_credentials_and_name(fixture),
            headers={"Authorization": f"Bearer {JWT}", "X-Request-ID": request_id},
        )
        assert response.status_code == fixture.expect["status"], path.stem
        assert response.headers["X-Request-ID"] == request_id
        body = response.get_json()
        cards = Counter(c["source"]["topic"]["code"] for c in body.get("cards", []))
        responses[request_id] = (response.status_code, cards)
        never[request_id] = _never_logged(fixture)

    text = captured.getvalue()
    lines = [orjson.loads(line) for line in text.splitlines()]  # every line is one JSON object
    for secret in set().union(*never.values()):
        assert not _appears(secret, text), f"{secret!r} is in the logs"

    request_lines = [line for line in lines if line["logger"] == REQUEST_LOGGER]
    assert Counter(line["request_id"] for line in request_lines) == Counter(responses.keys())  # one each
    for line in request_lines:
        status, cards = responses[line["request_id"]]
        assert line["msg"] == "request" and line["level"] == "INFO"
        assert line["method"] == "POST" and line["route"] == "/cds-services/<service_id>"
        assert line["status"] == status
        assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
        assert line["service"].startswith("lumbar-pathway-order-") and line["hook"].startswith("order-")
        if status == 200:
            assert Counter(line["cards"]) == cards  # rule ids and counts, nothing else
            assert re.fullmatch(r"[0-9a-f-]{36}", line["hookInstance"])
            assert isinstance(line["skipped"], int) and isinstance(line["unavailable"], int)
        else:
            assert "cards" not in line


def test_feedback_and_errors_are_logged_without_content(app: Flask, captured: io.StringIO) -> None:
    client = app.test_client()
    comment = "patient Quillfeather said her PT was elsewhere"
    client.post("/cds-services/lumbar-pathway-order-select/feedback", json={"feedback": [
        {"card": "c-1", "outcome": "overridden", "outcomeTimestamp": "2026-11-21T10:00:00Z",
         "overrideReason": {"userComment": comment}}]})
    client.post("/cds-services/lumbar-pathway-order-select", json={"hook": "order-select", "hookInstance": "h",
                                                                   "context": {"patientId": "pat-secret-77"}})
    client.post("/cds-services/lumbar-pathway-order-select", data=b'{"patientId": "pat-secret-77"',
                content_type="application/json")
    text = captured.getvalue()
    assert "Quillfeather" not in text and "pat-secret-77" not in text and "c-1" not in text
    lines = [orjson.loads(line) for line in text.splitlines()]
    requests = [line for line in lines if line["logger"] == REQUEST_LOGGER]
    assert [line["status"] for line in requests] == [200, 422, 400]
    assert requests[0]["items"] == 1 and requests[0]["unknownCards"] == 1


def test_unexpected_errors_log_the_type_and_place_but_not_the_message(
    app: Flask, captured: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*_: Any, **__: Any) -> Any:  # fault injection: a bug that quotes its input
        raise ValueError("patient pat-secret-77 born 1961-02-03")

    monkeypatch.setattr("cds_hooks.http.api.evaluate_hook", explode)
    response = app.test_client().post("/cds-services/lumbar-pathway-order-select", json={"hook": "x"})
    assert response.status_code == 500
    assert response.get_json()["resourceType"] == "OperationOutcome"
    text = captured.getvalue()
    assert "pat-secret-77" not in text and "1961-02-03" not in text
    lines = [orjson.loads(line) for line in text.splitlines()]
    error = next(line for line in lines if line.get("exception"))
    assert error["exception"].startswith("ValueError at test_logging.py:")
    assert [line["status"] for line in lines if line["logger"] == REQUEST_LOGGER] == [500]


def test_text_format_is_one_line_per_record() -> None:
    record = logging.LogRecord(REQUEST_LOGGER, logging.INFO, __file__, 1, "request", None, None)
    record.fields = {"request_id": "r1", "cards": {"imaging-premature": 1}, "route": None}
    line = TextFormatter().format(record)
    assert "\n" not in line
    assert line.endswith('INFO cds_hooks.request request request_id="r1" cards={"imaging-premature":1} route=null')


def test_log_format_setting_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="log format"):
        create_app(Settings(data_dir=tmp_path, rules_dir=REPO / "rules", log_format="xml"))
