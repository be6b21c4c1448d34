"""The package layering of docs/architecture.md, checked on the source (ast, no imports run).

core < {accounts, training} < archive < {dicomweb, dimse, analysis, ops} < retrieval < ui < web < cli

A package may import only packages of a lower rank: not a sibling of its own rank, not one
above it, and so never a package that imports it back. Every import counts, the ones inside
functions and under ``TYPE_CHECKING`` too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "medvault"

RANK = {
    "core": 0,
    "accounts": 1,
    "training": 1,
    "archive": 2,
    "dicomweb": 3,
    "dimse": 3,
    "analysis": 3,
    "ops": 3,
    "retrieval": 4,
    "ui": 5,
    "web": 6,
    "cli": 7,
}


def _package(path: Path) -> str:
    relative = path.relative_to(SRC)
    return relative.parts[0].removesuffix(".py")


def _imported_packages(path: Path) -> set[str]:
    """The medvault packages that ``path`` imports (absolute and relative imports)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    module_parts = ["medvault", *path.relative_to(SRC).with_suffix("").parts]
    if module_parts[-1] == "__init__":
        module_parts.pop()
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                # ``from . import x`` in medvault/a/b.py is medvault.a; each extra dot goes up one.
                base = module_parts[: len(module_parts) - node.level + (1 if path.name == "__init__.py" else 0)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            names = [name]
            if name == "medvault":  # ``from medvault import archive``
                names = [f"medvault.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "medvault" and len(parts) > 1:
                found.add(parts[1])
    return found


def _edges() -> dict[tuple[str, str], list[str]]:
    """(importer, imported) -> the modules of the importer that make that edge."""
    edges: dict[tuple[str, str], list[str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        if path.parent == SRC and path.name == "__init__.py":
            continue
        if "migrations" in path.parts:
            continue  # generated; they name only their own app and Django's
        importer = _package(path)
        for imported in _imported_packages(path):
            if imported != importer:
                edges.setdefault((importer, imported), []).append(str(path.relative_to(SRC)))
    return edges


def test_every_package_has_a_rank() -> None:
    packages = {_package(p) for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    packages |= {p.stem for p in SRC.glob("*.py") if p.name != "__init__.py"}
    assert packages <= set(RANK), f"place these in RANK (and docs/architecture.md): {packages - set(RANK)}"


def test_packages_import_only_lower_packages() -> None:
    edges = _edges()
    upward = [
        f"{importer} -> {imported} ({', '.join(modules)})"
        for (importer, imported), modules in sorted(edges.items())
        if imported in RANK and RANK[imported] >= RANK.get(importer, len(RANK))
    ]
    assert not upward, "imports against the layering:\n" + "\n".join(upward)


def test_no_two_packages_import_each_other() -> None:
    edges = _edges()
    circles = sorted(
        f"{a} <-> {b} ({', '.join(edges[(a, b)])} | {', '.join(edges[(b, a)])})"
        for (a, b) in edges
        if a < b and (b, a) in edges
    )
    assert not circles, "packages that import each other:\n" + "\n".join(circles)


def test_core_imports_no_django() -> None:
    offenders = []
    for path in sorted((SRC / "core").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "django" or n.startswith("django.") for n in names):
                offenders.append(str(path.relative_to(SRC)))
    assert not offenders, f"core must not import Django: {sorted(set(offenders))}"
