"""Every collector endpoint does what the README's push API and rules say, seen through both read
views."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from otelkit_collector.app import create_app
from otelkit_collector.settings import CollectorSettings
from tests.conftest import CollectorProbe, FakeClock, error_message, open_client

pytestmark = pytest.mark.anyio

COURSES = {"method": "GET", "route": "/api/courses", "status": 200, "duration": 0.045}


def labels(**values: str) -> frozenset[tuple[str, str]]:
    return frozenset(values.items())


async def test_http_report_is_one_observation(
    client: httpx.AsyncClient, probe: CollectorProbe
) -> None:
    """One HTTP report adds count 1, its duration to the sum, and lands in the right buckets."""
    response = await client.post("/api/metrics/http", json={**COURSES, "service": "courses"})

    assert response.status_code == 200
    assert response.json() == {"accepted": 1, "overflowed": 0}
    series = await probe.series()
    key = labels(method="GET", route="/api/courses", status="200", service="courses")
    assert series[("http_request_duration_seconds_count", key)] == 1
    assert series[("http_request_duration_seconds_sum", key)] == pytest.approx(0.045)
    assert series[("http_request_duration_seconds_bucket", key | {("le", "0.025")})] == 0
    assert series[("http_request_duration_seconds_bucket", key | {("le", "0.05")})] == 1
    assert series[("http_request_duration_seconds_bucket", key | {("le", "+Inf")})] == 1


async def test_http_report_without_service_has_no_service_label(
    client: httpx.AsyncClient, probe: CollectorProbe
) -> None:
    """A report naming no service is recorded with exactly method, route and status."""
    assert (await client.post("/api/metrics/http", json=COURSES)).status_code == 200

    series = await probe.series()
    key = labels(method="GET", route="/api/courses", status="200")
    assert series[("http_request_duration_seconds_count", key)] == 1
    assert (await probe.view())["http"][0]["service"] is None


async def test_duration_on_a_bucket_boundary_counts_in_that_bucket(
    client: httpx.AsyncClient, probe: CollectorProbe
) -> None:
    """A duration equal to a boundary is counted in that boundary's bucket (le is inclusive)."""
    report = {**COURSES, "duration": 0.1}
    assert (await client.post("/api/metrics/http", json=report)).status_code == 200

    series = await probe.series()
    key = labels(method="GET", route="/api/courses", status="200")
    assert series[("http_request_duration_seconds_bucket", key | {("le", "0.075")})] == 0
    assert series[("http_request_duration_seconds_bucket", key | {("le", "0.1")})] == 1


@pytest.mark.parametrize(
    "duration", [pytest.param(0, id="zero"), pytest.param(86_400, id="one-day")]
)
async def test_duration_limits_are_inclusive(
    client: httpx.AsyncClient, probe: CollectorProbe, duration: float
) -> None:
    """Durations of exactly 0 and exactly 86400 seconds are accepted."""
    report = {**COURSES, "duration": duration}

    assert (await client.post("/api/metrics/http", json=report)).status_code == 200
    key = labels(method="GET", route="/api/courses", status="200")
    assert (await probe.series())[("http_request_duration_seconds_sum", key)] == duration


@pytest.mark.parametrize(
    "status", [pytest.param(100, id="lowest"), pytest.param(599, id="highest")]
)
async def test_status_limits_are_inclusive(
    client: httpx.AsyncClient, probe: CollectorProbe, status: int
) -> None:
    """Status codes 100 and 599 are accepted and recorded as their decimal text."""
    assert (await client.post("/api/metrics/http", json={**COURSES, "status": status})).is_success

    key = labels(method="GET", route="/api/courses", status=str(status))
    assert (await probe.series())[("http_request_duration_seconds_count", key)] == 1


async def test_batch_records_every_report(client: httpx.AsyncClient, probe: CollectorProbe) -> None:
    """A valid batch records each report, as many single reports would."""
    reports = [
        {**COURSES, "duration": 0.01},
        {**COURSES, "duration": 0.02},
        {**COURSES, "status": 500, "duration": 1.5},
    ]

    response = await client.post("/api/metrics/http/batch", json={"reports": reports})

    assert response.status_code == 200
    assert response.json() == {"accepted": 3, "overflowed": 0}
    series = await probe.series()
    ok = labels(method="GET", route="/api/courses", status="200")
    failed = labels(method="GET", route="/api/courses", status="500")
    assert series[("http_request_duration_seconds_count", ok)] == 2
    assert series[("http_request_duration_seconds_sum", ok)] == pytest.approx(0.03)
    assert series[("http_request_duration_seconds_count", failed)] == 1
    assert (await probe.snapshot()).count("http", "accepted") == 3


async def test_batch_of_1000_is_accepted(client: httpx.AsyncClient, probe: CollectorProbe) -> None:
    """The largest allowed batch (1000 reports) is recorded in full."""
    response = await client.post("/api/metrics/http/batch", json={"reports": [COURSES] * 1000})

    assert response.status_code == 200
    key = labels(method="GET", route="/api/courses", status="200")
    assert (await probe.series())[("http_request_duration_seconds_count", key)] == 1000


async def test_batch_with_bad_report_records_nothing(
    client: httpx.AsyncClient, probe: CollectorProbe
) -> None:
    """One bad report at index 3 rejects the whole batch with an error naming index 3."""
    assert (await client.post("/api/metrics/http", json=COURSES)).status_code == 200
    before = await probe.snapshot()
    reports = [COURSES, COURSES, COURSES, {**COURSES, "duration": -1}, COURSES]

    response = await client.post("/api/metrics/http/batch", json={"reports": reports})

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "reports", 3, "duration"]
    assert error_message(response).startswith("body.reports.3.duration:")
    after = await probe.snapshot()
    assert after.state == before.state
    assert after.count("http", "rejected") == 5
    assert after.count("http", "accepted") == 1


@pytest.mark.parametrize(
    ("reported", "expected"),
    [
        pytest.param("get", "GET", id="lower"),
        pytest.param("GET", "GET", id="upper"),
        pytest.param("Post", "POST", id="mixed-case"),
        pytest.param("options", "OPTIONS", id="options"),
        pytest.param("PURGE", "_OTHER", id="purge"),
        pytest.param("propfind", "_OTHER", id="webdav"),
    ],
)
async def test_method_is_normalized(
    client: httpx.AsyncClient, probe: CollectorProbe, reported: str, expected: str
) -> None:
    """Standard methods are upper-cased; anything else is recorded as _OTHER."""
    response = await client.post("/api/metrics/http", json={**COURSES, "method": reported})

    assert response.status_code == 200
    key = labels(method=expected, route="/api/courses", status="200")
    assert (await probe.series())[("http_request_duration_seconds_count", key)] == 1


async def test_method_that_is_no_token_is_rejected(
    client: httpx.AsyncClient, probe: CollectorProbe
) -> None:
    """A method with a digit ("G3T") is refused with 422 naming the method field."""
    response = await client.post("/api/metrics/http", json={**COURSES, "method": "G3T"})

    assert response.status_code == 422
    assert "body.method" in error_message(response)
    assert (await probe.series()) == {}


@pytest.mark.parametrize(
    ("status", "value"),
    [
        pytest.param("healthy", 1, id="healthy"),
        pytest.param("HEALTHY", 1, id="upper-healthy"),
        pytest.param("Healthy", 1, id="title-healthy"),
        pytest.param("degraded", 0, id="degraded"),
        pytest.param("UNHEALTHY", 0, id="upper-unhealthy"),
        pytest.param("down", 0, id="down"),
        pytest.param("DoWn", 0, id="mixed-down"),
    ],
)
async def test_health_status_reads_one_only_when_healthy(
    client: httpx.AsyncClient, probe: CollectorProbe, clock: FakeClock, status: str, value: int
) -> None:
    """Any case of the four statuses is accepted; only healthy reads 1."""
    response = await client.post("/api/health/auth", json={"status": status})

    assert response.status_code == 200
    assert response.json() == {"accepted": 1, "overflowed": 0}
    series = await probe.series()
    assert series[("service_health_status", labels(service="auth"))] == value
    assert series[("service_health_last_report_timestamp_seconds", labels(service="auth"))] == (
        clock.now
    )
    [service] = (await probe.view())["services"]
    assert service == {
        "service": "auth",
        "status": status.lower(),
        "value": value,
        "last_report": clock.now,
        "age_seconds": 0.0,
    }


async def test_health_report_replaces_the_previous_one(
    client: httpx.AsyncClient, probe: CollectorProbe, clock: FakeClock
) -> None:
    """Health is a last value: a later report overrides the earlier one and its timestamp."""
    assert (await client.post("/api/health/auth", json={"status": "healthy"})).is_success
    clock.advance(10)
    assert (await client.post("/api/health/auth", json={"status": "down"})).is_success

    series = await probe.series()
    assert series[("service_health_status", labels(service="auth"))] == 0
    assert series[("service_health_last_report_timestamp_seconds", labels(service="auth"))] == (
        clock.now
    )


async def test_forget_removes_every_series_of_the_service(
    client: httpx.AsyncClient, probe: CollectorProbe
) -> None:
    """DELETE drops the service's health, last-report and users series from both read views."""
    for service in ("auth", "courses"):
        assert (await client.post(f"/api/health/{service}", json={"status": "healthy"})).is_success
        body = {"count": 5, "service": service}
        assert (await client.post("/api/metrics/users", json=body)).is_success
    assert (await client.post("/api/metrics/users", json={"count": 9})).is_success
    before = await probe.series()

    response = await client.delete("/api/health/auth")

    assert response.status_code == 200
    assert response.json() == {"service": "auth", "forgotten": True}
    after = await probe.series()
    gone = {key for key in before if ("service", "auth") in key[1]}
    assert len(gone) == 3
    assert after == {key: value for key, value in before.items() if key not in gone}
    view = await probe.view()
    assert [s["service"] for s in view["services"]] == ["courses"]
    assert sorted(u["service"] or "" for u in view["active_users"]) == ["", "courses"]
    assert (await probe.snapshot()).count("health", "accepted") == 2


async def test_forget_unknown_service_changes_nothing(
    client: httpx.AsyncClient, probe: CollectorProbe
) -> None:
    """DELETE of a service never seen answers forgotten=false and leaves everything as it was."""
    assert (await client.post("/api/health/auth", json={"status": "healthy"})).is_success
    before = await probe.snapshot()

    response = await client.delete("/api/health/nobody")

    assert response.status_code == 200
    assert response.json() == {"service": "nobody", "forgotten": False}
    assert (await probe.snapshot()).state == before.state


async def test_forgotten_service_can_report_again(
    client: httpx.AsyncClient, probe: CollectorProbe
) -> None:
    """A forgotten service that reports again is shown again, under its own label."""
    assert (await client.post("/api/health/auth", json={"status": "healthy"})).is_success
    await probe.series()
    assert (await client.delete("/api/health/auth")).json()["forgotten"] is True
    await probe.series()

    assert (await client.post("/api/health/auth", json={"status": "degraded"})).is_success

    assert await probe.series() == {
        ("service_health_status", labels(service="auth")): 0,
        ("service_health_last_report_timestamp_seconds", labels(service="auth")): 1_700_000_000,
    }


async def test_users_with_and_without_service(
    client: httpx.AsyncClient, probe: CollectorProbe, clock: FakeClock
) -> None:
    """Users reports set one gauge per service, plus one without a service label."""
    assert (await client.post("/api/metrics/users", json={"count": 127})).status_code == 200
    assert (await client.post("/api/metrics/users", json={"count": 4, "service": "a"})).is_success
    assert (await client.post("/api/metrics/users", json={"count": 0, "service": "b"})).is_success
    assert (await client.post("/api/metrics/users", json={"count": 5, "service": "a"})).is_success

    series = await probe.series()
    assert series[("active_users_total", frozenset())] == 127
    assert series[("active_users_total", labels(service="a"))] == 5
    assert series[("active_users_total", labels(service="b"))] == 0
    view = await probe.view()
    assert sorted(view["active_users"], key=lambda u: u["service"] or "") == [
        {"service": None, "count": 127, "last_report": clock.now},
        {"service": "a", "count": 5, "last_report": clock.now},
        {"service": "b", "count": 0, "last_report": clock.now},
    ]
    assert (await probe.snapshot()).count("users", "accepted") == 4


async def test_users_count_upper_limit_is_accepted(
    client: httpx.AsyncClient, probe: CollectorProbe
) -> None:
    """The largest allowed user count (10**12) is recorded exactly."""
    assert (await client.post("/api/metrics/users", json={"count": 10**12})).status_code == 200

    assert (await probe.series())[("active_users_total", frozenset())] == 10**12


async def test_json_view_matches_exposition(
    client: httpx.AsyncClient, probe: CollectorProbe, clock: FakeClock
) -> None:
    """/api/metrics shows the same counts, sums, buckets, health, users and self-metrics."""
    reports = [
        {**COURSES, "duration": 0.003, "service": "courses"},
        {**COURSES, "duration": 0.3, "service": "courses"},
        {**COURSES, "duration": 12.0, "service": "courses"},
        {"method": "POST", "route": "/login", "status": 401, "duration": 0.07},
    ]
    assert (await client.post("/api/metrics/http/batch", json={"reports": reports})).is_success
    assert (await client.post("/api/health/courses", json={"status": "healthy"})).is_success
    clock.advance(5)
    assert (await client.post("/api/health/auth", json={"status": "down"})).is_success
    assert (await client.post("/api/metrics/users", json={"count": 7})).is_success
    assert (
        await client.post("/api/metrics/http", json={**COURSES, "status": 99})
    ).status_code == 422

    exposition = (await client.get("/metrics")).text
    view = (await client.get("/api/metrics")).json()

    parsed = {
        (sample.name, frozenset((k, v) for k, v in sample.labels.items() if v)): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }
    assert len(view["http"]) == 2
    for series in view["http"]:
        key = {"method": series["method"], "route": series["route"], "status": series["status"]}
        if series["service"] is not None:
            key["service"] = series["service"]
        base = frozenset(key.items())
        assert series["count"] == parsed[("http_request_duration_seconds_count", base)]
        assert series["sum"] == pytest.approx(parsed[("http_request_duration_seconds_sum", base)])
        assert series["mean"] == pytest.approx(series["sum"] / series["count"])
        assert series["buckets"] == {
            le: parsed[("http_request_duration_seconds_bucket", base | {("le", le)})]
            for le in series["buckets"]
        }
        assert len(series["buckets"]) == 15  # README's 14 buckets, then +Inf
    courses = next(s for s in view["http"] if s["service"] == "courses")
    assert courses["count"] == 3
    assert courses["sum"] == pytest.approx(12.303)
    assert courses["buckets"]["0.005"] == 1
    assert courses["buckets"]["0.5"] == 2
    assert courses["buckets"]["10.0"] == 2
    assert courses["buckets"]["+Inf"] == 3

    assert sorted(view["services"], key=lambda s: s["service"]) == [
        {
            "service": "auth",
            "status": "down",
            "value": 0,
            "last_report": clock.now,
            "age_seconds": 0.0,
        },
        {
            "service": "courses",
            "status": "healthy",
            "value": 1,
            "last_report": clock.now - 5,
            "age_seconds": 5.0,
        },
    ]
    for service in view["services"]:
        key = frozenset({("service", service["service"])})
        assert parsed[("service_health_status", key)] == service["value"]
        assert (
            parsed[("service_health_last_report_timestamp_seconds", key)]
            == (service["last_report"])
        )
    assert view["active_users"] == [{"service": None, "count": 7, "last_report": clock.now}]
    assert parsed[("active_users_total", frozenset())] == 7
    assert view["health_ttl_seconds"] == 90.0

    counts = {(r["kind"], r["outcome"]): r["count"] for r in view["reports"]}
    assert counts == {
        ("http", "accepted"): 4,
        ("http", "rejected"): 1,
        ("health", "accepted"): 2,
        ("users", "accepted"): 1,
    }
    for (kind, outcome), count in counts.items():
        key = frozenset({("kind", kind), ("outcome", outcome)})
        assert parsed[("otelkit_collector_reports_total", key)] == count


async def test_json_view_of_a_fresh_collector_is_empty(client: httpx.AsyncClient) -> None:
    """A collector that has received nothing shows no services, users, series or reports."""
    response = await client.get("/api/metrics")

    assert response.status_code == 200
    assert response.json() == {
        "services": [],
        "active_users": [],
        "http": [],
        "reports": [],
        "health_ttl_seconds": 90.0,
    }


async def test_healthz(client: httpx.AsyncClient) -> None:
    """GET /healthz answers 200 {"status": "ok"}."""
    response = await client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_metrics_is_plain_text_by_default(client: httpx.AsyncClient) -> None:
    """Without an OpenMetrics Accept header, /metrics is Prometheus text format 0.0.4."""
    assert (await client.post("/api/metrics/http", json=COURSES)).is_success

    for headers in ({}, {"accept": "text/plain"}, {"accept": "*/*"}):
        response = await client.get("/metrics", headers=headers)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert "# EOF" not in response.text
        names = {family.name for family in text_string_to_metric_families(response.text)}
        assert "http_request_duration_seconds" in names


async def test_metrics_is_openmetrics_when_asked(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """With an OpenMetrics Accept header, /metrics is OpenMetrics that its parser accepts."""
    assert (await client.post("/api/metrics/http", json=COURSES)).is_success
    assert (await client.post("/api/health/auth", json={"status": "healthy"})).is_success
    assert (await client.post("/api/metrics/users", json={"count": 3})).is_success

    response = await client.get(
        "/metrics", headers={"accept": "application/openmetrics-text; version=1.0.0"}
    )

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")
    values = {
        (sample.name, frozenset((k, v) for k, v in sample.labels.items() if v)): sample.value
        for family in openmetrics_families(response.text)
        for sample in family.samples
    }
    key = labels(method="GET", route="/api/courses", status="200")
    assert values[("http_request_duration_seconds_count", key)] == 1
    assert values[("service_health_status", labels(service="auth"))] == 1
    assert values[("active_users_total", frozenset())] == 3
    assert values[("otelkit_collector_reports_total", labels(kind="http", outcome="accepted"))] == 1


async def test_first_finite_bucket_is_five_milliseconds(client: httpx.AsyncClient) -> None:
    """The exposition lists the catalogue's second-based buckets in order, starting at 0.005."""
    assert (await client.post("/api/metrics/http", json=COURSES)).is_success

    response = await client.get("/metrics")

    [family] = [
        f
        for f in text_string_to_metric_families(response.text)
        if f.name == "http_request_duration_seconds"
    ]
    assert family.type == "histogram"
    bounds = [s.labels["le"] for s in family.samples if s.name.endswith("_bucket")]
    assert bounds[0] == "0.005"
    assert [float(b) for b in bounds[:-1]] == [
        0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10
    ]  # fmt: skip  # README's catalogue, literally
    assert bounds[-1] == "+Inf"


async def test_exposition_has_stable_label_sets(client: httpx.AsyncClient) -> None:
    """No otel_scope_* labels and no target_info: only the catalogue's labels are exposed."""
    assert (await client.post("/api/metrics/http", json=COURSES)).is_success
    assert (await client.post("/api/health/auth", json={"status": "healthy"})).is_success

    response = await client.get("/metrics")

    families = list(text_string_to_metric_families(response.text))
    assert "target_info" not in {family.name for family in families}
    label_names = {name for family in families for s in family.samples for name in s.labels}
    assert label_names <= {"method", "route", "status", "service", "le", "kind", "outcome"}


async def test_default_app_exposes_process_metrics(
    settings: CollectorSettings, clock: FakeClock
) -> None:
    """A collector built with its own registry also serves process_* and python_* families."""
    app = create_app(settings, clock=clock)

    async with open_client(app) as http:
        response = await http.get("/metrics")

    names = {family.name for family in text_string_to_metric_families(response.text)}
    assert "process_cpu_seconds" in names
    assert "process_resident_memory_bytes" in names
    assert "python_info" in names
    assert any(name.startswith("python_gc_") for name in names)


async def test_unknown_path_and_wrong_method(client: httpx.AsyncClient) -> None:
    """Unknown paths get 404 and read-only paths refuse writes with 405."""
    assert (await client.get("/nope")).status_code == 404
    assert (await client.post("/metrics")).status_code == 405
    assert (await client.get("/api/metrics/http")).status_code == 405
    assert (await client.put("/api/health/auth", json={"status": "healthy"})).status_code == 405


async def test_openapi_documents_every_endpoint(client: httpx.AsyncClient) -> None:
    """The OpenAPI schema lists every endpoint of the HTTP API table."""
    paths = (await client.get("/openapi.json")).json()["paths"]

    assert set(paths) >= {
        "/metrics",
        "/api/metrics",
        "/api/health/{service}",
        "/api/metrics/http",
        "/api/metrics/http/batch",
        "/api/metrics/users",
        "/healthz",
    }
    assert set(paths["/api/health/{service}"]) == {"post", "delete"}


@pytest.mark.parametrize(
    ("path", "service"),
    [
        pytest.param("/api/health/a%2Fb", "a/b", id="encoded-slash"),
        pytest.param("/api/health/team/api", "team/api", id="plain-slash"),
        pytest.param("/api/health/x%2F", "x/", id="trailing-encoded-slash"),
    ],
)
async def test_a_service_name_with_a_slash_reports_and_forgets_its_health(
    client: httpx.AsyncClient, path: str, service: str
) -> None:
    """The push client sends a name holding "/" percent-encoded; the server decodes it before
    routing, and the health is recorded under the name as sent, then forgotten by it."""
    response = await client.post(path, json={"status": "degraded"})
    assert response.status_code == 200, response.text
    services = (await client.get("/api/metrics")).json()["services"]
    assert [(s["service"], s["status"]) for s in services] == [(service, "degraded")]
    forgotten = await client.delete(path)
    assert forgotten.json() == {"service": service, "forgotten": True}
