"""Fetching what prefetch lacks from a real FHIR server (sekmet-fhir).

Every scenario's history is loaded into one sekmet server under its own ids.
Each scenario must then get the same answer, card for card apart from uuids,
whether the EHR sends full prefetch or none at all.
"""

from __future__ import annotations

import copy
import html
import logging
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from flask import Flask

from cds_hooks.fhir.bundles import bundle_resources, is_operation_outcome
from cds_hooks.pathway.rules import Rules
from cds_hooks.sandbox.fixtures import Fixture, load_fixture
from tests.faulty_server import FaultyServer
from tests.sekmet import REPO, TOKEN, full_prefetch, put_resources, rename_ids, sekmet_server

FIXTURES = sorted((REPO / "fixtures").glob("*.json"))
SELECT = "lumbar-pathway-order-select"
_UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_EXPIRES = re.compile(r"expires at [0-9: -]+UTC")


@pytest.fixture(scope="session")
def fhir_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with sekmet_server(tmp_path_factory.mktemp("sekmet")) as base:
        yield base


@dataclass
class Scenario:
    fixture: Fixture
    full: dict[str, Any]  # the request with every prefetch key filled from what the server holds
    bare: dict[str, Any]  # the same request with no prefetch at all
    faithful: bool  # the server holds the fixture's whole history, so its expected verdict must hold


def _history(prefetch: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for v in prefetch.values() if v is not None and not is_operation_outcome(v)
            for r in bundle_resources(v) if isinstance(r.get("id"), str)]


@pytest.fixture(scope="session")
def scenarios(fhir_server: str, rules: Rules, today: date) -> dict[str, Scenario]:
    """Load every fixture's history into the server and build both requests."""
    loaded: dict[str, Scenario] = {}
    for n, path in enumerate(FIXTURES):
        fixture = load_fixture(path, today)
        prefetch = fixture.request.get("prefetch") or {}
        ids = {r["id"] for r in _history(prefetch)} | {fixture.request["context"]["patientId"]}
        request = rename_ids(copy.deepcopy(fixture.request), f"s{n:02d}-", ids)
        request["context"]["patientId"] = f"s{n:02d}-{fixture.request['context']['patientId']}"
        resources = _history(request.get("prefetch") or {})
        accepted = put_resources(fhir_server, resources)

        service = rules.services[fixture.service]
        full = full_prefetch(service, accepted)
        auth = {"fhirServer": fhir_server,
                "fhirAuthorization": {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 300,
                                      "scope": "patient/*.read", "subject": "lumbar-cds"}}
        bare = {k: v for k, v in request.items() if k != "prefetch"} | auth
        faithful = (len(accepted) == len(resources) and set(prefetch) == set(service.prefetch)
                    and not any(is_operation_outcome(v) for v in prefetch.values()))
        loaded[path.stem] = Scenario(fixture, bare | {"prefetch": full}, bare, faithful)
    return loaded


def _call(app: Flask, service: str, body: dict[str, Any]) -> tuple[int, Any]:
    client = app.test_client()
    response = client.post(f"/cds-services/{service}", json=body)
    answer = orjson.loads(_UUID.sub(b"<uuid>", response.get_data()))
    for card in answer.get("cards", []) if response.status_code == 200 else []:
        for link in card.get("links", []):
            path = urlsplit(link["url"]).path
            if path.startswith("/basis/"):  # each call's link is new; what it opens must be the same
                page = html.unescape(re.sub(r"<[^>]+>", " ", client.get(path).get_data(as_text=True)))
                link["url"] = "<basis page>"
                card["basis page"] = _EXPIRES.sub("", " ".join(page.split()))  # its text, for the tests
    return response.status_code, answer


def _verdict(body: dict[str, Any]) -> list[tuple[str, str]]:
    return sorted((c["source"]["topic"]["code"], c["indicator"]) for c in body["cards"])


@pytest.mark.parametrize("name", [p.stem for p in FIXTURES])
def test_no_prefetch_gets_the_same_cards_as_full_prefetch(
    name: str, scenarios: dict[str, Scenario], make_app: Callable[..., Flask]
) -> None:
    scenario = scenarios[name]
    fixture = scenario.fixture
    app = make_app(profile=fixture.profile) if fixture.profile else make_app()
    status_full, full = _call(app, fixture.service, scenario.full)
    status_bare, bare = _call(app, fixture.service, scenario.bare)
    assert status_bare == status_full, bare
    assert bare == full
    if scenario.faithful and fixture.expect["status"] == 200:
        assert status_full == 200, full
        assert _verdict(full) == sorted((c["rule"], c["indicator"]) for c in fixture.expect["cards"])


def test_enough_scenarios_are_faithful(scenarios: dict[str, Scenario]) -> None:
    # The comparison above must rest on real scenarios, not on histories the server refused.
    faithful = [s for s in scenarios.values() if s.faithful]
    assert len(faithful) >= 90, [n for n, s in scenarios.items() if not s.faithful]
    assert any(s.fixture.expect.get("cards") for s in faithful)


def test_partial_prefetch_fetches_only_what_is_missing(
    scenarios: dict[str, Scenario], make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    scenario = scenarios["mri-after-7-weeks-failed-pt"]
    app = make_app()
    partial = copy.deepcopy(scenario.full)
    for key in ("procedures", "medicationRequests", "imagingStudies"):
        del partial["prefetch"][key]
    with caplog.at_level(logging.INFO, logger="cds_hooks.fhir.fetch"):
        status, body = _call(app, SELECT, partial)
    queried = sorted(re.findall(r"query='(\w+) search'", caplog.text))
    assert queried == ["ImagingStudy", "MedicationRequest", "Procedure"]
    assert (status, body) == _call(app, SELECT, scenario.full)


def test_paging_follows_next_links(
    scenarios: dict[str, Scenario], make_app: Callable[..., Flask], tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    rules_dir = tmp_path / "rules"
    shutil.copytree(REPO / "rules", rules_dir)
    services = rules_dir / "services.yaml"
    services.write_text(services.read_text().replace("={{context.patientId}}", "={{context.patientId}}&_count=2"))
    scenario = scenarios["mri-after-7-weeks-failed-pt"]  # 8 PT procedures: 4 pages of 2
    app = make_app(rules_dir=rules_dir)
    with caplog.at_level(logging.INFO, logger="cds_hooks.fhir.fetch"):
        status, body = _call(app, SELECT, scenario.bare)
    assert re.search(r"query='Procedure search' status=200 .* pages=4 results=8", caplog.text), caplog.text
    assert (status, body) == _call(make_app(), SELECT, scenario.full)

    # At the page cap the service reads what it has and says the rest was not checked.
    capped = make_app(rules_dir=rules_dir, fhir_max_pages=1)
    referral = scenarios["referral-neurosurgery-performer-type-3-weeks-pt"]  # 4 PT procedures
    status, body = _call(capped, referral.fixture.service, referral.bare)
    assert status == 200
    assert "Procedures (including therapy sessions): only partly checked" in body["cards"][0]["basis page"]


def test_the_access_token_is_forwarded(
    scenarios: dict[str, Scenario], make_app: Callable[..., Flask]
) -> None:
    scenario = scenarios["premature-mri-3-weeks"]
    app = make_app()
    status, body = _call(app, SELECT, scenario.bare)
    assert status == 200 and body["cards"], body  # the right token: the server answered

    wrong = copy.deepcopy(scenario.bare)
    wrong["fhirAuthorization"]["access_token"] = "not-the-right-token-51b2"
    status, body = _call(app, SELECT, wrong)
    assert status == 412
    diagnostics = body["issue"][0]["diagnostics"]
    assert "refused the query" in diagnostics  # the category only: no status (it would be a status oracle)
    assert "HTTP 401" not in diagnostics and "not-the-right-token-51b2" not in diagnostics

    anonymous = {k: v for k, v in scenario.bare.items() if k != "fhirAuthorization"}
    status, body = _call(app, SELECT, anonymous)
    assert status == 412 and "refused" in body["issue"][0]["diagnostics"]


def test_outbound_queries_log_no_url_patient_or_token(
    scenarios: dict[str, Scenario], make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    scenario = scenarios["premature-mri-3-weeks"]
    with caplog.at_level(logging.DEBUG):
        status, _ = _call(make_app(), SELECT, scenario.bare)
    assert status == 200
    assert "query='Condition search' status=200" in caplog.text
    patient = scenario.bare["context"]["patientId"]
    for secret in (TOKEN, patient, scenario.bare["fhirServer"]):
        assert secret not in caplog.text


# --------------------------------------------------------------------------- allow-list


def test_a_server_not_on_the_allowlist_gets_412_and_no_connection(
    scenarios: dict[str, Scenario], make_app: Callable[..., Flask]
) -> None:
    scenario = scenarios["premature-mri-3-weeks"]
    with FaultyServer() as server:
        app = make_app(fhir_allowlist=("https://ehr.example.org/fhir",))
        body = scenario.bare | {"fhirServer": server.url("ok")}
        status, outcome = _call(app, SELECT, body)
        assert status == 412
        assert "not a FHIR server this deployment may query" in outcome["issue"][0]["diagnostics"]
        assert outcome["issue"][0]["expression"] == ["fhirServer"]
        assert server.connections == 0


@pytest.mark.parametrize("server", [
    "http://10.20.30.40/fhir",  # not loopback, and not allowed by default
    "http://ehr.example.org/fhir",  # plain http off loopback
    "http://user:pw@127.0.0.1:9/fhir",  # credentials in the URL
])
def test_default_allowlist_is_loopback_only(
    server: str, scenarios: dict[str, Scenario], make_app: Callable[..., Flask]
) -> None:
    app = make_app()
    started = time.monotonic()
    status, outcome = _call(app, SELECT, scenarios["premature-mri-3-weeks"].bare | {"fhirServer": server})
    assert status == 412 and outcome["issue"][0]["expression"] == ["fhirServer"]
    assert time.monotonic() - started < 0.5  # refused before any network attempt


def test_optional_history_from_a_server_not_allowed_is_reported_not_fetched(
    scenarios: dict[str, Scenario], make_app: Callable[..., Flask]
) -> None:
    body = copy.deepcopy(scenarios["premature-mri-3-weeks"].full)
    del body["prefetch"]["procedures"]
    with FaultyServer() as server:
        app = make_app(fhir_allowlist=("https://ehr.example.org/fhir",))
        status, response = _call(app, SELECT, body | {"fhirServer": server.url("ok")})
        assert server.connections == 0
    assert status == 200
    assert "Procedures (including therapy sessions): not checked; the EHR's FHIR server is not one" \
        in response["cards"][0]["basis page"]
    assert "- **Not read:** procedures" in response["cards"][0]["detail"]  # the card names it, the page says why


def test_full_prefetch_needs_no_server_even_if_not_allowed(
    scenarios: dict[str, Scenario], make_app: Callable[..., Flask]
) -> None:
    scenario = scenarios["premature-mri-3-weeks"]
    status, body = _call(make_app(), SELECT, scenario.full | {"fhirServer": "https://ehr.example.org/fhir"})
    assert status == 200 and body["cards"]


# --------------------------------------------------------------------------- faults

DEADLINE = 1.0


@pytest.mark.parametrize("fault", ["slow", "error", "invalid-json", "bad-bundle", "bad-next", "trickle", "drop",
                                   "redirect"])
def test_required_data_failing_gives_412_within_the_deadline(
    fault: str, scenarios: dict[str, Scenario], make_app: Callable[..., Flask]
) -> None:
    scenario = scenarios["premature-mri-3-weeks"]
    with FaultyServer() as server:
        app = make_app(fhir_timeout=DEADLINE)
        body = scenario.bare | {"fhirServer": server.url(fault)}
        started = time.monotonic()
        status, outcome = _call(app, SELECT, body)
        elapsed = time.monotonic() - started
        assert status == 412, outcome
        diagnostics = outcome["issue"][0]["diagnostics"]
        assert "conditions (Condition?patient={{context.patientId}})" in diagnostics
        assert TOKEN not in diagnostics and "127.0.0.1" not in diagnostics
        assert elapsed <= DEADLINE * 1.1, elapsed
        assert server.redirect_target_hits == 0  # a redirect to another host is never followed


@pytest.mark.parametrize("fault", ["slow", "error", "invalid-json", "bad-bundle", "trickle", "drop"])
def test_optional_data_failing_degrades_and_says_so(
    fault: str, scenarios: dict[str, Scenario], make_app: Callable[..., Flask]
) -> None:
    scenario = scenarios["premature-mri-3-weeks"]
    body = copy.deepcopy(scenario.full)
    for key in ("procedures", "encounters"):  # the PT history: optional, but it matters
        del body["prefetch"][key]
    with FaultyServer() as server:
        app = make_app(fhir_timeout=DEADLINE)
        body["fhirServer"] = server.url(fault)
        started = time.monotonic()
        status, response = _call(app, SELECT, body)
        elapsed = time.monotonic() - started
    assert status == 200, response
    assert elapsed <= DEADLINE * 1.1, elapsed
    expected = {
        "slow": "did not answer in time", "error": "reported an error", "invalid-json": "sent an unreadable answer",
        "bad-bundle": "sent an unreadable answer", "trickle": "did not answer in time", "drop": "could not be reached",
    }[fault]
    card = response["cards"][0]
    assert "- **Not read:** encounters, procedures" in card["detail"]  # on the card; why, on its basis page
    assert f"Encounters (including therapy visits), procedures (including therapy sessions): not checked; " \
           f"the EHR's FHIR server {expected}" in card["basis page"]
