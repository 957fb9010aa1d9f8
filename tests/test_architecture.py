"""docs/ARCHITECTURE.md stays true: every file it names exists, and the invariants it states
hold in the source tree."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from otelkit import instruments
from tests.e2e.servers import REPO_ROOT

ARCHITECTURE = REPO_ROOT / "docs" / "ARCHITECTURE.md"
COLLECTOR_SOURCE = REPO_ROOT / "collector" / "src" / "otelkit_collector"
SOURCE_TREES = (REPO_ROOT / "otelkit", COLLECTOR_SOURCE)
TEXT_SUFFIXES = {".py", ".md", ".yml", ".yaml", ".json", ".toml", ".txt", ".js", ".css", ""}


def named_paths(text: str) -> set[str]:
    """Backticked repository paths in ``text`` (``…/`` stands for the collector's package)."""
    paths = set()
    for quoted in re.findall(r"`([^`\s]+)`", text):
        candidate = quoted.replace("…/", "collector/src/otelkit_collector/").split("::")[0]
        if "/" in candidate and not candidate.startswith(("/", "http")):
            paths.add(candidate.rstrip("/"))
    return paths


def test_every_path_the_map_names_exists() -> None:
    """A path in the map that was renamed or deleted fails here."""
    paths = named_paths(ARCHITECTURE.read_text())
    assert len(paths) > 20
    missing = sorted(p for p in paths if not (REPO_ROOT / p).exists())
    assert not missing, missing


def test_every_module_is_on_the_map() -> None:
    """A new module of the library or the collector is placed on the map."""
    text = ARCHITECTURE.read_text().replace("…/", "collector/src/otelkit_collector/")
    for tree in SOURCE_TREES:
        for module in tree.glob("*.py"):
            if module.name in {"__init__.py", "__main__.py"}:
                continue
            relative = module.relative_to(REPO_ROOT).as_posix()
            short = f"{module.stem}.py"
            assert relative in text or f"`{short}`" in text or f", {short}" in text, relative


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_the_library_never_imports_the_collector() -> None:
    """Services never import the collector: no otelkit module imports otelkit_collector."""
    offenders = [
        path.name
        for path in (REPO_ROOT / "otelkit").rglob("*.py")
        if any(m.split(".")[0] == "otelkit_collector" for m in imported_modules(path))
    ]
    assert not offenders


def string_literals(path: Path) -> set[str]:
    """The string constants of a module's code (docstrings are prose, not code)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        if id(node) not in docstrings
    }


def test_no_module_but_the_catalogue_spells_a_metric_name() -> None:
    """No string in the code of the library or the collector, outside otelkit/instruments.py,
    holds a metric name the catalogue defines: they all read the catalogue."""
    specs = [v for v in vars(instruments).values() if isinstance(v, instruments.MetricSpec)]
    names = {spec.prometheus_name for spec in specs} | {spec.name for spec in specs}
    assert "http_request_duration_seconds" in names
    spelled = sorted(
        (path.relative_to(REPO_ROOT).as_posix(), literal)
        for tree in SOURCE_TREES
        for path in tree.rglob("*.py")
        if path.name != "instruments.py"
        for literal in string_literals(path)
        if any(re.search(rf"\b{name}\b", literal) for name in names)
    )
    assert not spelled, spelled
