"""Stack fixtures: real collectors, the example service and Prometheus evaluating the shipped
rules, all on loopback and stopped by PID; plus the demo traffic the dashboards are read on.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from examples.demo import generate_traffic
from tests.e2e.servers import (
    LOOPBACK,
    ManagedProcess,
    clean_env,
    poll,
    require_binary,
    running_collector,
    running_prometheus,
    start_listening,
)
from tests.stack.prometheus_api import (
    PrometheusAPI,
    prometheus_config,
    sample_value,
    write_targets,
)
from tests.stack.stack_files import alert_rules, write_rules_with_for

COLLECTOR_JOB = "otelkit-collector"
SERVICES_JOB = "services"
"""Job names as prometheus/prometheus.yml spells them (CollectorDown matches on the first)."""

DEMO_SERVICE = "courses"
DEMO_TTL_SECONDS = "5"
DEMO_TRAFFIC_SECONDS = 12.0
DEMO_TRAFFIC_RATE = 30.0
PUSH_SETTLE_SECONDS = 3.0
"""After the last request: the push client's 1 s flush plus a scrape, with margin."""
SETTLE_TIMEOUT_SECONDS = 20.0


def _collector_env(ttl_seconds: str) -> dict[str, str]:
    return {"OTELKIT_HEALTH_TTL_SECONDS": ttl_seconds}


@contextlib.contextmanager
def running_example_service(
    log_dir: Path, collector_url: str, service: str = DEMO_SERVICE
) -> Iterator[ManagedProcess]:
    """``uvicorn examples.courses.app:app`` pushing to ``collector_url``; stopped on exit."""

    def argv(port: int) -> list[str]:
        return [sys.executable, "-m", "uvicorn", "examples.courses.app:app",
                "--host", LOOPBACK, "--port", str(port), "--no-access-log"]  # fmt: skip

    env = clean_env(
        {
            "OTELKIT_COLLECTOR_URL": collector_url,
            "OTELKIT_HEARTBEAT_SECONDS": "1",
            "OTEL_SERVICE_NAME": service,
        }
    )
    server = start_listening(argv, ready_path="/healthz", log_dir=log_dir, name=service, env=env)
    try:
        yield server
    finally:
        server.stop()


def await_targets_up(api: PrometheusAPI, jobs: Sequence[str], count: int | None = None) -> None:
    """Poll until Prometheus has scraped ``count`` targets (default: one per job) of
    ``jobs`` successfully."""
    expected = len(jobs) if count is None else count

    def all_up() -> bool | None:
        up = [s["metric"]["job"] for s in api.query("up") if sample_value(s) == 1]
        return True if set(jobs) <= set(up) and len(up) >= expected else None

    poll(all_up, timeout=SETTLE_TIMEOUT_SECONDS, interval=0.2, what=f"targets {jobs} up")


@dataclass(frozen=True)
class DemoStack:
    """Collector, example service and Prometheus after a burst of demo traffic."""

    prometheus: PrometheusAPI
    service_url: str
    traffic: collections.Counter[tuple[str, int]]
    settled_at: float
    """Unix time by which every request was pushed and scraped: query the panels here."""


@pytest.fixture(scope="session")
def demo_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoStack]:
    """The collector (health TTL 5 s) and the example service (heartbeat 1 s), scraped every
    second by Prometheus evaluating alerts.yml with every ``for`` cut to 1 s, after
    ``generate_traffic`` sent 12 s of demo traffic to the service."""
    require_binary("prometheus")
    work = tmp_path_factory.mktemp("demo-stack")
    rules = write_rules_with_for(
        work / "alerts.yml", {rule["alert"]: "1s" for rule in alert_rules()}
    )
    targets = work / "targets"
    targets.mkdir()  # before Prometheus starts, so it watches the directory from the start
    config = prometheus_config([COLLECTOR_JOB, SERVICES_JOB], targets, rule_files=[rules])
    with contextlib.ExitStack() as stack:
        prometheus = stack.enter_context(running_prometheus(config, work / "prometheus"))
        collector = stack.enter_context(
            running_collector(work, _collector_env(DEMO_TTL_SECONDS), name="demo-collector")
        )
        service = stack.enter_context(running_example_service(work, collector.url))
        write_targets(targets, COLLECTOR_JOB, [collector.url])
        write_targets(targets, SERVICES_JOB, [service.url], {"service": DEMO_SERVICE})
        api = PrometheusAPI(prometheus.url)
        await_targets_up(api, [COLLECTOR_JOB, SERVICES_JOB])

        traffic = asyncio.run(
            generate_traffic(
                [service.url], duration=DEMO_TRAFFIC_SECONDS, rate=DEMO_TRAFFIC_RATE, seed=1
            )
        )
        assert traffic[(service.url, 0)] == 0, f"requests failed to connect: {traffic}"
        settled_at = time.time() + PUSH_SETTLE_SECONDS

        def scraped_after_settling() -> bool | None:
            scraped = api.query("min(timestamp(up))")
            return True if scraped and sample_value(scraped[0]) > settled_at else None

        poll(
            scraped_after_settling,
            timeout=SETTLE_TIMEOUT_SECONDS,
            interval=0.2,
            what="a scrape after the demo traffic settled",
        )
        yield DemoStack(api, service.url, traffic, settled_at)


class Heartbeats:
    """Reports services healthy to a collector every ``period`` seconds from a thread."""

    def __init__(self, collector_url: str, services: Sequence[str], period: float = 0.3) -> None:
        self.collector_url = collector_url
        self.period = period
        self.failures: list[str] = []
        self._active = set(services)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeats", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def pause(self, service: str) -> None:
        """Stop reporting ``service`` (as a crashed service would)."""
        with self._lock:
            self._active.discard(service)

    def resume(self, service: str) -> None:
        with self._lock:
            self._active.add(service)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        with httpx.Client(base_url=self.collector_url, timeout=1.0) as client:
            while not self._stop.is_set():
                with self._lock:
                    services = sorted(self._active)
                for service in services:
                    try:
                        response = client.post(f"/api/health/{service}", json={"status": "healthy"})
                    except httpx.TransportError as exc:
                        self.failures.append(f"{service}: {exc!r}")
                        continue
                    if response.status_code != 200:
                        self.failures.append(f"{service}: {response.status_code} {response.text}")
                self._stop.wait(self.period)


@dataclass(frozen=True)
class AlertStack:
    """Two collectors and the Prometheus that scrapes both and evaluates the shipped rules."""

    prometheus: PrometheusAPI
    collector: ManagedProcess
    """Receives the heartbeats of the ServiceDown test."""
    doomed_collector: ManagedProcess
    """Stopped by the CollectorDown test (so the tests do not depend on their order)."""


ALERT_TTL_SECONDS = "2"
ALERT_FOR = {"ServiceDown": "2s", "CollectorDown": "2s"}


@pytest.fixture(scope="module")
def alert_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AlertStack]:
    """Two collectors with a 2 s health TTL, scraped every second by one Prometheus (it
    takes seconds to discover its first targets, so the alert tests share it) evaluating
    alerts.yml with ServiceDown's and CollectorDown's ``for`` cut to 2 s."""
    require_binary("prometheus")
    work = tmp_path_factory.mktemp("alert-stack")
    rules = write_rules_with_for(work / "alerts.yml", ALERT_FOR)
    env = _collector_env(ALERT_TTL_SECONDS)
    targets = work / "targets"
    targets.mkdir()
    config = prometheus_config([COLLECTOR_JOB], targets, rule_files=[rules])
    with contextlib.ExitStack() as stack:
        prometheus = stack.enter_context(running_prometheus(config, work / "prometheus"))
        collector = stack.enter_context(running_collector(work, env))
        doomed = stack.enter_context(running_collector(work, env, name="doomed-collector"))
        write_targets(targets, COLLECTOR_JOB, [collector.url, doomed.url])
        api = PrometheusAPI(prometheus.url)
        await_targets_up(api, [COLLECTOR_JOB], count=2)
        yield AlertStack(api, collector, doomed)


@pytest.fixture
def heartbeats(alert_stack: AlertStack) -> Iterator[Heartbeats]:
    """``payments`` and ``billing`` reported healthy every 0.3 s until the test ends."""
    beats = Heartbeats(alert_stack.collector.url, ["payments", "billing"])
    beats.start()
    try:
        yield beats
    finally:
        beats.stop()
