"""The command line as users run it: `python -m otelkit_collector`, `otelkit-collector`,
`uvicorn`."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.servers import REPO_ROOT, clean_env, free_port, get_ok, poll, stop_process

REFUSAL = "exactly one process"
CLI_TIMEOUT_SECONDS = 30.0


def run_collector(
    args: list[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "otelkit_collector", *args],
        env=clean_env(env),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_SECONDS,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "env"),
    [
        pytest.param(["--workers", "2"], None, id="workers-flag"),
        pytest.param([], {"WEB_CONCURRENCY": "2"}, id="web-concurrency-env"),
    ],
)
def test_multi_worker_start_is_refused(args: list[str], env: dict[str, str] | None) -> None:
    """Asking for two workers exits with code 2 and says why the collector is one process."""
    port = str(free_port())
    result = run_collector(["--host", "127.0.0.1", "--port", port, *args], env)
    assert result.returncode == 2, result.stderr
    assert "refusing --workers 2" in result.stderr
    assert REFUSAL in result.stderr
    assert get_ok(f"http://127.0.0.1:{port}/healthz", timeout=0.5) is None


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        pytest.param(["--port", "70000"], None, "port", id="port-out-of-range"),
        pytest.param(
            [],
            {"OTELKIT_HEALTH_TTL_SECONDS": "soon"},
            "OTELKIT_HEALTH_TTL_SECONDS",
            id="ttl-not-a-number",
        ),
        pytest.param(
            [], {"OTELKIT_COLLECTOR_PORT": "http"}, "OTELKIT_COLLECTOR_PORT", id="env-port"
        ),
    ],
)
def test_bad_configuration_exits_naming_it(
    args: list[str], env: dict[str, str] | None, named: str
) -> None:
    """A malformed flag or variable exits with code 2 and a message naming it, no traceback."""
    result = run_collector(args, env)
    assert result.returncode == 2, result.stderr
    assert named in result.stderr
    assert "Traceback" not in result.stderr


def test_port_from_environment_is_honoured(tmp_path: Path) -> None:
    """Without --port, OTELKIT_COLLECTOR_PORT decides where the collector listens."""
    port = free_port()
    log_path = tmp_path / "collector.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "otelkit_collector"],
            env=clean_env({"OTELKIT_COLLECTOR_PORT": str(port)}),
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        poll(
            lambda: get_ok(f"http://127.0.0.1:{port}/healthz", timeout=0.5),
            timeout=CLI_TIMEOUT_SECONDS,
            what=f"collector on OTELKIT_COLLECTOR_PORT={port}",
            diagnostics=lambda: log_path.read_text(errors="replace"),
        )
    finally:
        stop_process(process)


def test_uvicorn_workers_refuse_to_serve(tmp_path: Path) -> None:
    """Under `uvicorn --workers 2` every worker refuses at startup, so nothing serves /metrics."""
    port = free_port()
    log_path = tmp_path / "uvicorn.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "uvicorn", "--factory", "otelkit_collector.app:create_app"),
                *("--host", "127.0.0.1", "--port", str(port), "--workers", "2"),
            ],
            env=clean_env(),
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    served: list[int] = []
    try:
        deadline = time.monotonic() + CLI_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                served.append(
                    httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=0.5).status_code
                )
            if 200 in served or process.poll() is not None:
                break
            if REFUSAL in log_path.read_text(errors="replace"):
                break
            time.sleep(0.1)
        # A last look once the workers have refused (the parent may still hold the socket).
        with contextlib.suppress(httpx.TransportError):
            served.append(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=0.5).status_code)
    finally:
        # The workers share the parent's session: end the whole group the test started.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=CLI_TIMEOUT_SECONDS)
    output = log_path.read_text(errors="replace")
    assert REFUSAL in output, output
    assert 200 not in served, output


def test_console_script_help() -> None:
    """The installed `otelkit-collector` script runs and documents --host and --port."""
    script = Path(sys.executable).parent / "otelkit-collector"
    assert script.exists(), f"{script} is missing: install the project (pip install -e .)"
    result = subprocess.run(
        [str(script), "--help"],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_SECONDS,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "--host" in result.stdout
    assert "--port" in result.stdout
