"""A small local HTTP server that misbehaves on purpose (fault injection only).

The first path segment picks the fault, so one server serves them all:
`/ok/fhir/...` answers empty Bundles (and 404 to a read), `/slow/...` answers after 3 s,
`/error/...` 500, `/invalid-json/...` broken JSON, `/no-entry/...` an empty search without `entry`,
`/bad-bundle/...` and `/bad-next/...` JSON of an impossible shape, `/trickle/...` a body that never
finishes, `/drop/...` closes the connection without answering, `/patient/...` a Patient for any read,
`/not-a-resource/...` JSON without a resourceType, `/outcome-200/...` an OperationOutcome with status 200,
`/redirect/...` points at a second server on another loopback host, which counts any visit. The `next`
kinds `gone` and `not-bundle` link to a second page that is not found or is a Patient.

Faults with numbers, for the fetch limits at their edges (tests/test_fetch_limits.py):
`/pages/N/PER/...` a search of N pages of PER entries linked by absolute `next` links (`page=K`);
`/bytes/N/...` an empty Bundle padded to exactly N bytes, with Content-Length, and `/bytes-unsized/N/...`
the same without it (read until the connection closes); `/values/N/...` a Bundle holding exactly N of
the bytes `{ [ , :` that the fetcher counts as JSON values; `/delay/MS/...` an empty Bundle after MS
milliseconds; `/linger/MS/...` headers, MS milliseconds later a whole unsized body, and MS later the end
of it (the connection closes); `/status/N/...` an OperationOutcome with HTTP status N;
`/gzip/...` a gzip-encoded answer nobody asked for;
`/empty-objects/N/...` a Bundle of N bytes of `{}` entries, streamed; `/next/KIND/...` one entry and a
`next` link that leads elsewhere (to another host, another port, another path prefix, through dot
segments) or, for `same`, to a second page. Every request target each listener receives is kept in
`requests`.
"""

from __future__ import annotations

import gzip
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import orjson

SLOW_SECONDS = 3.0


class _Counting(ThreadingHTTPServer):
    daemon_threads = True
    connections = 0

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.requests: list[str] = []
        self.headers: list[dict[str, str]] = []  # the headers of each request, by lower-case name

    def process_request(self, request: Any, client_address: Any) -> None:
        self.connections += 1
        super().process_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up mid-answer (the fetcher refusing a body) is expected here


PREFIX_FIELDS = '{"resourceType":"Bundle","type":"searchset","entry":[]'


def counted_values(body: bytes) -> int:
    """The bytes the fetcher counts as JSON values (fhir/fetch.py: an upper bound on what a parser builds)."""
    return sum(body.count(c) for c in (b"{", b"[", b",", b":"))


def padded_bundle(size: int) -> bytes:
    """An empty searchset Bundle of exactly `size` bytes (JSON whitespace before the closing brace)."""
    body = PREFIX_FIELDS.encode()
    assert size > len(body)
    return body + b" " * (size - len(body) - 1) + b"}"


def bundle_with_values(values: int) -> bytes:
    """An empty Bundle holding exactly `values` of the bytes { [ , : (the extra ones inside a string)."""
    body = (PREFIX_FIELDS + ',"pad":"').encode()
    assert values >= counted_values(body)
    return body + b"," * (values - counted_values(body)) + b'"}'


def entries(count: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"resource": {"resourceType": "Condition", "id": f"c{i}"}} for i in range(start, start + count)]


class _Handler(BaseHTTPRequestHandler):
    server: _Counting
    redirect_to = ""
    other_port_base = ""  # http://127.0.0.1:<another port>

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def _json(self, status: int, payload: Any) -> None:
        body = orjson.dumps(payload)
        self.send_response(status)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _raw(self, body: bytes, sized: bool = True, encoding: str | None = None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/fhir+json")
        if encoding:
            self.send_header("Content-Encoding", encoding)
        if sized:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def _numbered(self, fault: str, number: int, parts: list[str]) -> bool:
        """The faults with a number in the path; False when `fault` is not one of them."""
        if fault == "pages":  # /pages/N/PER/fhir/Type?...&page=K
            per = int(parts[3])
            query = self.path.partition("?")[2]
            page = int(dict(p.partition("=")[::2] for p in query.split("&")).get("page", "1"))
            bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset",
                                      "entry": entries(per, (page - 1) * per)}
            if page < number:
                bundle["link"] = [{"relation": "next", "url": self._base() + self.path.partition("?")[0]
                                   + f"?patient=x&page={page + 1}"}]
            self._json(200, bundle)
        elif fault in ("bytes", "bytes-unsized"):
            self._raw(padded_bundle(number), sized=fault == "bytes")
        elif fault == "values":
            self._raw(bundle_with_values(number))
        elif fault == "announced":  # a Content-Length of N, then no body for a second (the connection closes)
            self.send_response(200)
            self.send_header("Content-Type", "application/fhir+json")
            self.send_header("Content-Length", str(number))
            self.end_headers()
            self.wfile.flush()
            time.sleep(1.0)
            self.close_connection = True
        elif fault == "linger":  # headers, MS later the whole body, MS later the end (the connection closes)
            self.send_response(200)
            self.send_header("Content-Type", "application/fhir+json")
            self.end_headers()
            self.wfile.flush()
            time.sleep(number / 1000)
            self.wfile.write(b'{"resourceType":"Bundle","type":"searchset","entry":[]}')
            self.wfile.flush()
            time.sleep(number / 1000)
        elif fault == "status":
            self._json(number, {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "x"}]})
        elif fault == "delay":
            time.sleep(number / 1000)
            self._json(200, {"resourceType": "Bundle", "type": "searchset", "entry": []})
        elif fault == "empty-objects":  # the memory blow-up: {} entries, streamed
            head, tail = b'{"resourceType":"Bundle","type":"searchset","entry":[{}', b"]}"
            count, spare = divmod(number - len(head) - len(tail), 3)
            self.send_response(200)
            self.send_header("Content-Type", "application/fhir+json")
            self.send_header("Content-Length", str(number))
            self.end_headers()
            self.wfile.write(head)
            for _ in range(count // 20000):
                self.wfile.write(b",{}" * 20000)
            self.wfile.write(b",{}" * (count % 20000) + b" " * spare + tail)
        else:
            return False
        return True

    def _next(self, kind: str) -> None:
        """/next/KIND/fhir/Type?...: page 1 links to KIND's target; page 2 (only `same`, `gone` and `not-bundle`
        get there) ends, is not found, or is a Patient."""
        if "page=2" in self.path and kind == "gone":
            self._json(404, {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-found"}]})
            return
        if "page=2" in self.path and kind == "not-bundle":
            self._json(200, {"resourceType": "Patient", "id": "p-1"})
            return
        if "page=2" in self.path:
            self._json(200, {"resourceType": "Bundle", "type": "searchset", "entry": entries(1, 1)})
            return
        here, path = self._base(), self.path.partition("?")[0]
        target = {
            "same": f"{here}{path}?patient=x&page=2",
            "gone": f"{here}{path}?patient=x&page=2",
            "not-bundle": f"{here}{path}?patient=x&page=2",
            "other-host": f"{self.redirect_to}{path}?page=2",
            "other-port": f"{self.other_port_base}{path}?page=2",
            "other-prefix": f"{here}/next/other-prefix/admin/Condition?page=2",
            "sibling-prefix": f"{here}/next/sibling-prefix/fhir-admin/Condition?page=2",
            "dots": f"{here}/next/dots/fhir/../../admin/Condition?page=2",
            "encoded-dots": f"{here}/next/encoded-dots/fhir/%2e%2e/%2E%2E/admin/Condition?page=2",
            "relative-dots": "../../admin/Condition?page=2",
            "semicolon-dots": f"{here}/next/semicolon-dots/fhir/..;/..;/admin/Condition?page=2",
            "backslash": f"{here}/next/backslash/fhir/..\\..\\admin/Condition?page=2",
            "userinfo": f"http://127.0.0.1:{self.server.server_port}@127.0.0.2{path}?page=2",
        }[kind]
        self._json(200, {"resourceType": "Bundle", "type": "searchset", "entry": entries(1),
                         "link": [{"relation": "next", "url": target}]})

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        self.server.headers.append({name.lower(): value for name, value in self.headers.items()})
        parts = self.path.split("/")
        fault = parts[1]
        if len(parts) > 2 and parts[2].isdigit() and self._numbered(fault, int(parts[2]), parts):
            return
        if fault == "next":
            self._next(parts[2])
            return
        if fault == "gzip":
            self._raw(gzip.compress(b'{"resourceType":"Bundle","type":"searchset","entry":[]}'), encoding="gzip")
            return
        if fault == "slow":
            time.sleep(SLOW_SECONDS)
        if fault == "error":
            self._json(500, {"resourceType": "OperationOutcome",
                             "issue": [{"severity": "fatal", "code": "exception"}]})
        elif fault == "invalid-json":
            self.send_response(200)
            self.send_header("Content-Type", "application/fhir+json")
            self.end_headers()
            self.wfile.write(b'{"resourceType": "Bundle", "entry": [')
        elif fault == "bad-bundle":  # valid JSON, impossible FHIR shape
            self._json(200, {"resourceType": "Bundle", "type": "searchset", "entry": 5, "link": 7})
        elif fault == "self-link":  # a page that names itself (and nothing next) with a link of another shape
            self._json(200, {"resourceType": "Bundle", "type": "searchset", "entry": [],
                             "link": ["next", {"relation": "self", "url": self.path}]})
        elif fault == "patient":  # a read that finds its resource
            self._json(200, {"resourceType": "Patient", "id": self.path.rsplit("/", 1)[-1]})
        elif fault == "not-a-resource":  # JSON, but no resourceType
            self._json(200, [{"resourceType": "Bundle"}])
        elif fault == "outcome-200":  # an error reported as an OperationOutcome with status 200
            self._json(200, {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "x"}]})
        elif fault == "no-entry":  # an empty search as many servers send it: no entry element at all
            self._json(200, {"resourceType": "Bundle", "type": "searchset", "total": 0})
        elif fault == "bad-next":
            self._json(200, {"resourceType": "Bundle", "type": "searchset", "entry": [],
                             "link": [{"relation": "next", "url": "http://[::1"}]})
        elif fault == "trickle":  # headers at once, then one byte every 0.1 s: only a whole-body deadline stops it
            self.send_response(200)
            self.send_header("Content-Type", "application/fhir+json")
            self.end_headers()
            for _ in range(int(SLOW_SECONDS * 10)):
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(0.1)
        elif fault == "drop":
            self.close_connection = True
            self.connection.shutdown(2)
        elif fault == "redirect":
            self.send_response(302)
            self.send_header("Location", self.redirect_to + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif "?" in self.path:
            self._json(200, {"resourceType": "Bundle", "type": "searchset", "entry": []})
        else:
            self._json(404, {"resourceType": "OperationOutcome",
                             "issue": [{"severity": "error", "code": "not-found"}]})


class FaultyServer:
    """Context manager: the misbehaving server plus the redirect target (another loopback host) and a
    listener on another port of the same host, which count any visit."""

    def __init__(self) -> None:
        self._target = _Counting(("127.0.0.2", 0), _Handler)
        self._other_port = _Counting(("127.0.0.1", 0), _Handler)
        handler = type("Handler", (_Handler,), {
            "redirect_to": f"http://127.0.0.2:{self._target.server_port}",
            "other_port_base": f"http://127.0.0.1:{self._other_port.server_port}"})
        self._server = _Counting(("127.0.0.1", 0), handler)

    def url(self, fault: str) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/{fault}/fhir"

    @property
    def requests(self) -> list[str]:
        """Request targets the misbehaving server received, in order."""
        return self._server.requests

    @property
    def headers(self) -> list[dict[str, str]]:
        """The headers of each request the misbehaving server received, by lower-case name, in order."""
        return self._server.headers

    @property
    def elsewhere_hits(self) -> int:
        """Visits to the other host and the other port: anything there is a request that escaped."""
        return self._target.connections + self._other_port.connections

    @property
    def connections(self) -> int:
        return self._server.connections

    @property
    def redirect_target_hits(self) -> int:
        return self._target.connections

    def __enter__(self) -> FaultyServer:
        for server in (self._server, self._target, self._other_port):
            threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        for server in (self._server, self._target, self._other_port):
            server.shutdown()
            server.server_close()
