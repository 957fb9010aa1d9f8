"""The README's examples run as written, so the README cannot drift from the product."""

from __future__ import annotations

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


PYTHON_EXPECTATIONS = [
    # (what the block's app must answer, what the exposition must then contain)
    (
        ["/api/courses/1"],
        [
            'route="/api/courses/{course_id}"',
            'service_health_status{service="courses"} 1.0',
            "active_users_total 127.0",
        ],
    ),
    ([], []),
    ([], ['service_health_status{service="courses"} 1.0']),
    (["/api/courses/1"], ['route="/api/courses/{course_id}"']),
]
LOG_WITH_TRACE = re.compile(
    r"WARNING \[trace_id=(?!0{32})[0-9a-f]{32} span_id=(?!0{16})[0-9a-f]{16}\] course 1 requested"
)


@pytest.mark.parametrize(
    "index",
    range(len(PYTHON_EXPECTATIONS)),
    ids=["instrument", "middleware", "health-check", "log-correlation"],
)
def test_python_examples_run(tmp_path: Path, index: int) -> None:
    """Each Python block runs as written in a fresh interpreter and records what it says; the
    traced one exports the request's span and logs with its ids."""
    code = blocks("python")
    assert len(code) == len(PYTHON_EXPECTATIONS)
    paths, expected = PYTHON_EXPECTATIONS[index]
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
