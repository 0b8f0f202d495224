"""Property: whatever URL a caller or a FHIR server supplies, no request leaves the allow-listed prefix.

hypothesis builds tricky URLs from the pieces that have fooled URL checks before (dot segments plain,
encoded and with `;`, backslashes, userinfo, odd IPv4 spellings, ports, queries, fragments, control and
non-ASCII characters) and uses each one twice against real listeners: as the `fhirServer` of a fetch
(sent only if the allow-list check passes) and as the `next` link of a search result page. Three
listeners record every request: the allowed server on 127.0.0.1 (prefix /fhir), another port on
127.0.0.1 and another loopback host. Every path the allowed server receives must still be inside /fhir
when read as permissively as any server might (decoded repeatedly, backslashes as slashes, `;`
parameters dropped, dot segments resolved), and the other two must receive nothing at all.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cds_hooks.fhir.fetch import FhirFetcher
from cds_hooks.netpolicy.urls import normalise_url, resolve_link, same_server, server_allowed
from cds_hooks.settings.config import FetchLimits

SEARCH = "Condition?patient=x"


class _Recorder(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str) -> None:
        super().__init__((host, 0), _Handler)
        self.targets: list[str] = []
        self.next_link = ""


class _Handler(BaseHTTPRequestHandler):
    server: _Recorder

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.targets.append(self.path)
        bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "entry": []}
        if self.path == f"/fhir/{SEARCH}" and self.server.next_link:
            bundle["link"] = [{"relation": "next", "url": self.server.next_link}]
        body = orjson.dumps(bundle)
        self.send_response(200)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@dataclass
class Listeners:
    allowed: _Recorder
    others: list[_Recorder] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.allowed.server_port}/fhir"


@pytest.fixture(scope="module")
def listeners() -> Iterator[Listeners]:
    running = Listeners(_Recorder("127.0.0.1"), [_Recorder("127.0.0.1"), _Recorder("127.0.0.2")])
    servers = [running.allowed, *running.others]
    for server in servers:
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield running
    for server in servers:
        server.shutdown()
        server.server_close()


def permissive_path(target: str) -> str:
    """The path as the most permissive server could read it."""
    path = target.split("?", 1)[0].split("#", 1)[0]
    for _ in range(3):
        path = unquote(path, errors="replace")
    resolved: list[str] = []
    for segment in path.replace("\\", "/").split("/"):
        segment = segment.split(";", 1)[0]
        if segment == "..":
            if resolved:
                resolved.pop()
        elif segment not in ("", "."):
            resolved.append(segment)
    return "/" + "/".join(resolved)


SEGMENTS = ["fhir", "FHIR", "admin", "fhir-admin", "Condition", "..", ".", "", "%2e", "%2E%2e", ".%2e", "%2e.",
            "..;", ";", "x;y", "%2f", "%2F..", "%5c", "\\", "..\\", "%00", "\x01", "\x7f", "é", "%C3%A9", " ",
            "%20", "%252e%252e", "%", "%zz", "~", "%7e", "a%41", "?", "#", "@", ":", "..%2f", "%2e%2e%2f", "%c0%ae"]
SUFFIXES = ["", "/", "//", "?patient=x", "?a=1#", "#", "#frag", "?/../../admin", "/..", "/.", "?x=\\", "\t", "\n"]
SCHEMES = ["http://", "HTTP://", "https://", "hTtP://", "ftp://", "http:", "http:/", "//", ""]


def _authorities(allowed: int, other: int, host2: int) -> list[str]:
    return [
        f"127.0.0.1:{allowed}", f"localhost:{allowed}", f"LOCALHOST:{allowed}", f"127.0.0.1:{other}",
        f"127.0.0.2:{host2}", f"[::1]:{allowed}", f"127.1:{allowed}", f"2130706433:{allowed}",
        f"0x7f.0.0.1:{allowed}", f"user@127.0.0.1:{allowed}", f"127.0.0.1:{allowed}@127.0.0.1:{other}",
        f"127.0.0.1:{other}#@127.0.0.1:{allowed}", f"127.0.0.1:{allowed}\\@127.0.0.1:{other}",
        f"127.0.0.1:0{allowed}", f"127.0.0.1.:{allowed}", f"127.0.0.1:{allowed}:{other}",
        f"%31%32%37.0.0.1:{allowed}", f"127.0.0.1%2f:{allowed}", f"127.0.0.1:{allowed}/fhir/..",
    ]


BENIGN = ["fhir", "Condition", "r4", "x"]


def _usually(draw: st.DrawFn, plain: str, tricks: list[str]) -> str:
    """`plain` three times in four, so that many URLs pass and are really fetched; otherwise a trick."""
    return plain if draw(st.integers(0, 3)) else draw(st.sampled_from(tricks))


@st.composite
def tricky_urls(draw: st.DrawFn, ports: tuple[int, int, int]) -> str:
    segments = draw(st.lists(st.sampled_from(BENIGN), max_size=3))
    for _ in range(draw(st.integers(0, 2))):  # a trick or two somewhere in an otherwise plain path
        trick = draw(st.one_of(st.sampled_from(SEGMENTS), st.sampled_from(SEGMENTS), st.text(max_size=4)))
        segments.insert(draw(st.integers(0, len(segments))), trick)
    path = "/".join(segments) + _usually(draw, "", SUFFIXES)
    if draw(st.integers(0, 4)) == 0:  # relative, as a paging link may be
        return draw(st.sampled_from(["", "/", "?", "./", "../", "/fhir/"])) + path
    head = _usually(draw, "http://", SCHEMES) + _usually(draw, f"127.0.0.1:{ports[0]}", _authorities(*ports))
    return head + _usually(draw, "/fhir/", ["/fhir", "/", "/FHIR/", "/fhir%2f", "/fhir/..", "/fhir/./"]) + path


def _ports(found: Listeners) -> tuple[int, int, int]:
    return found.allowed.server_port, found.others[0].server_port, found.others[1].server_port


def test_no_request_leaves_the_allow_listed_prefix(listeners: Listeners) -> None:
    fetcher = FhirFetcher(FetchLimits(timeout=1.0, max_pages=3), (listeners.base,), loopback=False)

    here = listeners.base

    @settings(max_examples=600, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(tricky_urls(_ports(listeners)))
    @example(f"{here}/%2e%2e/admin").via("the review's bypass, encoded")
    @example(f"{here}/.%2E/admin?x=1").via("half encoded, with a query")
    @example(f"{here}/..;/admin").via("Tomcat path parameter")
    @example("../../admin/Condition?page=2").via("a relative paging link")
    def check(url: str) -> None:
        # Never an exception, whatever the URL: the pure checks agree with each other.
        allowed = fetcher.allowed(url)
        normal = normalise_url(url)
        assert not allowed or (normal is not None and same_server(normal, listeners.base))
        assert allowed == server_allowed(url, (listeners.base,), loopback=False)
        resolve_link(url, listeners.base)
        if allowed:
            fetcher.fetch(url, {"k": SEARCH}, None, time.monotonic() + 1.0)
        listeners.allowed.next_link = url
        fetcher.fetch(listeners.base, {"k": SEARCH}, None, time.monotonic() + 1.0)
        listeners.allowed.next_link = ""
        for target in listeners.allowed.targets:
            path = permissive_path(target)
            assert path == "/fhir" or path.startswith("/fhir/"), (url, target, path)
        assert all(not other.targets for other in listeners.others), (url, [o.targets for o in listeners.others])
        listeners.allowed.targets.clear()

    try:
        check()
    finally:
        fetcher.close()


@settings(max_examples=500, deadline=None, derandomize=True)
@given(st.one_of(st.text(max_size=60), st.builds("{}://{}".format, st.sampled_from(["http", "https"]),
                                                 st.text(max_size=40))))
def test_the_pure_checks_never_raise_and_normal_forms_are_fixed_points(url: str) -> None:
    for query in (False, True):
        normal = normalise_url(url, query=query)
        assert normal is None or normalise_url(normal, query=query) == normal
    server_allowed(url, ("https://ehr.example.org/fhir",))
    resolve_link(url, "https://ehr.example.org/fhir")


@pytest.mark.parametrize(("target", "path"), [
    ("/fhir/../admin", "/admin"), ("/fhir/%2e%2e/admin", "/admin"), ("/fhir/%252e%252e/admin", "/admin"),
    ("/fhir/..;/admin?x", "/admin"), ("/fhir\\..\\admin", "/admin"), ("/fhir/Condition?p=../..", "/fhir/Condition"),
])
def test_the_permissive_reading_sees_through_the_tricks(target: str, path: str) -> None:
    assert permissive_path(target) == path
