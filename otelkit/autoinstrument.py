"""Zero-code: an OpenTelemetry instrumentor so ``opentelemetry-instrument uvicorn app:app`` works.

Registered under the ``opentelemetry_instrumentor`` entry point. It makes every FastAPI app
created afterwards call :func:`otelkit.instrument` on itself, configured from the standard
``OTEL_*`` and ``OTELKIT_*`` variables. When an OpenTelemetry SDK MeterProvider is already
installed globally (e.g. by ``opentelemetry-distro``), that provider is used as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

from opentelemetry import metrics
from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)
from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider

from otelkit.instrumentation import instrument
from otelkit.middleware import MetricsMiddleware

logger = logging.getLogger(__name__)

_original_fastapi: Any = None
_first_app_instrumented = False


def _instrumented_fastapi(base: Any) -> Any:
    """A subclass of FastAPI's app class that instruments each instance it builds.

    Built when instrumenting, not at import: the launcher loads every registered instrumentor,
    and a service without FastAPI must still start.
    """

    class InstrumentedFastAPI(base):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            global _first_app_instrumented
            try:
                if _first_app_instrumented:
                    # Later apps (often sub-apps mounted in the first) only get the middleware
                    # on the shared provider; a request the outer app records is not recorded
                    # twice.
                    self.add_middleware(
                        MetricsMiddleware, meter_provider=metrics.get_meter_provider()
                    )
                    return
                _first_app_instrumented = True
                provider = metrics.get_meter_provider()
                if isinstance(provider, SdkMeterProvider):
                    instrument(self, meter_provider=provider)
                else:
                    setup = instrument(self)
                    metrics.set_meter_provider(setup.meter_provider)
            except Exception:
                # Zero-code must never stop an application from starting.
                logger.exception(
                    "otelkit: automatic instrumentation failed; the app runs without it"
                )

    return InstrumentedFastAPI


class OtelkitInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Instruments every FastAPI app created while active with otelkit's middleware."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("fastapi >= 0.100",)

    def _instrument(self, **kwargs: Any) -> None:
        global _original_fastapi
        import fastapi

        _original_fastapi = fastapi.FastAPI
        fastapi.FastAPI = _instrumented_fastapi(fastapi.FastAPI)  # type: ignore[misc]

    def _uninstrument(self, **kwargs: Any) -> None:
        if _original_fastapi is not None:
            import fastapi

            fastapi.FastAPI = _original_fastapi  # type: ignore[misc]
