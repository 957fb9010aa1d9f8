"""Zero-code: an unmodified FastAPI app under ``opentelemetry-instrument uvicorn`` gets the
catalogue's series (in a subprocess, so no OpenTelemetry global leaks into the test run)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from otelkit.autoinstrument import OtelkitInstrumentor
from otelkit.instruments import (
    HTTP_REQUEST_DURATION,
    PROCESS_METRIC_PREFIXES,
    SERVICE_HEALTH_STATUS,
    prometheus_names,
)
from tests.otelkit.conftest import LOOPBACK, samples

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
STARTUP_SECONDS = 20.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def test_entry_point_is_registered() -> None:
    """otelkit registers its instrumentor where opentelemetry-instrument looks for them."""
    entry_points = importlib.metadata.entry_points(group="opentelemetry_instrumentor")
    (otelkit_entry,) = [entry for entry in entry_points if entry.name == "otelkit"]
    assert otelkit_entry.load() is OtelkitInstrumentor


class LaunchedApp:
    """A process started in its own session, so the whole group can be stopped by its id."""

    def __init__(self, port: int, env: dict[str, str]) -> None:
        self.base_url = f"http://{LOOPBACK}:{port}"
        self.process = subprocess.Popen(
            [
                str(BIN / "opentelemetry-instrument"),
                str(BIN / "uvicorn"),
                "tests.otelkit.plain_app:app",
                "--host",
                LOOPBACK,
                "--port",
                str(port),
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self) -> None:
        """Poll /metrics (excluded from recording) until it answers, with a deadline."""
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                if httpx.get(f"{self.base_url}/metrics", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        output = self.process.stdout.read().decode() if self.process.stdout else ""
        pytest.fail(f"instrumented app did not become ready:\n{output}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()


FASTAPI_NATIVE_METRICS = frozenset(
    {"http_server_request_duration_seconds", "http_server_active_requests"}
)
"""What FastAPI 0.142 and later record themselves once a global meter provider is set (they
step aside when opentelemetry-instrumentation-fastapi's middleware is in the app)."""
FASTAPI_HAS_NATIVE_TELEMETRY = importlib.util.find_spec("fastapi.telemetry") is not None


@dataclass(frozen=True)
class Launch:
    """One way to launch the plain app, and the foreign histogram its /metrics then has."""

    disabled_instrumentations: str
    """``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS``."""
    semconv_opt_in: str
    """``OTEL_SEMCONV_STABILITY_OPT_IN``: which HTTP semantic conventions the OpenTelemetry
    instrumentation follows (the older ones when empty, the stable ones with ``http``)."""
    fastapi_histogram: str | None
    """The duration histogram opentelemetry-instrumentation-fastapi adds; ``None`` when it is
    disabled."""


DISABLED = Launch("fastapi", "", None)
ALSO_ON = Launch("", "", "http_server_duration_milliseconds")
ALSO_ON_STABLE = Launch("", "http", "http_server_request_duration_seconds")
LAUNCHES = [
    pytest.param(DISABLED, id="otel-fastapi-instrumentation-disabled"),
    pytest.param(ALSO_ON, id="otel-fastapi-instrumentation-also-on"),
    pytest.param(ALSO_ON_STABLE, id="otel-fastapi-instrumentation-also-on-stable-semconv"),
]


@pytest.fixture(params=LAUNCHES)
def launch(request: pytest.FixtureRequest) -> Launch:
    launch: Launch = request.param
    return launch


@pytest.fixture
def launched_app(launch: Launch) -> Iterator[LaunchedApp]:
    """The plain app under the auto-instrumentation launcher, stopped by process group."""
    # Every case depends on the OpenTelemetry FastAPI instrumentation being there to disable or
    # to keep: without it the "disabled" case would hold vacuously.
    assert importlib.metadata.version("opentelemetry-instrumentation-fastapi")
    env = {name: value for name, value in os.environ.items() if name != "OTELKIT_COLLECTOR_URL"}
    env.update(
        OTEL_METRICS_EXPORTER="prometheus",
        OTEL_SERVICE_NAME="plain",
        OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=launch.disabled_instrumentations,
        OTEL_SEMCONV_STABILITY_OPT_IN=launch.semconv_opt_in,
        PYTHONUNBUFFERED="1",
    )
    app = LaunchedApp(free_port(), env)
    try:
        app.wait_ready()
        yield app
    finally:
        app.stop()


def get_items_three_times(app: LaunchedApp) -> str:
    """Three requests to /items/1, then the app's /metrics text."""
    for _ in range(3):
        assert httpx.get(f"{app.base_url}/items/1", timeout=5).status_code == 200
    response = httpx.get(f"{app.base_url}/metrics", timeout=5)
    assert response.status_code == 200
    return response.text


def test_unmodified_app_gets_the_seed_series(launched_app: LaunchedApp) -> None:
    """Three requests to an app that never imports otelkit show up as count 3 on its /metrics,
    whether or not the OpenTelemetry FastAPI instrumentation runs beside otelkit."""
    scraped = samples(get_items_three_times(launched_app))
    labels = frozenset({("method", "GET"), ("route", "/items/{item_id}"), ("status", "200")})
    assert scraped[(f"{HTTP_REQUEST_DURATION.prometheus_name}_count", labels)] == 3
    routes = {
        dict(key)["route"]
        for name, key in scraped
        if name == f"{HTTP_REQUEST_DURATION.prometheus_name}_count"
    }
    assert routes == {"/items/{item_id}"}
    health = (SERVICE_HEALTH_STATUS.prometheus_name, frozenset({("service", "plain")}))
    assert scraped[health] == 1


def test_otel_fastapi_instrumentation_adds_its_histogram_or_nothing(
    launch: Launch, launched_app: LaunchedApp
) -> None:
    """What the README says of the launcher with opentelemetry-instrumentation-fastapi
    installed: it adds its own duration histogram next to otelkit's (named after the HTTP
    semantic conventions it follows), counting the same requests; with
    ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=fastapi`` only otelkit's families remain, and
    FastAPI's own where the release records them."""
    families = {
        family.name: family
        for family in text_string_to_metric_families(get_items_three_times(launched_app))
    }
    foreign = {
        name
        for name in families
        if name not in prometheus_names() and not name.startswith(PROCESS_METRIC_PREFIXES)
    }
    assert HTTP_REQUEST_DURATION.prometheus_name in families
    if launch.fastapi_histogram is None:
        assert foreign == (FASTAPI_NATIVE_METRICS if FASTAPI_HAS_NATIVE_TELEMETRY else set())
        return
    assert launch.fastapi_histogram in foreign, sorted(families)
    histogram = families[launch.fastapi_histogram]
    assert histogram.type == "histogram"
    item_counts = [
        sample.value
        for sample in histogram.samples
        if sample.name == f"{launch.fastapi_histogram}_count"
        and "/items/{item_id}" in sample.labels.values()
    ]
    assert item_counts == [3]
    # One duration histogram, not the other convention's too (nor FastAPI's own beside it).
    durations = {"http_server_duration_milliseconds", "http_server_request_duration_seconds"}
    assert foreign & durations == {launch.fastapi_histogram}
