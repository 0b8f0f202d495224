"""The FHIR fetch client's limits, each at its edge and one past it, against the fault-injecting server.

Every limit here is set small so the edge is cheap to reach; the defaults are the same code with larger
numbers. A test per edge means a limit that is off by one, or gone, fails here.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import tracemalloc
from collections.abc import Iterator

import httpx
import pytest

from cds_hooks.fhir.fetch import Fetched, FetchFailure, FhirFetcher
from cds_hooks.settings.config import FetchLimits
from tests.faulty_server import FaultyServer

SEARCH = "Condition?patient=x"
ROOMY = FetchLimits(timeout=2.0, max_pages=50, max_resources=1000, max_bytes=1 << 20, max_page_resources=1000,
                    max_total_resources=1000, max_json_values=1 << 16)


@pytest.fixture(scope="module")
def server() -> Iterator[FaultyServer]:
    with FaultyServer() as running:
        yield running


def _fetch(url: str, keys: int = 1, query: str = SEARCH, seconds: float = 2.0, **limits: int) -> Fetched:
    fetcher = FhirFetcher(dataclasses.replace(ROOMY, **limits))
    try:
        return fetcher.fetch(url, {f"k{i}": query for i in range(keys)}, None, time.monotonic() + seconds)
    finally:
        fetcher.close()


def _ids(fetched: Fetched, key: str = "k0") -> list[str]:
    return [e["resource"]["id"] for e in fetched.data[key]["entry"]]


def _requests_to(server: FaultyServer, fault: str) -> int:
    return sum(1 for r in server.requests if r.startswith(f"/{fault}/"))


# --------------------------------------------------------------------------- pages and resources


def test_exactly_the_page_cap_is_read_whole(server: FaultyServer) -> None:
    before = _requests_to(server, "pages/3/2")  # the server is shared: count this test's requests only
    fetched = _fetch(server.url("pages/3/2"), max_pages=3)
    assert _ids(fetched) == [f"c{i}" for i in range(6)] and not fetched.truncated
    assert _requests_to(server, "pages/3/2") - before == 3


def test_one_page_over_the_cap_is_not_fetched_and_the_search_says_truncated(server: FaultyServer) -> None:
    before = _requests_to(server, "pages/4/2")
    fetched = _fetch(server.url("pages/4/2"), max_pages=3)
    assert _ids(fetched) == [f"c{i}" for i in range(6)]
    assert fetched.truncated["k0"].reason == "truncated"
    assert _requests_to(server, "pages/4/2") - before == 3  # the fourth page was never asked for


def test_exactly_the_search_resource_cap_is_whole_and_one_over_is_cut(server: FaultyServer) -> None:
    exact = _fetch(server.url("pages/1/5"), max_resources=5)
    assert len(_ids(exact)) == 5 and not exact.truncated
    over = _fetch(server.url("pages/1/6"), max_resources=5)
    assert _ids(over) == [f"c{i}" for i in range(5)] and over.truncated["k0"].reason == "truncated"
    across_pages = _fetch(server.url("pages/2/3"), max_resources=5)  # 3 + 3: the second page is cut to 2
    assert len(_ids(across_pages)) == 5 and "k0" in across_pages.truncated
    before = _requests_to(server, "pages/2/5")
    full_first_page = _fetch(server.url("pages/2/5"), max_resources=5)  # full: the next page is not asked for
    assert len(_ids(full_first_page)) == 5 and "k0" in full_first_page.truncated
    assert _requests_to(server, "pages/2/5") - before == 1


def test_exactly_the_page_entry_cap_is_whole_and_one_over_is_cut(server: FaultyServer) -> None:
    exact = _fetch(server.url("pages/1/4"), max_page_resources=4)
    assert len(_ids(exact)) == 4 and not exact.truncated
    over = _fetch(server.url("pages/1/5"), max_page_resources=4)
    assert _ids(over) == ["c0", "c1", "c2", "c3"] and "k0" in over.truncated


def test_the_call_resource_cap_holds_across_concurrent_searches(server: FaultyServer) -> None:
    exact = _fetch(server.url("pages/1/3"), keys=2, max_total_resources=6)
    assert [len(_ids(exact, k)) for k in ("k0", "k1")] == [3, 3] and not exact.truncated
    over = _fetch(server.url("pages/1/3"), keys=2, max_total_resources=5)
    assert sum(len(_ids(over, k)) for k in ("k0", "k1")) == 5
    assert len(over.truncated) == 1
    # A budget one search uses up leaves nothing for the other: not even one more resource.
    spent = _fetch(server.url("pages/1/3"), keys=2, max_total_resources=3)
    assert sum(len(_ids(spent, k)) for k in ("k0", "k1")) == 3
    assert len(spent.truncated) == 1


# --------------------------------------------------------------------------- bytes and JSON values


@pytest.mark.parametrize("fault", ["bytes", "bytes-unsized"])  # refused by Content-Length, or while streaming
def test_exactly_the_byte_cap_is_read_and_one_byte_more_is_refused(server: FaultyServer, fault: str) -> None:
    exact = _fetch(server.url(f"{fault}/4096"), max_bytes=4096)
    assert exact.data["k0"]["entry"] == [] and not exact.failures
    over = _fetch(server.url(f"{fault}/4097"), max_bytes=4096)
    assert over.failures["k0"] == FetchFailure("bad-response", "answer over the byte or JSON-value cap")
    assert "k0" not in over.data


def test_an_announced_length_over_the_cap_is_refused_before_any_body_arrives(server: FaultyServer) -> None:
    """The Content-Length check refuses at once; without it the client would wait for a body that never comes."""
    started = time.monotonic()
    over = _fetch(server.url("announced/4097"), max_bytes=4096, seconds=0.6)
    assert over.failures["k0"].reason == "bad-response" and time.monotonic() - started < 0.3
    at_cap = _fetch(server.url("announced/4096"), max_bytes=4096, seconds=0.3)  # allowed, so it waits in vain
    assert at_cap.failures["k0"].reason == "timeout"


def test_an_answer_of_many_chunks_is_read_whole(server: FaultyServer) -> None:
    big = _fetch(server.url("bytes-unsized/300000"), max_bytes=300_000)
    assert big.data["k0"]["resourceType"] == "Bundle" and not big.failures


def test_the_byte_cap_is_for_the_whole_call(server: FaultyServer) -> None:
    exact = _fetch(server.url("bytes/2048"), keys=2, max_bytes=4096)
    assert not exact.failures and len(exact.data) == 2
    over = _fetch(server.url("bytes/2048"), keys=2, max_bytes=4095)
    assert len(over.failures) == 1 and len(over.data) == 1


def test_exactly_the_json_value_budget_is_parsed_and_one_more_is_refused(server: FaultyServer) -> None:
    exact = _fetch(server.url("values/500"), max_json_values=500)
    assert exact.data["k0"]["resourceType"] == "Bundle" and not exact.failures
    over = _fetch(server.url("values/501"), max_json_values=500)
    assert over.failures["k0"].reason == "bad-response"


def test_a_page_over_the_budget_truncates_its_search_to_the_pages_read(server: FaultyServer) -> None:
    pages = [httpx.get(f"{server.url('pages/3/2')}/{SEARCH}&page={n}").content for n in (1, 2, 3)]
    fetched = _fetch(server.url("pages/3/2"), max_bytes=len(pages[0]) + len(pages[1]) + len(pages[2]) - 1)
    assert _ids(fetched) == ["c0", "c1", "c2", "c3"] and fetched.truncated["k0"] == FetchFailure("truncated")


def test_a_compressed_answer_is_refused(server: FaultyServer) -> None:
    assert _fetch(server.url("gzip")).failures["k0"].reason == "bad-response"


# --------------------------------------------------------------------------- the deadline


def test_a_deadline_already_reached_sends_nothing(server: FaultyServer) -> None:
    before = _requests_to(server, "delay/0")
    fetched = _fetch(server.url("delay/0"), seconds=0)
    assert fetched.failures["k0"].reason == "timeout"
    assert _requests_to(server, "delay/0") == before


def test_an_answer_inside_the_deadline_counts_and_one_outside_does_not(server: FaultyServer) -> None:
    assert not _fetch(server.url("delay/150"), seconds=0.6).failures
    fetcher = FhirFetcher(ROOMY)
    try:
        started = time.monotonic()
        late = fetcher.fetch(server.url("delay/1200"), {"k0": SEARCH}, None, started + 0.6)
        assert time.monotonic() - started < 0.6 * 1.1
    finally:
        fetcher.close()
    assert late.failures["k0"].reason == "timeout"


def test_no_thread_keeps_working_after_the_answer(server: FaultyServer) -> None:
    fetcher = FhirFetcher(dataclasses.replace(ROOMY, max_bytes=32 << 20, max_json_values=(32 << 20) // 64))
    try:
        started = time.monotonic()
        fetched = fetcher.fetch(server.url("trickle"), {"k0": SEARCH}, None, started + 0.5)
        assert fetched.failures["k0"].reason == "timeout" and time.monotonic() - started < 0.55
        # The trickle sends a byte every 0.1 s: the abandoned thread must stop at the next one.
        while fetcher.in_flight and time.monotonic() - started < 0.8:
            time.sleep(0.01)
        assert fetcher.in_flight == 0
    finally:
        fetcher.close()


def test_a_body_that_ends_after_the_deadline_is_not_parsed(
    server: FaultyServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Every byte arrives in time, but the body ends (the connection closes) after the deadline."""
    fetcher = FhirFetcher(ROOMY)
    try:
        with caplog.at_level(logging.INFO, logger="cds_hooks.fhir.fetch"):
            started = time.monotonic()
            fetched = fetcher.fetch(server.url("linger/250"), {"k0": SEARCH}, None, started + 0.4)
            while fetcher.in_flight and time.monotonic() - started < 2:
                time.sleep(0.01)
    finally:
        fetcher.close()
    assert fetched.failures["k0"].reason == "timeout"
    assert "query='Condition search'" in caplog.text and "failure=timeout" in caplog.text, caplog.text


def test_the_answer_leaves_at_the_deadline_while_a_thread_is_still_reading(server: FaultyServer) -> None:
    """The body arrives at 0.4 s but the connection stays open to 0.8 s: the thread reads on (no socket read
    waits as long as the deadline), yet `fetch` answers at the deadline, 0.5 s, not when the thread ends."""
    # Load only ever delays an answer: the fastest of three tries is the code's own time, not the machine's.
    times = []
    for _ in range(3):
        fetcher = FhirFetcher(ROOMY)
        try:
            started = time.monotonic()
            fetched = fetcher.fetch(server.url("linger/400"), {"k0": SEARCH}, None, started + 0.5)
            times.append(time.monotonic() - started)
            while fetcher.in_flight and time.monotonic() - started < 2:
                time.sleep(0.01)
        finally:
            fetcher.close()
        assert fetched.failures["k0"] == FetchFailure("timeout", f"{ROOMY.timeout:g} s")  # abandoned, so named here
    assert 0.5 <= min(times) < 0.7, times


# --------------------------------------------------------------------------- paging links


@pytest.mark.parametrize("kind", ["other-host", "other-port", "other-prefix", "sibling-prefix", "dots",
                                  "encoded-dots", "relative-dots", "semicolon-dots", "backslash", "userinfo"])
def test_a_next_link_off_the_server_or_its_path_is_refused_unvisited(server: FaultyServer, kind: str) -> None:
    hits = server.elsewhere_hits
    fetched = _fetch(server.url(f"next/{kind}"))
    assert fetched.failures["k0"] == FetchFailure("bad-response", "paging link to another server")
    assert [r for r in server.requests if r.startswith(f"/next/{kind}/")] == [f"/next/{kind}/fhir/{SEARCH}"]
    assert server.elsewhere_hits == hits


def test_a_next_link_on_the_same_server_is_followed(server: FaultyServer) -> None:
    fetched = _fetch(server.url("next/same"))
    assert _ids(fetched) == ["c0", "c1"] and not fetched.failures


@pytest.mark.parametrize(("kind", "failure"), [
    ("gone", FetchFailure("server-error", "HTTP 404")),  # a later page not found is an error, not "no data"
    ("not-bundle", FetchFailure("bad-response", "a result page is not a Bundle")),
])
def test_a_later_page_that_is_not_a_page_fails_the_search(
    server: FaultyServer, kind: str, failure: FetchFailure
) -> None:
    fetched = _fetch(server.url(f"next/{kind}"))
    assert fetched.failures == {"k0": failure} and "k0" not in fetched.data


def test_every_page_of_a_search_carries_the_access_token(server: FaultyServer) -> None:
    before = len(server.headers)
    fetcher = FhirFetcher(ROOMY)
    try:
        fetched = fetcher.fetch(server.url("pages/3/2"), {"k0": SEARCH}, "tok-2", time.monotonic() + 2.0)
    finally:
        fetcher.close()
    assert len(_ids(fetched)) == 6
    assert [sent.get("authorization") for sent in server.headers[before:]] == ["Bearer tok-2"] * 3


# --------------------------------------------------------------------------- the memory blow-up


def test_a_bundle_of_30_mib_of_empty_objects_is_refused_early_and_small(server: FaultyServer) -> None:
    """Under the default byte cap (32 MiB) this answer once took a worker to 2 GB and 13.8 s."""
    fetcher = FhirFetcher(FetchLimits())
    tracemalloc.start()
    try:
        started = time.monotonic()
        fetched = fetcher.fetch(server.url("empty-objects/31457280"), {"k0": SEARCH}, None, started + 2.0)
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        fetcher.close()
    assert fetched.failures["k0"].reason == "bad-response"
    assert elapsed < 2.0
    assert peak < 8 << 20, peak  # refused after ~0.8 MB, never parsed: nowhere near 4 x 32 MiB


def test_a_thread_waiting_for_an_answer_stops_at_the_deadline_not_when_the_server_answers(
    server: FaultyServer
) -> None:
    """The server answers after 2 s; the deadline is at 0.3 s. Each request's own timeout is the time left,
    so the waiting thread gives up then too (a longer or missing timeout would keep it to 1 s or 2 s)."""
    ended = []
    for _ in range(3):  # load only ever delays: the fastest of three tries is the code's own time
        fetcher = FhirFetcher(ROOMY)
        try:
            started = time.monotonic()
            # Two keys at once: the count of threads still working must come back to exactly 0.
            fetched = fetcher.fetch(server.url("delay/2000"), {"k0": SEARCH, "k1": SEARCH}, None, started + 0.3)
            while fetcher.in_flight != 0 and time.monotonic() - started < 3:
                time.sleep(0.01)
            ended.append(time.monotonic() - started)
            time.sleep(0.05)
            assert fetcher.in_flight == 0  # and stays there (a count that went wrong can pass 0 on its way)
        finally:
            fetcher.close()
        assert fetched.failures["k0"].reason == "timeout"
    assert min(ended) < 0.8, ended
