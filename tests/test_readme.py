"""The README's examples run as written, so the README cannot drift from the product."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import json
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from otelkit.instruments import (
    CATALOGUE,
    COLLECTOR_REPORTS,
    DURATION_BUCKETS_SECONDS,
    HTTP_REQUEST_DURATION,
    PROCESS_METRIC_PREFIXES,
    PUSH_OUTCOMES,
    PUSH_REPORTS,
    REPORT_KINDS,
    REPORT_OUTCOMES,
)
from otelkit_collector.app import create_app
from otelkit_collector.settings import CollectorSettings
from tests.e2e.servers import (
    LOOPBACK,
    REPO_ROOT,
    clean_env,
    poll,
    require_binary,
    running_collector,
    start_listening,
)
from tests.otelkit.test_autoinstrument import (
    ALSO_ON,
    ALSO_ON_STABLE,
    DISABLED,
    FASTAPI_NATIVE_METRICS,
)
from tests.otlp_receiver import running_otlp_receiver

README = REPO_ROOT / "README.md"
FENCE = re.compile(r"^( *)```(\w*)\n(.*?)^\1```", re.MULTILINE | re.DOTALL)


def blocks(language: str) -> list[str]:
    """The README's fenced blocks in ``language`` ('' for unlabelled), dedented."""
    found = []
    for indent, lang, body in FENCE.findall(README.read_text()):
        if lang == language:
            found.append("\n".join(line[len(indent) :] for line in body.splitlines()))
    return found


def _complete(command: str) -> bool:
    if command.endswith("\\"):
        return False
    try:
        shlex.split(command)
    except ValueError:  # an open quote: the command goes on on the next line
        return False
    return True


def commands(block: str) -> list[tuple[str, str]]:
    """Each command of a shell block (continued lines joined), with the comment after it."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in block.splitlines():
        stripped = line.strip()
        if not pending and stripped.startswith("#"):
            if result:
                command, comment = result[-1]
                result[-1] = (command, f"{comment} {stripped.lstrip('# ')}".strip())
            continue
        if not pending and not stripped:
            continue
        code, _, comment = line.partition("  # ")
        pending = f"{pending}\n{code}" if pending else code
        if _complete(pending.strip()):
            result.append((pending.strip(), comment.strip()))
            pending = ""
    assert not pending, f"unterminated command in README: {pending}"
    return result


def run_curl(command: str, base_url: str) -> tuple[int, str]:
    """Run a README curl command against ``base_url``; return (status, body)."""
    argv = shlex.split(command.replace("\\\n", " ").replace("http://localhost:9090", base_url))
    assert argv[0] == "curl"
    completed = subprocess.run(
        [*argv, "-sS", "-w", "\n%{http_code}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    body, _, status = completed.stdout.rpartition("\n")
    return int(status), body


def test_quick_start_is_the_two_commands() -> None:
    """The first block a reader sees is exactly `make run` and `make test`."""
    first = commands(blocks("bash")[0])
    assert [command for command, _ in first] == ["make run", "make test"]


def test_curl_examples_answer_as_documented(tmp_path: Path) -> None:
    """Every curl in the README succeeds, or fails with the status and message it documents."""
    require_binary("curl")
    curls = [
        (command, comment)
        for block in blocks("bash")
        for command, comment in commands(block)
        if command.startswith("curl ")
    ]
    assert len(curls) >= 10
    with running_collector(tmp_path) as collector:
        for command, comment in curls:
            status, body = run_curl(command, collector.url)
            documented = re.match(r"(\d{3}) ", comment)
            if documented is None:
                assert 200 <= status < 300, f"{command}\n→ {status} {body}"
                continue
            assert status == int(documented.group(1)), f"{command}\n→ {status} {body}"
            message = re.search(r'"message":"([^"]*)"', comment)
            if message is not None:
                assert json.loads(body)["message"] == message.group(1)
        # A report accepted with trace ids is the latest exemplar of its bucket.
        sent = {
            m
            for command, comment in curls
            if not re.match(r"4\d\d ", comment)
            for m in re.findall(r'"trace_id": "(\w+)"', command)
        }
        assert sent
        openmetrics = httpx.get(
            collector.url + "/metrics", headers={"accept": "application/openmetrics-text"}
        ).text
        assert {f'trace_id="{trace_id}"' for trace_id in sent} <= set(
            re.findall(r'trace_id="\w+"', openmetrics)
        )


def test_exposition_sample_is_what_the_seed_curls_produce(tmp_path: Path) -> None:
    """After the quick-start curls, /metrics contains every line the README shows."""
    require_binary("curl")
    seed = [command for command, _ in commands(blocks("bash")[1])]
    (shown,) = [block for block in blocks("") if "http_request_duration_seconds" in block]
    with running_collector(tmp_path) as collector:
        for command in seed:
            assert run_curl(command, collector.url)[0] == 200
        status, exposition = run_curl(f"curl {collector.url}/metrics", collector.url)
    assert status == 200
    lines = set(exposition.splitlines())
    for line in shown.splitlines():
        if line != "...":
            assert line in lines, f"README shows a line /metrics does not have: {line}"


def test_promql_examples_parse(tmp_path: Path) -> None:
    """Every PromQL line in the README is a valid expression (promtool checks it as a rule)."""
    promtool = require_binary("promtool")
    queries = [line for block in blocks("promql") for line in block.splitlines() if line.strip()]
    staleness = re.search(
        r"`(time\(\) - service_health_last_report_timestamp_seconds[^`]*)`", README.read_text()
    )
    assert staleness is not None
    queries.append(staleness.group(1))
    rules = {
        "groups": [
            {
                "name": "readme",
                "rules": [
                    {"record": f"readme:query_{index}", "expr": query}
                    for index, query in enumerate(queries)
                ],
            }
        ]
    }
    path = tmp_path / "readme-rules.yml"
    path.write_text(yaml.safe_dump(rules))
    completed = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=30
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert f"SUCCESS: {len(queries)} rules found" in completed.stdout


@pytest.mark.parametrize(
    "index", range(3), ids=["env-console-script", "python-module", "uvicorn-factory"]
)
def test_configuration_examples_start_a_collector(tmp_path: Path, index: int) -> None:
    """Each start command in the configuration section brings up a collector that answers."""
    (block,) = [block for block in blocks("bash") if "otelkit-collector" in block]
    command = commands(block)[index][0]
    words = shlex.split(command)
    env = {}
    while "=" in words[0]:
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    env.pop("OTELKIT_COLLECTOR_PORT", None)

    def argv(port: int) -> list[str]:
        replaced = [word.replace("0.0.0.0", LOOPBACK) for word in words]
        if "--port" in replaced:
            replaced[replaced.index("--port") + 1] = str(port)
        else:
            replaced += ["--port", str(port)]
        if "--host" not in replaced:
            replaced += ["--host", LOOPBACK]
        return replaced

    server = start_listening(
        argv, ready_path="/healthz", log_dir=tmp_path, name=f"readme-{index}", env=clean_env(env)
    )
    try:
        assert server.wait_ready("/healthz")
    finally:
        server.stop()


SERVICE_COMMANDS = [
    command
    for block in blocks("bash")
    for command, _ in commands(block)
    if "uvicorn examples." in command
]


@pytest.mark.parametrize(
    "command",
    SERVICE_COMMANDS,
    ids=["push", "otlp", "zero-code", "tracing"][: len(SERVICE_COMMANDS)],
)
def test_service_commands_start_and_record(tmp_path: Path, command: str) -> None:
    """Each README command that starts a service serves it, and its requests are recorded
    (and traced, where the command turns tracing on)."""
    assert len(SERVICE_COMMANDS) == 4
    words = shlex.split(command)
    env = {}
    while "=" in words[0]:
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    traced = "OTEL_TRACES_EXPORTER" in env
    with contextlib.ExitStack() as stack:
        if "OTELKIT_COLLECTOR_URL" in env:
            collector = stack.enter_context(running_collector(tmp_path))
            env["OTELKIT_COLLECTOR_URL"] = collector.url
        if traced:
            receiver = stack.enter_context(running_otlp_receiver())
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.endpoint
            env["OTEL_BSP_SCHEDULE_DELAY"] = "100"

        def argv(port: int) -> list[str]:
            replaced = list(words)
            replaced[replaced.index("--port") + 1] = str(port)
            return [*replaced, "--host", LOOPBACK]

        server = start_listening(
            argv, ready_path="/healthz", log_dir=tmp_path, name="readme-service", env=clean_env(env)
        )
        try:
            path = "/items/1" if "plain" in command else "/api/courses/1"
            assert httpx.get(server.url + path, timeout=5).status_code == 200
            metrics = httpx.get(server.url + "/metrics", timeout=5)
            if env.get("OTEL_METRICS_EXPORTER") == "otlp":
                assert metrics.status_code == 404  # exported over OTLP, not served
            else:
                template = "/items/{item_id}" if "plain" in command else "/api/courses/{course_id}"
                assert f'route="{template}"' in metrics.text
            if traced:
                openmetrics = httpx.get(
                    server.url + "/metrics",
                    headers={"accept": "application/openmetrics-text"},
                    timeout=5,
                ).text
                assert '# {span_id="' in openmetrics
                poll(
                    lambda: (
                        any(s.name == "GET /api/courses/{course_id}" for s in receiver.spans())
                        or None
                    ),
                    timeout=15,
                    what="the request's span at the OTLP receiver",
                )
        finally:
            server.stop()
        if "OTELKIT_COLLECTOR_URL" in env:
            pushed = httpx.get(collector.url + "/metrics", timeout=5).text
            assert 'route="/api/courses/{course_id}",service="courses"' in pushed


PYTHON_EXPECTATIONS: list[tuple[list[str], list[str]] | None] = [
    # (what the block's app must answer, what the exposition must then contain)
    (
        ["/api/courses/1"],
        [
            'route="/api/courses/{course_id}"',
            'service_health_status{service="courses"} 1.0',
            "active_users_total 127.0",
        ],
    ),
    None,  # the middleware on its own: test_middleware_example_records_as_documented
    ([], ['service_health_status{service="courses"} 1.0']),
    (["/api/courses/1"], ['route="/api/courses/{course_id}"']),
]
LOG_WITH_TRACE = re.compile(
    r"WARNING \[trace_id=(?!0{32})[0-9a-f]{32} span_id=(?!0{16})[0-9a-f]{16}\] course 1 requested"
)


PYTHON_EXAMPLES = ["instrument", "middleware", "health-check", "log-correlation"]
MIDDLEWARE_EXAMPLE = PYTHON_EXAMPLES.index("middleware")
RUN_WITH_EXPECTATIONS = [i for i, found in enumerate(PYTHON_EXPECTATIONS) if found is not None]


@pytest.mark.parametrize(
    "index", RUN_WITH_EXPECTATIONS, ids=[PYTHON_EXAMPLES[i] for i in RUN_WITH_EXPECTATIONS]
)
def test_python_examples_run(tmp_path: Path, index: int) -> None:
    """Each Python block runs as written in a fresh interpreter and records what it says; the
    traced one exports the request's span and logs with its ids."""
    code = blocks("python")
    assert len(code) == len(PYTHON_EXPECTATIONS) == len(PYTHON_EXAMPLES)
    expectation = PYTHON_EXPECTATIONS[index]
    assert expectation is not None
    paths, expected = expectation
    harness = tmp_path / "harness.py"
    harness.write_text(
        code[index]
        + textwrap.dedent(
            f"""

            import time as _time
            from fastapi.testclient import TestClient as _TestClient
            from prometheus_client import generate_latest as _generate_latest

            with _TestClient(app) as _client:
                for _path in {paths!r}:
                    assert _client.get(_path).status_code == 200
                _deadline = _time.monotonic() + 5
                while True:
                    _served = _client.get("/metrics")
                    _text = (
                        _served.text
                        if _served.status_code == 200
                        else _generate_latest(setup.registry).decode()
                    )
                    if all(_line in _text for _line in {expected!r}):
                        break
                    assert _time.monotonic() < _deadline, _text
            print("ok")
            """
        )
    )
    with running_otlp_receiver() as receiver:
        completed = subprocess.run(
            [sys.executable, str(harness)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO_ROOT,
            env=clean_env({"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}),
        )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert completed.stdout.strip().endswith("ok")
    if "tracing=True" in code[index]:
        assert LOG_WITH_TRACE.search(completed.stderr), completed.stderr
        assert any(span.name == "GET /api/courses/{course_id}" for span in receiver.spans())


def test_status_page_headers_are_the_ones_served() -> None:
    """The header block the README shows for the status page is what / is served with."""
    (shown,) = [block for block in blocks("") if "Content-Security-Policy" in block]
    documented = dict(line.split(": ", 1) for line in shown.strip().splitlines())
    app = create_app(CollectorSettings.from_env(environ={}))

    async def fetch() -> httpx.Headers:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://collector") as client:
            return (await client.get("/")).headers

    served = asyncio.run(fetch())
    assert documented == {name: served[name] for name in documented}
    assert set(documented) >= {"Content-Security-Policy", "X-Frame-Options"}


MIDDLEWARE_EXCLUDED = ("/metrics", "/healthz", "/internal/ping")
"""The example's ``excluded_paths``: requested, never recorded."""
MIDDLEWARE_REQUESTS = [
    ("GET", "/api/invoices/7"),
    ("GET", "/api/invoices/8"),
    ("PURGE", "/api/invoices/7"),  # a method outside the standard nine, on a known route
    ("GET", "/no/such/page"),
    *(("GET", path) for path in MIDDLEWARE_EXCLUDED),
]
MIDDLEWARE_SERIES = {
    # (method, route, status): requests counted, per the README's MetricsMiddleware bullet
    ("GET", "/api/invoices/{invoice_id}", "200"): 2,  # the template, never the raw path
    ("_OTHER", "/api/invoices/{invoice_id}", "405"): 1,
    ("GET", "__unmatched__", "404"): 1,
}


def test_middleware_example_records_as_documented(tmp_path: Path) -> None:
    """The README's stand-alone ``MetricsMiddleware`` block, run as written (plus one route):
    its registry gets ``http_request_duration_seconds`` labelled exactly ``method``, ``route``
    (the template; ``__unmatched__`` where no route matches) and ``status``, methods outside
    the standard nine as ``_OTHER``, and nothing for the paths it excludes."""
    code = blocks("python")[MIDDLEWARE_EXAMPLE]
    assert "otelkit.MetricsMiddleware" in code
    excluded = re.search(r"excluded_paths=(\[[^]]*\])", code)
    assert excluded is not None
    assert tuple(ast.literal_eval(excluded.group(1))) == MIDDLEWARE_EXCLUDED
    harness = tmp_path / "harness.py"
    harness.write_text(
        code
        + textwrap.dedent(
            f"""

            from fastapi.testclient import TestClient as _TestClient
            from prometheus_client import generate_latest as _generate_latest


            @app.get("/api/invoices/{{invoice_id}}")
            async def _get_invoice(invoice_id: int) -> dict[str, int]:
                return {{"id": invoice_id}}


            with _TestClient(app) as _client:
                for _method, _path in {MIDDLEWARE_REQUESTS!r}:
                    _client.request(_method, _path)
            print(_generate_latest(setup.registry).decode())
            """
        )
    )
    completed = subprocess.run(
        [sys.executable, str(harness)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
        env=clean_env({}),
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    families = {family.name: family for family in text_string_to_metric_families(completed.stdout)}
    assert set(families) == {HTTP_REQUEST_DURATION.prometheus_name}, sorted(families)
    samples = families[HTTP_REQUEST_DURATION.prometheus_name].samples
    assert {frozenset(sample.labels) - {"le"} for sample in samples} == {
        frozenset({"method", "route", "status"})
    }
    counts = {
        (sample.labels["method"], sample.labels["route"], sample.labels["status"]): sample.value
        for sample in samples
        if sample.name == f"{HTTP_REQUEST_DURATION.prometheus_name}_count"
    }
    assert counts == MIDDLEWARE_SERIES


METRICS_SECTION = re.compile(r"^## The metrics\n(.*?)^## ", re.MULTILINE | re.DOTALL)
BACKTICKED = re.compile(r"`([^`]+)`")
DOCUMENTED_LABEL_VALUES = {
    (COLLECTOR_REPORTS.prometheus_name, "kind"): REPORT_KINDS,
    (COLLECTOR_REPORTS.prometheus_name, "outcome"): REPORT_OUTCOMES,
    (PUSH_REPORTS.prometheus_name, "outcome"): PUSH_OUTCOMES,
}
"""The label values the README lists, and the catalogue's tuples they must equal."""


def metric_table() -> list[tuple[list[str], str, str]]:
    """The rows of the README's metric table: (names, kind cell, labels cell)."""
    section = METRICS_SECTION.search(README.read_text())
    assert section is not None, "README has no '## The metrics' section"
    lines = [line for line in section.group(1).splitlines() if line.startswith("|")]
    header, rule, *rows = lines
    assert header == "| Prometheus name | kind | labels |"
    assert set(rule) <= {"|", "-"}
    table = []
    for row in rows:
        names, kind, labels = (cell.strip() for cell in row.strip("|").split("|"))
        table.append((BACKTICKED.findall(names), kind, labels))
    return table


def documented_labels(cell: str) -> dict[str, tuple[str, ...]]:
    """A labels cell as {label: the values listed in parentheses after it (none: empty)}."""
    labels: dict[str, tuple[str, ...]] = {}
    for match in re.finditer(r"`(\w+)`(?: \(([^)]*)\))?", cell):
        listed = BACKTICKED.findall(match.group(2) or "")
        labels[match.group(1)] = tuple(listed)
    return labels


def test_metric_table_is_the_catalogue() -> None:
    """Every row of the README's metric table names a catalogue entry with its kind, its
    label keys and the label values the catalogue allows; every entry has a row, and the
    prometheus_client defaults row lists the prefixes the catalogue sets apart."""
    rows = metric_table()
    *catalogue_rows, defaults_row = rows
    assert defaults_row[0] == [f"{prefix}*" for prefix in PROCESS_METRIC_PREFIXES[:-1]] + [
        PROCESS_METRIC_PREFIXES[-1]
    ]
    by_name = {spec.prometheus_name: spec for spec in CATALOGUE}
    documented = [name for names, _, _ in catalogue_rows for name in names]
    assert sorted(documented) == sorted(by_name), (
        "the table and the catalogue name different metrics"
    )
    for names, kind_cell, labels_cell in catalogue_rows:
        assert len(names) == 1, f"one metric per row: {names}"
        spec = by_name[names[0]]
        kind = re.split(r"[,:(]", kind_cell)[0].strip()
        assert kind == spec.kind, f"{spec.prometheus_name}: README says {kind}"
        labels = documented_labels(labels_cell)
        assert tuple(labels) == spec.label_keys, f"{spec.prometheus_name}: README says {labels}"
        for label, values in labels.items():
            expected = DOCUMENTED_LABEL_VALUES.get((spec.prometheus_name, label), ())
            assert values == expected, f"{spec.prometheus_name}{{{label}}}: README says {values}"


def test_bucket_list_is_the_catalogue() -> None:
    """The bucket list in the metric table, and the first bucket the quick start points at,
    are the catalogue's ``DURATION_BUCKETS_SECONDS``."""
    (kind_cell,) = [
        kind
        for names, kind, _ in metric_table()
        if names == [HTTP_REQUEST_DURATION.prometheus_name]
    ]
    listed = re.fullmatch(r"histogram, buckets ([\d. ]+)", kind_cell)
    assert listed is not None, kind_cell
    assert tuple(float(bound) for bound in listed.group(1).split()) == DURATION_BUCKETS_SECONDS
    first = f'second-based buckets starting at `le="{DURATION_BUCKETS_SECONDS[0]}"`'
    assert first in README.read_text()


ZERO_CODE_PARAGRAPH = re.compile(
    r"^  With `opentelemetry-instrumentation-fastapi` also installed.*?(?=\n\n)",
    re.MULTILINE | re.DOTALL,
)


def test_zero_code_paragraph_names_what_the_launcher_adds() -> None:
    """The zero-code paragraph names the histograms tests/otelkit/test_autoinstrument.py sees
    the launcher add (by semantic-convention opt-in), and FastAPI's own metrics."""
    found = ZERO_CODE_PARAGRAPH.search(README.read_text())
    assert found is not None
    paragraph = " ".join(found.group(0).split())
    assert f"the `{ALSO_ON.fastapi_histogram}` histogram" in paragraph
    opt_in = f"OTEL_SEMCONV_STABILITY_OPT_IN={ALSO_ON_STABLE.semconv_opt_in}"
    assert f"`{ALSO_ON_STABLE.fastapi_histogram}` with `{opt_in}`" in paragraph
    assert f"`OTEL_PYTHON_DISABLED_INSTRUMENTATIONS={DISABLED.disabled_instrumentations}`" in (
        paragraph
    )
    native = " and ".join(f"`{name}`" for name in sorted(FASTAPI_NATIVE_METRICS, reverse=True))
    assert f"FastAPI's {native} appear beside otelkit's" in paragraph, paragraph
