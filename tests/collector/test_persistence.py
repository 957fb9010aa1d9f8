"""The state file: atomic round trips, lenient loading of garbage, periodic saving."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from otelkit_collector import persistence
from otelkit_collector.state import HealthEntry, ServiceState, UsersEntry
from tests.conftest import AppFactory, CollectorProbe, FakeClock, open_client

pytestmark = pytest.mark.anyio


def names_in(directory: Path) -> list[str]:
    return sorted(entry.name for entry in directory.iterdir())


async def eventually(condition: Callable[[], bool]) -> None:
    """Wait (up to 5 s) until ``condition()`` holds: the saver runs on its own schedule."""
    for _ in range(1_000):
        if condition():
            return
        await anyio.sleep(0.005)
    raise AssertionError("condition still false after 5 s")


def filled_state(clock: FakeClock) -> ServiceState:
    """A state with two services' health and three users counts, one of them unnamed."""
    state = ServiceState(health_ttl_seconds=90, max_services=10, clock=clock)
    state.set_health("auth", "healthy")
    clock.advance(3)
    state.set_health("courses", "down")
    state.set_users(None, 127)
    state.set_users("auth", 4)
    state.set_users("courses", 0)
    return state


def document(**changes: Any) -> dict[str, Any]:
    """A valid state document, with top-level ``changes``."""
    base: dict[str, Any] = {
        "version": 1,
        "health": {"auth": {"status": "healthy", "reported_at": 1_700_000_000.0}},
        "users": [{"service": None, "count": 3, "reported_at": 1_700_000_000.0}],
    }
    return {**base, **changes}


def test_round_trip_restores_health_and_users(tmp_path: Path, clock: FakeClock) -> None:
    """dump_state, write_state_file and load_state_file give back exactly what was saved."""
    state = filled_state(clock)
    path = tmp_path / "state.json"

    persistence.write_state_file(path, persistence.dump_state(state))
    restored = ServiceState(health_ttl_seconds=90, max_services=10, clock=clock)
    version = restored.version

    assert persistence.load_state_file(path, restored) is True
    assert dict(restored.health_entries()) == dict(state.health_entries())
    assert dict(restored.users()) == dict(state.users())
    assert [v.value for v in restored.health_views()] == [1, 0]
    assert restored.version > version


def test_written_file_is_plain_versioned_json(tmp_path: Path, clock: FakeClock) -> None:
    """The file is ASCII JSON with a version, and no temporary file is left beside it."""
    path = tmp_path / "nested" / "dir" / "state.json"

    persistence.write_state_file(path, persistence.dump_state(filled_state(clock)))

    raw = path.read_bytes()
    assert raw.isascii()
    loaded = json.loads(raw)
    assert loaded["version"] == persistence.FORMAT_VERSION
    assert loaded["health"]["courses"] == {"status": "down", "reported_at": clock.now}
    assert {"service": None, "count": 127, "reported_at": clock.now} in loaded["users"]
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]


def test_rewrite_replaces_the_whole_file(tmp_path: Path, clock: FakeClock) -> None:
    """A second write replaces the first completely (forgotten services do not linger)."""
    state = filled_state(clock)
    path = tmp_path / "state.json"
    persistence.write_state_file(path, persistence.dump_state(state))

    state.forget("courses")
    persistence.write_state_file(path, persistence.dump_state(state))

    loaded = json.loads(path.read_text())
    assert set(loaded["health"]) == {"auth"}
    assert all(entry["service"] != "courses" for entry in loaded["users"])


def test_exotic_service_names_round_trip(tmp_path: Path, clock: FakeClock) -> None:
    """Service names with quotes, backslashes and non-ASCII text survive the file unchanged."""
    state = ServiceState(health_ttl_seconds=90, max_services=10, clock=clock)
    names = ['say "hi"', "C:\\x", "🚀", "課程", "e\u0301"]
    for name in names:
        state.set_health(name, "healthy")
    path = tmp_path / "state.json"

    persistence.write_state_file(path, persistence.dump_state(state))
    restored = ServiceState(health_ttl_seconds=90, max_services=10, clock=clock)

    assert persistence.load_state_file(path, restored) is True
    assert [service for service, _ in restored.health_entries()] == names


def test_restore_applies_the_ttl_to_the_saved_time(tmp_path: Path, clock: FakeClock) -> None:
    """Restored after the TTL has passed, a healthy service reads stale/0 with its old time."""
    state = filled_state(clock)
    path = tmp_path / "state.json"
    persistence.write_state_file(path, persistence.dump_state(state))
    saved = dict(state.health_entries())

    clock.advance(91)
    restored = ServiceState(health_ttl_seconds=90, max_services=10, clock=clock)
    assert persistence.load_state_file(path, restored)

    views = {view.service: view for view in restored.health_views()}
    assert views["auth"].status == "stale"
    assert views["auth"].value == 0
    assert views["auth"].reported_at == saved["auth"].reported_at
    assert views["courses"].value == 0


def test_restore_keeps_at_most_max_services(tmp_path: Path, clock: FakeClock) -> None:
    """A file holding more services than the cap restores only as many as the cap allows."""
    path = tmp_path / "state.json"
    persistence.write_state_file(path, persistence.dump_state(filled_state(clock)))
    restored = ServiceState(health_ttl_seconds=90, max_services=1, clock=clock)

    assert persistence.load_state_file(path, restored)

    assert [service for service, _ in restored.health_entries()] == ["auth"]
    assert dict(restored.users()) == {
        None: UsersEntry(127, clock.now),
        "auth": UsersEntry(4, clock.now),
    }


def test_missing_file_is_a_fresh_start(tmp_path: Path, clock: FakeClock) -> None:
    """No file means nothing restored and nothing created."""
    state = ServiceState(health_ttl_seconds=90, max_services=10, clock=clock)

    assert persistence.load_state_file(tmp_path / "absent.json", state) is False
    assert list(tmp_path.iterdir()) == []
    assert list(state.health_entries()) == []


GARBAGE = [
    pytest.param(b"not json at all", id="not-json"),
    pytest.param(b"", id="empty"),
    pytest.param(b"\xff\xfe\x00{", id="invalid-utf8"),
    pytest.param(b'{"version": 1, "health": {}, "users": [', id="truncated"),
    pytest.param(b"[" * 100_000, id="deeply-nested"),
    pytest.param(b"null", id="null"),
    pytest.param(b"[]", id="list"),
    pytest.param(json.dumps(document(version=2)).encode(), id="future-version"),
    pytest.param(json.dumps(document(version="1")).encode(), id="string-version"),
    pytest.param(json.dumps({"health": {}, "users": []}).encode(), id="no-version"),
    pytest.param(json.dumps(document(health=[])).encode(), id="health-list"),
    pytest.param(json.dumps(document(health=None)).encode(), id="health-missing"),
    pytest.param(json.dumps(document(users={})).encode(), id="users-object"),
    pytest.param(json.dumps(document(users=[1])).encode(), id="users-entry-number"),
    pytest.param(
        json.dumps(document(health={"auth": {"status": "sick", "reported_at": 1.0}})).encode(),
        id="unknown-status",
    ),
    pytest.param(
        json.dumps(document(health={"auth": {"status": "healthy", "reported_at": "x"}})).encode(),
        id="string-time",
    ),
    pytest.param(
        json.dumps(document(health={"auth": {"status": "healthy", "reported_at": True}})).encode(),
        id="bool-time",
    ),
    pytest.param(
        b'{"version":1,"health":{"auth":{"status":"healthy","reported_at":NaN}},"users":[]}',
        id="nan-time",
    ),
    pytest.param(
        b'{"version":1,"health":{"auth":{"status":"healthy","reported_at":1e400}},"users":[]}',
        id="overflowing-time",
    ),
    pytest.param(
        json.dumps(document(health={"": {"status": "healthy", "reported_at": 1.0}})).encode(),
        id="empty-service",
    ),
    pytest.param(
        json.dumps(document(health={"a\nb": {"status": "healthy", "reported_at": 1.0}})).encode(),
        id="control-char-service",
    ),
    pytest.param(
        b'{"version":1,"health":{"\\ud800":{"status":"healthy","reported_at":1.0}},"users":[]}',
        id="lone-surrogate-service",
    ),
    pytest.param(
        json.dumps(document(users=[{"service": None, "count": -1, "reported_at": 1.0}])).encode(),
        id="negative-count",
    ),
    pytest.param(
        json.dumps(document(users=[{"service": None, "count": 1.5, "reported_at": 1.0}])).encode(),
        id="fractional-count",
    ),
    pytest.param(
        json.dumps(document(users=[{"service": None, "count": True, "reported_at": 1.0}])).encode(),
        id="bool-count",
    ),
    pytest.param(
        json.dumps(document(users=[{"service": 7, "count": 1, "reported_at": 1.0}])).encode(),
        id="number-service",
    ),
]


@pytest.mark.parametrize("content", GARBAGE)
def test_unreadable_file_is_set_aside(tmp_path: Path, clock: FakeClock, content: bytes) -> None:
    """A file that is not a valid state is renamed to <name>.corrupt-* and nothing is restored."""
    path = tmp_path / "state.json"
    path.write_bytes(content)
    state = ServiceState(health_ttl_seconds=90, max_services=10, clock=clock)

    assert persistence.load_state_file(path, state) is False

    assert not path.exists()
    [aside] = list(tmp_path.iterdir())
    assert aside.name.startswith("state.json.corrupt-")
    assert aside.read_bytes() == content
    assert list(state.health_entries()) == []
    assert list(state.users()) == []


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"not json at all", id="not-json"),
        pytest.param(b"\xff\xfe\x00{", id="invalid-utf8"),
        pytest.param(json.dumps(document(version=2)).encode(), id="future-version"),
    ],
)
async def test_collector_starts_despite_a_corrupt_file(
    tmp_path: Path, make_app: AppFactory, content: bytes
) -> None:
    """create_app with a corrupt state file still builds, serves, and sets the file aside."""
    path = tmp_path / "state.json"
    path.write_bytes(content)

    app = make_app(state_file=path)

    async with open_client(app) as http:
        assert (await http.post("/api/health/auth", json={"status": "healthy"})).is_success
        series = await CollectorProbe(http).series()
    assert series[("service_health_status", frozenset({("service", "auth")}))] == 1
    [aside] = names_in(tmp_path)
    assert aside.startswith("state.json.corrupt-")


async def test_collector_restores_state_on_start(
    tmp_path: Path, make_app: AppFactory, clock: FakeClock
) -> None:
    """create_app with a saved state file shows its health and users at the first scrape."""
    path = tmp_path / "state.json"
    persistence.write_state_file(
        path,
        document(
            health={
                "auth": {"status": "healthy", "reported_at": clock.now - 10},
                "courses": {"status": "degraded", "reported_at": clock.now - 20},
            },
            users=[
                {"service": None, "count": 127, "reported_at": clock.now - 5},
                {"service": "auth", "count": 8, "reported_at": clock.now - 5},
            ],
        ),
    )

    async with open_client(make_app(state_file=path)) as http:
        probe = CollectorProbe(http)
        series = await probe.series()
        view = await probe.view()

    auth, courses = frozenset({("service", "auth")}), frozenset({("service", "courses")})
    assert series == {
        ("service_health_status", auth): 1,
        ("service_health_status", courses): 0,
        ("service_health_last_report_timestamp_seconds", auth): clock.now - 10,
        ("service_health_last_report_timestamp_seconds", courses): clock.now - 20,
        ("active_users_total", frozenset()): 127,
        ("active_users_total", auth): 8,
    }
    assert {s["service"]: s["status"] for s in view["services"]} == {
        "auth": "healthy",
        "courses": "degraded",
    }
    assert not any(name.startswith("http_request") for name, _ in series)


async def test_app_writes_nothing_without_its_lifespan(
    tmp_path: Path, make_app: AppFactory
) -> None:
    """Requests alone never touch the state file: only the saver started by the lifespan writes."""
    path = tmp_path / "state.json"

    async with open_client(make_app(state_file=path)) as http:
        assert (await http.post("/api/health/auth", json={"status": "healthy"})).is_success
        assert (await http.post("/api/metrics/users", json={"count": 2})).is_success

    assert names_in(tmp_path) == []


async def test_save_periodically_writes_changes(tmp_path: Path, clock: FakeClock) -> None:
    """The saver writes soon after a change, and writes the last change when cancelled."""
    path = tmp_path / "state.json"
    state = ServiceState(health_ttl_seconds=90, max_services=10, clock=clock)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(persistence.save_periodically, path, state, 0.01)
        await anyio.sleep(0.05)
        assert not path.exists()  # nothing changed, nothing written

        state.set_health("auth", "healthy")
        await eventually(path.exists)
        assert set(json.loads(path.read_text())["health"]) == {"auth"}

        state.set_users("auth", 3)
        tasks.cancel_scope.cancel()

    saved = json.loads(path.read_text())
    assert saved["users"] == [{"service": "auth", "count": 3, "reported_at": clock.now}]
    restored = ServiceState(health_ttl_seconds=90, max_services=10, clock=clock)
    assert persistence.load_state_file(path, restored)
    assert dict(restored.health_entries()) == {"auth": HealthEntry("healthy", clock.now)}


async def test_save_periodically_retries_a_failed_write(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A write that fails (the target is a directory) is logged and retried at each next
    interval, with no new change needed, until the file is written; then nothing more."""
    path = tmp_path / "state.json"
    path.mkdir()
    state = ServiceState(health_ttl_seconds=90, max_services=10, clock=clock)

    def failures() -> list[logging.LogRecord]:
        return [
            record
            for record in caplog.records
            if record.name == persistence.__name__
            and record.getMessage().startswith(f"could not write state file {path}")
        ]

    with caplog.at_level(logging.ERROR, logger=persistence.__name__):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(persistence.save_periodically, path, state, 0.01)
            await anyio.sleep(0.02)  # let the saver take its baseline first
            state.set_health("auth", "healthy")
            changed = state.version
            await eventually(lambda: len(failures()) >= 3)  # one change, three attempts
            assert path.is_dir()
            assert names_in(tmp_path) == ["state.json"]  # no temp file left by a failure
            path.rmdir()
            await eventually(path.is_file)
            written = (path.stat().st_ino, path.stat().st_mtime_ns)
            await anyio.sleep(0.05)  # several intervals: saved, so not written again
            assert (path.stat().st_ino, path.stat().st_mtime_ns) == written
            assert state.version == changed
            tasks.cancel_scope.cancel()

    saved = json.loads(path.read_text())
    assert saved["health"] == {"auth": {"status": "healthy", "reported_at": clock.now}}
    assert names_in(tmp_path) == ["state.json"]
