"""The folders are the dependency order (DESIGN.md): check imports never point upwards."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "sciflow"

# package -> sciflow packages it may import
ALLOWED: dict[str, set[str]] = {
    "solvers": {"solvers"},
    "nn": {"nn"},
    "data": {"data", "solvers"},
    "models": {"models", "solvers", "nn", "data", "uq"},
    "uq": {"uq", "models", "solvers", "nn", "data"},
    "training": {"training", "models", "data"},
}


def _sciflow_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for n in names:
            parts = n.split(".")
            if parts[0] == "sciflow" and len(parts) > 1:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_follow_dependency_direction(package: str) -> None:
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for target in _sciflow_imports(path) - ALLOWED[package]:
            if target.startswith("_") or target == "__init__":
                continue
            bad.append(f"{path.relative_to(ROOT.parent)} imports sciflow.{target}")
    assert not bad, "imports against the dependency direction:\n" + "\n".join(bad)


def test_python_lines_are_at_most_120_characters() -> None:
    """The house style (CONTRIBUTING.md): no line of the library, its tests or benchmarks is longer
    than 120 characters."""
    repo = ROOT.parent
    long = [f"{p.relative_to(repo)}:{i}" for folder in ("sciflow", "tests", "benchmarks")
            for p in sorted((repo / folder).rglob("*.py"))
            for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if len(line) > 120]
    assert not long, f"{len(long)} lines over 120 characters: {long[:10]}"
