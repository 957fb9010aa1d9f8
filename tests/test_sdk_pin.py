"""The OpenTelemetry SDK pin and the measured cost of Histogram.record() move together.

opentelemetry-sdk 1.45 made every record() 2.6x slower than 1.44; bench/baselines.json
records the version the cost was measured on. Changing the pin without re-measuring fails
here, with the command that re-measures.
"""

from __future__ import annotations

import importlib.metadata
import json
import re

from tests.e2e.servers import REPO_ROOT


def test_installed_sdk_is_the_benchmarked_one() -> None:
    baseline = json.loads((REPO_ROOT / "bench" / "baselines.json").read_text())
    measured = baseline["histogram_record"]["opentelemetry_sdk"]
    installed = importlib.metadata.version("opentelemetry-sdk")

    assert installed == measured, (
        f"opentelemetry-sdk {installed} is installed, but Histogram.record() was measured on "
        f"{measured}: run `python -m bench.middleware_cost` and update bench/baselines.json"
    )


def test_pyproject_pins_the_benchmarked_sdk() -> None:
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    baseline = json.loads((REPO_ROOT / "bench" / "baselines.json").read_text())
    measured = baseline["histogram_record"]["opentelemetry_sdk"]

    pins = re.findall(r'"opentelemetry-(?:api|sdk)==([^"]+)"', pyproject)

    assert pins == [measured, measured]
