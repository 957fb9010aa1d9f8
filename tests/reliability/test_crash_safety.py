"""Item 8: SIGKILL at random moments during pushes, with a state file saved every 50 ms.

A pusher thread remembers the state after each acknowledged report (any answer but 200
before the kill fails the test). After each kill the
file must parse and hold one of those states (at most the last save interval's reports
lost); the restarted collector must show exactly that state, with every service whose
TTL ran out during the downtime at 0 / stale.
"""

from __future__ import annotations

import json
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from otelkit.instruments import SERVICE_HEALTH_STATUS
from tests.e2e.servers import ManagedProcess, running_collector
from tests.reliability.conftest import SCALE, Scale, first, parse_text, record_figure

SAVE_INTERVAL_SECONDS = 0.05
TTL_SECONDS = 1.0
DOWNTIME_SECONDS = TTL_SECONDS + 0.2
"""From the kill to the first read of the restarted collector (its start included)."""
SERVICES = ("auth", "payment", "courses")
STATUSES = ("healthy", "degraded", "unhealthy", "down")


@dataclass(frozen=True)
class State:
    """What a state file keeps that reports set: health statuses and user counts."""

    health: frozenset[tuple[str, str]] = frozenset()
    users: frozenset[tuple[str | None, int]] = frozenset()

    def with_health(self, service: str, status: str) -> State:
        health = {**dict(self.health), service: status}
        return State(frozenset(health.items()), self.users)

    def with_users(self, service: str | None, count: int) -> State:
        users = {**dict(self.users), service: count}
        return State(self.health, frozenset(users.items()))


@dataclass
class History:
    """The states acknowledged since the last restart, with when each was acknowledged."""

    initial: State
    acknowledged: list[tuple[State, float]] = field(default_factory=list)
    in_flight: State | None = None
    """Sent, not answered when the collector died: it may or may not have been applied."""
    failures: list[str] = field(default_factory=list)
    """Anything the pusher met besides 200s and the connection dying: each one a defect."""

    def candidates(self) -> list[State]:
        states = [self.initial, *(state for state, _ in self.acknowledged)]
        return states + ([self.in_flight] if self.in_flight is not None else [])


def push_until_killed(url: str, history: History, stop: threading.Event, seed: int) -> None:
    """Health and users reports, one at a time, each remembered once acknowledged."""
    rng = random.Random(seed)
    state = history.initial
    with httpx.Client(base_url=url, timeout=5) as http:
        count = 0
        while not stop.is_set():
            count += 1
            service = rng.choice(SERVICES)
            if rng.random() < 0.5:
                status = rng.choice(STATUSES)
                nxt, path = state.with_health(service, status), f"/api/health/{service}"
                body: dict[str, Any] = {"status": status}
            else:
                named = service if rng.random() < 0.7 else None
                # Counts grow with every report, so each state is told apart from the others.
                users = seed * 1_000_000 + count
                nxt, path = state.with_users(named, users), "/api/metrics/users"
                body = {"count": users, **({"service": named} if named else {})}
            history.in_flight = nxt
            try:
                response = http.post(path, json=body)
            except httpx.TransportError:
                return  # the collector was killed: the expected end
            except Exception as exc:
                history.failures.append(f"POST {path} {body}: {exc!r}")
                return
            if response.status_code != 200:
                history.failures.append(
                    f"POST {path} {body}: {response.status_code} {response.text[:300]}"
                )
                return
            state = nxt
            history.acknowledged.append((state, time.monotonic()))
            history.in_flight = None


def file_state(path: Path) -> tuple[State, dict[str, Any]] | None:
    """The state a file holds (``None`` when there is no file yet); raises if it is torn."""
    if not path.exists():
        return None
    document: dict[str, Any] = json.loads(path.read_bytes())
    assert document["version"] == 1
    health = frozenset((s, entry["status"]) for s, entry in document["health"].items())
    users = frozenset((entry["service"], entry["count"]) for entry in document["users"])
    return State(health, users), document


@dataclass
class Round:
    """One kill: when, how many reports were acknowledged, which state the file held."""

    delay: float
    acknowledged: int
    restored_index: int
    lost: int
    loss_window: float


def restarted_view(collector: ManagedProcess) -> tuple[State, dict[str, Any], dict[str, float]]:
    """Right after a restart: the state from /api/metrics, the view, and health from /metrics."""
    view = httpx.get(f"{collector.url}/api/metrics", timeout=10).json()
    exposition = parse_text(httpx.get(f"{collector.url}/metrics", timeout=10).text)
    health_values = {
        dict(labels)["service"]: value
        for (name, labels), value in exposition.items()
        if name == SERVICE_HEALTH_STATUS.prometheus_name
    }
    users = frozenset((u["service"], u["count"]) for u in view["active_users"])
    return State(frozenset(), users), view, health_values


@pytest.mark.timeout(SCALE.test_timeout)
def test_sigkill_during_pushes_restores_a_state_that_existed(tmp_path: Path, scale: Scale) -> None:
    """After each SIGKILL: the file parses, holds an acknowledged state, and restarts stale."""
    state_file = tmp_path / "state.json"
    env = {
        "OTELKIT_STATE_FILE": str(state_file),
        "OTELKIT_STATE_SAVE_INTERVAL_SECONDS": str(SAVE_INTERVAL_SECONDS),
        "OTELKIT_HEALTH_TTL_SECONDS": str(TTL_SECONDS),
    }
    rng = random.Random(8)
    state = State()
    document: dict[str, Any] = {"health": {}}
    rounds: list[Round] = []
    problems: list[str] = []
    killed_at = time.monotonic()
    for kill in range(scale.crash_kills + 1):
        with running_collector(tmp_path, env, name=f"crash-{kill}") as collector:
            if kill > 0:
                # Restarted after a kill: once the TTL has passed since the kill (the start
                # itself usually takes longer), it must show the state the file held, stale.
                time.sleep(max(0.0, killed_at + DOWNTIME_SECONDS - time.monotonic()))
                restored, view, health_values = restarted_view(collector)
                if restored.users != state.users:
                    problems.append(f"round {kill}: users {restored.users} != {state.users}")
                if {s["service"] for s in view["services"]} != dict(state.health).keys():
                    problems.append(f"round {kill}: services {view['services']} != {state}")
                times = {s["service"]: s["last_report"] for s in view["services"]}
                saved_times = {s: e["reported_at"] for s, e in document["health"].items()}
                if times != saved_times:
                    problems.append(f"round {kill}: last reports {times} != {saved_times}")
                fresh = [s for s in view["services"] if s["status"] != "stale" or s["value"]]
                if fresh or any(health_values.values()):
                    problems.append(f"round {kill}: past the TTL yet not stale: {fresh}")
                if list(tmp_path.glob("state.json.corrupt-*")):
                    problems.append(f"round {kill}: a state file was set aside as corrupt")
            if kill == scale.crash_kills:
                break
            history = History(initial=state)
            stop = threading.Event()
            pusher = threading.Thread(
                target=push_until_killed,
                args=(collector.url, history, stop, kill + 1),
                name="pusher",
                daemon=True,
            )
            delay = rng.uniform(*scale.kill_after_seconds)
            pusher.start()
            time.sleep(delay)
            killed_at = time.monotonic()
            collector.stop(signal.SIGKILL)
            stop.set()
            pusher.join(timeout=10)
            if pusher.is_alive():
                problems.append(f"round {kill}: the pusher did not stop after the kill")
            problems.extend(f"round {kill}: {failure}" for failure in history.failures)

        saved = file_state(state_file)
        restored, document = saved if saved is not None else (State(), {"health": {}})
        candidates = history.candidates()
        if restored not in candidates:
            problems.append(f"round {kill}: the file holds a state that never existed")
            break
        # A report may repeat a state (the same health twice): count from its last occurrence.
        index = max(i for i, candidate in enumerate(candidates) if candidate == restored)
        acknowledged = len(history.acknowledged)
        lost = max(0, acknowledged - index)
        first_lost_at = history.acknowledged[index][1] if lost else killed_at
        rounds.append(Round(delay, acknowledged, index, lost, killed_at - first_lost_at))
        state = restored

    worst_window = max((r.loss_window for r in rounds), default=0.0)
    # A report acknowledged longer than this before the kill must be on disk.
    window_bound = SAVE_INTERVAL_SECONDS + scale.loss_slack_seconds
    assert window_bound < scale.kill_after_seconds[0], "the bound must be able to fail"
    record_figure(
        "8 crash safety",
        f"{len(rounds)} SIGKILLs at random {scale.kill_after_seconds[0]}-"
        f"{scale.kill_after_seconds[1]} s into pushes "
        f"({sum(r.acknowledged for r in rounds)} acknowledged reports): file parsed every time; "
        f"restored state was acknowledged state #k each time; lost "
        f"{[r.lost for r in rounds]} reports, acknowledged at most {worst_window * 1000:.0f} ms "
        f"before the kill; first read >= {DOWNTIME_SECONDS:.1f} s after the kill (TTL "
        f"{TTL_SECONDS:.0f} s): {not problems}",
        "file always parses; restored state existed (loss <= save interval); "
        "TTL-expired services 0 / stale right after restart",
        not problems and len(rounds) == scale.crash_kills and worst_window <= window_bound,
    )
    assert not problems, first(problems)
    assert len(rounds) == scale.crash_kills
    assert sum(r.acknowledged for r in rounds) > 0, "no report was acknowledged before a kill"
    assert worst_window <= window_bound
