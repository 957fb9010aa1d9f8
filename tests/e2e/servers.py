"""Real servers for end-to-end tests: the collector (subprocess or in-process uvicorn thread)
and Prometheus, bound to loopback, polled with deadlines and always stopped by PID.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"
STARTUP_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
PORT_ATTEMPTS = 3
_ISOLATED_PREFIXES = ("OTELKIT_", "OTEL_")
_ISOLATED_NAMES = frozenset({"WEB_CONCURRENCY"})


def free_port() -> int:
    """A loopback port that was free a moment ago (callers retry if it is taken meanwhile)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without anything that configures the collector, plus
    ``overrides``: a test sees only the settings it states."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(_ISOLATED_PREFIXES) and name not in _ISOLATED_NAMES
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(overrides or {})
    return env


def poll(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.1,
    diagnostics: Callable[[], str] | None = None,
) -> T:
    """Call ``probe`` until it returns something other than ``None``; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result is not None:
            return result
        if time.monotonic() >= deadline:
            extra = f"\n{diagnostics()}" if diagnostics is not None else ""
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}{extra}")
        time.sleep(interval)


DEBIAN_PACKAGES = {
    "prometheus": "prometheus",
    "promtool": "prometheus",
    "amtool": "prometheus-alertmanager",
    "chromium": "chromium",
    "chromedriver": "chromium-driver",
    "curl": "curl",
}
"""The Debian package that carries each binary the suite runs."""


def require_binary(name: str) -> str:
    """The path of ``name`` on PATH; a missing binary fails the test (CI installs it)."""
    path = shutil.which(name)
    if path is None:
        package = DEBIAN_PACKAGES.get(name, name)
        pytest.fail(
            f"`{name}` is not on PATH: the end-to-end tests need the real binary "
            f"(Debian/Ubuntu: apt-get install {package}; .ci/run installs it)"
        )
    return path


def stop_process(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
    """Send ``sig`` to ``process`` by PID, wait, escalate to SIGKILL; return the exit code."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
        try:
            return process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait(timeout=STOP_TIMEOUT_SECONDS)


def get_ok(url: str, timeout: float = 1.0) -> httpx.Response | None:
    """``GET url`` if it answers 200, else ``None`` (connection errors included)."""
    try:
        response = httpx.get(url, timeout=timeout)
    except httpx.TransportError:
        return None
    return response if response.status_code == 200 else None


class ManagedProcess:
    """A subprocess listening on a loopback port, with its output in a log file."""

    def __init__(
        self, argv: Sequence[str], *, port: int, log_path: Path, env: Mapping[str, str]
    ) -> None:
        self.port = port
        self.url = f"http://{LOOPBACK}:{port}"
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                list(argv), stdout=log, stderr=subprocess.STDOUT, env=dict(env), cwd=REPO_ROOT
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        """Everything the process printed so far."""
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, path: str) -> bool:
        """Poll ``path`` until it answers 200 (True) or the process exits (False)."""

        def probe() -> bool | None:
            if self.process.poll() is not None:
                return False
            return True if get_ok(self.url + path, timeout=0.5) is not None else None

        return poll(
            probe,
            timeout=STARTUP_TIMEOUT_SECONDS,
            what=f"{self.url}{path} (pid {self.pid})",
            diagnostics=self.output,
        )

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Stop by PID (``sig``, then SIGKILL after a timeout); return the exit code."""
        return stop_process(self.process, sig)


def start_listening(
    make_argv: Callable[[int], Sequence[str]],
    *,
    ready_path: str,
    log_dir: Path,
    name: str,
    env: Mapping[str, str],
) -> ManagedProcess:
    """Start ``make_argv(port)`` on a free port and wait until ``ready_path`` answers 200.

    The port is picked before the process binds it, so another process may take it in
    between; that start is retried on a new port. Any other early exit fails the test.
    """
    for attempt in range(1, PORT_ATTEMPTS + 1):
        port = free_port()
        log_path = log_dir / f"{name}-{port}-{attempt}.log"
        server = ManagedProcess(make_argv(port), port=port, log_path=log_path, env=env)
        try:
            ready = server.wait_ready(ready_path)
        except BaseException:
            server.stop(signal.SIGKILL)
            raise
        if ready:
            return server
        server.stop(signal.SIGKILL)
        output = server.output()
        if "address already in use" not in output.lower():
            pytest.fail(f"{name} exited during startup:\n{output}")
    pytest.fail(f"{name}: no free port after {PORT_ATTEMPTS} attempts")


def collector_argv(port: int) -> list[str]:
    """``python -m otelkit_collector`` on loopback, as a user would start it."""
    return [sys.executable, "-m", "otelkit_collector", "--host", LOOPBACK, "--port", str(port)]


@contextlib.contextmanager
def running_collector(
    log_dir: Path, env: Mapping[str, str] | None = None, *, name: str = "collector"
) -> Iterator[ManagedProcess]:
    """A ``python -m otelkit_collector`` subprocess configured only by ``env``; stopped on exit."""
    server = start_listening(
        collector_argv, ready_path="/healthz", log_dir=log_dir, name=name, env=clean_env(env)
    )
    try:
        yield server
    finally:
        server.stop()


class CollectorThread:
    """An in-process uvicorn server on ``127.0.0.1:0`` running ``app`` in a thread."""

    def __init__(self, app: FastAPI) -> None:
        config = uvicorn.Config(
            app, host=LOOPBACK, port=0, log_level="warning", access_log=False, lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="collector", daemon=True)
        self.url = ""

    def start(self) -> None:
        """Start serving and learn the port the kernel chose."""
        self.thread.start()

        def started() -> bool | None:
            if not self.thread.is_alive():
                pytest.fail("in-process collector thread exited during startup")
            return True if self.server.started else None

        poll(started, timeout=STARTUP_TIMEOUT_SECONDS, what="in-process collector startup")
        sockets: Sequence[Any] = self.server.servers[0].sockets
        host, port = sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}"

    def stop(self) -> None:
        """Ask uvicorn to shut down gracefully and wait for the thread."""
        self.server.should_exit = True
        self.thread.join(timeout=STOP_TIMEOUT_SECONDS)
        if self.thread.is_alive():
            self.server.force_exit = True
            self.thread.join(timeout=STOP_TIMEOUT_SECONDS)


@contextlib.contextmanager
def running_collector_thread(app: FastAPI) -> Iterator[CollectorThread]:
    """``app`` served by real uvicorn in this process; shut down on exit."""
    server = CollectorThread(app)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def running_prometheus(
    config: str, data_dir: Path, flags: Sequence[str] = ()
) -> Iterator[ManagedProcess]:
    """The real ``prometheus`` binary with ``config`` (YAML text) and extra command-line
    ``flags``, ready and stopped on exit."""
    binary = require_binary("prometheus")
    data_dir.mkdir(parents=True, exist_ok=True)
    config_path = data_dir / "prometheus.yml"
    config_path.write_text(config)

    def argv(port: int) -> list[str]:
        return [
            binary,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={data_dir / 'tsdb'}",
            f"--web.listen-address={LOOPBACK}:{port}",
            "--log.level=warn",
            *flags,
        ]

    server = start_listening(
        argv, ready_path="/-/ready", log_dir=data_dir, name="prometheus", env=clean_env()
    )
    try:
        yield server
    finally:
        server.stop()
