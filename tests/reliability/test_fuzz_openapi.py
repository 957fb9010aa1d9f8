"""Item 1: schemathesis over the collector's own OpenAPI schema, in process (ASGI).

For every operation, positive (schema-valid) and negative (schema-breaking) cases: no answer
is a 5xx, every answer conforms to the schema (documented status code, content type,
response schema, headers), and negative data always gets a 4xx. Positive data is accepted
unless it breaks a rule JSON Schema cannot state (an integer written as ``200.0``). An
accepted HTTP report's ``trace_id`` and ``span_id`` are exactly valid ids, and so is every
exemplar OpenMetrics /metrics shows afterwards. The token-protected collector is fuzzed too:
with the token, as without auth; without, 401.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families as text_families
from schemathesis import Case, GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from otelkit_collector.app import create_app
from otelkit_collector.settings import CollectorSettings
from tests.conftest import open_client
from tests.reliability.conftest import SCALE, Scale, first, record_figure

TOKEN = "fuzz-token"
OPERATIONS = [
    ("GET", "/metrics"),
    ("GET", "/api/metrics"),
    ("GET", "/healthz"),
    ("POST", "/api/health/{service}"),
    ("DELETE", "/api/health/{service}"),
    ("POST", "/api/metrics/http"),
    ("POST", "/api/metrics/http/batch"),
    ("POST", "/api/metrics/users"),
]
WITHOUT_INPUT = {("GET", "/metrics"), ("GET", "/api/metrics"), ("GET", "/healthz")}
"""Nothing to generate: one case each, and no negative data."""
WRITES = [operation for operation in OPERATIONS if operation[0] != "GET"]
VALID_IDS = {"trace_id": re.compile("[0-9a-f]{32}"), "span_id": re.compile("[0-9a-f]{16}")}


def is_valid_id(name: str, value: object) -> bool:
    """Whether ``value`` is exactly a valid ``trace_id`` or ``span_id``: lowercase hex of the
    right length, not all zeros."""
    return (
        isinstance(value, str)
        and VALID_IDS[name].fullmatch(value) is not None
        and value.strip("0") != ""
    )


def invalid_ids(body: Any) -> list[str]:
    """What is wrong with the ids of an HTTP report or batch body (nothing, for valid ones)."""
    batch = isinstance(body, dict) and isinstance(body.get("reports"), list)
    reports = body["reports"] if batch else [body]
    wrong = []
    for report in reports:
        if not isinstance(report, dict):
            continue
        wrong.extend(
            f"{name}={report[name]!r}"
            for name in VALID_IDS
            if name in report and not is_valid_id(name, report[name])
        )
        if "span_id" in report and "trace_id" not in report:
            wrong.append("span_id without trace_id")
    return wrong


def fuzz_app(**overrides: Any) -> Any:
    return create_app(
        CollectorSettings.from_env(environ={}, **overrides), registry=CollectorRegistry()
    )


def _at(document: Any, location: list[Any]) -> Any:
    for key in location:
        document = document[key]
    return document


def explained_refusal(case: Case, status: int, body: Any) -> bool:
    """Whether refusing schema-valid ``case`` is a documented rule JSON Schema cannot state.

    * ``200.0`` is an integer to JSON Schema, but status and count must be integer literals;
    * a new service past ``max_services`` is refused whatever its shape.
    """
    if status != 422 or not isinstance(body, dict):
        return False
    detail = body.get("detail")
    if isinstance(detail, str):
        return "max_services" in detail
    try:
        return bool(detail) and all(
            issue["type"] == "int_type"
            and issue["loc"][0] == "body"
            and isinstance(value := _at(case.body, issue["loc"][1:]), float)
            and math.isfinite(value)
            and value.is_integer()
            for issue in detail
        )
    except (KeyError, IndexError, TypeError):
        return False


@dataclass
class Outcome:
    """What one operation's cases got, and what was wrong with it."""

    statuses: Counter[int] = field(default_factory=Counter)
    explained: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def cases(self) -> int:
        return sum(self.statuses.values())


def fuzz(
    app: Any,
    method: str,
    path: str,
    mode: GenerationMode,
    cases: int,
    check: Callable[[Case, Outcome], None],
) -> Outcome:
    """Run ``cases`` schemathesis cases of one operation through ``check``."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operation = schema[path][method]
    outcome = Outcome()

    @settings(
        max_examples=cases,
        deadline=None,
        database=None,
        derandomize=SCALE.name == "ci",
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Case) -> None:
        check(case, outcome)

    run()
    return outcome


def schema_problems(case: Case, response: Any, headers: dict[str, str] | None = None) -> str:
    """Schemathesis' verdict on an answer ('' when it conforms); positive-data acceptance is
    judged by :func:`explained_refusal` instead."""
    try:
        case.validate_response(
            response, excluded_checks=[positive_data_acceptance], headers=headers
        )
    except BaseException as failures:  # schemathesis raises an exception group
        return str(failures)
    return ""


async def _metrics_still_render(app: Any) -> list[str]:
    problems = []
    async with open_client(app) as http:
        for accept, parse in [
            ("text/plain", text_families),
            ("application/openmetrics-text; version=1.0.0", openmetrics_families),
        ]:
            response = await http.get("/metrics", headers={"accept": accept})
            if response.status_code != 200:
                problems.append(f"/metrics ({accept}) answered {response.status_code}")
                continue
            try:
                families = list(parse(response.text))
            except ValueError as exc:
                problems.append(f"/metrics ({accept}) does not parse: {exc}")
                continue
            problems.extend(
                f"/metrics ({accept}) shows an exemplar with {name}={value!r}"
                for family in families
                for sample in family.samples
                if sample.exemplar is not None
                for name, value in sample.exemplar.labels.items()
                if not is_valid_id(name, value)
            )
        view = await http.get("/api/metrics")
        if view.status_code != 200:
            problems.append(f"/api/metrics answered {view.status_code}")
    return problems


def metrics_still_render(app: Any) -> list[str]:
    """After fuzzing, /metrics renders and parses in both formats, and the JSON view answers."""
    return asyncio.run(_metrics_still_render(app))


FUZZED = [
    pytest.param(method, path, mode, id=f"{method} {path} {mode.value}")
    for method, path in OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if not (mode is GenerationMode.NEGATIVE and (method, path) in WITHOUT_INPUT)
]


@pytest.mark.timeout(SCALE.test_timeout)
@pytest.mark.parametrize(("method", "path", "mode"), FUZZED)
def test_operation_conforms_to_its_schema(
    method: str, path: str, mode: GenerationMode, scale: Scale
) -> None:
    """No 5xx, every answer as documented, negative data refused with a 4xx."""
    app = fuzz_app()

    def check(case: Case, outcome: Outcome) -> None:
        response = case.call()
        status = response.status_code
        outcome.statuses[status] += 1
        problem = schema_problems(case, response)
        if status >= 500:
            problem = f"server error {status}\n{problem}"
        elif mode is GenerationMode.NEGATIVE and not 400 <= status < 500:
            problem = f"negative data got {status}\n{problem}"
        elif mode is GenerationMode.POSITIVE and not 200 <= status < 300:
            if explained_refusal(case, status, response.json()):
                outcome.explained += 1
            else:
                problem = f"valid data refused: {status} {response.text[:300]}\n{problem}"
        if 200 <= status < 300 and path.startswith("/api/metrics/http"):
            wrong = invalid_ids(case.body)
            if wrong:
                problem = f"accepted invalid ids {wrong}\n{problem}"
        if problem:
            outcome.failures.append(f"{problem}\n{case.as_curl_command()}")

    outcome = fuzz(app, method, path, mode, scale.fuzz_cases, check)
    outcome.failures.extend(metrics_still_render(app))
    record_figure(
        "1 fuzz",
        f"{method} {path} {mode.value}: {outcome.cases} cases, statuses "
        f"{dict(sorted(outcome.statuses.items()))}"
        + (
            f" ({outcome.explained} integral floats like 200.0 refused)"
            if outcome.explained
            else ""
        )
        + f"; {len(outcome.failures)} failures",
        f"{scale.fuzz_cases} cases (1 when the operation has no input); no 5xx; schema-conformant;"
        " negative -> 4xx",
        not outcome.failures,
    )
    assert not outcome.failures, first(outcome.failures, 3)
    if (method, path) not in WITHOUT_INPUT:
        assert outcome.cases >= scale.fuzz_cases * 0.9, "hypothesis ran out of distinct cases"


@pytest.mark.timeout(SCALE.test_timeout)
@pytest.mark.parametrize(("method", "path"), WRITES, ids=[f"{m} {p}" for m, p in WRITES])
def test_token_protected_writes_conform(method: str, path: str, scale: Scale) -> None:
    """With a token set: every write with it acts as without auth; every one without, 401."""
    app = fuzz_app(token=TOKEN)
    good = {"authorization": f"Bearer {TOKEN}"}

    def check(case: Case, outcome: Outcome) -> None:
        response = case.call(headers=good)
        status = response.status_code
        outcome.statuses[status] += 1
        problem = schema_problems(case, response, good)
        if not (200 <= status < 300 or explained_refusal(case, status, response.json())):
            problem = f"authorized valid data got {status} {response.text[:300]}\n{problem}"
        unauthorized = case.call(headers={"authorization": "Bearer wrong"})
        outcome.statuses[unauthorized.status_code] += 1
        problem += schema_problems(case, unauthorized)
        if unauthorized.status_code != 401:
            problem += f"\nwrong token got {unauthorized.status_code}"
        if problem:
            outcome.failures.append(f"{problem}\n{case.as_curl_command()}")

    outcome = fuzz(app, method, path, GenerationMode.POSITIVE, scale.fuzz_token_cases, check)
    record_figure(
        "1 fuzz (token)",
        f"{method} {path}: {outcome.cases} calls, statuses "
        f"{dict(sorted(outcome.statuses.items()))}; {len(outcome.failures)} failures",
        "right token: as without auth; wrong token: 401, documented",
        not outcome.failures,
    )
    assert not outcome.failures, first(outcome.failures, 3)
