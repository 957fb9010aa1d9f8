"""The shipped alert rules, evaluated by a real Prometheus against a real collector: each
alert goes pending, then firing, on the failure it is for, and stays quiet otherwise."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.servers import poll
from tests.stack.conftest import (
    ALERT_FOR,
    COLLECTOR_JOB,
    DEMO_SERVICE,
    AlertStack,
    DemoStack,
    Heartbeats,
)
from tests.stack.prometheus_api import PrometheusAPI, host_port, sample_value
from tests.stack.stack_files import alert_rules, write_rules_with_for

pytestmark = pytest.mark.prometheus

ALERT_TIMEOUT_SECONDS = 20.0
POLL_SECONDS = 0.1


def alerts_named(api: PrometheusAPI, alertname: str) -> list[dict[str, Any]]:
    """The pending or firing alerts named ``alertname``."""
    return [alert for alert in api.alerts() if alert["labels"]["alertname"] == alertname]


def watch_alert(
    api: PrometheusAPI,
    alertname: str,
    labels: dict[str, str],
    *,
    must_not_fire_for: dict[str, str] | None = None,
) -> tuple[list[str], dict[str, Any]]:
    """Poll until the alert with ``labels`` fires; return the states seen, in order, and the
    firing alert. Fails if an alert with ``must_not_fire_for`` labels ever shows up."""
    states: list[str] = []
    firing: list[dict[str, Any]] = []

    def fired() -> bool | None:
        for alert in alerts_named(api, alertname):
            if (
                must_not_fire_for is not None
                and must_not_fire_for.items() <= alert["labels"].items()
            ):
                pytest.fail(f"{alertname} went {alert['state']} for {must_not_fire_for}: {alert}")
            if labels.items() <= alert["labels"].items():
                if not states or states[-1] != alert["state"]:
                    states.append(alert["state"])
                if alert["state"] == "firing":
                    firing.append(alert)
                    return True
        return None

    poll(
        fired,
        timeout=ALERT_TIMEOUT_SECONDS,
        interval=POLL_SECONDS,
        what=f"{alertname} {labels} firing",
        diagnostics=lambda: f"states seen: {states}",
    )
    return states, firing[0]


def test_rewritten_rules_differ_from_the_shipped_ones_only_in_for(tmp_path: Path) -> None:
    """The e2e tests evaluate the shipped expressions, labels and annotations: the copy
    they load changes nothing but ``for``."""
    copy = write_rules_with_for(tmp_path / "alerts.yml", ALERT_FOR)
    shipped, rewritten = alert_rules(), alert_rules(copy)
    assert [rule.pop("for") for rule in rewritten] == [
        ALERT_FOR.get(rule["alert"], rule["for"]) for rule in shipped
    ]
    for rule in shipped:
        del rule["for"]
    assert rewritten == shipped


def test_service_down_pends_fires_and_clears(
    alert_stack: AlertStack, heartbeats: Heartbeats
) -> None:
    """A service that stops reporting turns ServiceDown pending, then firing, once the
    collector's TTL has passed; its healthy neighbour never alerts; reporting again clears it."""
    api = alert_stack.prometheus

    def both_healthy() -> bool | None:
        health = {
            sample["metric"]["service"]: sample_value(sample)
            for sample in api.query("service_health_status")
        }
        return True if health == {"payments": 1.0, "billing": 1.0} else None

    poll(both_healthy, timeout=ALERT_TIMEOUT_SECONDS, what="payments and billing healthy")
    assert alerts_named(api, "ServiceDown") == []

    heartbeats.pause("billing")
    states, alert = watch_alert(
        api, "ServiceDown", {"service": "billing"}, must_not_fire_for={"service": "payments"}
    )
    assert states == ["pending", "firing"]
    assert alert["labels"] == {
        "alertname": "ServiceDown",
        "service": "billing",
        "severity": "critical",
    }
    assert alert["annotations"]["summary"] == "Service billing is down"

    heartbeats.resume("billing")

    def cleared() -> bool | None:
        services = {alert["labels"]["service"] for alert in alerts_named(api, "ServiceDown")}
        assert "payments" not in services
        return True if not services else None

    poll(cleared, timeout=ALERT_TIMEOUT_SECONDS, interval=POLL_SECONDS, what="ServiceDown clear")
    assert heartbeats.failures == []


def test_collector_down_pends_and_fires(alert_stack: AlertStack) -> None:
    """A collector Prometheus can no longer scrape turns CollectorDown pending, then firing."""
    api = alert_stack.prometheus
    assert alerts_named(api, "CollectorDown") == []
    stopped_at = time.monotonic()
    alert_stack.doomed_collector.stop()

    instance = host_port(alert_stack.doomed_collector.url)
    states, alert = watch_alert(api, "CollectorDown", {"instance": instance})
    assert states == ["pending", "firing"]
    assert alert["labels"] == {
        "alertname": "CollectorDown",
        "job": COLLECTOR_JOB,
        "instance": instance,
        "severity": "critical",
    }
    print(f"\nCollectorDown fired {time.monotonic() - stopped_at:.1f}s after the collector stopped")


def test_demo_traffic_fires_error_ratio_and_latency_alerts(demo_stack: DemoStack) -> None:
    """On demo traffic (30% of /api/flaky answers 500; a quarter of /api/slow takes 1.2 s)
    HighErrorRate fires for /api/flaky alone and HighLatencyP95 for /api/slow alone, while
    ServiceDown and CollectorDown stay quiet for the healthy service and collector."""
    api = demo_stack.prometheus
    expected = {
        ("HighErrorRate", DEMO_SERVICE, "/api/flaky"),
        ("HighLatencyP95", DEMO_SERVICE, "/api/slow"),
    }
    seen: set[tuple[str, str, str]] = set()

    def both_firing() -> bool | None:
        alerts = api.alerts()
        quiet = [a for a in alerts if a["labels"]["alertname"] in ("ServiceDown", "CollectorDown")]
        assert quiet == []
        seen.clear()
        seen.update(
            (a["labels"]["alertname"], a["labels"]["service"], a["labels"]["route"])
            for a in alerts
            if a["state"] == "firing" and "route" in a["labels"]
        )
        return True if expected <= seen else None

    poll(
        both_firing,
        timeout=ALERT_TIMEOUT_SECONDS,
        interval=POLL_SECONDS,
        what=f"{sorted(expected)} firing",
        diagnostics=lambda: f"firing: {sorted(seen)}",
    )
    assert seen == expected
