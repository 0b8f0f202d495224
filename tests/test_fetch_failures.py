"""Why a FHIR fetch failed, as the 412 message, the cards, the log line and the metrics read it.

Each failure is produced for real against the fault-injecting server (`tests/faulty_server.py`) or a
closed port, and its reason code and detail are checked exactly: the 412 message and the degraded
card explain a fetch by its reason, and an operator reads the detail in the log.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY

from cds_hooks.fhir.fetch import Fetched, FetchFailure, FhirFetcher, _Call, _Failed
from cds_hooks.settings.config import FetchLimits
from tests.faulty_server import FaultyServer

SEARCH = "Condition?patient=x"
LIMITS = FetchLimits(timeout=2.0, max_pages=3, max_resources=1000, max_bytes=1 << 20, max_page_resources=1000,
                     max_total_resources=1000, max_json_values=1 << 16)


@pytest.fixture(scope="module")
def server() -> Iterator[FaultyServer]:
    with FaultyServer() as running:
        yield running


def _fetch(url: str, query: str = SEARCH) -> Fetched:
    fetcher = FhirFetcher(LIMITS)
    try:
        return fetcher.fetch(url, {"k0": query}, None, time.monotonic() + 2.0)
    finally:
        fetcher.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(("fault", "failure"), [
    ("status/401", FetchFailure("refused", "HTTP 401")),
    ("status/403", FetchFailure("refused", "HTTP 403")),
    ("redirect", FetchFailure("bad-response", "HTTP 302 redirect, not followed")),
    ("error", FetchFailure("server-error", "HTTP 500")),
    ("status/503", FetchFailure("server-error", "HTTP 503")),
    ("bad-bundle", FetchFailure("bad-response", "Bundle.entry is not an array")),
    # Redirects are 300 to 399, each refused unfollowed; 400 and up are the server's errors.
    ("status/300", FetchFailure("bad-response", "HTTP 300 redirect, not followed")),
    ("status/399", FetchFailure("bad-response", "HTTP 399 redirect, not followed")),
    ("status/400", FetchFailure("server-error", "HTTP 400")),
    ("status/404", FetchFailure("server-error", "HTTP 404")),  # a search that is not found is an error
    ("invalid-json", FetchFailure("bad-response", "not JSON")),
    ("not-a-resource", FetchFailure("bad-response", "not a FHIR resource")),
    ("outcome-200", FetchFailure("server-error", "OperationOutcome")),
])
def test_each_http_failure_has_its_reason_and_detail(server: FaultyServer, fault: str, failure: FetchFailure) -> None:
    fetched = _fetch(server.url(fault))
    assert fetched.failures == {"k0": failure} and not fetched.data


def test_a_read_that_finds_nothing_is_no_data_not_a_failure(server: FaultyServer) -> None:
    # As a prefetch key of null: the patient has no such resource. A search answering 404 is an error (above).
    fetched = _fetch(server.url("status/404"), query="Encounter/e-1")
    assert fetched.data == {"k0": None} and not fetched.failures


def test_fhir_json_is_asked_for_uncompressed(server: FaultyServer) -> None:
    # Compressed answers are never decoded (a small gzip can hold a huge body), so none is asked for.
    _fetch(server.url("ok"))
    sent = server.headers[-1]
    assert (sent.get("accept"), sent.get("accept-encoding")) == ("application/fhir+json", "identity")


def test_the_access_token_is_sent_only_when_the_ehr_gave_one(server: FaultyServer) -> None:
    fetcher = FhirFetcher(LIMITS)
    try:
        fetcher.fetch(server.url("ok"), {"k0": SEARCH}, "tok-1", time.monotonic() + 2.0)
        fetcher.fetch(server.url("ok"), {"k0": SEARCH}, None, time.monotonic() + 2.0)
        fetcher.fetch(server.url("ok"), {"k0": SEARCH}, "", time.monotonic() + 2.0)
    finally:
        fetcher.close()
    assert [sent.get("authorization") for sent in server.headers[-3:]] == ["Bearer tok-1", None, None]


@pytest.mark.parametrize(("fault", "seconds"), [("slow", 0.3), ("trickle", 0.35)])
def test_a_request_past_the_deadline_fails_as_a_timeout_in_its_own_thread(
    server: FaultyServer, fault: str, seconds: float
) -> None:
    # The thread's own failure, not only the caller's: no answer yet (slow), or a body still arriving (trickle).
    fetcher = FhirFetcher(LIMITS)
    try:
        with pytest.raises(_Failed) as failed:
            fetcher._get(f"{server.url(fault)}/{SEARCH}", {}, _Call(LIMITS, time.monotonic() + seconds), read=False)
    finally:
        fetcher.close()
    assert failed.value.failure == FetchFailure("timeout", "2 s")


def test_a_server_off_the_allow_list_is_refused_unsent_even_if_the_caller_did_not_check(server: FaultyServer) -> None:
    listed = ("https://ehr.example.org/fhir",)
    fetcher = FhirFetcher(LIMITS, allowlist=listed, loopback=False)
    loopback = FhirFetcher(LIMITS, allowlist=listed, loopback=True)
    before = len(server.requests)
    try:
        with pytest.raises(ValueError, match="allow-list"):
            fetcher.fetch(server.url("ok"), {"k0": SEARCH}, None, time.monotonic() + 2.0)
        assert len(server.requests) == before
        # Loopback allowed beside the list (a FHIR server on this machine): queried.
        assert loopback.fetch(server.url("ok"), {"k0": SEARCH}, None, time.monotonic() + 2.0).data["k0"]
    finally:
        fetcher.close()
        loopback.close()


def test_an_empty_search_without_entry_is_an_empty_answer_not_a_failure(server: FaultyServer) -> None:
    fetched = _fetch(server.url("no-entry"))
    assert fetched.failures == {} and fetched.truncated == {}
    assert fetched.data["k0"]["resourceType"] == "Bundle" and not fetched.data["k0"].get("entry")


def test_only_a_next_link_is_followed(server: FaultyServer) -> None:
    before = len(server.requests)
    fetched = _fetch(server.url("self-link"))
    assert fetched.failures == {} and fetched.truncated == {} and len(server.requests) == before + 1


def test_an_unreachable_server_names_only_the_kind_of_error() -> None:
    fetched = _fetch(f"http://127.0.0.1:{_closed_port()}/fhir")
    assert fetched.failures == {"k0": FetchFailure("unreachable", "ConnectError")}


def test_a_query_that_cannot_be_a_url_is_refused_unsent(server: FaultyServer) -> None:
    before = len(server.requests)
    fetched = _fetch(server.url("ok"), query="Condition?patient=x#fragment")
    assert fetched.failures == {"k0": FetchFailure("bad-response", "query URL refused")}
    assert len(server.requests) == before


def test_a_search_cut_at_the_page_cap_keeps_the_pages_read_and_says_it_was_cut(
    server: FaultyServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="cds_hooks.fhir.fetch"):
        fetched = _fetch(server.url("pages/4/2"))
    assert fetched.truncated == {"k0": FetchFailure("truncated")}
    assert len(fetched.data["k0"]["entry"]) == 6
    [line] = [r.getMessage() for r in caplog.records if r.name == "cds_hooks.fhir.fetch"]
    assert line.endswith(" pages=3 results=6 truncated"), line


def test_a_deadline_already_reached_is_a_timeout_before_any_request(server: FaultyServer) -> None:
    """A fetch thread that starts after the deadline (the hook call already answered) stops as a timeout."""
    fetcher = FhirFetcher(LIMITS)
    before = len(server.requests)
    try:
        outcome = fetcher._run(server.url("ok"), SEARCH, {}, _Call(LIMITS, time.monotonic()))
    finally:
        fetcher.close()
    assert outcome == (FetchFailure("timeout", "2 s"), None)
    assert len(server.requests) == before


def _queries(resource_type: str) -> float:
    return REGISTRY.get_sample_value("lumbar_cds_fhir_fallback_queries_total", {"resource_type": resource_type}) or 0


def _failures(resource_type: str, reason: str) -> float:
    return REGISTRY.get_sample_value("lumbar_cds_fhir_fallback_failures_total",
                                     {"resource_type": resource_type, "reason": reason}) or 0


def test_the_log_line_and_metrics_of_a_search_that_worked(
    server: FaultyServer, caplog: pytest.LogCaptureFixture
) -> None:
    before = _queries("Condition")
    with caplog.at_level(logging.INFO, logger="cds_hooks.fhir.fetch"):
        fetched = _fetch(server.url("pages/2/2"))
    assert len(fetched.data["k0"]["entry"]) == 4
    [line] = [r.getMessage() for r in caplog.records if r.name == "cds_hooks.fhir.fetch"]
    assert line.startswith("fhir query='Condition search' status=200 ms="), line
    assert line.endswith(" pages=2 results=4"), line
    assert _queries("Condition") == before + 1


@pytest.mark.parametrize(("fault", "status", "results"), [("patient", 200, 1), ("ok", 404, 0)])
def test_the_log_line_of_a_read_that_found_its_resource_or_nothing(
    server: FaultyServer, caplog: pytest.LogCaptureFixture, fault: str, status: int, results: int
) -> None:
    with caplog.at_level(logging.INFO, logger="cds_hooks.fhir.fetch"):
        fetched = _fetch(server.url(fault), query="Patient/p-1")
    assert (fetched.data["k0"] or {}).get("id", None) == ("p-1" if results else None) and not fetched.failures
    [line] = [r.getMessage() for r in caplog.records if r.name == "cds_hooks.fhir.fetch"]
    assert line.startswith(f"fhir query='Patient read' status={status} ms="), line
    assert line.endswith(f" pages=1 results={results}"), line


def test_the_log_line_says_how_long_the_query_took_in_milliseconds(
    server: FaultyServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="cds_hooks.fhir.fetch"):
        _fetch(server.url("delay/200"))
    [line] = [r.getMessage() for r in caplog.records if r.name == "cds_hooks.fhir.fetch"]
    ms = float(line.split(" ms=", 1)[1].split(" ", 1)[0])
    assert 200 <= ms < 2000, line  # the server waits 200 ms; the deadline is 2 s


def test_the_log_line_and_metrics_of_a_refused_search(server: FaultyServer, caplog: pytest.LogCaptureFixture) -> None:
    before, failed = _queries("Condition"), _failures("Condition", "refused")
    with caplog.at_level(logging.INFO, logger="cds_hooks.fhir.fetch"):
        _fetch(server.url("status/401"))
    [line] = [r.getMessage() for r in caplog.records if r.name == "cds_hooks.fhir.fetch"]
    assert line.startswith("fhir query='Condition search' status=- ms="), line
    assert line.endswith(" pages=0 results=0 failure=refused detail='HTTP 401'"), line
    assert (_queries("Condition"), _failures("Condition", "refused")) == (before + 1, failed + 1)


def test_an_unexpected_error_on_an_answer_is_that_servers_bad_response(
    server: FaultyServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection: whatever a server's answer makes go wrong in reading it is a failure of that key, logged
    and counted like any other, never an exception out of the hook call."""
    def broken(*_: object) -> None:
        raise TypeError("an answer of a shape nobody foresaw")

    monkeypatch.setattr(FhirFetcher, "_search_or_read", broken)
    failed = _failures("Condition", "bad-response")
    with caplog.at_level(logging.INFO, logger="cds_hooks.fhir.fetch"):
        fetched = _fetch(server.url("ok"))
    assert fetched.failures == {"k0": FetchFailure("bad-response", "TypeError")}
    [line] = [r.getMessage() for r in caplog.records if r.name == "cds_hooks.fhir.fetch"]
    assert line.startswith("fhir query='Condition search' status=- ms="), line
    assert line.endswith(" pages=0 results=0 failure=bad-response detail='TypeError'"), line
    assert _failures("Condition", "bad-response") == failed + 1
