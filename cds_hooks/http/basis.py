"""Basis pages: the whole basis of each card shown, one click from the card, for a short time.

After a hook call the cards shown get a first link, `{public base}/basis/{token}`: the token is 256 random
bits and names nothing about the patient. The page is kept sealed in the database under a key only the
token gives (store/basis.py) for `basis_minutes`, then gone. A clicked link carries no CDS Hooks JWT, so
the route is open like the probes; the unguessable token is the credential, and the Host allow-list
still applies. The log has the route template, never the token; responses are `no-store`, send no
referrer, carry no CORS headers and allow no script (docs/security.md).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from datetime import timedelta

import orjson
from flask import Blueprint, Response, current_app, render_template_string, request
from sqlalchemy.exc import SQLAlchemyError

from cds_hooks.pathway.basis import Basis
from cds_hooks.pathway.cards import IssuedCard
from cds_hooks.pathway.rules import Rules
from cds_hooks.protocol.wire import Link
from cds_hooks.settings.config import Settings
from cds_hooks.store.basis import new_token
from cds_hooks.store.repository import Store

log = logging.getLogger("cds_hooks.http.basis")
bp = Blueprint("basis", __name__)
ENDPOINT = "basis.page"
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")  # fullmatch

STYLE = (
    "body{font:16px/1.5 system-ui,sans-serif;margin:0;color:#1b1b1b;background:#fff}"
    "main{max-width:46rem;margin:0 auto;padding:1rem 1.25rem 2rem}"
    "h1{font-size:1.3rem;margin:.25rem 0 .5rem}h2{font-size:1.05rem;margin:1.25rem 0 .25rem}"
    ".kind{font-size:.85rem;text-transform:uppercase;letter-spacing:.04em;color:#555;margin:0}"
    ".warning{border-left:6px solid #b35c00;padding-left:.75rem}"
    ".info{border-left:6px solid #0b5cad;padding-left:.75rem}"
    "ul{padding-left:1.25rem;margin:.25rem 0}li{margin:.15rem 0}a{color:#0b5cad}"
    "footer{margin-top:1.5rem;font-size:.85rem;color:#555}"
)
_STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
# No script at all; the one inline style by its hash; nothing framed, posted or loaded from elsewhere.
CONTENT_SECURITY_POLICY = (f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; base-uri 'none'; "
                           "form-action 'none'; frame-ancestors 'none'")

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex, nofollow"><title>{{ basis.summary }}</title><style>{{ style }}</style></head>
<body><main>
<header class="{{ basis.indicator }}"><p class="kind">{{ basis.indicator }}: {{ basis.topic }}</p>
<h1>{{ basis.summary }}</h1><p>{{ basis.headline }}</p></header>
{% for heading, lines in basis.sections %}<section><h2>{{ heading }}</h2>
{% if lines|length == 1 %}<p>{{ lines[0] }}</p>
{% else %}<ul>{% for line in lines %}<li>{{ line }}</li>{% endfor %}</ul>{% endif %}
</section>
{% endfor %}{% if basis.references %}<section><h2>{{ references }}</h2><ul>
{% for r in basis.references %}<li><a href="{{ r.url }}" rel="noreferrer noopener">{{ r.title }}</a>,
{{ r.publisher }}, {{ r.year }}</li>{% endfor %}</ul></section>{% endif %}
<footer>{% for line in basis.footer %}<p>{{ line }}</p>{% endfor %}</footer>
</main></body></html>
"""
GONE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex, nofollow"><title>Basis page</title><style>{{ style }}</style></head>
<body><main><p>{{ text }}</p></main></body></html>
"""


def _page_headers(response: Response) -> Response:
    # Cache-Control: no-store and nosniff come with every response (headers.py).
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Robots-Tag"] = "noindex, nofollow"
    return response


def link_base(settings: Settings) -> str:
    """Where links to this service point: the configured public URL, else the URL this request came to
    (its Host already passed the allow-list)."""
    return (settings.public_base_url or request.url_root).rstrip("/")


def attach_basis_links(issued: list[IssuedCard], silenced: list[IssuedCard], rules: Rules, settings: Settings,
                       store: Store) -> None:
    """Keep each shown card's basis page and put its link first among the card's links. A card whose page
    could not be kept goes out without the link: the card itself still says what matters."""
    if settings.basis_minutes <= 0 or not issued:
        return
    expires = store.clock() + timedelta(minutes=settings.basis_minutes)
    cards = rules.cards
    withheld = [cards.basis.memory_silenced.format(topic=rules.card_text(s.rule_id).topic,
                                                   days=store.memory.days if store.memory else 0)
                for s in silenced]
    pages: list[tuple[str, bytes]] = []
    links: list[tuple[IssuedCard, str]] = []
    for item in issued:
        if item.basis is None:
            continue
        basis = Basis.from_json(item.basis.to_json())  # a copy: the issued card's own basis stays as built
        basis.add_section(cards.headings["memory"], withheld)
        basis.footer.append(cards.basis.page_footer.format(
            version=basis.rules_version, status=basis.rules_status, profile=basis.profile, rule=basis.rule_id,
            expires=expires.strftime("%Y-%m-%d %H:%M UTC")))
        token = new_token()
        pages.append((token, orjson.dumps(basis.to_json())))
        links.append((item, token))
    try:
        store.keep_basis(pages, expires)
    except SQLAlchemyError as exc:
        log.error("basis pages not kept: %s", type(exc).__name__)
        return
    base = link_base(settings)
    for item, token in links:
        link = Link(label=item.basis_label or cards.card.basis_link, url=f"{base}/basis/{token}", type="absolute")
        item.card.links = [link, *(item.card.links or ())]


def _store() -> Store:
    return current_app.extensions["lumbar_cds.store"]


@bp.get("/basis/<token>", endpoint="page")
def page(token: str) -> Response:
    rules: Rules = current_app.extensions["lumbar_cds.rules"]
    try:
        found = _store().basis_page(token) if _TOKEN.fullmatch(token) else None
    except SQLAlchemyError as exc:
        log.error("basis page not read: %s", type(exc).__name__)
        body = render_template_string(GONE, style=STYLE, text=" ".join(rules.cards.basis.page_unavailable.split()))
        return _page_headers(Response(body, status=503, mimetype="text/html"))
    if found is None:
        # Expired, never issued, or a wrong token: one answer for all, so none can be told apart.
        body = render_template_string(GONE, style=STYLE, text=" ".join(rules.cards.basis.page_gone.split()))
        return _page_headers(Response(body, status=404, mimetype="text/html"))
    content, _ = found
    basis = Basis.from_json(orjson.loads(content))
    body = render_template_string(PAGE, basis=basis, style=STYLE, references=rules.cards.headings["references"])
    return _page_headers(Response(body, mimetype="text/html"))
