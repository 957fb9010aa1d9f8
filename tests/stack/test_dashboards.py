"""The provisioned Grafana: dashboards parse, reference only the provisioned Prometheus
datasource, hold no secrets, sit where the provider looks, show the panels the stack promises,
and link their latency exemplars to the trace in the provisioned Jaeger datasource."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.stack.stack_files import (
    DASHBOARD_PROVIDERS_DIR,
    DASHBOARDS_DIR,
    compose,
    dashboards,
    iter_panels,
    load_yaml,
    mounts,
    provisioned_datasources,
    published_ports,
    repo_path_for,
)

EXPECTED_PANELS = (
    "Service Health Status",
    "HTTP Request Duration",
    "Active Users",
    "Request Rate by Status",
    "p50 / p95 / p99",
    "Error Ratio",
    "Last Report Age",
)
"""Title fragments: the reference's four panels plus the ones issue 4 adds."""
SECRET_WORDS = ("password", "secret", "token", "apikey", "api_key", "basicauth", "azora")

DASHBOARD_NAMES = sorted(path.name for path in DASHBOARDS_DIR.glob("*.json"))
DATASOURCES = {datasource["name"]: datasource for datasource in provisioned_datasources()}
TRACING_TYPES = {"jaeger", "tempo", "zipkin"}
EXEMPLAR_TRACE_ID = "trace_id"
"""The exemplar label otelkit writes a request's trace id under."""
LATENCY_HISTOGRAM = "http_request_duration_seconds_bucket"
LATENCY_TARGETS = {
    f"{name} {panel['title']} [{target.get('refId', '?')}]": target
    for name, dashboard in dashboards().items()
    for panel in iter_panels(dashboard)
    for target in panel.get("targets", [])
    if LATENCY_HISTOGRAM in target.get("expr", "")
}


def prometheus_datasource() -> dict[str, Any]:
    """The one provisioned Prometheus datasource."""
    (datasource,) = [ds for ds in DATASOURCES.values() if ds["type"] == "prometheus"]
    return datasource


@pytest.fixture(scope="module")
def datasource_ref() -> dict[str, str]:
    """How a panel must reference the one provisioned Prometheus datasource."""
    return {"type": "prometheus", "uid": prometheus_datasource()["uid"]}


def test_the_overview_dashboard_ships() -> None:
    """grafana/dashboards holds the overview the compose file makes Grafana's home page."""
    assert "otelkit-overview.json" in DASHBOARD_NAMES


@pytest.mark.parametrize("name", DASHBOARD_NAMES)
def test_dashboard_parses_with_unique_uid_and_panel_ids(name: str) -> None:
    """Each file is a dashboard JSON object with a uid and distinct panel ids."""
    dashboard = json.loads((DASHBOARDS_DIR / name).read_text())
    assert dashboard["uid"]
    assert dashboard["title"]
    ids = [panel["id"] for panel in iter_panels(dashboard)]
    assert len(ids) == len(set(ids)), ids


def test_dashboard_uids_are_distinct() -> None:
    """Grafana keys provisioned dashboards by uid: two files with one uid would clash."""
    uids = [dashboard["uid"] for dashboard in dashboards().values()]
    assert len(uids) == len(set(uids))


@pytest.mark.parametrize("name", DASHBOARD_NAMES)
def test_every_panel_and_target_uses_the_provisioned_datasource(
    name: str, datasource_ref: dict[str, str]
) -> None:
    """Panels and their queries name the datasource by the provisioned uid, never by a name
    or an import-time ``${DS_...}`` input that provisioning would leave unresolved."""
    dashboard = dashboards()[name]
    panels = list(iter_panels(dashboard))
    assert panels
    for panel in panels:
        assert panel.get("datasource") == datasource_ref, panel["title"]
        assert panel.get("targets"), f"{panel['title']} has no query"
        for target in panel["targets"]:
            assert target.get("datasource") == datasource_ref, (panel["title"], target)
    assert "__inputs" not in dashboard


@pytest.mark.parametrize("name", DASHBOARD_NAMES)
def test_service_variable_uses_the_provisioned_datasource(
    name: str, datasource_ref: dict[str, str]
) -> None:
    """The dashboard is templated by ``service``, read from the same datasource, with "All"."""
    variables: list[dict[str, Any]] = dashboards()[name]["templating"]["list"]
    (service,) = [variable for variable in variables if variable["name"] == "service"]
    assert service["datasource"] == datasource_ref
    assert service["includeAll"] is True
    assert service["allValue"] == ".*"
    exprs = [
        target["expr"] for panel in iter_panels(dashboards()[name]) for target in panel["targets"]
    ]
    assert any("$service" in expr for expr in exprs)


@pytest.mark.parametrize("name", DASHBOARD_NAMES)
def test_dashboard_holds_no_credentials(name: str) -> None:
    """No password, token or other secret is baked into a dashboard."""
    text = (DASHBOARDS_DIR / name).read_text().lower()
    assert [word for word in SECRET_WORDS if word in text] == []


def test_datasources_are_prometheus_and_jaeger_with_distinct_uids() -> None:
    """Grafana provisions Prometheus and Jaeger, each under its own uid."""
    assert sorted(ds["type"] for ds in DATASOURCES.values()) == ["jaeger", "prometheus"]
    uids = [datasource["uid"] for datasource in provisioned_datasources()]
    assert len(uids) == len(set(uids))
    assert prometheus_datasource()["url"] == "http://prometheus:9090"


@pytest.mark.parametrize("name", sorted(DATASOURCES))
def test_datasource_reaches_a_compose_service_without_credentials(name: str) -> None:
    """The datasource's URL names a compose service of the default stack and a port that
    service serves; no credentials are provisioned."""
    datasource = DATASOURCES[name]
    url = urlsplit(datasource["url"])
    service = compose()["services"][url.hostname]
    assert "profiles" not in service
    assert url.port in published_ports(service).values()
    assert not {"basicAuth", "basicAuthPassword", "secureJsonData", "password"} & set(datasource)


def test_exemplars_link_to_the_provisioned_tracing_datasource() -> None:
    """The Prometheus datasource turns an exemplar's ``trace_id`` into a link to a tracing
    datasource Grafana provisions, by its uid."""
    destinations = prometheus_datasource()["jsonData"]["exemplarTraceIdDestinations"]
    assert [destination["name"] for destination in destinations] == [EXEMPLAR_TRACE_ID]
    by_uid = {datasource["uid"]: datasource for datasource in provisioned_datasources()}
    for destination in destinations:
        assert by_uid[destination["datasourceUid"]]["type"] in TRACING_TYPES


def test_tracing_datasource_reads_the_backend_the_example_service_exports_to() -> None:
    """Grafana reads traces from the compose service ``courses`` sends its spans to."""
    (tracing,) = [ds for ds in DATASOURCES.values() if ds["type"] in TRACING_TYPES]
    endpoint = compose()["services"]["courses"]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"]
    assert urlsplit(tracing["url"]).hostname == urlsplit(endpoint).hostname


def test_dashboards_have_latency_histogram_targets() -> None:
    """The overview queries the latency histogram's buckets, where exemplars live."""
    assert LATENCY_TARGETS


@pytest.mark.parametrize("label", sorted(LATENCY_TARGETS))
def test_latency_target_shows_exemplars(label: str) -> None:
    """A query of the latency histogram asks Grafana to draw its exemplars."""
    assert LATENCY_TARGETS[label].get("exemplar") is True


def test_overview_has_the_promised_panels() -> None:
    """The overview shows the reference's four panels plus latency quantiles, error ratio
    and a health table with the age of each service's last report."""
    titles = [panel["title"] for panel in iter_panels(dashboards()["otelkit-overview.json"])]
    missing = [
        fragment
        for fragment in EXPECTED_PANELS
        if not any(fragment.lower() in title.lower() for title in titles)
    ]
    assert missing == [], titles


def test_dashboard_provider_reads_the_directory_compose_mounts() -> None:
    """The provider's path is where compose mounts grafana/dashboards, and the provisioning
    directory is mounted where Grafana looks for it."""
    grafana = compose()["services"]["grafana"]
    providers = [
        provider
        for path in sorted(DASHBOARD_PROVIDERS_DIR.glob("*.y*ml"))
        for provider in load_yaml(path)["providers"]
    ]
    assert providers
    for provider in providers:
        assert provider["type"] == "file"
        assert repo_path_for(grafana, provider["options"]["path"]) == DASHBOARDS_DIR
    assert {mount.source: mount.target for mount in mounts(grafana)}[
        "./grafana/provisioning"
    ] == "/etc/grafana/provisioning"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    home_path = repo_path_for(grafana, home)
    assert home_path is not None
    assert home_path.is_file()


def test_admin_password_comes_from_the_environment_defaulting_to_azora() -> None:
    """Grafana's admin password is ``GF_SECURITY_ADMIN_PASSWORD`` (default ``azora``)."""
    environment = compose()["services"]["grafana"]["environment"]
    assert environment["GF_SECURITY_ADMIN_PASSWORD"] == "${GF_SECURITY_ADMIN_PASSWORD:-azora}"
