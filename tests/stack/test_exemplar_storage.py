"""The compose Prometheus keeps exemplars: the real binary, run with the feature flags of the
compose command and the global scrape settings of prometheus.yml, scrapes a prometheus_client
registry whose latency histogram carries a trace id, and answers it from its exemplar API."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import prometheus_client
import pytest
import yaml

from tests.e2e.servers import LOOPBACK, ManagedProcess, poll, running_prometheus
from tests.stack.prometheus_api import host_port
from tests.stack.stack_files import PROMETHEUS_CONFIG, compose, load_yaml

pytestmark = pytest.mark.prometheus

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
EXEMPLAR_TIMEOUT_SECONDS = 20.0


@contextlib.contextmanager
def serving(registry: prometheus_client.CollectorRegistry) -> Iterator[str]:
    """``registry`` on a loopback ``/metrics`` that, as a service's does, answers OpenMetrics
    (with exemplars) only to a scraper asking for it; the URL, stopped on exit."""
    server, thread = prometheus_client.start_http_server(0, addr=LOOPBACK, registry=registry)
    try:
        yield f"http://{LOOPBACK}:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def compose_prometheus_flags() -> list[str]:
    """The ``--enable-feature`` flags docker-compose.yml starts Prometheus with."""
    command: list[str] = compose()["services"]["prometheus"]["command"]
    return [argument for argument in command if argument.startswith("--enable-feature=")]


def scrape_config(target_url: str) -> str:
    """prometheus.yml's global settings (its scrape protocols included), scraping every second
    the one target."""
    shipped: dict[str, Any] = load_yaml(PROMETHEUS_CONFIG)["global"]
    config = {
        "global": {**shipped, "scrape_interval": "1s"},
        "scrape_configs": [
            {"job_name": "services", "static_configs": [{"targets": [host_port(target_url)]}]}
        ],
    }
    return yaml.safe_dump(config, sort_keys=False)


@contextlib.contextmanager
def running_compose_prometheus(config: str, data_dir: Path) -> Iterator[ManagedProcess]:
    """The real ``prometheus`` with ``config`` and the compose feature flags; stopped on exit."""
    with running_prometheus(config, data_dir, compose_prometheus_flags()) as server:
        yield server


def test_prometheus_answers_the_trace_id_of_a_scraped_exemplar(tmp_path: Path) -> None:
    """An exemplar on a latency bucket comes back from ``/api/v1/query_exemplars`` with its
    ``trace_id`` and ``span_id``, the labels Grafana's exemplar link reads."""
    registry = prometheus_client.CollectorRegistry()
    histogram = prometheus_client.Histogram(
        "http_request_duration_seconds",
        "Request duration.",
        ["service"],
        buckets=(0.1, 1.0),
        registry=registry,
    )
    histogram.labels(service="courses").observe(
        0.042, exemplar={"trace_id": TRACE_ID, "span_id": SPAN_ID}
    )
    with (
        serving(registry) as target,
        running_compose_prometheus(scrape_config(target), tmp_path) as prometheus,
    ):

        def exemplars() -> list[dict[str, Any]] | None:
            now = time.time()
            response = httpx.get(
                prometheus.url + "/api/v1/query_exemplars",
                params={
                    "query": "http_request_duration_seconds_bucket",
                    "start": f"{now - 300:.3f}",
                    "end": f"{now + 60:.3f}",
                },
                timeout=5.0,
            )
            found = [
                exemplar for series in response.json()["data"] for exemplar in series["exemplars"]
            ]
            return found or None

        found = poll(
            exemplars,
            timeout=EXEMPLAR_TIMEOUT_SECONDS,
            interval=0.5,
            what="an exemplar from /api/v1/query_exemplars",
            diagnostics=prometheus.output,
        )
    assert [exemplar["labels"] for exemplar in found] == [
        {"trace_id": TRACE_ID, "span_id": SPAN_ID}
    ]
    assert float(found[0]["value"]) == pytest.approx(0.042)
