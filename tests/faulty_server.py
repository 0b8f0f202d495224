"""A small local HTTP server that misbehaves on purpose (fault injection only).

The first path segment picks the fault, so one server serves them all:
`/ok/fhir/...` answers empty Bundles, `/slow/...` answers after 3 s,
`/error/...` 500, `/invalid-json/...` broken JSON, `/bad-bundle/...` and
`/bad-next/...` JSON of an impossible shape, `/trickle/...` a body that never
finishes, `/drop/...` closes the connection without answering, `/redirect/...` points at a second server on
another loopback host, which counts any visit.
"""

from __future__ import annotations

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

    def process_request(self, request: Any, client_address: Any) -> None:
        self.connections += 1
        super().process_request(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Counting
    redirect_to = ""

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def _json(self, status: int, payload: Any) -> None:
        body = orjson.dumps(payload)
        self.send_response(status)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        fault = self.path.split("/")[1]
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
    """Context manager: the misbehaving server plus the redirect target."""

    def __init__(self) -> None:
        self._target = _Counting(("127.0.0.2", 0), _Handler)
        handler = type("Handler", (_Handler,), {"redirect_to": f"http://127.0.0.2:{self._target.server_port}"})
        self._server = _Counting(("127.0.0.1", 0), handler)

    def url(self, fault: str) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/{fault}/fhir"

    @property
    def connections(self) -> int:
        return self._server.connections

    @property
    def redirect_target_hits(self) -> int:
        return self._target.connections

    def __enter__(self) -> FaultyServer:
        for server in (self._server, self._target):
            threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        for server in (self._server, self._target):
            server.shutdown()
            server.server_close()
