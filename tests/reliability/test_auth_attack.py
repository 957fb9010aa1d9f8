"""Item 7: writes without the right bearer token, against a real token-protected collector.

Every attempt carries a body that would change the state if it got through; all of them get
401, and afterwards the collector shows exactly what it showed before, except the
``unauthorized`` self-metric, which counts each attempt once.
"""

from __future__ import annotations

import base64
import random
import secrets
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from otelkit.instruments import COLLECTOR_REPORTS
from tests.conftest import recorded_samples
from tests.e2e.servers import running_collector
from tests.reliability.conftest import SCALE, Scale, first, parse_text, record_figure

Headers = list[tuple[bytes, bytes]]


def bad_credentials(token: str, rng: random.Random) -> list[tuple[str, Callable[[], Headers]]]:
    """Named ways of presenting no, a wrong or a malformed token (never the right one)."""
    raw = token.encode()

    def auth(value: bytes) -> Headers:
        return [(b"authorization", value)]

    def flipped() -> Headers:
        position = rng.randrange(len(raw))
        other = bytes([raw[position] ^ 0x01])
        return auth(b"Bearer " + raw[:position] + other + raw[position + 1 :])

    def random_printable() -> Headers:
        # At least one character: a header value cannot end in whitespace ("Bearer ").
        length = rng.randrange(1, 120)
        return auth(b"Bearer " + bytes(rng.randrange(0x21, 0x7F) for _ in range(length)))

    return [
        ("none", list),
        ("empty", lambda: auth(b"")),
        ("scheme-only", lambda: auth(b"Bearer")),
        ("same-length-random", lambda: auth(b"Bearer " + secrets.token_urlsafe(24).encode())),
        ("one-bit-flipped", flipped),
        ("prefix", lambda: auth(b"Bearer " + raw[:-1])),
        ("suffix", lambda: auth(b"Bearer " + raw + b"x")),
        ("doubled", lambda: auth(b"Bearer " + raw + raw)),
        ("no-scheme", lambda: auth(raw)),
        ("basic", lambda: auth(b"Basic " + base64.b64encode(b"otelkit:" + raw))),
        ("token-scheme", lambda: auth(b"Token " + raw)),
        ("two-spaces", lambda: auth(b"Bearer  " + raw)),
        ("tab", lambda: auth(b"Bearer\t" + raw)),
        ("latin-1", lambda: auth(b"Bearer " + raw[:-1] + b"\xe9")),
        ("8KiB", lambda: auth(b"Bearer " + b"A" * 8192)),
        ("random-printable", random_printable),
        ("wrong-then-right", lambda: auth(b"Bearer wrong") + auth(b"Bearer " + raw)),
    ]


def write_requests(i: int) -> tuple[str, str, str, dict[str, Any] | None]:
    """Attempt ``i``: (kind, method, path, body), each of which would change the state."""
    report = {"method": "POST", "route": f"/attack/{i}", "status": 201, "duration": 0.5}
    writes: list[tuple[str, str, str, dict[str, Any] | None]] = [
        ("http", "POST", "/api/metrics/http", report),
        ("http", "POST", "/api/metrics/http/batch", {"reports": [report, report]}),
        ("health", "POST", f"/api/health/attacker-{i}", {"status": "healthy"}),
        ("health", "POST", "/api/health/auth", {"status": "down"}),
        ("health", "DELETE", "/api/health/auth", None),
        ("users", "POST", "/api/metrics/users", {"count": 10_000 + i}),
        ("users", "POST", "/api/metrics/users", {"count": 1, "service": "auth"}),
    ]
    return writes[i % len(writes)]


def observable_state(metrics_text: str, view: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(recorded series, JSON view without ages, self-metrics) of one moment."""
    reports_name = COLLECTOR_REPORTS.prometheus_name
    reports = {
        tuple(sorted(labels)): value
        for (name, labels), value in parse_text(metrics_text).items()
        if name == reports_name
    }
    timeless = {
        **{key: value for key, value in view.items() if key != "reports"},
        "services": [
            {key: value for key, value in service.items() if key != "age_seconds"}
            for service in view["services"]
        ],
    }
    return recorded_samples(metrics_text), timeless, reports


def snapshot(http: httpx.Client) -> tuple[Any, Any, Any]:
    metrics = http.get("/metrics")
    view = http.get("/api/metrics")
    assert metrics.status_code == view.status_code == 200
    return observable_state(metrics.text, view.json())


def attack(url: str, token: str, attempts: int) -> dict[str, Any]:
    """Seed a state with the right token, then send ``attempts`` unauthorized writes."""
    rng = random.Random(7)
    credentials = bad_credentials(token, rng)
    good = {"authorization": f"Bearer {token}"}
    statuses: Counter[int] = Counter()
    per_kind: Counter[str] = Counter()
    leaks: list[str] = []
    with httpx.Client(base_url=url, timeout=30) as http:
        seed = {"method": "GET", "route": "/api/courses", "status": 200, "duration": 0.1}
        for path, body in [
            ("/api/metrics/http", seed),
            ("/api/health/auth", {"status": "healthy"}),
            ("/api/metrics/users", {"count": 3, "service": "auth"}),
            ("/api/metrics/users", {"count": 7}),
        ]:
            assert http.post(path, json=body, headers=good).status_code == 200
        before = snapshot(http)
        started = time.monotonic()
        for i in range(attempts):
            kind, method, path, body = write_requests(i)
            name, make_headers = credentials[i % len(credentials)]
            headers = [(b"content-type", b"application/json"), *make_headers()]
            response = http.request(method, path, json=body, headers=headers)
            statuses[response.status_code] += 1
            per_kind[kind] += 1
            challenged = response.headers.get("www-authenticate", "").startswith("Bearer")
            if response.status_code != 401 or not challenged:
                leaks.append(f"{name} {method} {path}: {response.status_code} {response.text}")
        seconds = time.monotonic() - started
        after = snapshot(http)
    return {
        "before": before,
        "after": after,
        "statuses": statuses,
        "per_kind": per_kind,
        "leaks": leaks,
        "seconds": seconds,
        "variants": len(credentials),
    }


@pytest.mark.timeout(SCALE.test_timeout)
def test_unauthorized_writes_change_nothing(tmp_path: Path, scale: Scale) -> None:
    """Every write without the right token is a 401 with a challenge, and changes nothing."""
    token = secrets.token_urlsafe(24)
    with running_collector(tmp_path, {"OTELKIT_COLLECTOR_TOKEN": token}) as collector:
        result = attack(collector.url, token, scale.auth_attempts)

    before_series, before_view, before_reports = result["before"]
    after_series, after_view, after_reports = result["after"]
    expected_reports = dict(before_reports)
    for kind, count in result["per_kind"].items():
        key = (("kind", kind), ("outcome", "unauthorized"))
        expected_reports[key] = expected_reports.get(key, 0.0) + count
    unchanged = after_series == before_series and after_view == before_view
    refused = result["statuses"][401]
    record_figure(
        "7 auth",
        f"{refused:,}/{scale.auth_attempts:,} unauthorized writes got 401 "
        f"({dict(result['statuses'])}, {result['variants']} credential shapes x 5 write "
        f"endpoints, {result['seconds']:.1f} s); state unchanged: {unchanged}; "
        f"unauthorized counter +{sum(result['per_kind'].values()):,}",
        "100 % 401; state identical except reports_total{outcome=unauthorized}",
        not result["leaks"] and unchanged and after_reports == expected_reports,
    )
    assert not result["leaks"], first(result["leaks"])
    assert after_series == before_series
    assert after_view == before_view
    assert after_reports == expected_reports
