"""Collector settings: one frozen object from arguments, `OTELKIT_*` variables or defaults."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from otelkit.config import check_range, env_float, env_int, env_str, pick

_ORIGIN = re.compile(r"https?://[^\s/?#@]+")
"""A browser origin: scheme and host (and port), nothing after."""

MAX_HISTORY_TICKS = 720
"""Ticks the status page's history may keep (memory grows with them, per route)."""

STATUS_WINDOW_SECONDS = 300.0
"""The status page's figures (rate, error ratio, p50, p95) cover the last five minutes."""

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9090


@dataclass(frozen=True, kw_only=True)
class CollectorSettings:
    """Everything the collector can be told; see the README's configuration table.

    Args:
        host: bind address (``OTELKIT_COLLECTOR_HOST``).
        port: bind port (``OTELKIT_COLLECTOR_PORT``).
        token: bearer token required on every write (``OTELKIT_COLLECTOR_TOKEN``).
        health_ttl_seconds: a service whose last health report is older reads 0
            (``OTELKIT_HEALTH_TTL_SECONDS``).
        state_file: where health, users and last-report times persist (``OTELKIT_STATE_FILE``).
        state_save_interval_seconds: how often a changed state is written
            (``OTELKIT_STATE_SAVE_INTERVAL_SECONDS``).
        max_body_bytes: larger request bodies get 413 (``OTELKIT_MAX_BODY_BYTES``).
        max_services: distinct services tracked (``OTELKIT_MAX_SERVICES``).
        max_routes_per_service: distinct routes per service (``OTELKIT_MAX_ROUTES_PER_SERVICE``).
        max_series: distinct HTTP histogram series in total (``OTELKIT_MAX_SERIES``).
        cors_origins: browser origins allowed to call the API, ``*`` for any
            (``OTELKIT_CORS_ORIGINS``, comma-separated); empty: no CORS, the default.
        history_seconds: how far back the status page's charts reach
            (``OTELKIT_HISTORY_SECONDS``).
        history_resolution_seconds: one tick of that history
            (``OTELKIT_HISTORY_RESOLUTION_SECONDS``); at most ``MAX_HISTORY_TICKS`` ticks,
            which bounds the history's memory.
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    token: str | None = None
    health_ttl_seconds: float = 90.0
    state_file: Path | None = None
    state_save_interval_seconds: float = 1.0
    max_body_bytes: int = 256 * 1024
    max_services: int = 1_000
    max_routes_per_service: int = 200
    # Each histogram series costs ~5 KiB of resident memory once scraped, and rendering costs
    # ~0.7 ms: 20,000 series (+500 overflow) took ~100 MiB and a 15 s scrape on two cores,
    # past Prometheus's 10 s scrape timeout. 2,000 (the OpenTelemetry SDK's own default limit
    # per metric) keeps a flood under ~17 MiB and a full scrape near 1.5 s. Reports with trace
    # ids add up to ~6.5 KiB per series (an exemplar in each of its 15 buckets): ~16 MiB more
    # at most, for 2,000 series plus the 500 overflow ones.
    max_series: int = 2_000
    cors_origins: tuple[str, ...] = ()
    history_seconds: float = 900.0
    history_resolution_seconds: float = 10.0

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65_535:
            raise ValueError(f"port must be within 0-65535, got {self.port}")
        if self.token is not None and not self.token:
            raise ValueError("token must not be empty; leave it unset to disable auth")
        for name in (
            "health_ttl_seconds",
            "state_save_interval_seconds",
            "history_seconds",
            "history_resolution_seconds",
        ):
            # check_range lets NaN through (every comparison with it is false).
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be finite, got {getattr(self, name)}")
        check_range("health_ttl_seconds", self.health_ttl_seconds, minimum=0.001)
        check_range("state_save_interval_seconds", self.state_save_interval_seconds, 0.001)
        check_range("history_resolution_seconds", self.history_resolution_seconds, 0.01)
        check_range("history_seconds", self.history_seconds, self.history_resolution_seconds)
        if self.history_ticks > MAX_HISTORY_TICKS:
            raise ValueError(
                f"history_seconds / history_resolution_seconds (OTELKIT_HISTORY_SECONDS / "
                f"OTELKIT_HISTORY_RESOLUTION_SECONDS) must be at most {MAX_HISTORY_TICKS} "
                f"ticks, got {self.history_ticks}"
            )
        check_range("max_body_bytes", self.max_body_bytes, minimum=1024)
        for name in ("max_services", "max_routes_per_service", "max_series"):
            check_range(name, getattr(self, name), minimum=1)
        object.__setattr__(self, "cors_origins", tuple(self.cors_origins))
        for origin in self.cors_origins:
            if origin != "*" and not _ORIGIN.fullmatch(origin):
                raise ValueError(
                    f"cors_origins (OTELKIT_CORS_ORIGINS) must hold origins such as "
                    f"https://app.example.com or http://localhost:3000, or *; got {origin!r}"
                )

    @property
    def history_ticks(self) -> int:
        """Ticks the status page's history keeps."""
        return max(1, round(self.history_seconds / self.history_resolution_seconds))

    @property
    def window_ticks(self) -> int:
        """Ticks the status page's figures cover: the last ``STATUS_WINDOW_SECONDS``, or the
        whole history when it is shorter."""
        ticks = round(STATUS_WINDOW_SECONDS / self.history_resolution_seconds)
        return max(1, min(self.history_ticks, ticks))

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **explicit: object
    ) -> CollectorSettings:
        """Build settings: explicit keyword > ``OTELKIT_*`` variable > default.

        Raises:
            ValueError: a variable or argument is malformed; the message names it.
            TypeError: an unknown keyword.
        """
        known = {f.name for f in fields(cls)}
        unknown = set(explicit) - known
        if unknown:
            raise TypeError(f"unknown collector settings: {', '.join(sorted(unknown))}")
        state_file = env_str("OTELKIT_STATE_FILE", environ)
        from_env: dict[str, object | None] = {
            "host": env_str("OTELKIT_COLLECTOR_HOST", environ),
            "port": env_int("OTELKIT_COLLECTOR_PORT", environ, minimum=0, maximum=65_535),
            "token": env_str("OTELKIT_COLLECTOR_TOKEN", environ),
            "health_ttl_seconds": env_float("OTELKIT_HEALTH_TTL_SECONDS", environ, minimum=0.001),
            "state_file": Path(state_file) if state_file else None,
            "state_save_interval_seconds": env_float(
                "OTELKIT_STATE_SAVE_INTERVAL_SECONDS", environ, minimum=0.001
            ),
            "max_body_bytes": env_int("OTELKIT_MAX_BODY_BYTES", environ, minimum=1024),
            "max_services": env_int("OTELKIT_MAX_SERVICES", environ, minimum=1),
            "max_routes_per_service": env_int("OTELKIT_MAX_ROUTES_PER_SERVICE", environ, minimum=1),
            "max_series": env_int("OTELKIT_MAX_SERIES", environ, minimum=1),
            "cors_origins": _origins(env_str("OTELKIT_CORS_ORIGINS", environ)),
            "history_seconds": env_float("OTELKIT_HISTORY_SECONDS", environ, minimum=0.01),
            "history_resolution_seconds": env_float(
                "OTELKIT_HISTORY_RESOLUTION_SECONDS", environ, minimum=0.01
            ),
        }
        chosen = {
            name: pick(explicit.get(name), value, None)
            for name, value in from_env.items()
            if pick(explicit.get(name), value, None) is not None
        }
        return cls(**chosen)  # type: ignore[arg-type]


def _origins(value: str | None) -> tuple[str, ...] | None:
    """``OTELKIT_CORS_ORIGINS`` as a tuple of origins (trailing slashes dropped)."""
    if value is None:
        return None
    return tuple(part.strip().rstrip("/") for part in value.split(",") if part.strip())
