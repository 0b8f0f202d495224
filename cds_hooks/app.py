"""Application factory: settings → rules → store → blueprint.

`create_app()` with no arguments reads LUMBAR_CDS_* from the environment and
uses the embedded defaults (SQLite under ./.lumbar-cds, built-in rules).
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from cds_hooks import api
from cds_hooks.auth_flask import install_auth
from cds_hooks.config import Settings
from cds_hooks.errors import ServiceError
from cds_hooks.fhir_fetch import FhirFetcher
from cds_hooks.metrics_flask import install_metrics
from cds_hooks.ruleset import load_rules
from cds_hooks.store import Store

log = logging.getLogger("cds_hooks")
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def _origin_allowed(origin: str, allowed: tuple[str, ...]) -> bool:
    if origin.rstrip("/") in allowed:
        return True
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and (parts.hostname or "") in LOOPBACK_HOSTS


def create_app(settings: Settings | None = None, **overrides: object) -> Flask:
    settings = settings or Settings.from_env(**overrides)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    rules = load_rules(settings.rules_dir, settings.profile)  # RulesError names file and line

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.extensions["lumbar_cds.settings"] = settings
    app.extensions["lumbar_cds.rules"] = rules
    app.extensions["lumbar_cds.store"] = Store(settings.database_path)
    app.extensions["lumbar_cds.fetcher"] = FhirFetcher(settings.fetch_limits, settings.fhir_allowlist)
    install_metrics(app, rules, settings.metrics_enabled)  # first: its timer must see 401s too
    install_auth(app, settings, app.extensions["lumbar_cds.store"])  # first, so 401 precedes any other check
    app.register_blueprint(api.bp)

    @app.errorhandler(ServiceError)
    def _service_error(exc: ServiceError) -> Response:
        return api.error_response(exc.status, exc.message, exc.expression)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        messages = {
            404: f"Nothing at {request.path}. The CDS Hooks discovery endpoint is /cds-services.",
            405: f"{request.method} is not allowed on {request.path}.",
            413: f"The request body is larger than {settings.max_body_bytes} bytes.",
        }
        status = exc.code or 500
        return api.error_response(status, messages.get(status, exc.description or exc.name))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        # Log the type and place, never the request: it holds patient data.
        log.error("unhandled %s on %s %s", type(exc).__name__, request.method, request.path, exc_info=exc)
        return api.error_response(500, "Internal error; the request was not evaluated.")

    @app.after_request
    def _headers(response: Response) -> Response:
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
        origin = request.headers.get("Origin")
        if origin and _origin_allowed(origin, settings.cors_origins):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
            response.headers["Access-Control-Max-Age"] = "600"
        return response

    log.info("rules loaded: profile=%s value_sets=%d services=%d",
             rules.profile_id, len(rules.valuesets), len(rules.services))
    return app
