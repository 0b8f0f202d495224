"""Secure by default: without trusted issuers the service only listens on this machine, and it only
fetches (JWK Sets, FHIR) over https, or plain http from this machine (`fetchable_url`).

`lumbar-cds serve` and the gunicorn config both ask `startup_notice` before listening: on a loopback
address without authentication they print a warning; on any other address without authentication
they refuse to start, unless the operator explicitly accepts the risk (`--insecure`).
"""

from __future__ import annotations

from collections.abc import Iterable

from cds_hooks.netpolicy.urls import is_loopback_host


class ExposureRefused(Exception):
    """Listening beyond this machine without authentication was not explicitly allowed."""


def startup_notice(hosts: Iterable[str], auth_enabled: bool, insecure: bool, insecure_option: str) -> str | None:
    """A warning to print before serving, or ExposureRefused. `hosts` are the addresses to listen on."""
    if auth_enabled:
        return None
    exposed = sorted({h or "(all interfaces)" for h in hosts if not is_loopback_host(h)})
    if not exposed:
        return (
            "WARNING: authentication is OFF (no trusted issuers configured), which is allowed only because "
            "this server listens on a loopback address. Configure [[auth.issuers]] in the LUMBAR_CDS_CONFIG "
            "file before serving an EHR (docs/security.md)."
        )
    where = ", ".join(exposed)
    if not insecure:
        raise ExposureRefused(
            f"refusing to listen on {where} without authentication: no trusted issuers are configured, so "
            "anyone who can reach this port could call the service. Configure [[auth.issuers]] and "
            "public_base_url in the LUMBAR_CDS_CONFIG file (docs/security.md), listen on 127.0.0.1, or pass "
            f"{insecure_option} to accept the risk."
        )
    return (
        f"WARNING: listening on {where} WITHOUT authentication ({insecure_option}): anyone who can reach "
        "this port can call the service."
    )
