"""The public API is one screen: a sorted, complete ``__all__`` of names that resolve."""

from __future__ import annotations

import subprocess
import sys
import types

import otelkit


def test_all_is_sorted() -> None:
    """__all__ is kept in sorted order, so additions land in one obvious place."""
    assert otelkit.__all__ == sorted(otelkit.__all__)


def test_all_has_no_duplicates() -> None:
    """Each public name is listed once."""
    assert len(set(otelkit.__all__)) == len(otelkit.__all__)


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
