"""A test Prometheus: the config it runs with, its scrape targets and the API tests read."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import yaml

SCRAPE_INTERVAL = "1s"
EVALUATION_INTERVAL = "1s"


def prometheus_config(
    jobs: Sequence[str], targets_dir: Path, rule_files: Sequence[Path] = ()
) -> str:
    """YAML for a Prometheus that scrapes and evaluates every second, reading each job's
    targets from ``targets_dir/<job>.json`` (file-based discovery, as prometheus.yml does).
    Create ``targets_dir`` before Prometheus starts: it watches the directory.

    Prometheus applies its first targets about 6 s after it starts, whenever they were
    written; starting it first and writing targets once the servers listen overlaps the two.
    """
    config: dict[str, Any] = {
        "global": {
            "scrape_interval": SCRAPE_INTERVAL,
            "evaluation_interval": EVALUATION_INTERVAL,
        },
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [
            {
                "job_name": job,
                "file_sd_configs": [
                    {"files": [str(targets_dir / f"{job}.json")], "refresh_interval": "1s"}
                ],
            }
            for job in jobs
        ],
    }
    return yaml.safe_dump(config, sort_keys=False)


def write_targets(
    targets_dir: Path, job: str, urls: Sequence[str], labels: Mapping[str, str] | None = None
) -> None:
    """Point ``job`` at ``urls`` (atomically, so Prometheus never reads half a file)."""
    groups = [{"targets": [host_port(url) for url in urls], "labels": dict(labels or {})}]
    staging = targets_dir / f".{job}.json.tmp"
    staging.write_text(json.dumps(groups))
    os.replace(staging, targets_dir / f"{job}.json")


def host_port(url: str) -> str:
    """``127.0.0.1:1234`` out of ``http://127.0.0.1:1234``."""
    return url.removeprefix("http://").rstrip("/")


Sample = dict[str, Any]


class PrometheusAPI:
    """The parts of Prometheus's HTTP API the stack tests read."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _data(self, path: str, params: Mapping[str, Any]) -> Any:
        response = httpx.get(self.url + path, params=dict(params), timeout=5.0)
        payload: dict[str, Any] = response.json()
        assert payload.get("status") == "success", f"{path} {dict(params)}: {payload}"
        return payload["data"]

    def query(self, expr: str, at: float | None = None) -> list[Sample]:
        """Instant query, at unix time ``at`` (default: now); the vector's samples."""
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self._data("/api/v1/query", params)
        assert data["resultType"] == "vector", data
        result: list[Sample] = data["result"]
        return result

    def alerts(self) -> list[Sample]:
        """Every pending or firing alert."""
        alerts: list[Sample] = self._data("/api/v1/alerts", {})["alerts"]
        return alerts

    def label_values(self, label: str, match: str) -> list[str]:
        """Values of ``label`` on series matching ``match``."""
        values: list[str] = self._data(f"/api/v1/label/{label}/values", {"match[]": match})
        return values


def sample_value(sample: Sample) -> float:
    """The float value of one instant-vector sample."""
    return float(sample["value"][1])


def finite_values(samples: Sequence[Sample]) -> list[float]:
    """The values that are numbers (a ratio of nothing to nothing is NaN)."""
    return [value for value in map(sample_value, samples) if math.isfinite(value)]
