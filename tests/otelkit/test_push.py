"""PushClient against in-process collector stand-ins (httpx.MockTransport): batching, retry,
refusal, outage, slow collector, bounded queue, and ``delivered + dropped + queued ==
generated`` after every scenario."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from otelkit.push import PushClient, PushStats
from otelkit.reports import HttpReport

SETTLE_SECONDS = 5.0


@dataclass
class Received:
    """One request as the collector saw it."""

    method: str
    raw_path: str
    headers: httpx.Headers
    body: Any


Answer = Callable[[httpx.Request], httpx.Response]


@dataclass
class FakeCollector:
    """A collector stand-in: records each request and answers from a script, then with 200."""

    script: list[Answer] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    times: list[float] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.times.append(time.monotonic())
        self.received.append(
            Received(
                request.method,
                request.url.raw_path.decode(),
                request.headers,
                json.loads(request.content),
            )
        )
        answer = self.script.pop(0) if self.script else ok
        return answer(request)

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    def paths(self) -> list[str]:
        return [received.raw_path for received in self.received]

    def batch_sizes(self) -> list[int]:
        return [len(r.body["reports"]) for r in self.received if r.raw_path.endswith("/batch")]


def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"accepted": True})


def status(code: int) -> Answer:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(code, json={"message": f"status {code}"})

    return answer


def refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


@pytest.fixture
def clients() -> Iterator[list[PushClient]]:
    """Push clients made by a test; each is shut down at teardown whatever happened."""
    made: list[PushClient] = []
    yield made
    for client in made:
        client.shutdown(timeout=1)


@pytest.fixture
def make_client(clients: list[PushClient]) -> Callable[..., PushClient]:
    """Build a PushClient on a fake collector with fast test timings."""

    def make(collector: FakeCollector, **options: Any) -> PushClient:
        options.setdefault("flush_interval", 0.02)
        options.setdefault("backoff", 0.01)
        client = PushClient("http://collector", transport=collector.transport, **options)
        clients.append(client)
        return client

    return make


def conserved(stats: PushStats) -> bool:
    return stats.delivered + stats.dropped + stats.queued == stats.generated


def wait_until_idle(client: PushClient) -> PushStats:
    """Poll until nothing is queued or in flight (deadline: a few seconds)."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        stats = client.stats()
        assert conserved(stats)
        if stats.queued == 0 or time.monotonic() > deadline:
            return stats
        time.sleep(0.01)


def submit_http(client: PushClient, count: int) -> None:
    for index in range(count):
        client.submit_http("GET", "/api/courses/{course_id}", 200, index / 1000)


def test_reports_are_delivered_as_json(make_client: Callable[..., PushClient]) -> None:
    """HTTP, health and users reports arrive at their endpoints with the documented bodies."""
    collector = FakeCollector()
    client = make_client(collector, service="courses")
    client.start()
    client.submit_http("GET", "/api/courses/{course_id}", 200, 0.25)
    client.submit_health("courses", "healthy")
    client.submit_users(127)
    client.submit_users(3, service="billing")
    stats = client.shutdown(timeout=5)
    assert stats == PushStats(generated=4, delivered=4, dropped=0, queued=0)
    assert [(r.method, r.raw_path, r.body) for r in collector.received] == [
        (
            "POST",
            "/api/metrics/http/batch",
            {
                "reports": [
                    {
                        "method": "GET",
                        "route": "/api/courses/{course_id}",
                        "status": 200,
                        "duration": 0.25,
                        "service": "courses",
                    }
                ]
            },
        ),
        ("POST", "/api/health/courses", {"status": "healthy"}),
        ("POST", "/api/metrics/users", {"count": 127, "service": "courses"}),
        ("POST", "/api/metrics/users", {"count": 3, "service": "billing"}),
    ]


def test_reports_carry_the_current_sampled_span_ids(
    make_client: Callable[..., PushClient],
) -> None:
    """Submitted inside a sampled span, a report names its trace and span; else neither."""
    trace_id, span_id = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    collector = FakeCollector()
    client = make_client(collector, service="courses")
    client.start()
    for flags in (TraceFlags.SAMPLED, TraceFlags.DEFAULT):
        context = SpanContext(int(trace_id, 16), int(span_id, 16), True, TraceFlags(flags))
        with trace.use_span(NonRecordingSpan(context)):
            client.submit_http("GET", "/api/courses/{course_id}", 200, 0.25)
    client.submit_http("GET", "/api/courses/{course_id}", 200, 0.25)
    client.shutdown(timeout=5)

    reports = [report for r in collector.received for report in r.body["reports"]]
    ids = [(report.get("trace_id"), report.get("span_id")) for report in reports]
    assert ids == [(trace_id, span_id), (None, None), (None, None)]
    # Each is a report the collector's model accepts as sent.
    assert [HttpReport.model_validate(report).trace_id for report in reports] == [
        trace_id,
        None,
        None,
    ]


def test_reports_without_a_service_name_no_service(make_client: Callable[..., PushClient]) -> None:
    """A client without a service sends reports that name no service."""
    collector = FakeCollector()
    client = make_client(collector)
    client.start()
    client.submit_http("POST", "/x", 201, 0.1)
    client.submit_users(5)
    client.shutdown(timeout=5)
    assert [r.body for r in collector.received] == [
        {"reports": [{"method": "POST", "route": "/x", "status": 201, "duration": 0.1}]},
        {"count": 5},
    ]


def test_http_reports_are_batched(make_client: Callable[..., PushClient]) -> None:
    """1,200 HTTP reports with batch_size=500 go out as three batches: 500, 500 and 200."""
    collector = FakeCollector()
    client = make_client(collector, service="courses", batch_size=500)
    submit_http(client, 1_200)
    client.start()
    stats = wait_until_idle(client)
    assert stats == PushStats(generated=1_200, delivered=1_200, dropped=0, queued=0)
    assert collector.paths() == ["/api/metrics/http/batch"] * 3
    assert collector.batch_sizes() == [500, 500, 200]
    assert {report["service"] for r in collector.received for report in r.body["reports"]} == {
        "courses"
    }
    durations = [report["duration"] for r in collector.received for report in r.body["reports"]]
    assert durations == [index / 1000 for index in range(1_200)]


def test_order_is_kept_across_kinds(make_client: Callable[..., PushClient]) -> None:
    """A health report between HTTP reports splits the batch and keeps submission order."""
    collector = FakeCollector()
    client = make_client(collector)
    submit_http(client, 3)
    client.submit_health("courses", "degraded")
    submit_http(client, 2)
    client.start()
    stats = client.shutdown(timeout=5)
    assert stats == PushStats(generated=6, delivered=6, dropped=0, queued=0)
    assert collector.paths() == [
        "/api/metrics/http/batch",
        "/api/health/courses",
        "/api/metrics/http/batch",
    ]
    assert collector.batch_sizes() == [3, 2]


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(status(500), id="500"),
        pytest.param(status(503), id="503"),
        pytest.param(status(429), id="429-too-many"),
        pytest.param(status(408), id="408-timeout"),
        pytest.param(refused, id="connection-refused"),
    ],
)
def test_transient_failure_is_retried_with_backoff(
    make_client: Callable[..., PushClient], failure: Answer
) -> None:
    """A 5xx, 408, 429 or refused connection is retried after the backoff and then delivered."""
    collector = FakeCollector(script=[failure, failure])
    client = make_client(collector, backoff=0.05, max_attempts=3)
    submit_http(client, 10)
    client.start()
    stats = wait_until_idle(client)
    assert stats == PushStats(generated=10, delivered=10, dropped=0, queued=0)
    assert len(collector.received) == 3
    assert [r.body for r in collector.received[1:]] == [collector.received[0].body] * 2
    first_gap, second_gap = (later - earlier for earlier, later in pairwise(collector.times))
    assert first_gap >= 0.045
    assert second_gap >= 0.09  # the backoff doubles


@pytest.mark.parametrize("code", [400, 401, 404, 413, 422])
def test_refused_reports_are_dropped_at_once(
    make_client: Callable[..., PushClient], code: int, caplog: pytest.LogCaptureFixture
) -> None:
    """A 4xx refusal (other than 408/429) drops the batch without retrying, logged once."""
    collector = FakeCollector(script=[status(code)] * 3)
    client = make_client(collector, max_attempts=5)
    with caplog.at_level(logging.DEBUG, logger="otelkit.push"):
        submit_http(client, 7)
        client.submit_health("courses", "healthy")
        client.submit_users(1)
        client.start()
        stats = wait_until_idle(client)
    assert stats == PushStats(generated=9, delivered=0, dropped=9, queued=0)
    assert len(collector.received) == 3
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert str(code) in warnings[0].getMessage()


def test_unreachable_collector_drops_after_max_attempts(
    make_client: Callable[..., PushClient], caplog: pytest.LogCaptureFixture
) -> None:
    """When every attempt fails to connect, each batch is dropped after max_attempts tries."""
    collector = FakeCollector(script=[refused] * 100)
    client = make_client(collector, max_attempts=3, batch_size=4)
    with caplog.at_level(logging.DEBUG, logger="otelkit.push"):
        submit_http(client, 10)
        client.start()
        stats = wait_until_idle(client)
    assert stats == PushStats(generated=10, delivered=0, dropped=10, queued=0)
    assert len(collector.received) == 3 * 3  # batches of 4, 4, 2; three tries each
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1


def test_delivery_resumes_after_an_outage(make_client: Callable[..., PushClient]) -> None:
    """Reports dropped during an outage are counted; later reports are delivered again."""
    collector = FakeCollector(script=[refused] * 2)
    client = make_client(collector, max_attempts=2)
    submit_http(client, 5)
    client.start()
    assert wait_until_idle(client) == PushStats(generated=5, delivered=0, dropped=5, queued=0)
    submit_http(client, 6)
    assert wait_until_idle(client) == PushStats(generated=11, delivered=6, dropped=5, queued=0)


def test_queue_is_bounded(make_client: Callable[..., PushClient]) -> None:
    """Past queue_size, new reports are dropped and counted, never kept."""
    collector = FakeCollector()
    client = make_client(collector, queue_size=10)
    submit_http(client, 20)
    client.submit_health("courses", "healthy")
    client.submit_users(1)
    client.submit_users(2)
    client.submit_users(3)
    client.submit_users(4)
    assert client.stats() == PushStats(generated=25, delivered=0, dropped=15, queued=10)
    assert client.shutdown(timeout=1) == PushStats(generated=25, delivered=0, dropped=25, queued=0)
    assert collector.received == []


def test_shutdown_flushes_within_its_timeout(make_client: Callable[..., PushClient]) -> None:
    """Shutdown sends what is queued without waiting for the flush interval."""
    collector = FakeCollector()
    client = make_client(collector, flush_interval=30)
    client.start()
    submit_http(client, 100)
    client.submit_health("courses", "healthy")
    started = time.monotonic()
    stats = client.shutdown(timeout=2)
    assert time.monotonic() - started < 1
    assert stats == PushStats(generated=101, delivered=101, dropped=0, queued=0)


def test_shutdown_is_bounded_by_a_slow_collector(make_client: Callable[..., PushClient]) -> None:
    """A collector that takes 3 s to answer cannot hold shutdown past its timeout."""
    release = threading.Event()
    entered = threading.Event()

    def slow(request: httpx.Request) -> httpx.Response:
        entered.set()
        release.wait(3)
        return httpx.Response(200)

    collector = FakeCollector(script=[slow])
    client = make_client(collector, batch_size=10)
    submit_http(client, 10)  # a full batch, sent at once
    client.start()
    assert entered.wait(2)
    submit_http(client, 5)
    started = time.monotonic()
    stats = client.shutdown(timeout=0.5)
    assert time.monotonic() - started < 1
    assert conserved(stats)
    assert stats == PushStats(generated=15, delivered=0, dropped=5, queued=10)
    release.set()
    final = wait_until_idle(client)
    assert final == PushStats(generated=15, delivered=10, dropped=5, queued=0)


def test_submitting_never_waits_for_a_stuck_collector(
    make_client: Callable[..., PushClient],
) -> None:
    """While the sender is stuck in a request, submitting stays a non-blocking append."""
    release = threading.Event()
    entered = threading.Event()

    def stuck(request: httpx.Request) -> httpx.Response:
        entered.set()
        release.wait(3)
        return httpx.Response(200)

    collector = FakeCollector(script=[stuck])
    client = make_client(collector, batch_size=1, queue_size=100)
    client.submit_users(1)
    client.start()
    assert entered.wait(2)
    started = time.perf_counter()
    submit_http(client, 1_000)
    elapsed = time.perf_counter() - started
    release.set()
    assert elapsed < 0.5
    stats = client.stats()
    assert conserved(stats)
    assert stats.dropped >= 900


def test_submit_never_raises_after_shutdown(make_client: Callable[..., PushClient]) -> None:
    """Reports submitted after shutdown are dropped and counted, without an exception."""
    collector = FakeCollector()
    client = make_client(collector)
    client.start()
    client.shutdown(timeout=1)
    client.submit_http("GET", "/", 200, 0.1)
    client.submit_health("courses", "down")
    client.submit_users(1)
    assert client.stats() == PushStats(generated=3, delivered=0, dropped=3, queued=0)
    assert client.shutdown(timeout=1) == client.stats()
    assert collector.received == []


@pytest.mark.parametrize(
    ("service", "raw_path"),
    [
        pytest.param("courses", "/api/health/courses", id="plain"),
        pytest.param("a/b c", "/api/health/a%2Fb%20c", id="slash-and-space"),
        pytest.param("ünï", "/api/health/%C3%BCn%C3%AF", id="non-ascii"),
        pytest.param("50%?#", "/api/health/50%25%3F%23", id="reserved-characters"),
    ],
)
def test_health_path_encodes_the_service(
    make_client: Callable[..., PushClient], service: str, raw_path: str
) -> None:
    """The service name is percent-encoded into one path segment of the health URL."""
    collector = FakeCollector()
    client = make_client(collector)
    client.submit_health(service, "unhealthy")
    client.start()
    client.shutdown(timeout=5)
    assert collector.paths() == [raw_path]
    assert collector.received[0].body == {"status": "unhealthy"}


@pytest.mark.parametrize(
    ("token", "authorization"),
    [pytest.param("s3cret", "Bearer s3cret", id="token"), pytest.param(None, None, id="no-token")],
)
def test_token_is_sent_as_bearer(
    make_client: Callable[..., PushClient], token: str | None, authorization: str | None
) -> None:
    """With a token every push carries Authorization: Bearer <token>; without, none."""
    collector = FakeCollector()
    client = make_client(collector, token=token)
    submit_http(client, 1)
    client.submit_health("courses", "healthy")
    client.submit_users(1)
    client.start()
    client.shutdown(timeout=5)
    assert [r.headers.get("authorization") for r in collector.received] == [authorization] * 3


def test_from_env_reads_url_and_token() -> None:
    """from_env builds a client for OTELKIT_COLLECTOR_URL with OTELKIT_COLLECTOR_TOKEN."""
    collector = FakeCollector()
    client = PushClient.from_env(
        environ={
            "OTELKIT_COLLECTOR_URL": "http://collector:9090/",
            "OTELKIT_COLLECTOR_TOKEN": "s3cret",
        },
        transport=collector.transport,
        flush_interval=0.02,
    )
    assert client is not None
    client.start()
    client.submit_users(1)
    client.shutdown(timeout=5)
    assert client.url == "http://collector:9090"
    (received,) = collector.received
    assert received.headers["authorization"] == "Bearer s3cret"
    assert received.headers["host"] == "collector:9090"


def test_from_env_reads_the_token_when_none_is_passed() -> None:
    """token=None (how instrument() passes "not given") still reads OTELKIT_COLLECTOR_TOKEN."""
    collector = FakeCollector()
    client = PushClient.from_env(
        environ={"OTELKIT_COLLECTOR_TOKEN": "s3cret"},
        url="http://collector",
        token=None,
        transport=collector.transport,
    )
    assert client is not None
    client.start()
    client.submit_users(1)
    client.shutdown(timeout=5)
    assert collector.received[0].headers["authorization"] == "Bearer s3cret"


@pytest.mark.parametrize(
    "environ",
    [
        pytest.param({}, id="unset"),
        pytest.param({"OTELKIT_COLLECTOR_URL": "   "}, id="blank"),
        pytest.param({"OTELKIT_COLLECTOR_TOKEN": "s3cret"}, id="token-only"),
    ],
)
def test_from_env_without_url_is_none(environ: dict[str, str]) -> None:
    """Without OTELKIT_COLLECTOR_URL there is no push client."""
    assert PushClient.from_env(environ=environ) is None


def test_from_env_arguments_beat_the_environment() -> None:
    """An explicit url and token win over the variables."""
    collector = FakeCollector()
    client = PushClient.from_env(
        environ={"OTELKIT_COLLECTOR_URL": "http://env:1", "OTELKIT_COLLECTOR_TOKEN": "env"},
        url="http://explicit:2",
        token="explicit",
        transport=collector.transport,
    )
    assert client is not None
    client.start()
    client.submit_users(1)
    client.shutdown(timeout=5)
    assert client.url == "http://explicit:2"
    assert collector.received[0].headers["authorization"] == "Bearer explicit"


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        pytest.param("collector:9090", {}, "http://", id="no-scheme"),
        pytest.param("ftp://collector", {}, "http://", id="wrong-scheme"),
        pytest.param("http://c", {"queue_size": 0}, "queue_size", id="zero-queue"),
        pytest.param("http://c", {"batch_size": 0}, "batch_size", id="zero-batch"),
        pytest.param("http://c", {"max_attempts": 0}, "max_attempts", id="zero-attempts"),
        pytest.param("http://c", {"timeout": 0}, "timeout", id="zero-timeout"),
        pytest.param("http://c", {"flush_interval": -1}, "flush_interval", id="negative-flush"),
        pytest.param("http://c", {"backoff": -0.1}, "backoff", id="negative-backoff"),
    ],
)
def test_bad_configuration_raises(url: str, options: dict[str, Any], message: str) -> None:
    """A bad url or setting raises ValueError at construction, naming it."""
    with pytest.raises(ValueError, match=message):
        PushClient(url, **options)


def test_bad_url_from_env_raises() -> None:
    """A malformed OTELKIT_COLLECTOR_URL raises at construction, not on the first push."""
    with pytest.raises(ValueError, match="collector url"):
        PushClient.from_env(environ={"OTELKIT_COLLECTOR_URL": "collector:9090"})
