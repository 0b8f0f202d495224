"""The scenario sandbox page (/sandbox) and the small JSON API behind it.

The page is a real CDS Hooks client: these routes only list scenarios, offer
the order and what-if menus, and build the request. The browser itself POSTs
that request to /cds-services/{id} and posts feedback to .../feedback.
Registered only when the `sandbox` setting is on (see config.py).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

from flask import Blueprint, Response, render_template
from pydantic import BaseModel, ConfigDict, Field

from cds_hooks.http import api
from cds_hooks.protocol.errors import ServiceError
from cds_hooks.protocol.pama import RATING_URL
from cds_hooks.sandbox.fixtures import Fixture, fixture_paths, fixtures_dir, load_fixture
from cds_hooks.sandbox.timeline import build_timeline
from cds_hooks.sandbox.whatif import (
    MAX_ONSET_DAYS,
    MAX_PT_WEEKS,
    REMOVE_RED_FLAGS,
    WhatIf,
    WhatIfError,
    build_request,
    order_menu,
    red_flag_menu,
)
from cds_hooks.service.hook import parse_as, today_utc

log = logging.getLogger("cds_hooks.sandbox.views")
bp = Blueprint("sandbox", __name__, template_folder="templates",
               static_folder="static", static_url_path="/sandbox/static")

# Card text is rendered by our own escaping Markdown renderer; the policy is a
# second wall: no inline script, no third-party origin, nothing but this server.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


class WhatIfRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    scenario: str = Field(min_length=1, max_length=200)
    hook: Literal["order-select", "order-sign"] | None = None
    order: str | None = Field(default=None, max_length=100)
    onsetDaysAgo: int | None = Field(default=None, ge=0, le=MAX_ONSET_DAYS)
    ptWeeks: int | None = Field(default=None, ge=0, le=MAX_PT_WEEKS)
    redFlag: str | None = Field(default=None, max_length=100)


@bp.after_request
def _page_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _fixtures() -> dict[str, Path]:
    return fixture_paths(api.current_settings().fixtures_dir or fixtures_dir())


def _load(path: Path) -> Fixture:
    try:
        return load_fixture(path, today_utc())
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:  # orjson errors are ValueErrors
        raise ServiceError(422, f"Scenario file {path.name} could not be read: {type(exc).__name__}: {exc}") from None


def _fixture(name: str) -> Fixture:
    path = _fixtures().get(name)
    if path is None:
        raise ServiceError(404, f"No scenario {name!r}. GET /sandbox/api/scenarios lists them.", ["scenario"])
    return _load(path)


@bp.get("/sandbox")
def page() -> str:
    return render_template("sandbox.html")


@bp.get("/sandbox/api/catalog")
def catalog() -> Response:
    rules = api.current_rules()
    return api.json_response({
        "profile": rules.profile_id,
        "profileTitle": rules.profile.title,
        "services": [{"id": s.id, "hook": s.hook, "title": s.title} for s in rules.services.values()],
        "orders": order_menu(rules),
        "redFlags": red_flag_menu(rules),
        "removeRedFlags": REMOVE_RED_FLAGS,
        "limits": {"onsetDaysAgo": MAX_ONSET_DAYS, "ptWeeks": MAX_PT_WEEKS},
        "ratingExtension": RATING_URL,
    })


def _expected(fixture: Fixture) -> dict[str, Any]:
    return {
        "status": fixture.expect.get("status", 200),
        "cards": [{"rule": c.get("rule"), "indicator": c.get("indicator")} for c in fixture.expect.get("cards", [])],
    }


@bp.get("/sandbox/api/scenarios")
def scenarios() -> Response:
    rules = api.current_rules()
    listed = []
    for name, path in _fixtures().items():
        try:
            fixture = _load(path)
        except ServiceError as exc:
            log.warning("sandbox: scenario skipped: %s", exc.message)  # synthetic files: no patient data
            continue
        profile = fixture.profile or rules.pathway.default_profile
        listed.append({
            "name": name, "title": fixture.title, "description": fixture.description,
            "service": fixture.service, "hook": fixture.request.get("hook"), "profile": profile,
            "profileMatches": profile == rules.profile_id, "expected": _expected(fixture),
        })
    return api.json_response({"profile": rules.profile_id, "scenarios": listed})


@bp.post("/sandbox/api/request")
def what_if_request() -> Response:
    """Build the scenario's CDS Hooks request with the what-ifs applied (not sent)."""
    body = parse_as(WhatIfRequest, api.request_json(), "a sandbox what-if")
    fixture = _fixture(body.scenario)
    rules = api.current_rules()
    today = today_utc()
    what_if = WhatIf(hook=body.hook, order=body.order, onset_days_ago=body.onsetDaysAgo,
                     pt_weeks=body.ptWeeks, red_flag=body.redFlag)
    try:
        built = build_request(rules, fixture.request, fixture.service, what_if, today)
    except WhatIfError as exc:
        raise ServiceError(422, f"Cannot build this what-if: {exc}") from None
    return api.json_response({
        "scenario": fixture.name,
        "service": built.service.id,
        "hook": built.request["hook"],
        "changes": built.changes,
        "request": built.request,
        "timeline": build_timeline(rules, built.service, built.request, today),
    })
