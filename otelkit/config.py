"""Environment parsing: explicit argument beats environment variable beats default.

A bad value raises ``ValueError`` naming the variable, at construction, never later.
"""

from __future__ import annotations

import math
import os
from collections.abc import Collection, Mapping, Sequence
from typing import TypeVar

T = TypeVar("T")


def pick(explicit: T | None, env_value: T | None, default: T) -> T:
    """Return the first of explicit argument, environment value and default that is set."""
    if explicit is not None:
        return explicit
    if env_value is not None:
        return env_value
    return default


def env_str(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The variable's value, or ``None`` when it is unset or blank."""
    value = (os.environ if environ is None else environ).get(name)
    if value is None or not value.strip():
        return None
    return value.strip()


def env_int(
    name: str,
    environ: Mapping[str, str] | None = None,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int | None:
    """Parse an integer variable, raising ``ValueError`` naming it when malformed."""
    raw = env_str(name, environ)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None
    check_range(name, value, minimum, maximum)
    return value


def env_float(
    name: str,
    environ: Mapping[str, str] | None = None,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
) -> float | None:
    """Parse a finite float variable, raising ``ValueError`` naming it when malformed."""
    raw = env_str(name, environ)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {raw!r}")
    check_range(name, value, minimum, maximum)
    return value


def check_range(
    name: str, value: float, minimum: float | None = None, maximum: float | None = None
) -> None:
    """Raise ``ValueError`` naming ``name`` when ``value`` lies outside [minimum, maximum]."""
    if math.isnan(value):
        raise ValueError(f"{name} must be a number, got NaN")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")


def parse_names(
    value: str | Sequence[str], source: str, allowed: Collection[str]
) -> tuple[str, ...]:
    """Comma-separated names (a string, or several), lower-cased, deduplicated, ``none`` dropped.

    Raises:
        ValueError: a name outside ``allowed``; the message names ``source``.
    """
    names = [value] if isinstance(value, str) else list(value)
    parsed = tuple(
        dict.fromkeys(
            part.strip().lower() for name in names for part in name.split(",") if part.strip()
        )
    )
    unknown = [name for name in parsed if name not in allowed]
    if unknown:
        raise ValueError(
            f"{source} has unknown exporter(s) {', '.join(unknown)}; "
            f"choose from {', '.join(sorted(allowed))}"
        )
    return tuple(name for name in parsed if name != "none")
