"""The package layout is the architecture: imports point downwards only, and there are no cycles.

Each subpackage's `__init__` docstring says what lives there and what it may import; `ALLOWED` below is
the same rule as data. Every import counts, including ones inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "cds_hooks"
GROUND = {"netpolicy", "telemetry"}
# What each part may import (besides itself and the root's __version__), from the bottom up.
ALLOWED: dict[str, set[str]] = {
    "netpolicy": set(),
    "telemetry": set(),
    "protocol": set(),
    "settings": {"netpolicy"},
    "security": {"settings", "netpolicy", "telemetry"},
    "fhir": {"settings", "netpolicy", "telemetry"},
    "pathway": {"fhir", "protocol"},
    "store": {"pathway", "protocol", "settings", "telemetry"},
    "service": {"pathway", "fhir", "protocol", "settings", "netpolicy", "telemetry"},
    "governance": {"pathway", "fhir", "protocol", "settings", "netpolicy", "telemetry"},
    "audit": {"pathway", "fhir", "protocol", "settings", "netpolicy", "telemetry"},
    "http": {"service", "store", "pathway", "fhir", "protocol", "security", "settings", "netpolicy", "telemetry"},
    "sandbox": {"http", "service", "store", "pathway", "fhir", "protocol", "settings", "netpolicy", "telemetry"},
    "app": {"http", "sandbox", "service", "store", "pathway", "fhir", "protocol", "security", "settings",
            "netpolicy", "telemetry"},
    "ops": {"audit", "governance", "app", "http", "sandbox", "service", "store", "pathway", "fhir", "protocol",
            "security", "settings", "netpolicy", "telemetry"},
    "gunicorn_conf": {"ops"},
    "__main__": {"ops"},
}
MAX_LINES = 420  # "no module much over 400 lines"


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if "migrations" in parts:
            continue  # Alembic scripts, loaded by Alembic
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """cds_hooks modules imported by this module (anywhere in it), resolved to module names."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("cds_hooks"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import: climb level-1 packages up from this one
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            if not base.startswith("cds_hooks"):
                continue
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in MODULES else base)
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "root"


def test_every_module_is_in_a_known_part() -> None:
    unknown = sorted(m for m in MODULES if _part(m) not in ALLOWED and _part(m) != "root")
    assert not unknown, f"modules outside the layout (add them to a subpackage and to ALLOWED): {unknown}"


def test_imports_point_downwards_only() -> None:
    wrong = []
    for module, targets in GRAPH.items():
        here = _part(module)
        if here == "root":
            continue
        for target in targets:
            there = _part(target)
            if there in (here, "root"):
                continue
            if there not in ALLOWED[here]:
                wrong.append(f"{module} imports {target} ({here} may import only {sorted(ALLOWED[here])})")
    assert not wrong, "\n".join(wrong)


def test_the_allowed_directions_form_no_cycle() -> None:
    # The table itself must be a layering: a part never (indirectly) allows itself.
    def reach(part: str, seen: set[str]) -> set[str]:
        for nxt in ALLOWED.get(part, ()):
            if nxt not in seen:
                seen.add(nxt)
                reach(nxt, seen)
        return seen

    assert all(part not in reach(part, set()) for part in ALLOWED)


def test_no_import_cycles_between_modules() -> None:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = iter(range(10**6))

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = next(counter)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in GRAPH:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


@pytest.mark.parametrize("package", sorted(p for p in ALLOWED if (PACKAGE / p).is_dir()))
def test_every_subpackage_says_what_lives_there(package: str) -> None:
    init = PACKAGE / package / "__init__.py"
    assert init.is_file(), f"{package}/ has no __init__.py"
    doc = ast.get_docstring(ast.parse(init.read_text()))
    assert doc and len(doc.split()) >= 20, f"{package}/__init__.py needs a docstring saying what lives there"
    assert "import" in doc.lower(), f"{package}/__init__.py's docstring must say what the package may import"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_is_much_over_400_lines(module: str) -> None:
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines; split it by job"
