"""otelkit: OpenTelemetry metrics for Python services, scraped by Prometheus or pushed.

```python
app = FastAPI()
otelkit.instrument(app, service_name="courses")
```
"""

from otelkit.exporters import MetricsSetup, setup_metrics
from otelkit.instrumentation import (
    Instrumentation,
    instrument,
    report_active_users,
    report_health,
)
from otelkit.instruments import CATALOGUE, DURATION_BUCKETS_SECONDS, MetricSpec
from otelkit.middleware import MetricsMiddleware
from otelkit.push import PushClient, PushStats
from otelkit.reporters import HealthHeartbeat, Reporter
from otelkit.reports import HealthReport, HttpReport, HttpReportBatch, UsersReport

__version__ = "0.1.0"

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
    "UsersReport",
    "__version__",
    "instrument",
    "report_active_users",
    "report_health",
    "setup_metrics",
]
