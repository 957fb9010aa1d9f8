"""State-file persistence across real process restarts, clean and abrupt (SIGTERM, SIGKILL)."""

from __future__ import annotations

import json
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from otelkit_collector.persistence import parse_state
from tests.e2e.conftest import StartCollector
from tests.e2e.servers import ManagedProcess, poll

REPORTS = {"auth": "healthy", "payment": "unhealthy"}
USERS = [{"count": 127}, {"count": 12, "service": "auth"}]
KILL_CYCLES = 3


def persistence_env(state_file: Path, interval: float) -> dict[str, str]:
    return {
        "OTELKIT_STATE_FILE": str(state_file),
        "OTELKIT_STATE_SAVE_INTERVAL_SECONDS": str(interval),
    }


def report_state(collector: ManagedProcess) -> None:
    with httpx.Client(base_url=collector.url, timeout=5) as http:
        for service, status in REPORTS.items():
            http.post(f"/api/health/{service}", json={"status": status}).raise_for_status()
        for users in USERS:
            http.post("/api/metrics/users", json=users).raise_for_status()


def persisted_view(collector: ManagedProcess) -> dict[str, Any]:
    """What survives a restart: statuses, last-report times and users (not ages)."""
    view = httpx.get(f"{collector.url}/api/metrics", timeout=5).json()
    return {
        "services": {
            s["service"]: (s["status"], s["value"], s["last_report"]) for s in view["services"]
        },
        "users": {u["service"]: (u["count"], u["last_report"]) for u in view["active_users"]},
    }


def saved_document(path: Path) -> dict[str, Any] | None:
    """The state file's document once it holds every reported service, else ``None``."""
    try:
        document: dict[str, Any] = json.loads(path.read_bytes())
    except (FileNotFoundError, ValueError):
        return None
    complete = document.get("health", {}).keys() == REPORTS.keys() and len(document["users"]) == 2
    return document if complete else None


def test_periodic_save_survives_sigkill(tmp_path: Path, start_collector: StartCollector) -> None:
    """What the periodic saver wrote comes back after a SIGKILL and a restart, times included."""
    state_file = tmp_path / "state.json"
    env = persistence_env(state_file, 0.2)
    first = start_collector(env)
    report_state(first)
    before = persisted_view(first)
    poll(lambda: saved_document(state_file), timeout=10, what=f"{state_file} with every report")
    first.stop(signal.SIGKILL)

    second = start_collector(env)
    assert persisted_view(second) == before
    assert before["services"]["auth"][:2] == ("healthy", 1)
    assert before["services"]["payment"][:2] == ("unhealthy", 0)
    assert {service: users[0] for service, users in before["users"].items()} == {
        None: 127,
        "auth": 12,
    }


def test_sigterm_saves_before_exit(tmp_path: Path, start_collector: StartCollector) -> None:
    """A graceful stop writes the latest state even when the save interval has not come round."""
    state_file = tmp_path / "state.json"
    env = persistence_env(state_file, 3600)
    first = start_collector(env)
    report_state(first)
    before = persisted_view(first)
    assert not state_file.exists()
    # uvicorn shuts down gracefully, then re-raises the signal: exit status 0 or -SIGTERM.
    assert first.stop(signal.SIGTERM) in (0, -signal.SIGTERM), first.output()
    assert "Application shutdown complete" in first.output()
    assert saved_document(state_file) is not None

    second = start_collector(env)
    assert persisted_view(second) == before


def test_garbage_state_file_is_set_aside(tmp_path: Path, start_collector: StartCollector) -> None:
    """An unreadable state file is moved to state.json.corrupt-* and the collector starts empty."""
    state_file = tmp_path / "state.json"
    state_file.write_bytes(b"\x00garbage")
    collector = start_collector(persistence_env(state_file, 0.2))

    assert httpx.get(f"{collector.url}/healthz", timeout=5).status_code == 200
    [aside] = tmp_path.glob("state.json.corrupt-*")
    assert aside.read_bytes() == b"\x00garbage"
    assert persisted_view(collector) == {"services": {}, "users": {}}
    assert "unreadable" in collector.output()

    report_state(collector)
    poll(lambda: saved_document(state_file), timeout=10, what="a fresh, valid state file")


def kill_while_saving(collector: ManagedProcess, state_file: Path, delay: float) -> None:
    """Send a stream of health reports, then SIGKILL the collector ``delay`` s into it."""
    stop = threading.Event()
    sent = [0]

    def hammer() -> None:
        # Every report changes the state, so the saver writes on nearly every interval.
        with httpx.Client(base_url=collector.url, timeout=2) as http:
            while not stop.is_set():
                try:
                    http.post(f"/api/health/svc-{sent[0] % 7}", json={"status": "healthy"})
                except httpx.TransportError:
                    return
                sent[0] += 1

    writer = threading.Thread(target=hammer, name="hammer", daemon=True)
    writer.start()
    try:
        poll(
            lambda: True if sent[0] >= 50 and state_file.exists() else None,
            timeout=15,
            what="reports flowing and a first save",
            diagnostics=collector.output,
        )
        time.sleep(delay)
        collector.stop(signal.SIGKILL)
    finally:
        stop.set()
        writer.join(timeout=5)


def test_sigkill_during_writes_leaves_a_parseable_file(
    tmp_path: Path, start_collector: StartCollector
) -> None:
    """Killing the collector mid-save never leaves a torn state file: each restart reads it."""
    state_file = tmp_path / "state.json"
    env = persistence_env(state_file, 0.005)
    rng = random.Random(20240611)
    for cycle in range(KILL_CYCLES):
        collector = start_collector(env, name=f"kill-cycle-{cycle}")
        kill_while_saving(collector, state_file, rng.uniform(0.05, 0.3))
        parse_state(json.loads(state_file.read_bytes()))

    survivor = start_collector(env, name="after-kills")
    assert not list(tmp_path.glob("state.json.corrupt-*")), survivor.output()
    services = persisted_view(survivor)["services"]
    assert services, "the last saved state was restored"
    assert all(status == "healthy" for status, _, _ in services.values())
