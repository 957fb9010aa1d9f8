"""The state file: health, users and last-report times, written atomically, read leniently.

A write goes to a temporary file in the same directory, is flushed to disk, then renamed
over the old one, so a crash at any moment leaves either the old or the new file. A file
that cannot be read is moved aside (``<name>.corrupt-<time>``) and the collector starts empty.
HTTP histograms are not in it, nor their exemplars: both start from nothing after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import math
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

from otelkit.reports import HEALTH_STATUSES, check_label_text
from otelkit_collector.state import HealthEntry, ServiceState, UsersEntry

FORMAT_VERSION = 1
logger = logging.getLogger(__name__)


def dump_state(state: ServiceState) -> dict[str, Any]:
    """The JSON document that :func:`load_state` reads back."""
    return {
        "version": FORMAT_VERSION,
        "health": {
            service: {"status": entry.status, "reported_at": entry.reported_at}
            for service, entry in state.health_entries()
        },
        "users": [
            {"service": service, "count": entry.count, "reported_at": entry.reported_at}
            for service, entry in state.users()
        ],
    }


def write_state_file(path: Path, document: dict[str, Any]) -> None:
    """Write ``document`` to ``path`` atomically (temp file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(document, ensure_ascii=True, separators=(",", ":")).encode()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def remove_stale_temp_files(path: Path) -> None:
    """Delete temp files a crash left behind mid-write (they never replaced ``path``)."""
    for leftover in path.parent.glob(f".{path.name}.*"):
        with contextlib.suppress(OSError):
            leftover.unlink()


def lock_state_file(path: Path) -> IO[bytes]:
    """Hold an exclusive lock on ``<path>.lock`` for as long as the returned file is open.

    Raises:
        RuntimeError: another process (a second collector or worker) holds it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(f"{path.name}.lock").open("ab")
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        raise RuntimeError(
            f"another collector process already uses the state file {path}; run exactly one "
            "collector process per state file"
        ) from None
    return lock


class StateFileError(ValueError):
    """The state file exists but is not a state this collector wrote."""


def _service(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise StateFileError(f"service name must be a non-empty string, got {value!r}")
    check_label_text(value)
    return value


def _timestamp(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise StateFileError(f"reported_at must be a finite number, got {value!r}")
    return float(value)


def parse_state(document: object) -> tuple[dict[str, HealthEntry], dict[str | None, UsersEntry]]:
    """Validate a loaded document; raises :class:`StateFileError` naming what is wrong."""
    if not isinstance(document, dict) or document.get("version") != FORMAT_VERSION:
        raise StateFileError(f"not an otelkit state document of version {FORMAT_VERSION}")
    health: dict[str, HealthEntry] = {}
    raw_health = document.get("health")
    if not isinstance(raw_health, dict):
        raise StateFileError("health must be an object")
    for service, raw in raw_health.items():
        if not isinstance(raw, dict) or raw.get("status") not in HEALTH_STATUSES:
            raise StateFileError(f"health of {service!r} is malformed")
        health[_service(service)] = HealthEntry(raw["status"], _timestamp(raw.get("reported_at")))
    users: dict[str | None, UsersEntry] = {}
    raw_users = document.get("users")
    if not isinstance(raw_users, list):
        raise StateFileError("users must be a list")
    for raw in raw_users:
        if not isinstance(raw, dict):
            raise StateFileError("users entries must be objects")
        count = raw.get("count")
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise StateFileError(f"users count must be an integer >= 0, got {count!r}")
        service = raw.get("service")
        key = None if service is None else _service(service)
        users[key] = UsersEntry(count, _timestamp(raw.get("reported_at")))
    return health, users


def load_state_file(path: Path, state: ServiceState) -> bool:
    """Restore ``state`` from ``path``; return whether anything was restored.

    A missing file is a fresh start. An unreadable one is renamed aside and logged; the
    collector still starts, empty.
    """
    remove_stale_temp_files(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return False
    try:
        health, users = parse_state(json.loads(raw))
    except (ValueError, RecursionError) as exc:
        # Nanoseconds: two corrupt files set aside in the same second must not collide.
        aside = path.with_name(f"{path.name}.corrupt-{time.time_ns()}")
        os.replace(path, aside)
        logger.error("state file %s is unreadable (%s); moved it to %s", path, exc, aside)
        return False
    state.restore(health, users)
    return True


async def save_periodically(path: Path, state: ServiceState, interval_seconds: float) -> None:
    """Write ``state`` to ``path`` whenever it changed, every ``interval_seconds``.

    Runs until cancelled, then writes once more so a clean shutdown loses nothing. A failed
    write (disk full, permissions) is logged and retried at the next interval.
    """
    saved_version = state.version
    # Cancellation does not stop a write already running in its thread; the lock makes the
    # final write wait for it, so the newest state is the one left on disk.
    writing = threading.Lock()
    try:
        while True:
            await asyncio.sleep(interval_seconds)
            if state.version != saved_version:
                version, document = state.version, dump_state(state)
                if await asyncio.to_thread(_try_write, path, document, writing):
                    saved_version = version
    finally:
        if state.version != saved_version:
            _try_write(path, dump_state(state), writing)


def _try_write(path: Path, document: dict[str, Any], writing: threading.Lock) -> bool:
    with writing:
        try:
            write_state_file(path, document)
        except OSError as exc:
            logger.error("could not write state file %s: %s", path, exc)
            return False
    return True
