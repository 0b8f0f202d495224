"""Which URLs this service may fetch: one rule for every outbound request.

Used by the settings (to check the FHIR allow-list at start-up), the FHIR
fallback client (`fhirServer`, paging links), JWK Set fetching and audit
downloads. Pure functions over strings: no I/O and no imports from the rest
of the package, so every layer can use them.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


def is_loopback_host(host: str) -> bool:
    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # other names may resolve anywhere


def http_url_parts(url: str) -> tuple[str, str, int, str] | None:
    """(scheme, lower-case host, port, path without trailing /) of an http(s) URL with a host and no
    credentials; None for anything else, including an unparsable port."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a port like :99999 or a broken IPv6 literal
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        return None
    return parts.scheme, parts.hostname.lower(), port or (443 if parts.scheme == "https" else 80), \
        parts.path.rstrip("/")


def fetchable_url(url: str) -> bool:
    """The one rule for every URL this service fetches: http(s), no credentials, and https unless the host
    is loopback (tests, a local JWKS or FHIR sidecar)."""
    parts = http_url_parts(url)
    return parts is not None and (parts[0] == "https" or is_loopback_host(parts[1]))


def check_allowlist_entry(prefix: str) -> str | None:
    """The problem with one configured allow-list entry, or None."""
    if http_url_parts(prefix) is None:
        return f"{prefix!r} is not an http(s) base URL without credentials"
    if not fetchable_url(prefix):
        return f"{prefix!r} must use https: only loopback FHIR servers may use plain http"
    return None


def server_allowed(server: str, allowlist: tuple[str, ...]) -> bool:
    """May this deployment send queries to `server`?

    With no allow-list configured only loopback servers are allowed (for
    development and the sandbox). Otherwise the server must start with a
    configured prefix: same scheme, host and port, and a path below the
    prefix's path on a segment boundary, so `https://ehr.example/fhir` does not
    admit `https://ehr.example.evil/` or `https://ehr.example/fhir-admin`.
    Plain http is never allowed off loopback.
    """
    parsed = http_url_parts(server)
    if parsed is None or not fetchable_url(server):
        return False
    if not allowlist:
        return is_loopback_host(parsed[1])
    for prefix in allowlist:
        allowed = http_url_parts(prefix)
        if allowed is None or allowed[:3] != parsed[:3]:
            continue
        if parsed[3] == allowed[3] or parsed[3].startswith(allowed[3] + "/"):
            return True
    return False


def same_server(url: str, server: str) -> bool:
    a, b = http_url_parts(url), http_url_parts(server)
    return a is not None and b is not None and a[:3] == b[:3] and (a[3] + "/").startswith(b[3] + "/")
