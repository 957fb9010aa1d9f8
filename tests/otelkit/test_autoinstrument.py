"""Zero-code: an unmodified FastAPI app under ``opentelemetry-instrument uvicorn`` gets the
catalogue's series (in a subprocess, so no OpenTelemetry global leaks into the test run)."""

from __future__ import annotations

import importlib.metadata
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from otelkit.autoinstrument import OtelkitInstrumentor
from otelkit.instruments import HTTP_REQUEST_DURATION, SERVICE_HEALTH_STATUS
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


@pytest.fixture(
    params=[
        pytest.param("fastapi", id="otel-fastapi-instrumentation-disabled"),
        pytest.param("", id="otel-fastapi-instrumentation-also-on"),
    ]
)
def launched_app(request: pytest.FixtureRequest) -> Iterator[LaunchedApp]:
    """The plain app under the auto-instrumentation launcher, stopped by process group."""
    env = {name: value for name, value in os.environ.items() if name != "OTELKIT_COLLECTOR_URL"}
    env.update(
        OTEL_METRICS_EXPORTER="prometheus",
        OTEL_SERVICE_NAME="plain",
        OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=request.param,
        PYTHONUNBUFFERED="1",
    )
    app = LaunchedApp(free_port(), env)
    try:
        app.wait_ready()
        yield app
    finally:
        app.stop()


def test_unmodified_app_gets_the_seed_series(launched_app: LaunchedApp) -> None:
    """Three requests to an app that never imports otelkit show up as count 3 on its /metrics."""
    for _ in range(3):
        assert httpx.get(f"{launched_app.base_url}/items/1", timeout=5).status_code == 200
    response = httpx.get(f"{launched_app.base_url}/metrics", timeout=5)
    assert response.status_code == 200
    scraped = samples(response.text)
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
