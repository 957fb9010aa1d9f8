"""The provisioned Grafana: dashboards parse, reference only the provisioned datasource, hold
no secrets, sit where the provider looks, and show the panels the stack promises."""

from __future__ import annotations

import json
from typing import Any

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


@pytest.fixture(scope="module")
def datasource_ref() -> dict[str, str]:
    """How a panel must reference the one provisioned Prometheus datasource."""
    (datasource,) = provisioned_datasources()
    assert datasource["type"] == "prometheus"
    return {"type": "prometheus", "uid": datasource["uid"]}


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


def test_datasource_provisioning_holds_no_credentials() -> None:
    """The datasource reaches Prometheus inside the compose network, without credentials."""
    (datasource,) = provisioned_datasources()
    assert datasource["url"] == "http://prometheus:9090"
    assert "prometheus" in compose()["services"]
    assert not {"basicAuth", "basicAuthPassword", "secureJsonData", "password"} & set(datasource)


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
