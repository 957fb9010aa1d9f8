"""Reporter gauges and the health heartbeat, read through an in-memory reader, with pushes
captured by an in-process collector stand-in."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint

from otelkit.instruments import ACTIVE_USERS, SERVICE_HEALTH_STATUS
from otelkit.push import PushClient, PushStats
from otelkit.reporters import HealthCheck, HealthHeartbeat, Reporter
from otelkit.reports import HealthStatus
from tests.otelkit.conftest import metrics_named

pytestmark = pytest.mark.anyio

Gauge = dict[frozenset[tuple[str, str]], float]


def gauge(reader: InMemoryMetricReader, name: str) -> Gauge:
    """The gauge's current value per attribute set."""
    values: Gauge = {}
    for metric in metrics_named(reader, name):
        for point in metric.data.data_points:
            assert isinstance(point, NumberDataPoint)
            values[frozenset((k, str(v)) for k, v in (point.attributes or {}).items())] = (
                point.value
            )
    return values


def health(reader: InMemoryMetricReader) -> dict[str, float]:
    """service_health_status per service."""
    return {
        dict(labels)["service"]: value
        for labels, value in gauge(reader, SERVICE_HEALTH_STATUS.name).items()
    }


@pytest.fixture
def reporter(meter_provider: MeterProvider) -> Reporter:
    return Reporter(meter_provider=meter_provider)


@pytest.mark.parametrize(
    ("status", "value"),
    [
        pytest.param("healthy", 1, id="healthy"),
        pytest.param("HEALTHY", 1, id="upper-case-healthy"),
        pytest.param("degraded", 0, id="degraded"),
        pytest.param("unhealthy", 0, id="unhealthy"),
        pytest.param("Down", 0, id="down"),
    ],
)
def test_health_gauge(
    reporter: Reporter, reader: InMemoryMetricReader, status: str, value: int
) -> None:
    """service_health_status is 1 for healthy (any case) and 0 for every other status."""
    reporter.report_health("courses", status)
    assert health(reader) == {"courses": value}


def test_health_gauge_keeps_the_last_report_per_service(
    reporter: Reporter, reader: InMemoryMetricReader
) -> None:
    """Each service has one series holding its last reported status."""
    reporter.report_health("courses", "healthy")
    reporter.report_health("billing", "healthy")
    reporter.report_health("courses", "down")
    assert health(reader) == {"courses": 0, "billing": 1}


def test_active_users_gauge(reporter: Reporter, reader: InMemoryMetricReader) -> None:
    """active_users_total has an unlabelled series and one per named service, last value wins."""
    reporter.report_active_users(127)
    reporter.report_active_users(5, service="courses")
    reporter.report_active_users(6, service="courses")
    reporter.report_active_users(0, service="billing")
    assert gauge(reader, ACTIVE_USERS.name) == {
        frozenset(): 127,
        frozenset({("service", "courses")}): 6,
        frozenset({("service", "billing")}): 0,
    }


@pytest.mark.parametrize(
    ("service", "status"),
    [
        pytest.param("courses", "sick", id="unknown-status"),
        pytest.param("courses", "", id="empty-status"),
        pytest.param("courses", "stale", id="stale-is-the-collectors-word"),
        pytest.param("bad\nname", "healthy", id="control-character-in-service"),
        pytest.param("\ud800", "healthy", id="lone-surrogate-in-service"),
    ],
)
def test_bad_health_report_raises_and_changes_nothing(
    reporter: Reporter, reader: InMemoryMetricReader, service: str, status: str
) -> None:
    """A bad status or service name raises ValueError and leaves the gauge as it was."""
    reporter.report_health("courses", "healthy")
    with pytest.raises(ValueError, match=r"status|UTF-8|control"):
        reporter.report_health(service, status)
    assert health(reader) == {"courses": 1}


@pytest.mark.parametrize(
    "count",
    [
        pytest.param(-1, id="negative"),
        pytest.param(1.5, id="float"),
        pytest.param(True, id="bool"),
        pytest.param("3", id="string"),
    ],
)
def test_bad_user_count_raises_and_changes_nothing(
    reporter: Reporter, reader: InMemoryMetricReader, count: Any
) -> None:
    """A count that is not an integer >= 0 raises ValueError and leaves the gauge as it was."""
    reporter.report_active_users(3)
    with pytest.raises(ValueError, match="active users"):
        reporter.report_active_users(count)
    assert gauge(reader, ACTIVE_USERS.name) == {frozenset(): 3}


def sync_check(result: Any) -> HealthCheck:
    return lambda: result


def async_check(result: Any) -> HealthCheck:
    async def check() -> Any:
        await asyncio.sleep(0)
        return result

    return check


def raising_check() -> Any:
    raise ConnectionError("database unreachable")


async def raising_async_check() -> Any:
    raise ConnectionError("database unreachable")


@pytest.mark.parametrize(
    ("check", "expected"),
    [
        pytest.param(None, "healthy", id="no-check"),
        pytest.param(sync_check(True), "healthy", id="sync-true"),
        pytest.param(sync_check(None), "healthy", id="sync-none"),
        pytest.param(sync_check(False), "unhealthy", id="sync-false"),
        pytest.param(sync_check("degraded"), "degraded", id="sync-degraded"),
        pytest.param(async_check(True), "healthy", id="async-true"),
        pytest.param(async_check(False), "unhealthy", id="async-false"),
        pytest.param(async_check("DOWN"), "down", id="async-down-any-case"),
        pytest.param(sync_check("sick"), "unhealthy", id="unknown-status"),
        pytest.param(sync_check(42), "unhealthy", id="not-a-status"),
        pytest.param(raising_check, "unhealthy", id="sync-raises"),
        pytest.param(raising_async_check, "unhealthy", id="async-raises"),
    ],
)
async def test_beat_reports_the_check_result(
    reporter: Reporter,
    reader: InMemoryMetricReader,
    check: HealthCheck | None,
    expected: str,
) -> None:
    """One beat runs the check and reports its status; a failing check reports unhealthy."""
    heartbeat = HealthHeartbeat(reporter, "courses", interval=1, check=check)
    assert await heartbeat.beat() == expected
    assert health(reader) == {"courses": 1 if expected == "healthy" else 0}


async def test_raising_check_is_logged(
    reporter: Reporter, caplog: pytest.LogCaptureFixture
) -> None:
    """A check that raises is logged with its traceback, naming the service."""
    heartbeat = HealthHeartbeat(reporter, "courses", interval=1, check=raising_check)
    with caplog.at_level(logging.WARNING, logger="otelkit"):
        assert await heartbeat.beat() == "unhealthy"
    (record,) = caplog.records
    assert "courses" in record.getMessage()
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], ConnectionError)


async def test_slow_async_check_times_out_as_unhealthy(
    reporter: Reporter, reader: InMemoryMetricReader
) -> None:
    """An async check slower than the interval is cut off and reported unhealthy."""

    async def hangs() -> bool:
        await asyncio.sleep(10)
        return True

    heartbeat = HealthHeartbeat(reporter, "courses", interval=0.05, check=hangs)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await heartbeat.beat() == "unhealthy"
    assert loop.time() - started < 1
    assert health(reader) == {"courses": 0}


async def test_run_start_stop(reporter: Reporter, reader: InMemoryMetricReader) -> None:
    """start() beats every interval until stop(), which ends the task cleanly."""
    beats: list[float] = []
    loop = asyncio.get_running_loop()

    def check() -> bool:
        beats.append(loop.time())
        return True

    heartbeat = HealthHeartbeat(reporter, "courses", interval=0.02, check=check)
    heartbeat.start()
    heartbeat.start()  # idempotent: still one task
    await asyncio.sleep(0.2)
    await heartbeat.stop()
    stopped_with = len(beats)
    assert stopped_with >= 3
    assert health(reader) == {"courses": 1}
    await asyncio.sleep(0.1)
    assert len(beats) == stopped_with
    await heartbeat.stop()  # stopping twice is harmless


async def test_run_survives_a_failing_check(
    reporter: Reporter, reader: InMemoryMetricReader, caplog: pytest.LogCaptureFixture
) -> None:
    """A check that keeps raising does not end the heartbeat; each beat reports unhealthy."""
    calls = 0

    def check() -> bool:
        nonlocal calls
        calls += 1
        raise RuntimeError("still broken")

    heartbeat = HealthHeartbeat(reporter, "courses", interval=0.02, check=check)
    with caplog.at_level(logging.CRITICAL, logger="otelkit"):
        heartbeat.start()
        await asyncio.sleep(0.15)
        await heartbeat.stop()
    assert calls >= 3
    assert health(reader) == {"courses": 0}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param({"interval": 0}, "interval", id="zero-interval"),
        pytest.param({"interval": -1}, "interval", id="negative-interval"),
        pytest.param({"service": "a\tb"}, "control", id="bad-service"),
    ],
)
def test_bad_heartbeat_configuration_raises(
    reporter: Reporter, options: dict[str, Any], message: str
) -> None:
    """A heartbeat with a non-positive interval or an unusable service name is refused."""
    arguments: dict[str, Any] = {"service": "courses", **options}
    service = arguments.pop("service")
    with pytest.raises(ValueError, match=message):
        HealthHeartbeat(reporter, service, **arguments)


class Captured:
    """Requests a collector stand-in received, as (path, JSON body)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((request.url.raw_path.decode(), json.loads(request.content)))
        return httpx.Response(200)


PushFactory = Callable[[Captured], PushClient]


@pytest.fixture
def push_client() -> Iterator[PushFactory]:
    """Build push clients on a collector stand-in; each is shut down at teardown."""
    made: list[PushClient] = []

    def make(captured: Captured) -> PushClient:
        client = PushClient(
            "http://collector",
            service="courses",
            flush_interval=0.02,
            transport=httpx.MockTransport(captured),
        )
        made.append(client)
        return client

    yield make
    for client in made:
        client.shutdown(timeout=1)


def test_reports_are_pushed(
    meter_provider: MeterProvider, reader: InMemoryMetricReader, push_client: PushFactory
) -> None:
    """With a push client, health and users reports also go to the collector."""
    captured = Captured()
    push = push_client(captured)
    reporter = Reporter(meter_provider=meter_provider, push=push)
    push.start()
    reporter.report_health("courses", "Degraded")
    reporter.report_active_users(127)
    reporter.report_active_users(4, service="billing")
    assert push.shutdown(timeout=5) == PushStats(generated=3, delivered=3, dropped=0, queued=0)
    assert captured.requests == [
        ("/api/health/courses", {"status": "degraded"}),
        ("/api/metrics/users", {"count": 127, "service": "courses"}),
        ("/api/metrics/users", {"count": 4, "service": "billing"}),
    ]
    assert health(reader) == {"courses": 0}


def test_bad_reports_are_not_pushed(
    meter_provider: MeterProvider, push_client: PushFactory
) -> None:
    """A report refused locally is never queued for the collector."""
    captured = Captured()
    push = push_client(captured)
    reporter = Reporter(meter_provider=meter_provider, push=push)
    with pytest.raises(ValueError, match="status"):
        reporter.report_health("courses", "sick")
    with pytest.raises(ValueError, match="active users"):
        reporter.report_active_users(-1)
    assert push.stats() == PushStats(generated=0, delivered=0, dropped=0, queued=0)


async def test_heartbeat_pushes_each_beat(
    meter_provider: MeterProvider, push_client: PushFactory
) -> None:
    """Each beat of a heartbeat reaches the collector's health endpoint."""
    captured = Captured()
    push = push_client(captured)
    reporter = Reporter(meter_provider=meter_provider, push=push)
    push.start()
    results: Iterator[HealthStatus] = iter(["healthy", "degraded", "healthy"])

    async def check() -> HealthStatus:
        return next(results)

    heartbeat = HealthHeartbeat(reporter, "courses", interval=1, check=check)
    for _ in range(3):
        await heartbeat.beat()
    stats = await asyncio.to_thread(push.shutdown, 5)
    assert stats == PushStats(generated=3, delivered=3, dropped=0, queued=0)
    assert captured.requests == [
        ("/api/health/courses", {"status": "healthy"}),
        ("/api/health/courses", {"status": "degraded"}),
        ("/api/health/courses", {"status": "healthy"}),
    ]
