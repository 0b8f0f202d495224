"""`lumbar-cds rules doc`: the pathway page is complete and self-contained, and the part of
docs/pathway.md generated from the rules cannot drift from them."""

from __future__ import annotations

import re
import shutil
from html import escape
from pathlib import Path

import pytest

from cds_hooks.governance.doc_markdown import END, START, render_markdown, replace_generated
from cds_hooks.governance.walk import leaves, profile_settings
from cds_hooks.ops.cli import main
from cds_hooks.pathway.rules import Rules
from tests.conftest import REPO
from tests.test_rules import _replace

PATHWAY_MD = REPO / "docs" / "pathway.md"


def test_the_generated_part_of_pathway_md_matches_the_rules(rules: Rules) -> None:
    document = PATHWAY_MD.read_text()
    assert document.count(START) == 1 and document.count(END) == 1
    assert replace_generated(document, render_markdown(rules)) == document, (
        "docs/pathway.md's generated part differs from rules/: run "
        "`.venv/bin/lumbar-cds rules doc --markdown docs/pathway.md`"
    )


def test_settings_quoted_in_the_prose_are_the_default_profiles(rules: Rules) -> None:
    """The hand-written prose quotes settings as `section.name` = **value**: each must be the default
    profile's value (or, for the pathway's own settings such as `episode.gap_days`, pathway.yaml's), so a
    threshold changed in rules/ cannot leave the prose behind either."""
    quoted = re.findall(r"`([a-z_]+\.[a-z_]+)` = \*\*(\d+)", PATHWAY_MD.read_text())
    assert len(quoted) >= 10
    values = leaves(rules.pathway.model_dump(exclude={"profiles", "red_flags"}))
    values.update(profile_settings(rules.pathway.profiles[rules.pathway.default_profile]))
    wrong = [(path, number, values.get(path)) for path, number in quoted if values.get(path) != int(number)]
    assert not wrong, f"docs/pathway.md quotes settings that differ from rules/pathway.yaml: {wrong}"


def test_a_changed_threshold_makes_the_document_out_of_date_until_regenerated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules_dir = tmp_path / "rules"
    shutil.copytree(REPO / "rules", rules_dir)
    _replace(rules_dir / "pathway.yaml", "      duplicate_lookback_months: 12", "      duplicate_lookback_months: 18")
    document = tmp_path / "pathway.md"
    shutil.copy(PATHWAY_MD, document)
    args = ["rules", "doc", "--rules-dir", str(rules_dir), "--markdown", str(document)]
    assert main([*args, "--check"]) == 1
    assert document.read_text() == PATHWAY_MD.read_text()  # --check changes nothing
    assert main(args) == 0
    updated = document.read_text()
    assert "| `imaging.duplicate_lookback_months` | 18 | 18 | 18 |" in updated
    # The prose outside the markers is left as it was.
    assert updated[: updated.index(START)] == PATHWAY_MD.read_text()[: PATHWAY_MD.read_text().index(START)]
    assert updated.endswith(PATHWAY_MD.read_text()[PATHWAY_MD.read_text().index(END):])
    assert main([*args, "--check"]) == 0
    document.write_text("no markers here\n")
    capsys.readouterr()
    assert main(args) == 2
    assert "generated: rules-doc start" in capsys.readouterr().err


def test_the_markdown_lists_every_rule_setting_and_value_set(rules: Rules) -> None:
    generated = render_markdown(rules)
    for rule_id in rules.cards.rules:
        assert f"| `{rule_id}` |" in generated
    for vs in rules.valuesets.values():
        assert f"| `{vs.id}` |" in generated
    nice = list(rules.pathway.profiles).index("nice-ng59")
    row = next(line for line in generated.splitlines() if line.startswith("| `imaging.min_symptom_weeks` |"))
    assert row.strip("| ").split(" | ")[1 + nice] == "off"  # NICE NG59 sets no week count
    assert f"{sum(len(v.codes) for v in rules.valuesets.values())} codes in {len(rules.valuesets)} value sets" \
        in generated


def test_a_published_value_set_shows_its_oid_version_source_decision_and_exclusions(rules: Rules) -> None:
    generated = render_markdown(rules).splitlines()
    cancer = rules.valuesets["vsac-cancer"]
    assert cancer.published and cancer.decision
    row = next(line for line in generated if line.startswith("| `vsac-cancer` |") and "OID" in line)
    assert f"OID {cancer.published.oid}, version {cancer.published.version}" in row
    assert cancer.published.commit[:12] in row and f"({len(cancer.exclusions)} excluded)" in row
    decision = next(line for line in generated if line.startswith("| `vsac-cancer` |") and "OID" not in line)
    assert " ".join(cancer.decision.split())[:60] in decision and decision.endswith(f"| {len(cancer.exclusions)} |")
    published = sum(1 for vs in rules.valuesets.values() if vs.published)
    assert f"({published} imported whole from published sources)" in "\n".join(generated)
    for unused in rules.published_not_used:
        assert any(line.startswith(f"| `{unused.oid}` | {unused.name} |") for line in generated)


def test_the_page_lists_every_excluded_code_with_its_reason(page: str, rules: Rules) -> None:
    cancer = rules.valuesets["vsac-cancer"]
    details = page[page.index('<details id="vs-vsac-cancer">'):]
    details = details[:details.index("</details>")]
    assert details.count("<td>excluded</td>") == len(cancer.exclusions)  # every excluded code is flagged
    for x in cancer.exclusions:
        assert f"<td>{escape(x.code)}</td>" in details
    assert escape(" ".join(cancer.exclusions[0].reason.split())) in details


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("doc") / "pathway.html"
    assert main(["rules", "doc", "--rules-dir", str(REPO / "rules"), "--output", str(out)]) == 0
    return out.read_text()


def test_the_page_has_every_rule_value_set_and_citation_and_is_self_contained(page: str, rules: Rules) -> None:
    sections = re.findall(r'<section class="rule" id="rule-([a-z-]+)">', page)
    assert sections == list(rules.cards.rules)  # every rule, in the rules' order
    for vs_id in rules.valuesets:
        assert f'<details id="vs-{vs_id}">' in page
    for ref in rules.citations:
        assert f'<li id="cite-{ref}">' in page
    for overrides in rules.cards.profile_overrides.values():  # every profile's own wording is shown too
        for override in overrides.values():
            if override.headline:
                assert escape(override.headline) in page
    assert page.count("<svg") == 1 and "<script" not in page
    assert not re.search(r'\s(src|href)="(?!#|https?://)', page)  # nothing loaded from elsewhere
    assert not re.search(r'\ssrc="', page)
    gov = rules.governance
    assert f"<td>version</td><td>{gov.version}</td>" in page and f"<td>status</td><td>{gov.status}</td>" in page


def test_the_diagram_needs_graphviz_and_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # fault injection: no `dot` on the PATH
    assert main(["rules", "doc", "--rules-dir", str(REPO / "rules"), "--output", str(tmp_path / "x.html")]) == 2
    assert "Graphviz `dot` is not installed" in capsys.readouterr().err


def test_the_doc_shows_a_profile_of_choice(tmp_path: Path) -> None:
    out = tmp_path / "nice.html"
    assert main(["rules", "doc", "--rules-dir", str(REPO / "rules"), "--profile", "nice-ng59",
                 "--output", str(out)]) == 0
    page = out.read_text()
    assert "these settings of profile nice-ng59: imaging.warn_without_red_flags = yes" in page
    assert "<strong>nice-ng59</strong>" in page
