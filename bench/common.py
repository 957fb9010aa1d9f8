"""Shared bench plumbing: the --quick flag, tables, targets, the JSON line, managed processes.

Every process a bench starts goes through :func:`managed_process`, which stops it by its own
PID (SIGTERM, then SIGKILL) however the bench ends.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

import httpx

LOOPBACK = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
MIB = 1024 * 1024
JSON_PREFIX = "{"
"""The last stdout line of every bench starts a JSON object; run_all reads only that line."""

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_STOP_SECONDS = 10.0


# -- command line and output ------------------------------------------------------------------


def parse_args(description: str, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The flags every bench takes: ``--quick`` for a smoke run of well under a minute."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--quick", action="store_true", help="a short smoke run (fewer rounds, shorter loads)"
    )
    args = parser.parse_args(argv)
    # SIGTERM (run_all's time limit, a CI cancel) unwinds like Ctrl-C, so every
    # managed_process block still stops the servers it started.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    return args


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


@dataclass(frozen=True)
class Target:
    """One target of issue 6: a figure, the limit it must meet, and which way."""

    name: str
    figure: float
    limit: float
    op: Literal["<=", ">="]
    unit: str = ""

    @property
    def passed(self) -> bool:
        """Whether the figure meets the limit (a NaN figure never does)."""
        if math.isnan(self.figure):
            return False
        return self.figure <= self.limit if self.op == "<=" else self.figure >= self.limit

    def as_dict(self) -> dict[str, Any]:
        """The target as it appears in the JSON line."""
        return {
            "name": self.name,
            "figure": round_figure(self.figure),
            "op": self.op,
            "limit": self.limit,
            "unit": self.unit,
            "pass": self.passed,
        }


def round_figure(value: float, digits: int = 4) -> float | None:
    """A figure rounded for the JSON line (``None`` for NaN, which JSON cannot carry)."""
    if math.isnan(value):
        return None
    if value == 0 or abs(value) >= 1000:
        return round(value, 1)
    return round(value, max(0, digits - 1 - math.floor(math.log10(abs(value)))))


def fmt(value: float, digits: int = 3) -> str:
    """A figure for a table cell: ``digits`` significant digits, thousands separated."""
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    if abs(value) >= 10 ** (digits - 1):
        return f"{value:,.0f}"
    rounded = round_figure(float(value), digits)
    return f"{rounded:g}" if rounded is not None else "n/a"


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print a plain aligned table: text left-aligned, numbers right-aligned."""
    cells = [[str(cell) for cell in row] + [""] * (len(headers) - len(row)) for row in rows]
    widths = [
        max(len(str(header)), *(len(row[i]) for row in cells)) if cells else len(str(header))
        for i, header in enumerate(headers)
    ]
    numeric = [
        all(_looks_numeric(row[i]) for row in cells) if cells else False
        for i in range(len(headers))
    ]

    def line(row: Sequence[str]) -> str:
        return "  ".join(
            cell.rjust(width) if is_num else cell.ljust(width)
            for cell, width, is_num in zip(row, widths, numeric, strict=True)
        ).rstrip()

    print(f"\n== {title}")
    print(line([str(h) for h in headers]))
    print(line(["-" * width for width in widths]))
    for row in cells:
        print(line(row))


def _looks_numeric(text: str) -> bool:
    stripped = text.replace(",", "").replace("x", "").replace("%", "").strip()
    try:
        float(stripped)
    except ValueError:
        return text in ("n/a", "-", "")
    return True


def print_targets(targets: Sequence[Target]) -> None:
    """The targets table: figure, limit, pass or FAIL."""
    print_table(
        "targets",
        ["target", "figure", "limit", "result"],
        [
            [
                t.name,
                f"{fmt(t.figure)} {t.unit}".strip(),
                f"{t.op} {fmt(t.limit)} {t.unit}",
                _verdict(t),
            ]
            for t in targets
        ],
    )


def _verdict(target: Target) -> str:
    return "pass" if target.passed else "FAIL"


def emit_json(
    bench: str,
    *,
    quick: bool,
    figures: Mapping[str, Any],
    targets: Sequence[Target],
    **extra: Any,
) -> None:
    """Print the machine-readable result: one JSON object on the last line of stdout."""
    document = {
        "bench": bench,
        "quick": quick,
        "figures": figures,
        "targets": [t.as_dict() for t in targets],
        "pass": all(t.passed for t in targets),
        **extra,
    }
    print(json.dumps(document, sort_keys=False, allow_nan=False), flush=True)


def median(values: Sequence[float]) -> float:
    """The median, NaN for no values."""
    return statistics.median(values) if values else math.nan


# -- processes --------------------------------------------------------------------------------


def bench_env(**extra: str) -> dict[str, str]:
    """The environment for processes a bench starts: no ``OTEL_*``/``OTELKIT_*`` leaking in."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OTEL_", "OTELKIT_", "PROMETHEUS_MULTIPROC"))
    }
    env["PYTHONPATH"] = str(REPO_ROOT)
    env.update(extra)
    return env


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def managed_process(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stdin: int | None = subprocess.DEVNULL,
    stdout: int | IO[Any] | None = subprocess.DEVNULL,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``argv`` and stop that PID when the block ends, whatever happens inside.

    stderr goes to a temporary file (a full pipe would stall the server); its tail is
    printed when the process died on its own with a failure.
    """
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(
            list(argv),
            cwd=REPO_ROOT,
            env=dict(env) if env is not None else bench_env(),
            stdin=stdin,
            stdout=stdout,
            stderr=errors,
        )
        try:
            yield proc
        finally:
            died_alone = proc.poll() is not None and proc.returncode not in (0, None)
            stop_process(proc)
            if died_alone:
                errors.seek(0)
                tail = errors.read()[-4000:].decode(errors="replace")
                print(f"[{argv[0]} exited {proc.returncode}]\n{tail}", file=sys.stderr)


def stop_process(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM the process by its PID, then SIGKILL it if it has not gone in 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=_STOP_SECONDS)


def wait_until_ready(url: str, proc: subprocess.Popen[Any], timeout: float = 30.0) -> None:
    """Poll ``url`` until it answers 200; raise if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before serving {url}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer 200 within {timeout:.0f} s")


# -- /proc ------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used, from ``/proc/<pid>/stat``."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name may contain spaces; fields are counted after its closing parenthesis.
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / _CLOCK_TICKS


def memory_bytes(pid: int) -> dict[str, int]:
    """``rss`` (VmRSS) and ``peak`` (VmHWM) of the process, in bytes."""
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values["rss" if key == "VmRSS" else "peak"] = int(rest.split()[0]) * 1024
    return values
