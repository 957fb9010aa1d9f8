"""promtool accepts the shipped Prometheus config and rules and passes the rule unit tests;
every rule is complete and unit-tested both ways; every name a rule or a dashboard uses is
in the metric catalogue."""

from __future__ import annotations

import subprocess

import pytest

from tests.e2e.servers import REPO_ROOT, clean_env, require_binary
from tests.stack.conftest import COLLECTOR_JOB, SERVICES_JOB
from tests.stack.promql import (
    catalogue_label_names,
    catalogue_metric_names,
    label_names,
    label_values_query,
    metric_names,
)
from tests.stack.stack_files import (
    ALERT_RULES,
    ALERT_TESTS,
    PROMETHEUS_CONFIG,
    alert_rules,
    dashboards,
    load_yaml,
    panel_queries,
)

pytestmark = pytest.mark.prometheus

PROMTOOL_TIMEOUT_SECONDS = 60


def promtool(*args: str) -> str:
    """Run ``promtool args`` from the repository root; fail with its output unless it exits 0."""
    binary = require_binary("promtool")
    result = subprocess.run(
        [binary, *args],
        cwd=REPO_ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=PROMTOOL_TIMEOUT_SECONDS,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, (
        f"promtool {' '.join(args)} exited {result.returncode}:\n{output}"
    )
    return output


def test_prometheus_config_is_valid_without_warnings() -> None:
    """``promtool check config`` accepts prometheus.yml and its rule files, without warnings."""
    output = promtool("check", "config", str(PROMETHEUS_CONFIG.relative_to(REPO_ROOT)))
    assert "SUCCESS" in output
    assert [line for line in output.splitlines() if "WARNING" in line] == []


def test_alert_rules_are_valid() -> None:
    """``promtool check rules`` accepts alerts.yml."""
    output = promtool("check", "rules", str(ALERT_RULES.relative_to(REPO_ROOT)))
    assert f"SUCCESS: {len(alert_rules())} rules found" in output


def test_alert_rule_unit_tests_pass() -> None:
    """``promtool test rules`` passes alerts.test.yml (HighErrorRate and HighLatencyP95 fire
    there on synthetic series; all four alerts also fire on real ones in test_alerts_e2e)."""
    output = promtool("test", "rules", str(ALERT_TESTS.relative_to(REPO_ROOT)))
    assert "SUCCESS" in output


def test_config_loads_the_alert_rules_and_scrapes_the_stack_jobs() -> None:
    """prometheus.yml loads alerts.yml and defines the jobs the rules and the stack tests
    name."""
    config = load_yaml(PROMETHEUS_CONFIG)
    assert config["rule_files"] == [ALERT_RULES.name]
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert {COLLECTOR_JOB, SERVICES_JOB} <= jobs
    assert config["global"]["scrape_interval"] == "15s"


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_alert_has_for_severity_summary_and_description(rule: dict[str, object]) -> None:
    """Every alert waits (``for``), says how bad it is and explains itself."""
    assert rule.get("for"), rule
    labels = rule.get("labels")
    assert isinstance(labels, dict)
    assert labels.get("severity") in {"critical", "warning", "info"}
    annotations = rule.get("annotations")
    assert isinstance(annotations, dict)
    assert annotations.get("summary")
    assert annotations.get("description")


@pytest.mark.parametrize("alertname", [rule["alert"] for rule in alert_rules()])
def test_alert_is_unit_tested_firing_and_quiet(alertname: str) -> None:
    """alerts.test.yml has, for every alert, a case where it must fire (with its labels and
    annotations) and one where it must not (``exp_alerts: []``)."""
    cases = [
        case
        for test in load_yaml(ALERT_TESTS)["tests"]
        for case in test.get("alert_rule_test", [])
        if case["alertname"] == alertname
    ]
    firing = [case for case in cases if case.get("exp_alerts")]
    assert firing, f"no case where {alertname} fires"
    assert all(
        alert.get("exp_labels") and alert.get("exp_annotations")
        for case in firing
        for alert in case["exp_alerts"]
    )
    assert [case for case in cases if case.get("exp_alerts", None) == []], (
        f"no case where {alertname} must stay quiet"
    )


def test_alert_tests_feed_only_catalogue_series() -> None:
    """The unit tests' input series are metrics the kit really exposes, so passing tests
    mean something."""
    series = {
        item["series"].split("{", 1)[0]
        for test in load_yaml(ALERT_TESTS)["tests"]
        for item in test["input_series"]
    }
    assert series <= catalogue_metric_names(), series - catalogue_metric_names()


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        pytest.param(
            "max by (service) (service_health_status) == 0",
            {"service_health_status"},
            id="by-clause",
        ),
        pytest.param('up{job="otelkit-collector"} == 0', {"up"}, id="matcher"),
        pytest.param(
            "histogram_quantile(0.95, sum by (service, route, le) "
            '(rate(a_bucket{s=~"$service"}[5m]))) > 1',
            {"a_bucket"},
            id="functions-and-range",
        ),
        pytest.param("time() - max by (service) (b)", {"b"}, id="call-without-arguments"),
        pytest.param(
            "a / on(service) group_left c offset 5m and bool d", {"a", "c", "d"}, id="keywords"
        ),
        pytest.param("rate(x[$__rate_interval]) > 1e3", {"x"}, id="grafana-variable-and-exponent"),
    ],
)
def test_metric_name_extractor(expr: str, expected: set[str]) -> None:
    """The extractor finds selected metric names and nothing else (labels, functions,
    keywords, numbers, variables)."""
    assert metric_names(expr) == expected


def _shipped_exprs() -> list[object]:
    exprs = [(f"alerts.yml {rule['alert']}", rule["expr"]) for rule in alert_rules()]
    exprs += [(f"{query.dashboard} {query.label}", query.expr) for query in panel_queries()]
    return [pytest.param(where, expr, id=where) for where, expr in exprs]


@pytest.mark.parametrize(("where", "expr"), _shipped_exprs())
def test_expression_uses_only_catalogue_names(where: str, expr: str) -> None:
    """Every metric a rule or panel selects is a catalogue series (or ``up``) and every label
    it filters or groups by is one those series carry."""
    names = metric_names(expr)
    assert names, f"{where}: no metric found in {expr}"
    assert names <= catalogue_metric_names(), f"{where}: {names - catalogue_metric_names()}"
    labels = label_names(expr)
    assert labels <= catalogue_label_names(), f"{where}: {labels - catalogue_label_names()}"


def test_template_variable_reads_a_catalogue_series() -> None:
    """Each dashboard's ``label_values`` variables read catalogue series and labels."""
    for dashboard in dashboards().values():
        for variable in dashboard["templating"]["list"]:
            if variable.get("type") != "query":
                continue
            metric, label = label_values_query(variable["query"]["query"])
            assert metric_names(metric) <= catalogue_metric_names()
            assert label in catalogue_label_names()
