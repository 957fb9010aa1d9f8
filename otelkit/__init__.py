"""otelkit: OpenTelemetry metrics for Python services, scraped by Prometheus or pushed.

```python
app = FastAPI()
otelkit.instrument(app, service_name="courses")
```

Each name below is imported from its module on first use, so ``import otelkit`` costs little
until a service calls it.
"""

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from otelkit.exporters import MetricsSetup, setup_metrics
    from otelkit.instrumentation import (
        Instrumentation,
        instrument,
        report_active_users,
        report_health,
    )
    from otelkit.instruments import CATALOGUE, DURATION_BUCKETS_SECONDS, MetricSpec
    from otelkit.logs import TraceContextFilter
    from otelkit.middleware import MetricsMiddleware
    from otelkit.push import PushClient, PushStats
    from otelkit.reporters import HealthHeartbeat, Reporter
    from otelkit.reports import HealthReport, HttpReport, HttpReportBatch, UsersReport

__version__ = "0.1.0"

_HOMES = {
    "CATALOGUE": "otelkit.instruments",
    "DURATION_BUCKETS_SECONDS": "otelkit.instruments",
    "HealthHeartbeat": "otelkit.reporters",
    "HealthReport": "otelkit.reports",
    "HttpReport": "otelkit.reports",
    "HttpReportBatch": "otelkit.reports",
    "Instrumentation": "otelkit.instrumentation",
    "MetricSpec": "otelkit.instruments",
    "MetricsMiddleware": "otelkit.middleware",
    "MetricsSetup": "otelkit.exporters",
    "PushClient": "otelkit.push",
    "PushStats": "otelkit.push",
    "Reporter": "otelkit.reporters",
    "TraceContextFilter": "otelkit.logs",
    "UsersReport": "otelkit.reports",
    "instrument": "otelkit.instrumentation",
    "report_active_users": "otelkit.instrumentation",
    "report_health": "otelkit.instrumentation",
    "setup_metrics": "otelkit.exporters",
}
"""The module each public name lives in."""

__all__ = [
    "CATALOGUE",
    "DURATION_BUCKETS_SECONDS",
    "HealthHeartbeat",
    "HealthReport",
    "HttpReport",
    "HttpReportBatch",
    "Instrumentation",
    "MetricSpec",
    "MetricsMiddleware",
    "MetricsSetup",
    "PushClient",
    "PushStats",
    "Reporter",
    "TraceContextFilter",
    "UsersReport",
    "__version__",
    "instrument",
    "report_active_users",
    "report_health",
    "setup_metrics",
]


def __getattr__(name: str) -> _typing.Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'otelkit' has no attribute {name!r}")
    value = getattr(_importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
