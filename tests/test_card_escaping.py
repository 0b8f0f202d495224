"""Text from the patient record reaches the card as inert text, checked in the JSON the service answers.

A card's `detail` is GitHub-flavoured Markdown. Record text (a diagnosis's name, a prior study's, a PT referral's,
the draft order's) with Markdown, HTML, link syntax, bare URLs, e-mail addresses or line breaks must come out
with every character that could start markup backslash-escaped (CommonMark renders an escaped punctuation
character as itself), no bare URL a renderer would link, and no line break that could start a heading or a
list; and it must still be there, reading the same once rendered.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


def detail_of(client: FlaskClient, *resources: Any, order: dict[str, Any] | None = None) -> str:
    response = client.post(URL, json=hook_request(*resources, order=order))
    assert response.status_code == 200, response.get_data(as_text=True)
    cards = response.get_json()["cards"]
    assert len(cards) == 1, [c["summary"] for c in cards]
    return cards[0]["detail"]


def assert_inert(detail: str, text: str) -> None:
    """`text` is in the detail, every markup character in it escaped, no autolink, no line break kept."""
    flat = " ".join(text.split())
    pattern = "".join(rf"\\?{re.escape(ch)}" for ch in flat)
    found = re.search(pattern, detail)
    assert found, f"{flat!r} not in the card (escaped or not):\n{detail}"
    shown = found.group(0)
    i = 0
    while i < len(shown):  # every special character is preceded by a backslash
        if shown[i] == "\\":
            i += 2
            continue
        assert shown[i] not in SPECIAL, f"unescaped {shown[i]!r} at {i} in {shown!r}"
        i += 1
    assert not re.search(r"[A-Za-z]://|\bwww\.", shown), f"a renderer would link {shown!r}"
    assert re.sub(r"\\(.)", r"\1", shown) == flat  # reads the same once rendered


@pytest.mark.parametrize("text", HOSTILE)
def test_a_diagnosis_name_is_inert(client: FlaskClient, text: str) -> None:
    assert_inert(detail_of(client, named(lbp(21), text)), text)


@pytest.mark.parametrize("text", HOSTILE)
def test_the_draft_orders_name_is_inert(client: FlaskClient, text: str) -> None:
    order = named(draft(*MRI), text)
    assert_inert(detail_of(client, lbp(21), order=order), text)


def test_a_prior_studys_name_is_inert_in_the_reason_and_in_what_was_found(client: FlaskClient) -> None:
    text = "MRI <b>L-spine</b> [old](https://evil.example) **urgent**"
    prior = named(procedure(MRI[0], 100), text)
    detail = detail_of(client, lbp(400), pt_sessions(120, 60), prior)
    assert_inert(detail, text)
    # Both places that quote it: the reason line and the evidence line.
    assert detail.count(re.sub(r"([\\`*_\[\]<>|~&@])", r"\\\1", "<b>L-spine</b>")) >= 2, detail


def test_a_pt_referrals_name_is_inert(client: FlaskClient) -> None:
    text = "PT <i>eval</i> http://evil.example/pt"
    referral = named(service_request("308447003", 30), text)
    assert_inert(detail_of(client, lbp(70), referral, order=draft(*ORTHO_REFERRAL)), text)


def test_a_medication_name_is_inert(client: FlaskClient) -> None:
    text = "naproxen *500* mg <u>bid</u>"
    med = {"resourceType": "MedicationRequest", "id": "m-esc", "status": "active", "intent": "order",
           "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                     "code": "198014"}], "text": text},
           "subject": {"reference": "Patient/p1"}, "authoredOn": "2026-11-01"}
    assert_inert(detail_of(client, lbp(21), med), text)


def test_the_checker_itself_catches_raw_markup() -> None:
    with pytest.raises(AssertionError):
        assert_inert("Found: **bold** text", "**bold** text")
    with pytest.raises(AssertionError):
        assert_inert(r"see https://evil\.example", "see https://evil.example")
    assert_inert(r"Found: \*\*bold\*\* text", "**bold** text")
