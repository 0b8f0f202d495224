"""The hazard log stays true: every test and fixture it names as proof of a control exists, and every
hazard names at least one test."""

from __future__ import annotations

import ast
import re

from tests.docs import REPO, doc

TEST_REF = re.compile(r"`tests/(test_\w+)\.py::(test_\w+)`")


def _functions(module: str) -> set[str]:
    tree = ast.parse((REPO / "tests" / f"{module}.py").read_text())
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}


def test_every_named_test_exists() -> None:
    text = doc("clinical-safety.md")
    refs = TEST_REF.findall(text)
    assert len(refs) >= 40
    missing = [f"{m}::{t}" for m, t in refs if t not in _functions(m)]
    assert not missing, missing


def test_every_named_fixture_exists() -> None:
    text = doc("clinical-safety.md")
    fixtures = {p.stem for p in (REPO / "fixtures").glob("*.json")}
    named = set(re.findall(r"`([a-z0-9]+(?:-[a-z0-9]+){2,})`", text)) - {"nice-ng59"}
    named = {n for n in named if not n.startswith(("lumbar-cds", "vsac-"))}
    assert named and named <= fixtures, sorted(named - fixtures)


def test_every_hazard_has_controls_and_tests() -> None:
    sections = re.split(r"\n### ", doc("clinical-safety.md"))[1:]
    assert len(sections) >= 15
    for section in sections:
        title = section.splitlines()[0]
        assert "**Controls" in section and "**Tests**" in section and "**Residual risk**" in section, title
        assert TEST_REF.search(section), title
