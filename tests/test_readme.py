"""Keep the README true: every fixture and every setting is documented."""

from __future__ import annotations

from pathlib import Path

from cds_hooks.settings.config import ENVIRONMENT

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def test_every_fixture_is_in_the_readme_table() -> None:
    for path in sorted((REPO / "fixtures").glob("*.json")):
        assert f"| `{path.stem}` |" in README, f"{path.name} is missing from the README fixture table"


def test_every_setting_is_documented() -> None:
    names = {"CONFIG", *ENVIRONMENT}
    for name in names:
        assert f"`LUMBAR_CDS_{name}`" in README, name


def test_the_two_commands_exist() -> None:
    assert "./dev serve" in README and "./dev test" in README
    assert "./dev test" in (REPO / ".ci" / "run").read_text()
