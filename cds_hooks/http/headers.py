"""Request and response headers: the Host allow-list, security headers on every response, CORS for
allowed origins.

A service that answers without authentication on loopback is reachable from any web page through DNS
rebinding (a name the attacker controls, re-pointed at 127.0.0.1); the browser then sends the attacker's
name as Host. So the Host header must be one the service is known by: LUMBAR_CDS_ALLOWED_HOSTS, or by
default, while authentication is off, the loopback names (`localhost`, `*.localhost`, 127.0.0.0/8, ::1).
With authentication on the JWT's audience is what binds a call to this service, so any Host is served
unless a list is configured.

Browsers (the CDS Hooks Sandbox, SMART apps) call the API cross-origin with an
`Authorization` header and a JSON body, so they send a preflight OPTIONS first.
A preflight is answered here, after the request log and metrics hooks but
before authentication, with 204: it carries no credentials and does nothing. An origin not on
the allow-list gets no CORS headers at all, so the browser refuses the call.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, Response, request

from cds_hooks.http.api import error_response
from cds_hooks.http.basis import ENDPOINT as BASIS_ENDPOINT
from cds_hooks.netpolicy.urls import is_loopback_host

ALLOWED_HEADERS = "Authorization, Content-Type, X-Request-ID"
EXPOSED_HEADERS = "X-Request-ID"
PREFLIGHT_MAX_AGE = "600"


def origin_allowed(origin: str, allowed: tuple[str, ...]) -> bool:
    """On the allow-list, or any http(s) origin on a loopback host (development)."""
    if origin.rstrip("/") in allowed:
        return True
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and is_loopback_host(parts.hostname or "")


def host_name(host: str) -> str:
    """The name in a Host header value, without port, brackets or a trailing dot, in lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return (host.rsplit(":", 1)[0] if host.count(":") == 1 else host).rstrip(".")


def host_allowed(host: str, allowed: tuple[str, ...] | None) -> bool:
    """`allowed` None: loopback names only. `*` in the list allows any host."""
    name = host_name(host)
    if allowed is None:
        return name == "localhost" or name.endswith(".localhost") or is_loopback_host(name)
    return "*" in allowed or name in {host_name(a) for a in allowed}


def _is_preflight() -> bool:
    return request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers


def _route_methods() -> str:
    methods = set(request.url_rule.methods or ()) if request.url_rule else set()
    return ", ".join(sorted(methods - {"HEAD"}))


def install(app: Flask, cors_origins: tuple[str, ...], allowed_hosts: tuple[str, ...] | None) -> None:
    """`allowed_hosts` None: loopback names only; ("*",): any Host."""

    @app.before_request
    def _host() -> Response | None:
        # First of these hooks, so a rebound name gets nothing: no preflight, no 401, no 404.
        if host_allowed(request.host, allowed_hosts):
            return None
        return error_response(400, "This service is not served under that Host name (see LUMBAR_CDS_ALLOWED_HOSTS).")

    @app.before_request
    def _preflight() -> Response | None:
        # Unknown paths fall through to the 404 handler.
        if _is_preflight() and request.url_rule is not None:
            response = Response(status=204)
            del response.headers["Content-Type"]  # no body, so no media type
            return response
        return None

    @app.after_request
    def _headers(response: Response) -> Response:
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.vary.add("Origin")
        origin = request.headers.get("Origin")
        if not origin or not origin_allowed(origin, cors_origins) or request.endpoint == BASIS_ENDPOINT:
            return response  # a basis page is a document for the clinician, never read by another origin's script
        response.headers["Access-Control-Allow-Origin"] = origin
        if _is_preflight():
            response.headers["Access-Control-Allow-Methods"] = _route_methods()
            response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
            response.headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE
        else:
            response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        return response
