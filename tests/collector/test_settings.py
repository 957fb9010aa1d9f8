"""Collector configuration: argument > OTELKIT_* variable > default, and the one-process rule."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import pytest

from otelkit_collector.__main__ import main
from otelkit_collector.settings import CollectorSettings

ALL_VARIABLES = {
    "OTELKIT_COLLECTOR_HOST": "0.0.0.0",
    "OTELKIT_COLLECTOR_PORT": "9999",
    "OTELKIT_COLLECTOR_TOKEN": "s3cret",
    "OTELKIT_HEALTH_TTL_SECONDS": "45.5",
    "OTELKIT_STATE_FILE": "/var/lib/otelkit/state.json",
    "OTELKIT_STATE_SAVE_INTERVAL_SECONDS": "2.5",
    "OTELKIT_MAX_BODY_BYTES": "4096",
    "OTELKIT_MAX_SERVICES": "50",
    "OTELKIT_MAX_ROUTES_PER_SERVICE": "20",
    "OTELKIT_MAX_SERIES": "500",
}


def test_defaults() -> None:
    """With no variables and no arguments, the documented defaults apply."""
    settings = CollectorSettings.from_env(environ={})

    assert settings == CollectorSettings(
        host="127.0.0.1",
        port=9090,
        token=None,
        health_ttl_seconds=90.0,
        state_file=None,
        state_save_interval_seconds=1.0,
        max_body_bytes=256 * 1024,
        max_services=1_000,
        max_routes_per_service=200,
        max_series=2_000,
    )


def test_every_variable_is_read() -> None:
    """Each OTELKIT_* variable sets its setting, parsed to the right type."""
    settings = CollectorSettings.from_env(environ=ALL_VARIABLES)

    assert settings == CollectorSettings(
        host="0.0.0.0",
        port=9999,
        token="s3cret",
        health_ttl_seconds=45.5,
        state_file=Path("/var/lib/otelkit/state.json"),
        state_save_interval_seconds=2.5,
        max_body_bytes=4096,
        max_services=50,
        max_routes_per_service=20,
        max_series=500,
    )


def test_explicit_arguments_beat_variables() -> None:
    """A keyword argument wins over the variable for the same setting; others still apply."""
    settings = CollectorSettings.from_env(
        environ=ALL_VARIABLES, port=1234, token="other", health_ttl_seconds=10.0, max_series=7
    )

    assert (settings.port, settings.token, settings.health_ttl_seconds, settings.max_series) == (
        1234,
        "other",
        10.0,
        7,
    )
    assert settings.host == "0.0.0.0"
    assert settings.max_services == 50


def test_none_arguments_defer_to_variables() -> None:
    """An argument passed as None (e.g. an absent --port) leaves the variable in charge."""
    settings = CollectorSettings.from_env(environ=ALL_VARIABLES, host=None, port=None)

    assert (settings.host, settings.port) == ("0.0.0.0", 9999)


def test_blank_variables_count_as_unset() -> None:
    """Empty or whitespace-only variables fall back to the defaults."""
    settings = CollectorSettings.from_env(environ=dict.fromkeys(ALL_VARIABLES, "  "))

    assert settings == CollectorSettings.from_env(environ={})


def test_variables_are_stripped() -> None:
    """Surrounding whitespace in a variable is ignored."""
    settings = CollectorSettings.from_env(environ={"OTELKIT_COLLECTOR_PORT": " 8080 \n"})

    assert settings.port == 8080


def test_process_environment_is_the_default_source(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without environ=, from_env reads os.environ."""
    monkeypatch.setenv("OTELKIT_MAX_SERVICES", "12")

    assert CollectorSettings.from_env().max_services == 12


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        pytest.param("OTELKIT_COLLECTOR_PORT", "abc", id="port-not-a-number"),
        pytest.param("OTELKIT_COLLECTOR_PORT", "80.5", id="port-fractional"),
        pytest.param("OTELKIT_COLLECTOR_PORT", "65536", id="port-too-high"),
        pytest.param("OTELKIT_COLLECTOR_PORT", "-1", id="port-negative"),
        pytest.param("OTELKIT_HEALTH_TTL_SECONDS", "nan", id="ttl-nan"),
        pytest.param("OTELKIT_HEALTH_TTL_SECONDS", "inf", id="ttl-inf"),
        pytest.param("OTELKIT_HEALTH_TTL_SECONDS", "0", id="ttl-zero"),
        pytest.param("OTELKIT_HEALTH_TTL_SECONDS", "-5", id="ttl-negative"),
        pytest.param("OTELKIT_HEALTH_TTL_SECONDS", "ninety", id="ttl-word"),
        pytest.param("OTELKIT_STATE_SAVE_INTERVAL_SECONDS", "0", id="save-interval-zero"),
        pytest.param("OTELKIT_STATE_SAVE_INTERVAL_SECONDS", "NaN", id="save-interval-nan"),
        pytest.param("OTELKIT_MAX_BODY_BYTES", "100", id="body-cap-too-small"),
        pytest.param("OTELKIT_MAX_BODY_BYTES", "1MB", id="body-cap-with-unit"),
        pytest.param("OTELKIT_MAX_SERVICES", "0", id="max-services-zero"),
        pytest.param("OTELKIT_MAX_SERVICES", "-5", id="max-services-negative"),
        pytest.param("OTELKIT_MAX_ROUTES_PER_SERVICE", "1.5", id="max-routes-fractional"),
        pytest.param("OTELKIT_MAX_SERIES", "0", id="max-series-zero"),
        pytest.param("OTELKIT_MAX_SERIES", "1e6", id="max-series-exponent"),
    ],
)
def test_malformed_variable_raises_naming_it(variable: str, value: str) -> None:
    """A malformed variable raises ValueError whose message names the variable."""
    with pytest.raises(ValueError, match=variable):
        CollectorSettings.from_env(environ={variable: value})


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        pytest.param("port", 70_000, id="port-too-high"),
        pytest.param("port", -1, id="port-negative"),
        pytest.param("token", "", id="empty-token"),
        pytest.param("health_ttl_seconds", 0.0, id="ttl-zero"),
        pytest.param("health_ttl_seconds", math.nan, id="ttl-nan"),
        pytest.param("health_ttl_seconds", math.inf, id="ttl-inf"),
        pytest.param("state_save_interval_seconds", math.nan, id="save-interval-nan"),
        pytest.param("state_save_interval_seconds", 0.0, id="save-interval-zero"),
        pytest.param("max_body_bytes", 1023, id="body-cap-too-small"),
        pytest.param("max_services", 0, id="max-services-zero"),
        pytest.param("max_routes_per_service", 0, id="max-routes-zero"),
        pytest.param("max_series", -1, id="max-series-negative"),
    ],
)
def test_malformed_argument_raises_naming_it(argument: str, value: Any) -> None:
    """A bad explicit value raises ValueError naming the setting, from from_env or the class."""
    with pytest.raises(ValueError, match=argument):
        CollectorSettings.from_env(environ={}, **{argument: value})
    with pytest.raises(ValueError, match=argument):
        CollectorSettings(**{argument: value})


def test_unknown_argument_raises_type_error() -> None:
    """A misspelled keyword raises TypeError naming it instead of being ignored."""
    with pytest.raises(TypeError, match=r"max_service\b"):
        CollectorSettings.from_env(environ={}, max_service=3)


def test_settings_are_frozen() -> None:
    """Settings cannot be changed after construction."""
    settings = CollectorSettings.from_env(environ={})

    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.port = 1  # type: ignore[misc]


def test_settings_are_keyword_only() -> None:
    """Positional construction is refused, so arguments cannot be silently swapped."""
    with pytest.raises(TypeError):
        CollectorSettings("0.0.0.0", 9090)  # type: ignore[misc]


@pytest.fixture
def no_web_concurrency(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)


@pytest.mark.usefixtures("no_web_concurrency")
@pytest.mark.parametrize("workers", ["2", "4", "0"])
def test_cli_refuses_several_workers(capsys: pytest.CaptureFixture[str], workers: str) -> None:
    """--workers other than 1 exits 2 with a message saying the collector is one process."""
    assert main(["--workers", workers]) == 2

    message = capsys.readouterr().err
    assert f"--workers {workers}" in message
    assert "exactly one process" in message


def test_cli_refuses_web_concurrency(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """WEB_CONCURRENCY=2 (as set by some platforms) is refused like --workers 2."""
    monkeypatch.setenv("WEB_CONCURRENCY", "2")

    assert main([]) == 2

    assert "exactly one process" in capsys.readouterr().err


@pytest.mark.usefixtures("no_web_concurrency")
def test_cli_reports_a_bad_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A malformed OTELKIT_* variable exits 2 with a message naming it, before binding."""
    monkeypatch.setenv("OTELKIT_COLLECTOR_PORT", "abc")

    assert main([]) == 2

    assert "OTELKIT_COLLECTOR_PORT" in capsys.readouterr().err
