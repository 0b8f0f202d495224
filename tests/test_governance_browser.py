"""`lumbar-cds rules doc` in a real browser: Debian's Chromium (Playwright, no browser download) opens the
generated page, takes a screenshot (tests/artifacts/rules-doc.png) and finds the Graphviz flow diagram
and every rule on it. Same requirements and opt-out as tests/test_sandbox_browser.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from cds_hooks.ops.cli import main
from cds_hooks.pathway.rules import Rules
from tests.conftest import REPO

if TYPE_CHECKING:
    from playwright.sync_api import Page

from tests.browser import ARTIFACTS, CHROMIUM, LAUNCH_ARGS, OPT_OUT  # skips when OPT_OUT=1


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Page, list[str]]]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(f"playwright is not installed: run ./dev test, or set {OPT_OUT}=1")
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: apt-get install -y chromium, or set {OPT_OUT}=1")
    html = tmp_path_factory.mktemp("doc") / "pathway.html"
    assert main(["rules", "doc", "--rules-dir", str(REPO / "rules"), "--output", str(html)]) == 0
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS)
        tab = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        problems: list[str] = []
        tab.on("pageerror", lambda exc: problems.append(str(exc)))
        tab.on("requestfailed", lambda req: problems.append(f"failed to load {req.url}"))
        tab.on("request", lambda req: problems.append(f"loaded {req.url}") if not req.url.startswith("file:") else None)
        tab.goto(html.as_uri())
        tab.screenshot(path=str(ARTIFACTS / "rules-doc.png"), full_page=False)
        yield tab, problems
        browser.close()


def test_the_flow_diagram_is_drawn_and_shows_every_rule(page: tuple[Page, list[str]], rules: Rules) -> None:
    tab, problems = page
    diagram = tab.locator("#flow-diagram svg")
    assert diagram.is_visible()
    box = diagram.bounding_box()
    assert box is not None and box["width"] > 400 and box["height"] > 300
    nodes = tab.locator("#flow-diagram svg g.node")
    node_text = [nodes.nth(i).text_content() or "" for i in range(nodes.count())]
    for rule_id in rules.cards.rules:  # a drawn box per rule, named and worded from the rules
        topic = rules.card_text(rule_id).topic
        assert any(rule_id in t and topic.split()[0] in t for t in node_text), (rule_id, node_text)
    assert tab.locator("#flow-diagram svg g.edge").count() >= len(rules.cards.rules)
    diagram.scroll_into_view_if_needed()
    tab.screenshot(path=str(ARTIFACTS / "rules-doc-flow.png"))
    assert problems == []


def test_every_rule_is_on_the_page_in_order(page: tuple[Page, list[str]], rules: Rules) -> None:
    tab, problems = page
    sections = tab.locator("section.rule")
    assert [sections.nth(i).get_attribute("id") for i in range(sections.count())] == [
        f"rule-{r}" for r in rules.cards.rules]
    for rule_id in rules.cards.rules:
        section = tab.locator(f"#rule-{rule_id}")
        section.scroll_into_view_if_needed()
        assert section.is_visible()
        assert rules.card_text(rule_id).headline in (section.text_content() or "")
    tab.locator('nav a[href="#rule-surgery-window"]').click()  # the contents link reaches the rule
    assert tab.evaluate("location.hash") == "#rule-surgery-window"
    assert problems == []
