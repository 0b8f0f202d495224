"""Prometheus metrics: real requests through the app move the right counters, and under a real
two-worker gunicorn one scrape of /metrics sums what every worker counted."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import orjson
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from cds_hooks.sandbox.fixtures import fixtures_dir, load_fixture
from cds_hooks.settings.config import TrustedIssuer

SELECT = "/cds-services/lumbar-pathway-order-select"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _scrape(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    """The sum over samples of `name` whose labels include `labels` (0 when there is none yet)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def _metrics(client: FlaskClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    return _scrape(response.get_data(as_text=True))


def _request(name: str, today: date) -> dict[str, Any]:
    return load_fixture(fixtures_dir() / f"{name}.json", today).request


def _post(client: FlaskClient, url: str, body: Any) -> Any:
    return client.post(url, data=orjson.dumps(body), content_type="application/json")


def test_hook_call_counts_request_latency_and_cards(client: FlaskClient, today: date) -> None:
    before = _metrics(client)
    response = _post(client, SELECT, _request("premature-mri-3-weeks", today))
    assert response.status_code == 200
    after = _metrics(client)
    labels = {"endpoint": "call_service", "service": "lumbar-pathway-order-select", "hook": "order-select"}
    for name, extra in (
        ("lumbar_cds_http_requests_total", {**labels, "status": "200"}),
        ("lumbar_cds_http_request_duration_seconds_count",
         {"endpoint": "call_service", "service": "lumbar-pathway-order-select"}),
        ("lumbar_cds_cards_issued_total",
         {"service": "lumbar-pathway-order-select", "rule": "imaging-premature", "indicator": "warning"}),
    ):
        assert _value(after, name, **extra) - _value(before, name, **extra) == 1, name
    # No patient data reaches the scrape: neither the patient id nor the card uuid.
    text = client.get("/metrics").get_data(as_text=True)
    body = _request("premature-mri-3-weeks", today)
    assert body["context"]["patientId"] not in text
    assert response.get_json()["cards"][0]["uuid"] not in text


def test_refusals_fold_caller_chosen_names(client: FlaskClient, today: date) -> None:
    before = _metrics(client)
    assert _post(client, "/cds-services/made-up-service", {}).status_code == 404
    assert client.get("/patient/12345/secret").status_code == 404
    assert _post(client, SELECT, {"hook": "order-select"}).status_code == 422
    after = _metrics(client)
    name = "lumbar_cds_http_requests_total"
    assert _value(after, name, endpoint="call_service", service="unknown", hook="none", status="404") \
        - _value(before, name, endpoint="call_service", service="unknown", hook="none", status="404") == 1
    assert _value(after, name, endpoint="none", status="404") - _value(before, name, endpoint="none", status="404") == 1
    assert _value(after, name, service="lumbar-pathway-order-select", status="422") \
        - _value(before, name, service="lumbar-pathway-order-select", status="422") == 1
    text = client.get("/metrics").get_data(as_text=True)
    assert "made-up-service" not in text and "12345" not in text


def test_feedback_by_rule_outcome_and_offered_reason(client: FlaskClient, today: date) -> None:
    card = _post(client, SELECT, _request("premature-mri-3-weeks", today)).get_json()["cards"][0]
    offered = card["overrideReasons"][0]
    stamp = "2026-01-01T00:00:00Z"
    before = _metrics(client)
    feedback = {"feedback": [
        {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": stamp,
         "overrideReason": {"reason": offered, "userComment": "patient 12345 insists"}},
        {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": stamp,
         "overrideReason": {"reason": {**offered, "code": "free-text-code-xyz"}}},
        {"card": "not-a-card-we-issued", "outcome": "overridden", "outcomeTimestamp": stamp},
    ]}
    assert _post(client, SELECT + "/feedback", feedback).status_code == 200
    after = _metrics(client)
    name = "lumbar_cds_feedback_total"
    service = "lumbar-pathway-order-select"
    for labels in (
        {"rule": "imaging-premature", "outcome": "overridden", "override_reason": offered["code"]},
        {"rule": "imaging-premature", "outcome": "overridden", "override_reason": "other"},
        {"rule": "unknown", "outcome": "overridden", "override_reason": "none"},
    ):
        assert _value(after, name, service=service, **labels) - _value(before, name, service=service, **labels) == 1
    text = client.get("/metrics").get_data(as_text=True)
    assert "free-text-code-xyz" not in text and "12345" not in text


def test_skipped_resources_and_fhir_fallback_failures(client: FlaskClient, today: date) -> None:
    before = _metrics(client)
    assert _post(client, SELECT, _request("messy-ehr-input-still-warns", today)).status_code == 200
    # No prefetch and a FHIR server on a closed loopback port: every query fails as unreachable.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    bare = _request("premature-mri-3-weeks", today)
    bare.pop("prefetch")
    bare["fhirServer"] = f"http://127.0.0.1:{closed}/fhir"
    assert _post(client, SELECT, bare).status_code == 412  # required history could not be had
    after = _metrics(client)
    name = "lumbar_cds_skipped_resources_total"
    assert _value(after, name, service="lumbar-pathway-order-select") - _value(before, name) >= 1
    for rtype in ("Condition", "Patient"):
        for name, labels in (("lumbar_cds_fhir_fallback_queries_total", {"resource_type": rtype}),
                             ("lumbar_cds_fhir_fallback_failures_total",
                              {"resource_type": rtype, "reason": "unreachable"})):
            assert _value(after, name, **labels) - _value(before, name, **labels) == 1, (name, rtype)


def test_auth_failures_by_reason(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text('{"keys": []}')
    app = make_app(public_base_url="https://cds.example.org",
                   auth_issuers=(TrustedIssuer("https://ehr.example.org", jwks=str(jwks)),),
                   fhir_allowlist=("https://ehr.example.org/fhir",))
    client = app.test_client()
    before = _metrics(client)  # open without a token
    assert client.get("/cds-services").status_code == 401
    assert client.get("/cds-services", headers={"Authorization": "Bearer not.a.jwt"}).status_code == 401
    after = _metrics(client)
    name = "lumbar_cds_auth_failures_total"
    for reason in ("missing-header", "malformed"):
        assert _value(after, name, reason=reason) - _value(before, name, reason=reason) == 1, reason
    assert _value(after, "lumbar_cds_http_requests_total", endpoint="discovery", status="401") \
        - _value(before, "lumbar_cds_http_requests_total", endpoint="discovery", status="401") == 2


def test_region_skips_are_counted(client: FlaskClient, today: date) -> None:
    name, labels = "lumbar_cds_region_skipped_total", {"service": "lumbar-pathway-order-select"}
    before = _metrics(client)
    # 'MRI of spine' without a body site: the order is not judged; the skip is counted.
    assert _post(client, SELECT, _request("region-mri-spine-no-body-site-not-judged", today)).get_json() == {
        "cards": []}
    # A cervical laminectomy: its add-on code (CPT 63048) without a body site, and postlaminectomy syndrome
    # (M96.1) whose bodySite is cervical: two history records not counted as lumbar.
    assert _post(client, SELECT, _request("prior-cervical-laminectomy-stays-in-pathway-warns", today)).status_code \
        == 200
    after = _metrics(client)
    assert _value(after, name, **labels, kind="order") - _value(before, name, **labels, kind="order") == 1
    assert _value(after, name, **labels, kind="history") - _value(before, name, **labels, kind="history") == 2


def test_metrics_can_be_switched_off(make_app: Callable[..., Flask]) -> None:
    assert make_app(metrics_enabled=False).test_client().get("/metrics").status_code == 404


# --------------------------------------------------------------------------- gunicorn, two workers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _http(url: str, body: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_two_gunicorn_workers_aggregate_in_one_scrape(tmp_path: Path, today: date) -> None:
    prom_dir = tmp_path / "prom"
    prom_dir.mkdir()
    (prom_dir / "counter_999999.db").write_bytes(b"stale file from an earlier run")
    port = _free_port()
    gunicorn = Path(sys.executable).with_name("gunicorn")
    env = {**os.environ, "LUMBAR_CDS_DATA_DIR": str(tmp_path / "data"), "PROMETHEUS_MULTIPROC_DIR": str(prom_dir),
           "LUMBAR_CDS_LOG_LEVEL": "WARNING", "LUMBAR_CDS_WORKERS": "2"}
    # Production never migrates at start-up: `db upgrade` first, as docs/operations.md says.
    subprocess.run([sys.executable, "-m", "cds_hooks", "db", "upgrade"], env=env, check=True, capture_output=True)
    proc = subprocess.Popen(
        [str(gunicorn), "-c", "python:cds_hooks.gunicorn_conf", "--bind", f"127.0.0.1:{port}",
         "cds_hooks.app:create_app()"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if _http(base + "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "gunicorn did not become ready"
            time.sleep(0.2)
        assert not (prom_dir / "counter_999999.db").exists()  # wiped at start
        body = orjson.dumps(_request("premature-mri-3-weeks", today))
        # Eight clients at once, a new connection per request: while one worker is busy the other
        # accepts. Which worker wins is the kernel's choice, so send batches until both have counted
        # (each worker writes its own counter_<pid>.db); the scrape, answered by one, must sum both.
        sent = 0
        with ThreadPoolExecutor(max_workers=8) as pool:
            while len(pids := {p.stem.rsplit("_", 1)[1] for p in prom_dir.glob("counter_*.db")}) < 2:
                assert sent < 800, f"all {sent} requests went to one worker: {pids}"
                statuses = list(pool.map(lambda _: _http(base + SELECT, body)[0], range(40)))
                assert statuses == [200] * 40
                sent += 40
        status, text = _http(base + "/metrics")
        assert status == 200
        samples = _scrape(text.decode())
        assert _value(samples, "lumbar_cds_http_requests_total", endpoint="call_service", status="200") == sent
        assert _value(samples, "lumbar_cds_cards_issued_total", rule="imaging-premature") == sent
        assert _value(samples, "lumbar_cds_http_request_duration_seconds_count", endpoint="call_service") == sent
        ready = json.loads(_http(base + "/readyz")[1])
        assert ready["status"] == "ready"
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
