"""Every dashboard query, with its template variables filled in as Grafana would, returns
series from a real Prometheus that scraped the collector and the example service under
demo traffic."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.e2e.servers import poll
from tests.stack.conftest import DEMO_SERVICE, DemoStack
from tests.stack.prometheus_api import Sample, finite_values
from tests.stack.promql import label_values_query
from tests.stack.stack_files import PanelQuery, dashboards, panel_queries, provisioned_datasources

pytestmark = pytest.mark.prometheus

QUERY_TIMEOUT_SECONDS = 15.0
ALL_SERVICES = ".*"
"""What Grafana substitutes for ``$service`` when "All" is selected (the variable's allValue)."""


def rate_interval() -> str:
    """``$__rate_interval`` as Grafana computes it for the provisioned datasource: at least
    four scrape intervals (``jsonData.timeInterval``), here 4 x 15 s = 60 s."""
    (datasource,) = [ds for ds in provisioned_datasources() if ds["type"] == "prometheus"]
    match = re.fullmatch(r"(\d+)s", datasource["jsonData"]["timeInterval"])
    assert match is not None, datasource["jsonData"]
    return f"{4 * int(match[1])}s"


def substitute(expr: str) -> str:
    """``expr`` with the dashboard's template variables replaced; no variable may remain."""
    for name, value in (("service", ALL_SERVICES), ("__rate_interval", rate_interval())):
        expr = expr.replace("${" + name + "}", value).replace("$" + name, value)
    assert "$" not in expr, f"unsubstituted variable in {expr}"
    return expr


@pytest.fixture(scope="module")
def series_counts() -> Iterator[dict[str, int]]:
    """Series each panel query returned; printed as a table (``pytest -s``) at the end."""
    counts: dict[str, int] = {}
    yield counts
    width = max((len(label) for label in counts), default=10)
    print(f"\n{'panel [refId]':<{width}}  series")
    for label, count in counts.items():
        print(f"{label:<{width}}  {count:>6}")


@pytest.mark.parametrize("query", panel_queries(), ids=lambda query: query.label)
def test_panel_query_returns_series(
    query: PanelQuery, demo_stack: DemoStack, series_counts: dict[str, int]
) -> None:
    """The panel's query, evaluated just after the demo traffic, returns at least one series
    with a numeric value."""
    promql = substitute(query.expr)
    samples: list[Sample] = []

    def answered() -> bool | None:
        samples[:] = demo_stack.prometheus.query(promql, at=demo_stack.settled_at)
        return True if samples else None

    poll(answered, timeout=QUERY_TIMEOUT_SECONDS, interval=0.5, what=f"series for {promql}")
    series_counts[query.label] = len(samples)
    assert finite_values(samples), f"{promql} returned only NaN: {samples}"


def test_service_variable_lists_the_example_service(demo_stack: DemoStack) -> None:
    """Every dashboard's ``service`` variable, a ``label_values`` query, lists the example
    service."""
    variables = [
        variable
        for dashboard in dashboards().values()
        for variable in dashboard["templating"]["list"]
        if variable["name"] == "service"
    ]
    assert variables
    for variable in variables:
        metric, label = label_values_query(variable["query"]["query"])
        values = poll(
            lambda: demo_stack.prometheus.label_values(label, metric) or None,  # noqa: B023 - polled at once, in this iteration
            timeout=QUERY_TIMEOUT_SECONDS,
            what=f"{label} values of {metric}",
        )
        assert DEMO_SERVICE in values
