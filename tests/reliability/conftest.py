"""Reliability suite: scale (``OTELKIT_RELIABILITY_SCALE``), figures, and real-process probes.

``ci`` (the default) keeps the whole suite near a minute and a half on two cores, inside
``make test``; ``full`` (``make reliability``) runs the issue's numbers. Every test prints the
figures it measured and, when ``OTELKIT_RELIABILITY_REPORT`` names a file, appends them to it
as JSON lines (item, scale, figure, target, pass) for the closing table.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.servers import require_binary

SCALE_VARIABLE = "OTELKIT_RELIABILITY_SCALE"
REPORT_VARIABLE = "OTELKIT_RELIABILITY_REPORT"
MiB = 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class Scale:
    """How hard each item pushes; ``ci`` is sized for ``make test``, ``full`` for the issue."""

    name: str
    test_timeout: int
    """Seconds before pytest-timeout stops one test."""
    fuzz_cases: int
    """Schemathesis cases per operation and generation mode."""
    fuzz_token_cases: int
    """Cases per write operation against the token-protected collector."""
    string_examples: int
    """Hypothesis examples of the any-string property (each carries several values)."""
    number_examples: int
    """Hypothesis examples of the hostile-number property."""
    routes: int
    """Distinct routes per hostile-cardinality wave (two waves are sent)."""
    services: int
    """Distinct services per hostile-cardinality wave."""
    load_seconds: float
    """How long the exactness-under-load pushes last."""
    load_scrapes: int
    """Scrapes taken while the load runs."""
    auth_attempts: int
    """Unauthorized writes sent."""
    crash_kills: int
    """SIGKILLs during pushes."""
    kill_after_seconds: tuple[float, float]
    """How long into the pushes each SIGKILL comes (drawn uniformly in this range)."""
    loss_slack_seconds: float
    """Past the save interval, how long before a kill an acknowledged report may have been
    and still be lost. At ``ci`` scale it is generous (an fsync or a thread wake-up can take
    hundreds of ms on a busy machine) and the kills come later than it, so a collector that
    saved only at exit would still fail; ``full`` holds the strict figure."""


SCALES = {
    "ci": Scale(
        name="ci",
        test_timeout=120,
        fuzz_cases=40,
        fuzz_token_cases=10,
        string_examples=20,
        number_examples=60,
        routes=20_000,
        services=2_000,
        load_seconds=8.0,
        load_scrapes=8,
        auth_attempts=1_000,
        crash_kills=5,
        kill_after_seconds=(1.2, 1.8),
        loss_slack_seconds=0.75,
    ),
    "full": Scale(
        name="full",
        test_timeout=900,
        fuzz_cases=1_000,
        fuzz_token_cases=200,
        string_examples=300,
        number_examples=2_000,
        routes=100_000,
        services=10_000,
        load_seconds=60.0,
        load_scrapes=20,
        auth_attempts=10_000,
        crash_kills=20,
        kill_after_seconds=(0.1, 0.6),
        loss_slack_seconds=0.25,
    ),
}


def _scale_from_env() -> Scale:
    name = os.environ.get(SCALE_VARIABLE, "").strip() or "ci"
    if name not in SCALES:
        raise ValueError(f"{SCALE_VARIABLE} must be one of {', '.join(SCALES)}, got {name!r}")
    return SCALES[name]


SCALE = _scale_from_env()
"""The scale this run uses (module constant: markers such as timeouts read it at import)."""


@pytest.fixture
def scale() -> Scale:
    return SCALE


def record_figure(item: str, figure: str, target: str, passed: bool) -> None:
    """Print one measured figure and append it to ``OTELKIT_RELIABILITY_REPORT`` when set.

    Called before the test asserts, so a failing figure is reported too.
    """
    verdict = "pass" if passed else "FAIL"
    print(f"\n[reliability scale={SCALE.name}] item {item}: {figure} (target: {target}) {verdict}")
    path = os.environ.get(REPORT_VARIABLE)
    if path:
        line = {"item": item, "scale": SCALE.name, "figure": figure, "target": target}
        with Path(path).open("a", encoding="utf-8") as report:
            report.write(json.dumps({**line, "pass": passed}, ensure_ascii=False) + "\n")


def rss_bytes(pid: int) -> int:
    """Resident set size of process ``pid`` (``VmRSS`` in ``/proc/<pid>/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


PROMTOOL_ALLOWED_LINT = 'active_users_total non-counter metrics should not have "_total" suffix'
"""The one lint the catalogue accepts: the seed's dashboards query this name verbatim."""


def promtool_problems(exposition: str) -> list[str]:
    """What ``promtool check metrics`` says about a text exposition, minus the known lint.

    An exit code other than 0 (clean) or 3 (lint only) is a parse error, reported as is.
    """
    promtool = require_binary("promtool")
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=exposition.encode(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    output = (result.stdout + result.stderr).decode(errors="replace")
    lines = [line for line in output.splitlines() if line.strip()]
    problems = [line for line in lines if line.strip() != PROMTOOL_ALLOWED_LINT]
    if result.returncode not in (0, 3):
        problems.append(f"promtool exited {result.returncode}")
    return problems


Labels = frozenset[tuple[str, str]]


def parse_text(exposition: str) -> dict[tuple[str, Labels], float]:
    """A text exposition as {(sample name, labels): value}, empty label values dropped.

    The exporter pads a family's label sets to the same keys with empty values, which
    Prometheus reads as absent labels: so do we.
    """
    return {
        (sample.name, frozenset((k, v) for k, v in sample.labels.items() if v)): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def monotonic_samples(exposition: str) -> dict[tuple[str, Labels], float]:
    """Samples that may never decrease: counters, histogram buckets, counts and sums."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(exposition)
        if family.type in ("counter", "histogram")
        for sample in family.samples
    }


def first(items: Iterable[str], limit: int = 5) -> str:
    """At most ``limit`` items, one per line, for assertion messages."""
    shown = [item if len(item) <= 500 else item[:500] + "..." for item in items]
    more = f"\n... and {len(shown) - limit} more" if len(shown) > limit else ""
    return "\n".join(shown[:limit]) + more
