"""The public API is one screen: a sorted, complete ``__all__`` of names that resolve."""

from __future__ import annotations

import ast
import subprocess
import sys
import types
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import otelkit

PACKAGE_SOURCE = Path(otelkit.__file__).read_text()


def duplicates(names: Iterable[str]) -> list[str]:
    """Each name listed more than once, once."""
    return sorted(name for name, count in Counter(names).items() if count > 1)


def literal_keys(assignment: str) -> list[str]:
    """The names, as written in the source (every one, repeats included), of the list
    ``__all__`` or the dict ``_HOMES``: a dict literal keeps one entry of a repeated key, so
    only the source shows it."""
    for node in ast.parse(PACKAGE_SOURCE).body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == [
            assignment
        ]:
            value = node.value
            items = value.keys if isinstance(value, ast.Dict) else getattr(value, "elts", [])
            return [ast.literal_eval(item) for item in items if item is not None]
    raise AssertionError(f"otelkit/__init__.py assigns no literal {assignment}")


def type_checking_imports() -> dict[str, str]:
    """name -> module of the imports under ``if TYPE_CHECKING:`` (what type checkers see)."""
    homes: dict[str, str] = {}
    for node in ast.parse(PACKAGE_SOURCE).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for statement in node.body:
                assert isinstance(statement, ast.ImportFrom), ast.unparse(statement)
                for alias in statement.names:
                    assert alias.name not in homes, f"{alias.name} imported twice"
                    homes[alias.asname or alias.name] = str(statement.module)
    return homes


def test_all_is_sorted() -> None:
    """__all__ is kept in sorted order, so additions land in one obvious place."""
    assert otelkit.__all__ == sorted(otelkit.__all__)


def test_the_duplicate_check_catches_a_duplicate() -> None:
    """The check below names a repeated name, and only that one."""
    assert duplicates(["a", "b", "a", "c", "c", "c"]) == ["a", "c"]
    assert duplicates(["a", "b"]) == []


def test_all_has_no_duplicates() -> None:
    """Each public name is listed once: in __all__, among the lazy names' homes (as written,
    where a dict literal would hide a repeat) and among the imports type checkers read."""
    assert duplicates(otelkit.__all__) == []
    assert literal_keys("__all__") == otelkit.__all__
    homes = literal_keys("_HOMES")
    assert duplicates(homes) == []
    assert sorted(homes) == sorted(set(otelkit.__all__) - {"__version__"})
    assert type_checking_imports() == otelkit._HOMES


def test_every_name_imports_from_its_home() -> None:
    """``from otelkit import name`` works in a fresh interpreter for every name in __all__,
    and gives the object its home module defines."""
    code = (
        "import importlib, otelkit\n"
        "for name in otelkit.__all__:\n"
        "    exec(f'from otelkit import {name} as value')\n"
        "    home = otelkit._HOMES.get(name)\n"
        "    if home is not None:\n"
        "        assert value is getattr(importlib.import_module(home), name), name\n"
        "print(len(otelkit.__all__))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(len(otelkit.__all__))


def test_every_name_resolves() -> None:
    """Every name in __all__ is an attribute of the package."""
    missing = [name for name in otelkit.__all__ if not hasattr(otelkit, name)]
    assert missing == []


def test_star_import_gives_exactly_all() -> None:
    """`from otelkit import *` binds exactly the names in __all__, to the same objects."""
    namespace: dict[str, object] = {}
    exec("from otelkit import *", namespace)  # noqa: S102 - the statement under test
    namespace.pop("__builtins__")
    assert sorted(namespace) == otelkit.__all__
    assert all(namespace[name] is getattr(otelkit, name) for name in otelkit.__all__)


def test_all_names_exactly_what_the_package_serves() -> None:
    """__all__ lists every name the package resolves lazily, and nothing else."""
    assert set(otelkit.__all__) == set(otelkit._HOMES) | {"__version__"}


def test_import_loads_no_machinery_until_used() -> None:
    """`import otelkit` alone imports none of the SDK, push, OTLP or reporter modules."""
    code = (
        "import sys, otelkit; "
        "print(sorted(m for m in sys.modules if m.startswith(('otelkit.', 'opentelemetry.sdk', "
        "'httpx', 'opentelemetry.exporter', 'pydantic'))))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout.strip()
    assert loaded == "[]"


def test_all_is_complete() -> None:
    """Every public class or function the package imports is listed in __all__."""
    public = {
        name
        for name, value in vars(otelkit).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public <= set(otelkit.__all__)
