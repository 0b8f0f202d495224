"""The sandbox page in a real browser: Playwright drives Debian's Chromium (no
browser download) against the real app served on a free 127.0.0.1 port.

Chromium and playwright are required (tests/browser.py). Screenshots go to tests/artifacts/.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from flask import Flask

from cds_hooks.app import create_app
from cds_hooks.settings.config import Settings
from tests.browser import ARTIFACTS, REPO, chromium, serving, skip_if_opted_out

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

SERVICE_POST = re.compile(r"/cds-services/[^/]+$")
FEEDBACK_POST = re.compile(r"/cds-services/[^/]+/feedback$")

skip_if_opted_out()


@dataclass
class Server:
    url: str
    database: Path


@dataclass
class Tab:
    """A page plus what it must never do: throw, or open a dialog."""

    page: Page
    url: str
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


def sandbox_app(data_dir: Path, rules_dir: Path = REPO / "rules") -> Flask:
    return create_app(Settings(data_dir=data_dir, rules_dir=rules_dir, sandbox=True, log_level="WARNING",
                               auto_migrate=True))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("browser") / "data"
    with serving(sandbox_app(data)) as url:
        yield Server(url, data / "lumbar-cds.sqlite3")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def open_tab(browser: Browser, server: Server) -> Iterator[Callable[..., Tab]]:
    contexts = []
    tabs: list[Tab] = []

    def open_(base: str = server.url, bypass_csp: bool = False) -> Tab:
        context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=bypass_csp)
        contexts.append(context)
        tab = Tab(context.new_page(), base)
        tab.page.on("pageerror", lambda exc: tab.errors.append(str(exc)))
        # The page must work under its own Content-Security-Policy: a violation is an error.
        tab.page.on("console", lambda m: tab.errors.append(m.text) if "Content Security Policy" in m.text else None)

        def on_dialog(dialog: Any) -> None:
            tab.dialogs.append(dialog.message)
            dialog.dismiss()

        tab.page.on("dialog", on_dialog)
        tabs.append(tab)
        return tab

    yield open_
    for context in contexts:
        context.close()
    for tab in tabs:
        assert tab.errors == [], "JavaScript errors on the page"


def load_scenario(tab: Tab, name: str) -> None:
    """Open the page on a scenario; it fires the hook at once. Waits for the service's answer."""
    with tab.page.expect_response(lambda r: SERVICE_POST.search(r.url) and r.request.method == "POST") as answer:
        tab.page.goto(f"{tab.url}/sandbox?scenario={name}")
    assert answer.value.status in (200, 412)
    idle(tab)


def idle(tab: Tab) -> None:
    """The page has finished handling the answer (it re-enables the Fire button)."""
    tab.page.locator("#fire:not([disabled])").wait_for()


def fire(tab: Tab) -> None:
    with tab.page.expect_response(lambda r: SERVICE_POST.search(r.url) and r.request.method == "POST"):
        tab.page.get_by_role("button", name="Fire hook").click()
    idle(tab)


def raw(tab: Tab, which: str) -> Any:
    return json.loads(tab.page.locator(f"#raw-{which}").text_content() or "null")


def feedback_rows(server: Server, card_uuid: str) -> list[dict[str, Any]]:
    with sqlite3.connect(server.database) as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM feedback WHERE card_uuid = ? ORDER BY id", (card_uuid,))]


# --------------------------------------------------------------------------- the four scenarios of the issue


def test_premature_mri_shows_a_warning_card(open_tab: Callable[..., Tab]) -> None:
    tab = open_tab()
    load_scenario(tab, "premature-mri-3-weeks")
    page = tab.page
    card = page.locator("article.card")
    assert card.count() == 1
    assert "card-warning" in (card.get_attribute("class") or "")
    assert card.locator(".indicator").inner_text().strip().lower() == "warning"
    summary = card.locator("h3").inner_text()
    assert summary.startswith("Lumbar MRI likely premature: 3 weeks of symptoms")
    # Detail Markdown rendered as structure: one bullet per line, each led by its bold label; no links in
    # it (references are the card's links, the whole basis first).
    assert card.locator(".card-detail strong", has_text="Why").count() == 2
    assert card.locator(".card-detail ul li").count() == 6
    assert card.locator(".card-detail a").count() == 0
    links = card.locator(".card-links a")
    assert links.first.inner_text().startswith("Full basis")
    hrefs = links.evaluate_all("links => links.map(a => a.href)")
    assert hrefs[0].startswith(f"{tab.url}/basis/") and hrefs[1].startswith("https://")
    assert card.locator(".card-source a").get_attribute("href", timeout=1000).startswith("https://")
    assert card.locator(".card-suggestions button").all_inner_texts() == [
        "Replace with physical-therapy referral", "Remove the order"]
    assert card.locator(".card-override select option").count() == 5  # placeholder + 4 coded reasons
    # The timeline shows what the service read.
    lanes = page.locator("#timeline-rows td:nth-child(2)").all_inner_texts()
    assert lanes == ["Back condition", "Oral NSAID", "Draft order"]
    assert page.locator("#timeline-chart circle").count() == 3
    # Raw view: one click away, and it is what went over the wire.
    page.get_by_text("Response JSON").click()
    assert page.locator("#raw-response").is_visible()
    assert raw(tab, "response")["cards"][0]["summary"] == summary
    assert raw(tab, "request")["hook"] == "order-select"
    assert "HTTP 200, 1 card. Appropriateness rating: not-appropriate (ServiceRequest/mri-1)." in (
        page.locator("#status").inner_text())
    assert page.locator("#scenario-result").inner_text() == "Result: imaging-premature (warning), as expected."
    page.evaluate("window.scrollTo(0, 0)")
    card.screenshot(path=str(ARTIFACTS / "sandbox-warning-card.png"))
    page.screenshot(path=str(ARTIFACTS / "sandbox-premature-mri.png"), full_page=True)


def test_red_flag_what_if_makes_the_card_disappear(open_tab: Callable[..., Tab]) -> None:
    tab = open_tab()
    load_scenario(tab, "premature-mri-3-weeks")
    page = tab.page
    assert page.locator("article.card").count() == 1
    page.get_by_label("Red flag", exact=True).select_option("cauda-equina")
    fire(tab)
    assert page.locator("article.card").count() == 0
    assert "No cards" in page.locator("#cards").inner_text()
    assert "Red flag: Cauda equina" in page.locator("#timeline-rows").inner_text()
    assert "Added red flag" in page.locator("#changes").inner_text()
    conditions = raw(tab, "request")["prefetch"]["conditions"]["entry"]
    assert any(e["resource"]["id"] == "whatif-red-flag-cauda-equina" for e in conditions)
    assert raw(tab, "response")["cards"] == []
    # Silent, yet the order is rated: a red flag makes imaging appropriate.
    assert "Appropriateness rating: appropriate (ServiceRequest/mri-1)." in page.locator("#status").inner_text()
    assert "What-ifs applied" in page.locator("#scenario-result").inner_text()
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / "sandbox-red-flag-no-card.png"), full_page=True)
    # Take the red flag away again: the card comes back.
    page.get_by_label("Red flag", exact=True).select_option("")
    fire(tab)
    assert page.locator("article.card-warning").count() == 1


def test_accepting_the_pt_referral_stores_feedback(open_tab: Callable[..., Tab], server: Server) -> None:
    tab = open_tab()
    load_scenario(tab, "premature-mri-3-weeks")
    page = tab.page
    [card] = raw(tab, "response")["cards"]
    suggestion = next(s for s in card["suggestions"] if s["label"] == "Replace with physical-therapy referral")
    with page.expect_response(lambda r: FEEDBACK_POST.search(r.url)) as answer:
        page.get_by_role("button", name="Replace with physical-therapy referral").click()
    assert answer.value.status == 200
    status = page.locator("article.card .card-feedback")
    status.filter(has_text="Feedback stored").wait_for()
    assert "Feedback stored: 1 item" in status.inner_text()
    rows = feedback_rows(server, card["uuid"])
    assert [(r["outcome"], r["known_card"], r["rule_id"]) for r in rows] == [("accepted", 1, "imaging-premature")]
    assert json.loads(rows[0]["accepted_suggestions"]) == [suggestion["uuid"]]
    # What the suggestion's actions do to the draft orders: the MRI goes, a PT referral comes.
    before = page.locator("#orders-before li").all_inner_texts()
    after = page.locator("#orders-after li").all_inner_texts()
    assert len(before) == 1 and "ServiceRequest/mri-1" in before[0] and "(removed)" in before[0]
    assert len(after) == 1 and after[0].startswith("ServiceRequest (new)") and "(new)" in after[0]
    assert page.get_by_role("button", name="Remove the order").is_disabled()
    page.locator("#orders-effect").screenshot(path=str(ARTIFACTS / "sandbox-suggestion-effect.png"))


def test_override_with_a_reason_is_stored(open_tab: Callable[..., Tab], server: Server) -> None:
    tab = open_tab()
    load_scenario(tab, "premature-mri-3-weeks")
    page = tab.page
    [card] = raw(tab, "response")["cards"]
    page.get_by_label("Reason", exact=True).select_option(label="Conservative care completed outside this record")
    page.get_by_label("Comment (optional)", exact=True).fill("8 weeks of PT at an outside clinic")
    with page.expect_response(lambda r: FEEDBACK_POST.search(r.url)) as answer:
        page.get_by_role("button", name="Override").click()
    assert answer.value.status == 200
    page.locator("article.card .card-feedback", has_text="Feedback stored").wait_for()
    [row] = feedback_rows(server, card["uuid"])
    assert (row["outcome"], row["override_code"], row["override_display"], row["user_comment"]) == (
        "overridden", "conservative-care-elsewhere", "Conservative care completed outside this record",
        "8 weeks of PT at an outside clinic")
    sent = page.locator("#raw-feedback").text_content() or ""
    assert '"outcome": "overridden"' in sent and "HTTP 200" in sent


# --------------------------------------------------------------------------- safety, errors, keyboard


INJECTED_HEADLINE = (
    'Lumbar imaging is not indicated yet. <script>window.__pwned = 1; alert(1)</script> '
    '<img src=x onerror="window.__pwned = 2; alert(2)">'
)
INJECTED_LINKS = "See [this](javascript:alert(3)) and [that](data:text/html,x) or [ok](https://example.org/ok)."


def test_card_text_with_html_is_rendered_inert(open_tab: Callable[..., Tab], tmp_path: Path) -> None:
    """Card text from a (hostile) rules file: the service sends it raw in `detail`, the page shows it as text.

    The page's CSP is bypassed here, so the renderer alone must keep the text inert.
    """
    rules = tmp_path / "rules"
    shutil.copytree(REPO / "rules", rules)
    cards = rules / "cards.yaml"
    text = cards.read_text()
    assert "headline: Lumbar imaging is not indicated yet." in text
    text = text.replace("headline: Lumbar imaging is not indicated yet.", f"headline: {json.dumps(INJECTED_HEADLINE)}")
    # The card's advice line carries it too, with room made for it in the line budget.
    advice = "advice: Formal PT first; an NSAID unless contraindicated."
    assert advice in text and "  line_chars: 100 " in text
    text = text.replace(advice, f"advice: {json.dumps(INJECTED_HEADLINE + ' ' + INJECTED_LINKS)}")
    text = text.replace("  line_chars: 100 ", "  line_chars: 400 ")
    cards.write_text(text)
    with serving(sandbox_app(tmp_path / "data", rules)) as url:
        tab = open_tab(url, bypass_csp=True)
        load_scenario(tab, "premature-mri-3-weeks")
        page = tab.page
        detail_md = raw(tab, "response")["cards"][0]["detail"]
        assert "<script>" in detail_md and "onerror=" in detail_md and "javascript:" in detail_md  # really sent
        card = page.locator("article.card")
        page.wait_for_timeout(300)  # time for an injected handler to run, were there one
        assert tab.dialogs == []
        assert page.evaluate("window.__pwned") is None
        assert card.locator("script, img, iframe, svg").count() == 0
        shown = card.locator(".card-detail").inner_text()
        assert "<script>window.__pwned = 1; alert(1)</script>" in shown
        assert '<img src=x onerror="window.__pwned = 2; alert(2)">' in shown
        assert "[this](javascript:alert(3))" in shown and "[that](data:text/html,x)" in shown
        hrefs = card.locator("a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
        assert "https://example.org/ok" in hrefs
        assert all(h.startswith(("https://", "http://")) for h in hrefs)
        assert page.locator("script").count() == 2  # the page's own two files
        card.screenshot(path=str(ARTIFACTS / "sandbox-inert-card-text.png"))
        # Its basis page (headline and advice on it too) shows the same text as text.
        basis = raw(tab, "response")["cards"][0]["links"][0]["url"]
        page.goto(basis)
        page.wait_for_timeout(300)
        assert tab.dialogs == [] and page.evaluate("window.__pwned") is None
        assert page.locator("script, img, iframe, svg").count() == 0
        assert "<script>window.__pwned = 1; alert(1)</script>" in page.locator("header").inner_text()


MARKDOWN_CASES: list[tuple[str, list[str], str]] = [
    # (markdown, element tags created, text shown)
    ("**Why**\n- one\n- two", ["P", "STRONG", "UL", "LI", "LI"], "Whyonetwo"),
    ("# Head\n1. first\n2. second", ["H4", "OL", "LI", "LI"], "Headfirstsecond"),
    ("line one\nline two\n\nnext", ["P", "BR", "P"], "line oneline twonext"),
    (r"\*not bold\* \[x\](y) \<b\>", ["P"], "*not bold* [x](y) <b>"),
    ("[x](JaVaScRiPt:alert(1)) [y](//evil.example) [z]( https://a.b)", ["P"],
     "[x](JaVaScRiPt:alert(1)) [y](//evil.example) [z]( https://a.b)"),
    ("**<svg onload=alert(1)>**", ["P", "STRONG"], "<svg onload=alert(1)>"),
    ("[Guide](https://example.org/a_(b)) end", ["P", "A"], "Guide end"),
]


def test_markdown_renderer_supports_only_the_card_subset(open_tab: Callable[..., Tab]) -> None:
    tab = open_tab(bypass_csp=True)
    tab.page.goto(f"{tab.url}/sandbox")
    tab.page.locator("body[data-ready='true']").wait_for(state="attached")
    for markdown, tags, text in MARKDOWN_CASES:
        result = tab.page.evaluate(
            """md => {
                const box = document.createElement('div');
                box.append(SafeMarkdown.render(md));
                return {tags: [...box.querySelectorAll('*')].map(e => e.tagName), text: box.textContent,
                        hrefs: [...box.querySelectorAll('a')].map(a => a.getAttribute('href'))};
            }""",
            markdown,
        )
        assert result["tags"] == tags, markdown
        assert result["text"] == text, markdown
        assert all(h.startswith("https://") for h in result["hrefs"]), markdown
    assert tab.dialogs == []


def test_page_text_reads_right(open_tab: Callable[..., Tab]) -> None:
    """Code in scenario titles is shown as code, the profile is named once, and the text points at nothing
    that is not there (no chart above an empty chart, no "left" in a one-column layout)."""
    tab = open_tab()
    page = tab.page
    page.goto(f"{tab.url}/sandbox")
    page.locator("body[data-ready='true']").wait_for(state="attached")
    header = page.locator(".page-header").inner_text()
    assert "Seed pathway (default), LUMBAR_CDS_PROFILE=seeds." in header and ") (" not in header
    assert "left" not in page.locator("#scenario-description").inner_text()
    assert "above" not in page.locator(".timeline-table caption").inner_text()
    button = page.locator('button.scenario[data-name="missing-conditions-prefetch-412"]')
    assert "`" not in button.inner_text()
    assert button.locator("code").all_inner_texts() == ["conditions"]
    with page.expect_response(lambda r: SERVICE_POST.search(r.url)):
        button.click()
    idle(tab)
    assert page.locator("#scenario-title code").all_inner_texts() == ["conditions"]
    assert "`" not in page.locator("#scenario-title").inner_text()


def test_service_refusal_is_shown_with_its_reason(open_tab: Callable[..., Tab]) -> None:
    tab = open_tab()
    load_scenario(tab, "missing-conditions-prefetch-412")
    alert = tab.page.get_by_role("alert")
    assert "HTTP 412" in alert.inner_text()
    assert "Required data is unavailable" in alert.inner_text()
    assert tab.page.locator("#scenario-result").inner_text() == "Result: HTTP 412, as expected."
    assert tab.page.locator("article.card").count() == 0


def test_keyboard_only_use(open_tab: Callable[..., Tab]) -> None:
    """Every control has a label; a scenario can be chosen and fired from the keyboard, with a visible focus."""
    tab = open_tab()
    page = tab.page
    page.goto(f"{tab.url}/sandbox")
    page.locator("body[data-ready='true']").wait_for(state="attached")
    unlabelled = page.evaluate("""() => [...document.querySelectorAll('input, select, button, a')]
        .filter(e => !(e.labels && e.labels.length) && !e.textContent.trim() && !e.getAttribute('aria-label'))
        .map(e => e.outerHTML)""")
    assert unlabelled == []
    page.get_by_label("Filter scenarios", exact=True).fill("red-flag-fever")
    page.keyboard.press("Tab")
    focused = page.evaluate("""() => ({text: document.activeElement.textContent,
        outline: getComputedStyle(document.activeElement).outlineStyle})""")
    assert "fever" in focused["text"].lower() and focused["outline"] == "solid"
    with page.expect_response(lambda r: SERVICE_POST.search(r.url)):
        page.keyboard.press("Enter")
    page.locator("#status", has_text="HTTP 200").wait_for()
    assert page.locator("article.card").count() == 0  # fever is a red flag: silent
    page.get_by_label("Weeks of completed formal physical therapy", exact=True).focus()
    page.keyboard.type("2")
    with page.expect_response(lambda r: SERVICE_POST.search(r.url)):
        page.keyboard.press("Enter")  # submits the form
    page.locator("#changes", has_text="physical therapy sessions").wait_for()


def test_every_scenario_through_the_page(open_tab: Callable[..., Tab]) -> None:
    """Each scenario picked from the list gives its expected outcome (when written for this profile)."""
    tab = open_tab()
    page = tab.page
    page.goto(f"{tab.url}/sandbox")
    page.locator("body[data-ready='true']").wait_for(state="attached")
    buttons = page.locator("button.scenario")
    names = buttons.evaluate_all("bs => bs.map(b => b.dataset.name)")
    assert len(names) == len(list((REPO / "fixtures").glob("*.json")))
    written_for_others = 0
    for name in names:
        button = page.locator(f'button.scenario[data-name="{name}"]')
        with page.expect_response(lambda r: SERVICE_POST.search(r.url)):
            button.click()
        idle(tab)
        assert button.get_attribute("aria-pressed") == "true"
        result = page.locator("#scenario-result").inner_text()
        if "written for profile" in button.inner_text():
            written_for_others += 1
            assert result.startswith("Result: "), name
        else:
            assert result.endswith(", as expected."), f"{name}: {result}"
    assert 0 < written_for_others < len(names)
