"""Delivery of reports to the collector: a bounded queue drained by one background thread.

Nothing here blocks or raises into the application: ``submit_*`` only appends to a bounded
queue (or counts a drop when it is full). A background thread sends batches with timeouts
and retries with backoff; what it cannot deliver is dropped and counted, so that
``delivered + dropped + queued == generated`` at every moment.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

try:
    import httpx
except ImportError as missing:  # pragma: no cover - exercised by the packaging tests
    raise ImportError(
        "otelkit's push client needs httpx: pip install 'otelkit[push]'", name=missing.name
    ) from missing
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
from opentelemetry.trace import get_current_span

from otelkit import instruments
from otelkit.config import env_str

logger = logging.getLogger(__name__)

DEFAULT_QUEUE_SIZE: Final = 10_000
DEFAULT_BATCH_SIZE: Final = 500
DEFAULT_FLUSH_INTERVAL: Final = 1.0
DEFAULT_TIMEOUT: Final = 2.0
DEFAULT_MAX_ATTEMPTS: Final = 3
DEFAULT_BACKOFF: Final = 0.5

_HTTP_BATCH_PATH = "/api/metrics/http/batch"
_USERS_PATH = "/api/metrics/users"


@dataclass(frozen=True)
class PushStats:
    """Counts of reports by fate; ``delivered + dropped + queued == generated``."""

    generated: int
    delivered: int
    dropped: int
    queued: int


class _Stop(Exception):
    """Raised inside the sender when shutdown's deadline has passed."""


class PushClient:
    """Pushes HTTP, health and users reports to an otelkit collector in the background.

    Args:
        url: the collector's base URL (``OTELKIT_COLLECTOR_URL``).
        token: bearer token for the collector's writes (``OTELKIT_COLLECTOR_TOKEN``).
        service: the ``service`` named on HTTP and users reports.
        queue_size: reports kept waiting at most; past it new reports are dropped and counted.
        batch_size: HTTP reports per request to ``/api/metrics/http/batch``.
        flush_interval: seconds between sends when the queue is not full enough for a batch.
        timeout: seconds for each request (connect, read, write, pool).
        max_attempts: tries per batch before it is dropped (connection errors, 5xx, 429).
        backoff: seconds before the first retry; doubles on each further retry.
        transport: an httpx transport, for tests that route requests in-process.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        service: str | None = None,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        batch_size: int = DEFAULT_BATCH_SIZE,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        timeout: float = DEFAULT_TIMEOUT,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        backoff: float = DEFAULT_BACKOFF,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"collector url must start with http:// or https://, got {url!r}")
        if queue_size < 1 or batch_size < 1 or max_attempts < 1:
            raise ValueError("queue_size, batch_size and max_attempts must be >= 1")
        if flush_interval <= 0 or timeout <= 0 or backoff < 0:
            raise ValueError("flush_interval and timeout must be > 0, backoff >= 0")
        self.url = url.rstrip("/")
        self.service = service
        self.queue_size = queue_size
        self.batch_size = min(batch_size, 1_000)
        self.flush_interval = flush_interval
        self.max_attempts = max_attempts
        self.backoff = backoff
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport
        )
        self._queue: deque[tuple[str, dict[str, Any]]] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._deadline = float("inf")
        self._generated = 0
        self._delivered = 0
        self._dropped = 0
        self._in_flight = 0
        self._warned = False
        self._thread: threading.Thread | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **kwargs: Any) -> PushClient | None:
        """A client for ``OTELKIT_COLLECTOR_URL`` (``None`` when unset); kwargs win over env."""
        url = kwargs.pop("url", None) or env_str("OTELKIT_COLLECTOR_URL", environ)
        if url is None:
            return None
        # ``token=None`` (as instrument() passes it) means "not given": read the variable.
        if kwargs.get("token") is None:
            kwargs["token"] = env_str("OTELKIT_COLLECTOR_TOKEN", environ)
        return cls(url, **kwargs)

    # -- producer side: called on the request path, never blocks, never raises -------------

    def submit_http(self, method: str, route: str, status: int, duration: float) -> None:
        """Queue one request observation.

        Called while a sampled span is current (the request's, with tracing on), the report
        carries its ``trace_id`` and ``span_id``: the collector's exemplar links to it.
        """
        report: dict[str, Any] = {
            "method": method,
            "route": route,
            "status": status,
            "duration": duration,
        }
        if self.service is not None:
            report["service"] = self.service
        span_context = get_current_span().get_span_context()
        if span_context.trace_flags.sampled and span_context.is_valid:
            report["trace_id"] = format(span_context.trace_id, "032x")
            report["span_id"] = format(span_context.span_id, "016x")
        self._put("http", report)

    def submit_health(self, service: str, status: str) -> None:
        """Queue a health report for ``service``."""
        self._put("health", {"service": service, "status": status})

    def submit_users(self, count: int, service: str | None = None) -> None:
        """Queue an active-users report (for ``service``, else the client's own)."""
        report: dict[str, Any] = {"count": count}
        name = service if service is not None else self.service
        if name is not None:
            report["service"] = name
        self._put("users", report)

    def _put(self, kind: str, report: dict[str, Any]) -> None:
        with self._lock:
            self._generated += 1
            if self._stopping.is_set() or len(self._queue) >= self.queue_size:
                self._dropped += 1
                return
            self._queue.append((kind, report))
            wake = len(self._queue) >= self.batch_size
        if wake:
            self._wake.set()

    def stats(self) -> PushStats:
        """A consistent snapshot of the counts."""
        with self._lock:
            return PushStats(
                generated=self._generated,
                delivered=self._delivered,
                dropped=self._dropped,
                queued=len(self._queue) + self._in_flight,
            )

    def register_metrics(self, meter_provider: MeterProvider) -> None:
        """Expose :meth:`stats` on ``meter_provider``: ``otelkit_push_reports_total{outcome}``
        (generated, delivered, dropped) and ``otelkit_push_queue_size`` (queued).

        Each is read when the provider is collected, so one scrape may catch the sender
        between the two reads; the identity holds exactly whenever the client is idle.
        """
        meter = meter_provider.get_meter(instruments.METER_NAME)
        instruments.create_observable_counter(
            meter, instruments.PUSH_REPORTS, self._observe_reports
        )
        instruments.create_gauge(meter, instruments.PUSH_QUEUE_SIZE, self._observe_queue)

    def _observe_reports(self, options: CallbackOptions) -> Iterable[Observation]:
        stats = self.stats()
        return [
            Observation(getattr(stats, outcome), {"outcome": outcome})
            for outcome in instruments.PUSH_OUTCOMES
        ]

    def _observe_queue(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self.stats().queued)]

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the background sender (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="otelkit-push", daemon=True)
            self._thread.start()

    def shutdown(self, timeout: float = 5.0) -> PushStats:
        """Flush what can be flushed within ``timeout`` seconds, then stop; drop the rest."""
        self._deadline = time.monotonic() + timeout
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._lock:
            self._dropped += len(self._queue)
            self._queue.clear()
        if self._thread is None or not self._thread.is_alive():
            self._client.close()
        # else: the sender is stuck in one request (bounded by its timeout); it counts that
        # batch and closes the client itself when the request ends.
        return self.stats()

    # -- sender thread -------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            try:
                while self._send_one_batch():
                    pass
            except _Stop:
                break
            if self._stopping.is_set():
                break
        if self._stopping.is_set():
            self._client.close()

    def _take(self) -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            if not self._queue:
                return []
            kind = self._queue[0][0]
            if kind != "http":
                batch = [self._queue.popleft()]
            else:
                batch = []
                while self._queue and len(batch) < self.batch_size and self._queue[0][0] == "http":
                    batch.append(self._queue.popleft())
            self._in_flight = len(batch)
            return batch

    def _send_one_batch(self) -> bool:
        """Send the next batch; return whether there was one."""
        batch = self._take()
        if not batch:
            return False
        kind, first = batch[0]
        if kind == "http":
            path, body = _HTTP_BATCH_PATH, {"reports": [report for _, report in batch]}
        elif kind == "health":
            path = "/api/health/" + quote(first["service"], safe="")
            body = {"status": first["status"]}
        else:
            path, body = _USERS_PATH, first
        delivered = False
        try:
            delivered = self._post(path, body)
        finally:
            with self._lock:
                if delivered:
                    self._delivered += len(batch)
                else:
                    self._dropped += len(batch)
                self._in_flight = 0
        return True

    def _post(self, path: str, body: dict[str, Any]) -> bool:
        delay = self.backoff
        for attempt in range(1, self.max_attempts + 1):
            if time.monotonic() >= self._deadline:
                raise _Stop
            try:
                response = self._client.post(path, json=body)
            except Exception as exc:  # never let one odd failure stop the sender thread
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.is_success:
                    return True
                problem = f"HTTP {response.status_code}: {response.text[:200]}"
                if response.status_code < 500 and response.status_code not in (408, 429):
                    self._warn(f"collector refused reports ({problem}); dropping them")
                    return False
            if attempt < self.max_attempts:
                if self._stopping.wait(delay) and time.monotonic() >= self._deadline:
                    raise _Stop
                delay *= 2
        self._warn(f"collector unreachable after {self.max_attempts} attempts ({problem})")
        return False

    def _warn(self, message: str) -> None:
        # Log the first failure loudly, then quietly: a dead collector must not flood logs.
        if not self._warned:
            self._warned = True
            logger.warning("otelkit push: %s", message)
        else:
            logger.debug("otelkit push: %s", message)
