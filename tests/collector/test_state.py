"""The pure core: ServiceState (health TTL, users, service cap) and CardinalityGuard."""

from __future__ import annotations

import itertools

import pytest

from otelkit_collector.cardinality import CardinalityGuard, SeriesKey
from otelkit_collector.state import CapacityError, HealthEntry, ServiceState, UsersEntry
from tests.conftest import FakeClock


@pytest.fixture
def state(clock: FakeClock) -> ServiceState:
    return ServiceState(health_ttl_seconds=30, max_services=2, clock=clock)


def test_health_view_reports_value_and_age(state: ServiceState, clock: FakeClock) -> None:
    """A health view carries the status, 1 only for healthy, the report time and its age."""
    state.set_health("auth", "healthy")
    state.set_health("courses", "degraded")
    clock.advance(12)

    views = {view.service: view for view in state.health_views()}

    assert (views["auth"].status, views["auth"].value) == ("healthy", 1)
    assert (views["courses"].status, views["courses"].value) == ("degraded", 0)
    assert views["auth"].reported_at == clock.now - 12
    assert views["auth"].age_seconds == 12


def test_ttl_boundary(state: ServiceState, clock: FakeClock) -> None:
    """A report exactly TTL old is still live; any older and it is stale with value 0."""
    state.set_health("auth", "healthy")

    clock.advance(30)
    [view] = state.health_views()
    assert (view.status, view.value) == ("healthy", 1)

    clock.advance(0.001)
    [view] = state.health_views()
    assert (view.status, view.value) == ("stale", 0)


def test_clock_going_backwards_gives_age_zero(state: ServiceState, clock: FakeClock) -> None:
    """A report from the future (clock stepped back) reads as age 0, not negative."""
    state.set_health("auth", "healthy")
    clock.advance(-100)

    [view] = state.health_views()

    assert view.age_seconds == 0
    assert view.value == 1


def test_service_cap_refuses_newcomers(state: ServiceState) -> None:
    """Past max_services a new service raises CapacityError naming the cap, changing nothing."""
    state.set_health("a", "healthy")
    state.set_users("b", 1)
    version = state.version

    with pytest.raises(CapacityError, match="max_services=2"):
        state.set_health("c", "healthy")
    with pytest.raises(CapacityError, match="OTELKIT_MAX_SERVICES"):
        state.set_users("c", 1)

    assert [service for service, _ in state.health_entries()] == ["a"]
    assert [service for service, _ in state.users()] == ["b"]
    assert state.version == version


def test_known_services_and_unnamed_users_pass_a_full_cap(state: ServiceState) -> None:
    """At the cap, known services keep reporting and unnamed users never take a slot."""
    state.set_health("a", "healthy")
    state.set_health("b", "healthy")

    state.set_users("a", 3)
    state.set_health("b", "down")
    state.set_users(None, 9)

    assert dict(state.users()) == {
        "a": UsersEntry(3, 1_700_000_000.0),
        None: UsersEntry(9, 1_700_000_000.0),
    }


def test_forget_drops_health_and_users(state: ServiceState) -> None:
    """forget removes a service's health and users and reports whether it knew it."""
    state.set_health("a", "healthy")
    state.set_users("a", 3)
    state.set_users(None, 5)

    assert state.forget("a") is True
    assert list(state.health_entries()) == []
    assert dict(state.users()) == {None: UsersEntry(5, 1_700_000_000.0)}
    assert state.forget("a") is False
    assert state.forget("never-seen") is False


def test_forgotten_service_keeps_its_slot(state: ServiceState) -> None:
    """A forgotten name may report again, but its slot is not handed to a newcomer."""
    state.set_health("a", "healthy")
    state.set_health("b", "healthy")
    state.forget("a")

    state.set_health("a", "down")
    with pytest.raises(CapacityError):
        state.set_health("c", "healthy")


def test_version_moves_on_every_change_only(state: ServiceState) -> None:
    """version increases with each change, and not when nothing changed."""
    versions = [state.version]
    state.set_health("a", "healthy")
    versions.append(state.version)
    state.set_users(None, 1)
    versions.append(state.version)
    state.forget("a")
    versions.append(state.version)
    state.forget("a")
    list(state.health_views())
    versions.append(state.version)

    assert versions[0] < versions[1] < versions[2] < versions[3] == versions[4]


def test_restore_replaces_everything_within_the_cap(state: ServiceState) -> None:
    """restore swaps the state for a saved one, keeping at most max_services services."""
    state.set_health("old", "healthy")
    health = {name: HealthEntry("healthy", 1.0) for name in ("a", "b", "c")}
    users: dict[str | None, UsersEntry] = {
        None: UsersEntry(1, 1.0),
        "a": UsersEntry(2, 1.0),
        "z": UsersEntry(3, 1.0),
    }

    state.restore(health, users)

    assert [service for service, _ in state.health_entries()] == ["a", "b"]
    assert dict(state.users()) == {None: UsersEntry(1, 1.0), "a": UsersEntry(2, 1.0)}
    with pytest.raises(CapacityError):
        state.set_health("c", "healthy")


def series(service: str, route: str, status: int = 200, method: str = "GET") -> SeriesKey:
    return SeriesKey(service, method, route, status)


@pytest.fixture
def guard() -> CardinalityGuard:
    return CardinalityGuard(max_services=2, max_routes_per_service=2, max_series=5)


def test_guard_admits_within_the_caps(guard: CardinalityGuard) -> None:
    """Series within every cap are recorded as they are, unflagged, and counted once."""
    key = series("a", "/x")

    assert guard.admit(key) == (key, False)
    assert guard.admit(key) == (key, False)
    assert guard.series_count == 1


def test_guard_folds_routes_past_the_cap(guard: CardinalityGuard) -> None:
    """A service's third route becomes __other__, flagged, on every report."""
    guard.admit(series("a", "/1"))
    guard.admit(series("a", "/2"))

    for _ in range(2):
        assert guard.admit(series("a", "/3", 404)) == (series("a", "__other__", 404), True)
    assert guard.admit(series("b", "/3")) == (series("b", "/3"), False)


def test_guard_folds_services_past_the_cap(guard: CardinalityGuard) -> None:
    """A third service becomes __other__ (keeping method, route and status), flagged."""
    guard.admit(series("a", "/x"))
    guard.admit(series("b", "/x"))

    assert guard.admit(series("c", "/y", 500, "POST")) == (
        series("__other__", "/y", 500, "POST"),
        True,
    )
    assert guard.admit(series("d", "/y", 500, "POST")) == (
        series("__other__", "/y", 500, "POST"),
        True,
    )


def test_guard_folds_series_past_the_cap_keeping_status(guard: CardinalityGuard) -> None:
    """Past max_series a report folds into {__other__, _OTHER, __other__} with its own status."""
    for status in range(200, 205):
        guard.admit(series("a", "/x", status))
    assert guard.series_count == 5

    assert guard.admit(series("a", "/x", 503, "DELETE")) == (
        SeriesKey("__other__", "_OTHER", "__other__", 503),
        True,
    )
    assert guard.admit(series("a", "/x", 201)) == (series("a", "/x", 201), False)
    assert guard.series_count == 5


def test_guard_stays_bounded_under_a_flood(guard: CardinalityGuard) -> None:
    """Whatever arrives, admitted series never pass max_series and outputs stay few."""
    outputs = set()
    for service, route, status, method in itertools.product(
        [f"s{i}" for i in range(20)], [f"/r{i}" for i in range(20)], (200, 404, 500), ("GET", "X")
    ):
        folded, _ = guard.admit(SeriesKey(service, method, route, status))
        outputs.add(folded)

    assert guard.series_count <= 5
    assert len(outputs) <= 5 + 3
