"""Keep the documents navigable: every relative link and anchor resolves, the README stays a short front door,
and no document points outside the repository or at an issue tracker's numbers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.docs import REPO, all_docs

DOCUMENTS = all_docs()
IDS = [str(p.relative_to(REPO)) for p in DOCUMENTS]

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.S | re.M)
CODE_SPAN = re.compile(r"(`+)(?!`).*?(?<!`)\1(?!`)", re.S)
# [text](target) and ![alt](target); the target ends at whitespace (a title may follow) or ")".
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t#]*$", re.M)
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)  # http:, https:, mailto:, ...


def prose(text: str) -> str:
    """The text outside fenced code blocks and code spans, where Markdown links live."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped (except - and _), spaces to -."""
    text = re.sub(r"`|\*\*|__", "", heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link in a heading keeps its text
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor GitHub makes for the headings of a Markdown file (repeats get -1, -2, ...)."""
    seen: dict[str, int] = {}
    result = set()
    for match in HEADING.finditer(FENCE.sub("", path.read_text(encoding="utf-8"))):
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def relative_links(path: Path) -> list[str]:
    return [t for t in LINK.findall(prose(path.read_text(encoding="utf-8"))) if not EXTERNAL.match(t)]


def broken_links(path: Path) -> list[str]:
    problems = []
    for target in relative_links(path):
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        if not resolved.is_relative_to(REPO):
            problems.append(f"{target}: outside the repository")
        elif not resolved.exists():
            problems.append(f"{target}: no such file")
        elif anchor and resolved.suffix != ".md":
            problems.append(f"{target}: an anchor into a file that is not Markdown")
        elif anchor and anchor not in anchors(resolved):
            problems.append(f"{target}: no heading with the anchor #{anchor} in {resolved.relative_to(REPO)}")
    return problems


def test_the_documents_exist() -> None:
    names = {p.name for p in DOCUMENTS}
    assert {"README.md", "pathway.md", "integration.md", "operations.md", "security.md", "performance.md",
            "fixtures.md", "testing.md", "architecture.md"} <= names


@pytest.mark.parametrize("path", DOCUMENTS, ids=IDS)
def test_every_relative_link_and_anchor_resolves(path: Path) -> None:
    assert broken_links(path) == []


def test_the_readme_links_every_document() -> None:
    readme = REPO / "README.md"
    linked = {(readme.parent / t.partition("#")[0]).resolve() for t in relative_links(readme)}
    missing = [p.name for p in DOCUMENTS[1:] if p.resolve() not in linked]
    assert missing == [], f"README.md does not link {missing}"


def test_the_readme_is_a_short_front_door() -> None:
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move detail into docs/"


@pytest.mark.parametrize("path", DOCUMENTS, ids=IDS)
def test_no_document_points_outside_the_repository_or_at_issue_numbers(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert "../shared" not in text
    assert re.findall(r"\bissues?\s*#?\d+", text, re.I) == []


# The checker itself: it must catch what it is meant to catch.

def test_slug_follows_github_rules() -> None:
    assert slug("Authentication (CDS Hooks 2.0 JWT)") == "authentication-cds-hooks-20-jwt"
    assert slug("When prefetch is incomplete: the FHIR server fallback") == (
        "when-prefetch-is-incomplete-the-fhir-server-fallback")
    assert slug("Under load: gunicorn and wrk") == "under-load-gunicorn-and-wrk"
    assert slug("A map of `cds_hooks/`") == "a-map-of-cds_hooks"


def test_a_broken_link_or_anchor_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tests.test_docs.REPO", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A\n\n## Real heading\n\n```sh\n# not a heading\n```\n")
    page = tmp_path / "README.md"
    page.write_text(
        "[ok](docs/a.md) [ok](docs/a.md#real-heading) [ok](#top) ![ok](docs/a.md)\n"
        "[gone](docs/b.md) [bad](docs/a.md#not-a-heading) [self](#nowhere) [out](../elsewhere.md)\n"
        "`[in code](docs/missing.md)` [web](https://example.org/x.md)\n\n# Top\n"
    )
    assert broken_links(page) == [
        "docs/b.md: no such file",
        "docs/a.md#not-a-heading: no heading with the anchor #not-a-heading in docs/a.md",
        "#nowhere: no heading with the anchor #nowhere in README.md",
        "../elsewhere.md: outside the repository",
    ]
