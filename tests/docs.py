"""The project's documents: README.md at the top of the repository, everything else in docs/."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"


def doc_path(name: str) -> Path:
    """`README.md`, or a document in docs/ by its file name (`security.md`)."""
    return REPO / name if name == "README.md" else DOCS / name


def doc(name: str) -> str:
    return doc_path(name).read_text(encoding="utf-8")


def all_docs() -> list[Path]:
    return [REPO / "README.md", *sorted(DOCS.glob("*.md"))]
