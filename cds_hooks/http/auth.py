"""Require a CDS Hooks client JWT on every request once trusted issuers are configured."""

from __future__ import annotations

import logging

from flask import Flask, Response, g, request

from cds_hooks.http.api import error_response
from cds_hooks.http.basis import ENDPOINT as BASIS_ENDPOINT
from cds_hooks.http.metrics import METRICS_ENDPOINT
from cds_hooks.security.auth import AuthError, ReplayStore, Verifier, bearer_token
from cds_hooks.settings.config import Settings
from cds_hooks.telemetry import logs
from cds_hooks.telemetry.metrics import AUTH_FAILURES

log = logging.getLogger("cds_hooks.security.auth")

# Liveness and readiness probes and the Prometheus scrape come from the platform, not from an EHR,
# and carry no JWT; they return no patient data (rules profile, counts, metric values only).
# The OpenAPI document describes the API, not patients, and tells integrators how to authenticate.
# A basis page is opened by a clinician's click on a card's link, which carries no JWT: its unguessable
# token is the credential (http/basis.py, docs/security.md).
OPEN_ENDPOINTS = frozenset({"cds_hooks.healthz", "cds_hooks.readyz", "cds_hooks.openapi_document", METRICS_ENDPOINT,
                            BASIS_ENDPOINT})


def install_auth(app: Flask, settings: Settings, replay: ReplayStore) -> None:
    if not settings.auth_enabled:
        log.warning("authentication is OFF: no trusted issuers configured; any caller is served")
        return
    verifier = Verifier(settings, replay)
    app.extensions["lumbar_cds.verifier"] = verifier

    @app.before_request
    def _authenticate() -> Response | None:
        # CORS preflights never carry credentials (browsers send them without Authorization).
        if request.method == "OPTIONS" or request.endpoint in OPEN_ENDPOINTS:
            return None
        try:
            token = bearer_token(request.headers.get("Authorization"))
            g.cds_client = verifier.verify(token, verifier.audience_for(request.path))
        except AuthError as exc:
            # The reason goes to the log, never to the caller; the token itself goes nowhere. The route
            # template, not the path (an unrouted path is the caller's text, and may hold a patient's name),
            # and iss/jti only when the signature verified (AuthError carries them only then).
            route = request.url_rule.rule if request.url_rule else "(no route)"
            log.warning("unauthorized reason=%s iss=%r jti=%r %s %s", exc.reason, exc.iss, exc.jti, request.method,
                        route)
            logs.annotate(auth=exc.reason)
            AUTH_FAILURES.labels(exc.reason).inc()
            response = error_response(401, "Unauthorized")
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
        return None
