"""One test per reproduction of the independent security pass, through the real app and its real parts.

Numbered as the pass reported them: 1 allow-list bypass by dot segments; 2 loopback reachable by default,
with a port and status oracle in the 412 text; 3 memory blow-up from an allowed server's answer; 4 500s from
URLs with control characters; 5 report injection; 7 Host header and missing Content-Type; 8 feedback
timestamps and autolinks in record text. The JWT reproductions (4, 6, 8) are in tests/test_auth_edges.py.
"""

from __future__ import annotations

import csv
import io
import os
import re
import socket
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import pytest
from flask import Flask

from cds_hooks.app import create_app
from cds_hooks.netpolicy.urls import server_allowed
from cds_hooks.ops.report import build_report, render
from cds_hooks.pathway.cards import md_escape
from cds_hooks.protocol.wire import FeedbackCoding, FeedbackItem, OverrideReason
from cds_hooks.sandbox.fixtures import fixtures_dir, load_fixture
from cds_hooks.settings.config import Settings, SettingsError, TrustedIssuer
from tests.conftest import REPO
from tests.faulty_server import FaultyServer

SELECT = "/cds-services/lumbar-pathway-order-select"


@pytest.fixture
def bare(today: date) -> dict[str, Any]:
    """A request with no prefetch: every key would be fetched from fhirServer."""
    request = load_fixture(fixtures_dir() / "premature-mri-3-weeks.json", today).request
    return {k: v for k, v in request.items() if k != "prefetch"}


def _call(app: Flask, body: dict[str, Any]) -> tuple[int, str]:
    response = app.test_client().post(SELECT, json=body)
    payload = orjson.loads(response.get_data())
    return response.status_code, payload["issue"][0]["diagnostics"] if "issue" in payload else ""


# --------------------------------------------------------------------------- 1. dot segments


@pytest.mark.parametrize("suffix", ["/../admin", "/x/../../secret", "/%2e%2e/admin", "/..;/admin", "/./", "//x"])
def test_1_dot_segments_do_not_pass_the_allow_list(
    suffix: str, bare: dict[str, Any], make_app: Callable[..., Flask]
) -> None:
    with FaultyServer() as server:
        app = make_app(fhir_allowlist=(server.url("ok"),))
        status, diagnostics = _call(app, bare | {"fhirServer": server.url("ok") + suffix})
        assert status == 412 and "not a plain http(s) base URL" in diagnostics
        assert server.connections == 0


def test_1_the_same_holds_for_an_https_entry() -> None:
    allow = ("https://ehr.example.org/fhir",)
    assert server_allowed("https://ehr.example.org/fhir/r4", allow)
    for trick in ("/fhir/../admin", "/fhir/x/../../secret", "/fhir/%2E%2E/admin", "/fhir/.%2e/admin",
                  "/fhir/..%2fadmin"):
        assert not server_allowed("https://ehr.example.org" + trick, allow), trick


# --------------------------------------------------------------------------- 2. loopback and the oracle


def test_2_trusted_issuers_without_an_allow_list_do_not_start(tmp_path: Any) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text('{"keys": []}')
    issuer = TrustedIssuer("https://ehr.example.org", jwks=str(jwks))
    settings = dict(data_dir=tmp_path, rules_dir=REPO / "rules", auto_migrate=True,
                    public_base_url="https://cds.example.org", auth_issuers=(issuer,))
    with pytest.raises(SettingsError, match="LUMBAR_CDS_FHIR_ALLOWLIST"):
        create_app(Settings(**settings))  # type: ignore[arg-type]
    # Explicitly: either the EHR's FHIR servers, or this machine's.
    assert create_app(Settings(**settings, fhir_allow_loopback=True))  # type: ignore[arg-type]
    assert create_app(Settings(**settings, fhir_allowlist=("https://ehr.example.org/fhir",)))  # type: ignore[arg-type]


def test_2_a_chosen_path_and_query_on_a_loopback_port_is_refused_unsent(
    bare: dict[str, Any], make_app: Callable[..., Flask]
) -> None:
    with FaultyServer() as server:
        port = server.url("ok").split(":")[2].split("/")[0]
        for trick in (f"http://127.0.0.1:{port}/admin/secret?x=1#", f"http://127.0.0.1:{port}/admin?x=1",
                      f"http://127.0.0.1:{port}/admin#"):
            status, _ = _call(make_app(), bare | {"fhirServer": trick})
            assert status == 412, trick
        assert server.connections == 0


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_2_the_412_names_the_key_and_category_never_a_transport_error_or_status(
    bare: dict[str, Any], make_app: Callable[..., Flask]
) -> None:
    app = make_app(fhir_timeout=1.0)
    with FaultyServer() as server:
        answers = {fault: _call(app, bare | {"fhirServer": server.url(fault)})
                   for fault in ("error", "redirect", "drop")}
    answers["closed"] = _call(app, bare | {"fhirServer": f"http://127.0.0.1:{_closed_port()}/fhir"})
    for fault, (status, diagnostics) in answers.items():
        assert status == 412, fault
        assert "conditions (Condition?patient={{context.patientId}})" in diagnostics
        assert not re.search(r"HTTP|\d{3}|Error|\[", diagnostics.split(":", 1)[1]), (fault, diagnostics)


# --------------------------------------------------------------------------- 3. memory


def _rss() -> int:
    """This process's resident memory now, in bytes (Linux)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_3_a_30_mib_bundle_of_empty_objects_gets_412_within_the_deadline_and_then_nothing(
    bare: dict[str, Any], make_app: Callable[..., Flask]
) -> None:
    """It once took a worker from 117 MB to 2 GB, and the answer 13.8 s against a 2 s deadline."""
    app = make_app(fhir_timeout=2.0)
    with FaultyServer() as server:
        rss = _rss()
        started = time.monotonic()
        status, diagnostics = _call(app, bare | {"fhirServer": server.url("empty-objects/31457280")})
        elapsed = time.monotonic() - started
        assert status == 412 and "not a usable FHIR response" in diagnostics
        assert elapsed < 2.0 * 1.1
        # After the answer nothing is still reading or parsing: no CPU spent, no memory growing.
        cpu, peak = time.process_time(), _rss()
        for _ in range(25):
            time.sleep(0.02)
            peak = max(peak, _rss())
        assert time.process_time() - cpu < 0.1
        assert peak - rss < 128 << 20, (peak - rss) >> 20  # 4 x the 32 MiB cap, at the very most
        assert app.extensions["lumbar_cds.fetcher"].in_flight == 0


# --------------------------------------------------------------------------- 4. URLs that raised


@pytest.mark.parametrize("suffix", ["\u0001", "\u007f", "\t", " x", "\u00e9"])
def test_4_control_and_non_ascii_characters_in_fhir_server_are_412(
    suffix: str, bare: dict[str, Any], make_app: Callable[..., Flask]
) -> None:
    with FaultyServer() as server:
        status, _ = _call(make_app(), bare | {"fhirServer": server.url("ok") + suffix})
        assert status == 412 and server.connections == 0


@pytest.mark.parametrize("server", ["http://[::1]x:19999/", "http://[::1:19999/fhir", "http://127.0.0.1:99999/fhir",
                                    "http://127.0.0.1:0/fhir", "http://127.1:19999/fhir", "http:///fhir"])
def test_4_broken_hosts_and_ports_are_412(server: str, bare: dict[str, Any], make_app: Callable[..., Flask]) -> None:
    assert _call(make_app(), bare | {"fhirServer": server})[0] == 412


# --------------------------------------------------------------------------- 5. the report


def _issue_card(client: Any, today: date) -> dict[str, Any]:
    case = load_fixture(fixtures_dir() / "premature-mri-3-weeks.json", today)
    response = client.post(SELECT, json=case.request)
    assert response.status_code == 200
    return response.get_json()["cards"][0]


HOSTILE = {"\x1b[2J\x1b[31mESC": "clears the screen", "x;=1+1;": "=HYPERLINK(\"http://evil.test\")",
           "a,-2+3": "b\nforged-rule 999 999", "@SUM(A1)": "tab\there\u202eright-to-left\u0085"}


def test_5_hostile_override_codes_are_refused_at_the_door(make_app: Callable[..., Flask], today: date) -> None:
    client = make_app().test_client()
    card = _issue_card(client, today)
    for code, display in HOSTILE.items():
        item = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-21T10:00:00Z",
                "overrideReason": {"reason": {"code": code, "system": "urn:x", "display": display}}}
        response = client.post(SELECT + "/feedback", json={"feedback": [item]})
        if code != "x;=1+1;":  # valid FHIR code text: the report must make it safe
            assert response.status_code == 422, code


def test_5_report_output_escapes_controls_keeps_rows_and_guards_formulas(
    make_app: Callable[..., Flask], today: date
) -> None:
    """Rows stored before validation existed: the report must be safe on its own."""
    app = make_app()
    card = _issue_card(app.test_client(), today)
    base = FeedbackItem.model_validate({"card": card["uuid"], "outcome": "overridden",
                                        "outcomeTimestamp": "2026-11-21T10:00:00Z"})
    items = [base.model_copy(update={"overrideReason": OverrideReason.model_construct(
        reason=FeedbackCoding.model_construct(code=code, system="urn:x", display=display), userComment=None)})
        for code, display in HOSTILE.items()]
    store = app.extensions["lumbar_cds.store"]
    store.record_feedback("lumbar-pathway-order-select", items)
    report = build_report(store.engine, top=10)

    text = render(report, None, "text")
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]", text)
    assert not any(line.startswith("forged-rule") for line in text.splitlines())
    versions = len({r.rules_version for r in report})  # one "rules version X:" heading each
    assert len(text.splitlines()) == 4 + versions + len(report) + sum(len(r.top_reasons) for r in report)

    table = render(report, None, "csv")
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f]", table)
    rows = list(csv.reader(io.StringIO(table)))
    assert len(rows) == 1 + len(report) and len(table.splitlines()) == len(rows)
    for separator in (",", ";", "\t", "|", " "):  # however a spreadsheet splits it, no cell starts a formula
        for line in table.splitlines()[1:]:
            for cell in line.split(separator):
                assert not cell.strip(' "').startswith(("=", "+", "-", "@")), (separator, cell)
    as_json = render(report, None, "json")
    assert "\x1b" not in as_json and "\\u001b" not in as_json and "\u202e" not in as_json


# --------------------------------------------------------------------------- 7. Host and Content-Type


def test_7_an_unauthenticated_instance_answers_only_loopback_host_names(make_app: Callable[..., Flask]) -> None:
    client = make_app().test_client()
    for host in ("localhost", "localhost:8080", "127.0.0.1:8080", "[::1]:8080", "app.localhost"):
        assert client.get("/cds-services", headers={"Host": host}).status_code == 200, host
    for host in ("rebind.evil.example", "rebind.evil.example:8080", "10.0.0.5", "localhost.evil.example"):
        response = client.get("/cds-services", headers={"Host": host})
        assert response.status_code == 400 and "LUMBAR_CDS_ALLOWED_HOSTS" in response.get_json()["issue"][0][
            "diagnostics"], host
    named = make_app(allowed_hosts=("cds.example.org",)).test_client()
    assert named.get("/cds-services", headers={"Host": "cds.example.org"}).status_code == 200
    assert named.get("/cds-services", headers={"Host": "localhost"}).status_code == 400
    anyone = make_app(allowed_hosts=("*",)).test_client()
    assert anyone.get("/cds-services", headers={"Host": "rebind.evil.example"}).status_code == 200


def test_7_a_post_without_content_type_is_415_on_every_endpoint(
    make_app: Callable[..., Flask], today: date
) -> None:
    client = make_app().test_client()
    request = load_fixture(fixtures_dir() / "premature-mri-3-weeks.json", today).request
    for path, body in ((SELECT, request), (SELECT + "/feedback", {"feedback": []})):
        response = client.post(path, data=orjson.dumps(body))
        assert response.status_code == 415, path


# --------------------------------------------------------------------------- 8. info


@pytest.mark.parametrize("stamp", ["yesterday", "2026-02-30T10:00:00Z", "2026-11-21", "2026-11-21T25:00:00Z",
                                   "2026-11-21 10:00:00Z"])
def test_8_outcome_timestamp_must_be_a_date_time(
    stamp: str, make_app: Callable[..., Flask], today: date
) -> None:
    client = make_app().test_client()
    card = _issue_card(client, today)
    item = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": stamp}
    assert client.post(SELECT + "/feedback", json={"feedback": [item]}).status_code == 422
    item["outcomeTimestamp"] = "2026-11-21T10:00:00.123+01:00"
    assert client.post(SELECT + "/feedback", json={"feedback": [item]}).status_code == 200


@pytest.mark.parametrize("text", ["see http://evil.example/x", "HTTPS://evil.example", "www.evil.example",
                                  "mail mallory@evil.example", "ftp://evil.example"])
def test_8_urls_in_record_text_do_not_autolink(text: str) -> None:
    escaped = md_escape(text)
    assert not re.search(r"[A-Za-z]://|www\.|\w@\w", escaped), escaped
    assert escaped.replace("\\", "") == text  # and it still reads the same once rendered
