"""Application factory: settings → rules → store → blueprint.

`create_app()` with no arguments reads LUMBAR_CDS_* from the environment and
uses the embedded defaults (SQLite under ./.lumbar-cds, built-in rules).
"""

from __future__ import annotations

import logging
import weakref

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from cds_hooks.fhir.fetch import FhirFetcher
from cds_hooks.http import api, basis, headers
from cds_hooks.http.auth import install_auth
from cds_hooks.http.metrics import install_metrics
from cds_hooks.pathway.rules import Rules, RulesError, load_rules, refusal
from cds_hooks.protocol.errors import ServiceError
from cds_hooks.service.hook import today_utc
from cds_hooks.settings.config import Settings, SettingsError
from cds_hooks.store.memory import MemoryPolicy
from cds_hooks.store.migrate import check_schema
from cds_hooks.store.repository import Store
from cds_hooks.telemetry import logs

log = logging.getLogger("cds_hooks")


def memory_policy(settings: Settings, rules: Rules) -> MemoryPolicy | None:
    """Override memory's policy from the settings (days, secret) and the rules (which reasons are durable)."""
    if not settings.override_memory_enabled:
        return None
    assert settings.override_memory_secret is not None  # Settings refuses memory without one
    cards = rules.cards
    return MemoryPolicy(settings.override_memory_secret, settings.override_memory_days,
                        frozenset(cards.durable_override_reasons), cards.override_reason_system)


def create_app(settings: Settings | None = None, **overrides: object) -> Flask:
    settings = settings or Settings.from_env(**overrides)
    logs.configure(settings.log_level, settings.log_format)
    rules = load_rules(settings.rules_dir, settings.profile)  # RulesError names file and line
    refused = refusal(rules.governance, settings.allow_draft_rules, today_utc())
    if refused:  # retired, or not approved: never serve them by accident
        raise RulesError([refused])
    unknown = sorted(set(settings.services) - set(rules.services))
    if unknown:
        raise SettingsError(f"settings name services the rules do not define: {', '.join(unknown)}; services: "
                            f"{', '.join(rules.services)}")

    app = Flask(__name__, static_folder=None)  # only the sandbox blueprint serves files, when on
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.extensions["lumbar_cds.settings"] = settings
    app.extensions["lumbar_cds.rules"] = rules
    store = Store(settings.store_url, memory_policy(settings, rules))
    check_schema(store.engine, settings.auto_migrate)  # SchemaNotCurrent: run `lumbar-cds db upgrade`
    app.extensions["lumbar_cds.store"] = store
    fetcher = app.extensions["lumbar_cds.fetcher"] = FhirFetcher(
        settings.fetch_limits, settings.fhir_allowlist, settings.fhir_loopback_allowed)
    weakref.finalize(app, fetcher.close)  # its threads and pooled connections go with the app
    logs.install(app)  # first, so every request is timed and logged, 401s included
    install_metrics(app, rules, settings.metrics_enabled)  # before CORS and auth: it must see preflights and 401s
    # Before auth: CORS preflights carry no credentials. Without auth, only loopback Host names by default.
    hosts = settings.allowed_hosts if settings.allowed_hosts is not None else (
        ("*",) if settings.auth_enabled else None)
    headers.install(app, settings.cors_origins, hosts)
    install_auth(app, settings, store)  # before the blueprint, so 401 precedes any other check
    app.register_blueprint(api.bp)
    app.register_blueprint(basis.bp)  # each card's basis page, linked from the card
    if settings.sandbox:
        from cds_hooks.sandbox import views as sandbox  # the page's modules load only when it is on

        app.register_blueprint(sandbox.bp)

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
        response = api.error_response(status, messages.get(status, exc.description or exc.name))
        for name, value in exc.get_headers():  # e.g. Allow on 405
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        # Log the type and place, never the request: it holds patient data.
        route = request.url_rule.rule if request.url_rule else "(no route)"
        log.error("unhandled %s on %s %s", type(exc).__name__, request.method, route, exc_info=exc)
        return api.error_response(500, "Internal error; the request was not evaluated.")

    log.info("rules loaded: version=%s status=%s profile=%s value_sets=%d services=%d", rules.governance.version,
             rules.governance.status, rules.profile_id, len(rules.valuesets), len(rules.services))
    return app
