"""End-to-end fixtures: real collector processes, stopped by PID when the test ends."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from tests.e2e.servers import ManagedProcess, running_collector

StartCollector = Callable[..., ManagedProcess]


@pytest.fixture
def start_collector(tmp_path: Path) -> Iterator[StartCollector]:
    """Start ``python -m otelkit_collector`` subprocesses configured by ``env``; all are stopped at
    teardown, whatever the test did to them."""
    with contextlib.ExitStack() as stack:

        def start(env: Mapping[str, str] | None = None, name: str = "collector") -> ManagedProcess:
            return stack.enter_context(running_collector(tmp_path, env, name=name))

        yield start
