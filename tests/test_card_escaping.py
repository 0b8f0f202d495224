"""Text from the patient record reaches the card as inert text, checked in the JSON the service answers.

A card's `detail` is GitHub-flavoured Markdown. Record text (a diagnosis's name, a prior study's, a PT referral's,
the draft order's) with Markdown, HTML, link syntax, bare URLs, e-mail addresses or line breaks must come out
with every character that could start markup backslash-escaped (CommonMark renders an escaped punctuation
character as itself), no bare URL a renderer would link, and no line break that could start a heading or a
list; and it must still be there, reading the same once rendered.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask.testing import FlaskClient

from cds_hooks.app import create_app
from cds_hooks.settings.config import Settings
from tests.chart import (
    MRI,
    ORTHO_REFERRAL,
    draft,
    hook_request,
    lbp,
    procedure,
    pt_sessions,
    service_request,
)

URL = "/cds-services/lumbar-pathway-order-select"
# What Markdown, HTML and GFM autolinks start with.
SPECIAL = set("\\`*_[]<>|~&@")
HOSTILE = [
    "**bold** _em_ `code` ~~gone~~",
    "<script>alert(1)</script><img src=x onerror=alert(2)>",
    "[click](javascript:alert(3)) ![img](https://evil.example/x.png)",
    "see https://evil.example/a?b=c and www.evil.example",
    "mail mallory@evil.example &amp; &#60;b&#62;",
    "line one\n# Heading\n- item\n1. first\n> quote",
    "pipe | table | cell",
]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlaskClient]:
    repo = Path(__file__).resolve().parent.parent
    app = create_app(Settings(data_dir=tmp_path_factory.mktemp("escaping"), rules_dir=repo / "rules",
                              auto_migrate=True))
    with app.test_client() as c:
        yield c


def named(resource: dict[str, Any], text: str, key: str = "code") -> dict[str, Any]:
    """The resource with `text` as the name of its coded concept (what a card shows for it)."""
    concept = dict(resource[key])
    concept["text"] = text
    return {**resource, key: concept}


def card_and_page(client: FlaskClient, *resources: Any, order: dict[str, Any] | None = None) -> tuple[str, str]:
    """The one card's detail and its basis page (the link a clinician clicks for the whole basis)."""
    response = client.post(URL, json=hook_request(*resources, order=order))
    assert response.status_code == 200, response.get_data(as_text=True)
    cards = response.get_json()["cards"]
    assert len(cards) == 1, [c["summary"] for c in cards]
    basis = next(link["url"] for link in cards[0]["links"] if "/basis/" in link["url"])
    page = client.get(urlsplit(basis).path)
    assert page.status_code == 200
    return cards[0]["detail"], page.get_data(as_text=True)


def _shown_on_card(detail: str, flat: str) -> str | None:
    """The part of `flat` the card shows, as it stands in the Markdown: the whole text, or (record text is cut
    to fit the line budget) a prefix of at least 8 characters ending in an ellipsis; None if it is not there."""
    head = "".join(rf"\\?{re.escape(ch)}" for ch in flat[:8])
    for found in re.finditer(head, detail):
        i, j = found.start(), 0
        while j < len(flat) and i < len(detail):
            if detail[i] == "\\" and i + 1 < len(detail) and detail[i + 1] == flat[j]:
                i += 2
            elif detail[i] == flat[j]:
                i += 1
            else:
                break
            j += 1
        if j == len(flat) or detail[i:i + 1] == "…" or detail[i:i + 2] == " …":
            return detail[found.start():i]
    return None


def assert_inert(detail: str, page: str | None, text: str, on_card: bool = True) -> None:
    """`text` is inert on the card (every markup character escaped, no autolink, no line break kept) and, where
    the card shows it, reads the same (whole, or cut with an ellipsis); on the basis page it is whole and
    HTML-escaped."""
    flat = " ".join(text.split())
    ours = re.sub(r"^- \*\*[^*\n]+:\*\* ", "", detail, flags=re.M)  # the card's own line labels
    for i in range(len(flat) - 2):  # no run of it with an unescaped markup character, wherever it would be
        window = flat[i:i + 3]
        if SPECIAL & set(window):
            raw = "".join(rf"(?<!\\){re.escape(ch)}" if ch in SPECIAL else re.escape(ch) for ch in window)
            assert not re.search(raw, ours), f"raw {window!r} on the card:\n{detail}"
    assert not re.search(r"[A-Za-z]://|\bwww\.", detail), f"a renderer would link something in:\n{detail}"
    shown = _shown_on_card(detail, flat)
    if on_card:
        assert shown is not None, f"{flat!r} not on the card (escaped, whole or cut):\n{detail}"
    if shown:
        i = 0
        while i < len(shown):  # every special character is preceded by a backslash
            if shown[i] == "\\":
                i += 2
                continue
            assert shown[i] not in SPECIAL, f"unescaped {shown[i]!r} at {i} in {shown!r}"
            i += 1
        assert flat.startswith(re.sub(r"\\(.)", r"\1", shown))  # reads the same once rendered
    if page is not None:
        assert html.escape(flat, quote=False) in page, f"{flat!r} not whole and escaped on the basis page"


@pytest.mark.parametrize("text", HOSTILE)
def test_a_diagnosis_name_is_inert(client: FlaskClient, text: str) -> None:
    assert_inert(*card_and_page(client, named(lbp(21), text)), text=text)


@pytest.mark.parametrize("text", HOSTILE)
def test_the_draft_orders_name_is_inert(client: FlaskClient, text: str) -> None:
    # The card names the order by our own short name, never the EHR's; the basis page quotes the EHR's.
    order = named(draft(*MRI), text)
    assert_inert(*card_and_page(client, lbp(21), order=order), text=text, on_card=False)


def test_a_prior_studys_name_is_inert_in_the_reason_and_in_what_was_found(client: FlaskClient) -> None:
    text = "MRI <b>L-spine</b> [old](https://evil.example) **urgent**"
    prior = named(procedure(MRI[0], 100), text)
    assert_inert(*card_and_page(client, lbp(400), pt_sessions(120, 60), prior), text=text)


def test_a_pt_referrals_name_is_inert(client: FlaskClient) -> None:
    text = "PT <i>eval</i> http://evil.example/pt"
    referral = named(service_request("308447003", 30), text)
    assert_inert(*card_and_page(client, lbp(70), referral, order=draft(*ORTHO_REFERRAL)), text=text,
                 on_card=False)


def test_a_medication_name_is_inert(client: FlaskClient) -> None:
    # The card says "oral NSAID" with its date; the product's own name is on the basis page.
    text = "naproxen *500* mg <u>bid</u>"
    med = {"resourceType": "MedicationRequest", "id": "m-esc", "status": "active", "intent": "order",
           "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                     "code": "198014"}], "text": text},
           "subject": {"reference": "Patient/p1"}, "authoredOn": "2026-11-01"}
    assert_inert(*card_and_page(client, lbp(21), med), text=text, on_card=False)


def test_the_checker_itself_catches_raw_markup() -> None:
    with pytest.raises(AssertionError):
        assert_inert("Found: **bold** text", None, "**bold** text")
    with pytest.raises(AssertionError):
        assert_inert(r"see https://evil\.example", None, "see https://evil.example")
    with pytest.raises(AssertionError):  # not on the card, but raw in another place
        assert_inert(r"Found: \*\*bold\*\* text, also *bold**", None, "**bold** text", on_card=False)
    with pytest.raises(AssertionError):  # cut without an ellipsis
        assert_inert(r"Found: \*\*bold\*\* te", None, "**bold** text")
    with pytest.raises(AssertionError):  # not escaped on the basis page
        assert_inert(r"Found: \*\*bold\*\* text", "<p><b>x</b></p>", "<b>x</b>", on_card=False)
    assert_inert(r"Found: \*\*bold\*\* text", None, "**bold** text")
    assert_inert(r"- **Record:** \*\*bold\*\* te… since", "<p>**bold** text &lt;b&gt;</p>", "**bold** text <b>")
