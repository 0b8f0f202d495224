"""Keep the documents true: every fixture and every setting is documented, the README names the two commands
and lists every published value set as the rules hold it."""

from __future__ import annotations

from cds_hooks.pathway.rules import load_rules
from cds_hooks.settings.config import ENVIRONMENT
from tests.docs import REPO, doc


def test_every_fixture_is_in_the_fixture_table() -> None:
    table = doc("fixtures.md")
    for path in sorted((REPO / "fixtures").glob("*.json")):
        assert f"| `{path.stem}` |" in table, f"{path.name} is missing from the fixture table in docs/fixtures.md"


def test_every_setting_is_documented() -> None:
    settings = doc("operations.md")
    names = {"CONFIG", *ENVIRONMENT}
    for name in names:
        assert f"`LUMBAR_CDS_{name}`" in settings, f"LUMBAR_CDS_{name} is missing from docs/operations.md"


def test_the_two_commands_exist() -> None:
    readme = doc("README.md")
    assert "./dev serve" in readme and "./dev test" in readme
    assert "./dev test" in (REPO / ".ci" / "run").read_text()


def test_the_readme_lists_every_published_value_set_as_imported() -> None:
    readme = doc("README.md")
    rules = load_rules(REPO / "rules")
    published = [vs for vs in rules.valuesets.values() if vs.published]
    assert published
    for vs in published:
        p = vs.published
        assert p is not None
        row = f"| {p.name} | {p.oid} | {p.version} | {len(vs.codes)} | {vs.category}"
        row += f" ({len(vs.exclusions)} excluded) |" if vs.exclusions else " |"
        assert row in readme, f"README.md's value-set table is out of date for {vs.id}: expected {row!r}"
