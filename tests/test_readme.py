"""Keep the documents true: every fixture and every setting is documented, and the README names the two commands."""

from __future__ import annotations

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
