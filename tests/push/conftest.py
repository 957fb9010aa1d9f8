"""Push mode over real loopback: the collector and the example service as subprocesses.

Every process starts in a session of its own, so teardown stops it and any uvicorn workers
it spawned by process group, whatever the test did; every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from otelkit.instruments import (
    HTTP_REQUEST_DURATION,
    PUSH_OUTCOMES,
    PUSH_QUEUE_SIZE,
    PUSH_REPORTS,
)
from otelkit.push import PushStats
from tests.e2e.servers import (
    LOOPBACK,
    REPO_ROOT,
    clean_env,
    collector_argv,
    free_port,
    get_ok,
    poll,
)

SERVICE_APP = "examples.courses.app:app"
SERVICE_NAME = "courses"
"""The example service's name, on every report it pushes (``service="courses"``)."""
STARTUP_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 15.0
"""Generous for a SIGTERM: the service's push flush is bounded at 5 s."""
PORT_ATTEMPTS = 3
STARTUP_LINE = "Application startup complete."

Series = tuple[str, str, str]
"""(method, route, status) of ``http_request_duration_seconds``."""
ArgvForPort = Callable[[int], Sequence[str]]


class Process:
    """A subprocess in its own session, listening on a loopback port, logging to files."""

    def __init__(
        self, argv: Sequence[str], *, port: int, name: str, log_dir: Path, env: Mapping[str, str]
    ) -> None:
        self.name = name
        self.port = port
        self.url = f"http://{LOOPBACK}:{port}"
        self.stdout_path = log_dir / f"{name}-{port}.stdout.log"
        self.stderr_path = log_dir / f"{name}-{port}.stderr.log"
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(
                list(argv),
                stdout=out,
                stderr=err,
                env=dict(env),
                cwd=REPO_ROOT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def stderr(self) -> str:
        """Everything the process wrote to stderr so far (uvicorn logs there)."""
        return self.stderr_path.read_text(errors="replace")

    def output(self) -> str:
        """Both streams, for failure messages."""
        stdout = self.stdout_path.read_text(errors="replace")
        return f"--- {self.name} stdout ---\n{stdout}--- {self.name} stderr ---\n{self.stderr()}"

    def wait_ready(self, path: str, *, startup_lines: int = 1) -> bool:
        """Poll until ``path`` answers 200 and the log shows ``startup_lines`` app startups
        (one per uvicorn worker): True; or until the process exits: False."""

        def probe() -> bool | None:
            if self.process.poll() is not None:
                return False
            if self.stderr().count(STARTUP_LINE) < startup_lines:
                return None
            return True if get_ok(self.url + path, timeout=0.5) is not None else None

        return poll(
            probe,
            timeout=STARTUP_TIMEOUT_SECONDS,
            what=f"{self.name} at {self.url}{path} (pid {self.pid})",
            diagnostics=self.output,
        )

    def terminate(self) -> float:
        """SIGTERM the process (by PID: uvicorn's parent stops its own workers) and wait
        for it to exit; return the seconds that took. Fails the test past the deadline."""
        started = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.kill_group()
            pytest.fail(f"{self.name} did not exit within {STOP_TIMEOUT_SECONDS:.0f}s of SIGTERM")
        return time.monotonic() - started

    def kill_group(self) -> None:
        """SIGKILL the whole process group (the process and any workers it left)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=STOP_TIMEOUT_SECONDS)


def service_argv(port: int, workers: int = 1) -> list[str]:
    """The example service under uvicorn, as a user would run it (access log off)."""
    argv = [sys.executable, "-m", "uvicorn", SERVICE_APP, "--host", LOOPBACK, "--port", str(port)]
    argv += ["--no-access-log"]
    if workers > 1:
        argv += ["--workers", str(workers)]
    return argv


class Launcher:
    """Starts collectors and example services; :meth:`stop_all` kills whatever is left."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[Process] = []

    def start(
        self,
        argv_for_port: ArgvForPort,
        *,
        name: str,
        env: Mapping[str, str],
        port: int | None = None,
        startup_lines: int = 1,
    ) -> Process:
        """Start ``argv_for_port(port)`` and wait until ``/healthz`` answers.

        Without ``port`` a free one is picked, and a start that lost the port to another
        process is retried on a new one; any other early exit fails the test.
        """
        attempts = PORT_ATTEMPTS if port is None else 1
        for attempt in range(1, attempts + 1):
            chosen = port if port is not None else free_port()
            process = Process(
                argv_for_port(chosen),
                port=chosen,
                name=f"{name}-{attempt}",
                log_dir=self.log_dir,
                env=env,
            )
            self.started.append(process)
            if process.wait_ready("/healthz", startup_lines=startup_lines):
                return process
            process.kill_group()
            if "address already in use" not in process.output().lower() or port is not None:
                pytest.fail(f"{name} exited during startup:\n{process.output()}")
        pytest.fail(f"{name}: no free port after {attempts} attempts")

    def collector(self, *, port: int | None = None) -> Process:
        """``python -m otelkit_collector`` on loopback, configured by nothing but its flags."""
        return self.start(collector_argv, name="collector", env=clean_env(), port=port)

    def service(self, collector_url: str, *, workers: int = 1, name: str = "service") -> Process:
        """The example service pushing to ``collector_url``."""
        return self.start(
            lambda port: service_argv(port, workers),
            name=name,
            env=clean_env({"OTELKIT_COLLECTOR_URL": collector_url}),
            startup_lines=workers,
        )

    def stop_all(self) -> None:
        for process in reversed(self.started):
            process.kill_group()


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[Launcher]:
    """Starts real processes; all are killed by process group at teardown, even on failure."""
    launcher = Launcher(tmp_path)
    try:
        yield launcher
    finally:
        launcher.stop_all()


# --- reading /metrics -------------------------------------------------------------------


def scrape(url: str) -> list[Sample]:
    """Every sample of ``url``'s /metrics, parsed with prometheus_client (a new connection,
    so a multi-worker service answers from whichever worker accepts it)."""
    response = httpx.get(f"{url}/metrics", timeout=5)
    assert response.status_code == 200, response.text
    return [
        sample
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    ]


def request_counts(samples: Sequence[Sample], service: str | None = None) -> dict[Series, int]:
    """``http_request_duration_seconds_count`` per (method, route, status), for ``service``
    (a collector's series) or without a service label (a service's own /metrics)."""
    name = f"{HTTP_REQUEST_DURATION.prometheus_name}_count"
    counts: dict[Series, int] = {}
    for sample in samples:
        if sample.name != name or sample.labels.get("service") != service:
            continue
        labels = sample.labels
        counts[(labels["method"], labels["route"], labels["status"])] = int(sample.value)
    return counts


def value(samples: Sequence[Sample], name: str, **labels: str) -> float | None:
    """The value of the sample ``name`` with exactly ``labels``, or ``None``."""
    for sample in samples:
        if sample.name == name and sample.labels == labels:
            return float(sample.value)
    return None


def push_stats(samples: Sequence[Sample]) -> PushStats:
    """The service's push counts as its /metrics shows them."""
    outcomes: dict[str, int] = {}
    for outcome in PUSH_OUTCOMES:
        found = value(samples, PUSH_REPORTS.prometheus_name, outcome=outcome)
        assert found is not None, f"{PUSH_REPORTS.prometheus_name}{{outcome={outcome!r}}} missing"
        outcomes[outcome] = int(found)
    queued = value(samples, PUSH_QUEUE_SIZE.prometheus_name)
    assert queued is not None, f"{PUSH_QUEUE_SIZE.prometheus_name} missing"
    return PushStats(queued=int(queued), **outcomes)


def settled_push_stats(url: str, timeout: float = 10.0) -> PushStats:
    """Push counts from two consecutive scrapes that agree: a scrape reads the counters
    and the queue gauge one after the other, and the sender may move in between."""
    previous: list[PushStats] = []

    def probe() -> PushStats | None:
        current = push_stats(scrape(url))
        settled = previous and previous[-1] == current
        previous.append(current)
        return current if settled else None

    return poll(probe, timeout=timeout, what=f"settled push counts at {url}", interval=0.05)


def conserved(stats: PushStats) -> bool:
    """The push contract: every generated report is delivered, dropped or still queued."""
    return stats.delivered + stats.dropped + stats.queued == stats.generated
