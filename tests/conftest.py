"""Shared fixtures: fresh registries per test, an injectable clock, in-process HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from collector.app import create_app
from collector.settings import CollectorSettings


class FakeClock:
    """A unix clock that moves only when told to."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings() -> CollectorSettings:
    """Defaults, independent of the environment the tests run in."""
    return CollectorSettings.from_env(environ={})


AppFactory = Callable[..., FastAPI]


@pytest.fixture
def make_app(settings: CollectorSettings, clock: FakeClock) -> AppFactory:
    """Build a collector with a fresh registry; keyword arguments override settings."""

    def factory(**overrides: Any) -> FastAPI:
        return create_app(replace(settings, **overrides), registry=CollectorRegistry(), clock=clock)

    return factory


@pytest.fixture
def app(make_app: AppFactory) -> FastAPI:
    return make_app()


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://collector") as http:
        yield http


def samples(exposition: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Parse a text exposition into {(sample name, labels): value}."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }
