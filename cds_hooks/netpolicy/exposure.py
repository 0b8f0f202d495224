"""Secure by default: without trusted issuers the service only listens on this machine, and it only
fetches (JWK Sets, FHIR) over https, or plain http from this machine (`fetchable_url`).

`lumbar-cds serve` and the gunicorn config both ask `startup_notice` before listening: on a loopback
address without authentication they print a warning; on any other address without authentication
they refuse to start, unless the operator explicitly accepts the risk (`--insecure`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit


class ExposureRefused(Exception):
    """Listening beyond this machine without authentication was not explicitly allowed."""


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


def startup_notice(hosts: Iterable[str], auth_enabled: bool, insecure: bool, insecure_option: str) -> str | None:
    """A warning to print before serving, or ExposureRefused. `hosts` are the addresses to listen on."""
    if auth_enabled:
        return None
    exposed = sorted({h or "(all interfaces)" for h in hosts if not is_loopback_host(h)})
    if not exposed:
        return (
            "WARNING: authentication is OFF (no trusted issuers configured), which is allowed only because "
            "this server listens on a loopback address. Configure [[auth.issuers]] in the LUMBAR_CDS_CONFIG "
            "file before serving an EHR (README, Security)."
        )
    where = ", ".join(exposed)
    if not insecure:
        raise ExposureRefused(
            f"refusing to listen on {where} without authentication: no trusted issuers are configured, so "
            "anyone who can reach this port could call the service. Configure [[auth.issuers]] and "
            "public_base_url in the LUMBAR_CDS_CONFIG file (README, Security), listen on 127.0.0.1, or pass "
            f"{insecure_option} to accept the risk."
        )
    return (
        f"WARNING: listening on {where} WITHOUT authentication ({insecure_option}): anyone who can reach "
        "this port can call the service."
    )
