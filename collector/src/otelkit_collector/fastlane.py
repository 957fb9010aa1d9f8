"""A fast lane for the hot writes: HTTP reports that are valid as sent.

``POST /api/metrics/http`` and ``/api/metrics/http/batch`` carry nearly all of a collector's
traffic, and nearly all of it is valid. Through FastAPI, each such request pays for routing,
dependency solving and response-model serialisation, which cost several times the recording
itself. This pure-ASGI lane, inside the auth and body-size guards, serves those requests
directly when every report is valid as sent (:class:`ValidReports`), trace ids included;
everything it does not accept (another content type, a body that does not parse, breaks a
rule, or is merely unusual) is replayed, body and all, through the full application, so
every refusal is exactly the documented one, counted in the self-metrics like any other.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from operator import itemgetter
from typing import Any, NamedTuple

from pydantic import ValidationError
from pydantic_core import from_json
from starlette.types import ASGIApp, Receive, Scope, Send

from otelkit.reports import MAX_BATCH_REPORTS, MAX_DURATION_SECONDS, HttpReport
from otelkit_collector.limits import replay_body
from otelkit_collector.recorder import Recorder, ReportLabels, TracedReport

_SINGLE = "/api/metrics/http"
_BATCH = "/api/metrics/http/batch"
_JSON_HEADERS = [(b"content-type", b"application/json")]
_LANES: dict[str, bool] = {_SINGLE: False, _BATCH: True}
"""Path -> whether it takes a batch."""

_SERVICE_TYPES = (str, type(None))
_WITH_SERVICE = itemgetter("method", "route", "status", "service")
_WITHOUT_SERVICE = itemgetter("method", "route", "status")

_LABELS_CACHE_SIZE = 4_096
"""Label sets (as sent) the lane remembers as valid: twice the default series cap, spellings
and statuses included. Requests with label sets past it take the full route."""

_TRACE_ID = re.compile("[0-9a-f]{32}").fullmatch
_SPAN_ID = re.compile("[0-9a-f]{16}").fullmatch
_ZERO_TRACE_ID = "0" * 32
_ZERO_SPAN_ID = "0" * 16


class Reading(NamedTuple):
    """What a taken body holds: its durations grouped by labels, and its traced reports."""

    durations: dict[ReportLabels, list[float]]
    """Durations per (service, method, route, status), in report order within each."""
    traced: Sequence[TracedReport]
    """The reports that carry a trace id, in report order."""


class ValidReports:
    """Reads bodies whose every report is valid exactly as sent; anything else gets ``None``.

    A body is taken only when each report is a JSON object with exactly the report's keys,
    an integer status in range, a float duration in range, and label text that
    :class:`~otelkit.reports.HttpReport` accepts (checked by that model on first sight, then
    remembered); a report may also carry a ``trace_id`` (and then a ``span_id``) that is
    exactly a valid id. The result is what validating with the models gives, grouped by
    labels in report order: a refused body is replayed through the full route, which names
    the rule. JSON is read by pydantic's parser, which agrees with ``json.loads`` on every
    document both accept and refuses the rest (lone surrogates, a byte order mark, other
    encodings), which then take the full route too.
    """

    def __init__(self) -> None:
        # Labels as sent (method, route, status[, service]) -> as recorded, once accepted.
        self._known: dict[tuple[Any, ...], ReportLabels] = {}

    def read(self, body: bytes, *, batch: bool) -> Reading | None:
        """The body's durations and traced reports, or ``None``.

        Reports without ids are read as they always were; only a body that reading refuses
        is read again, allowing ids: reports with ids cost nothing to those without.
        """
        try:
            document = from_json(body, allow_inf_nan=False, cache_strings="keys")
        except ValueError:
            return None
        if batch:
            if type(document) is not dict or len(document) != 1:
                return None
            reports = document.get("reports")
            if type(reports) is not list or not 1 <= len(reports) <= MAX_BATCH_REPORTS:
                return None
        else:
            reports = [document]
        durations = self._read_untraced(reports)
        if durations is not None:
            return Reading(durations, ())
        return self._read_traced(reports)

    def _read_untraced(self, reports: list[Any]) -> dict[ReportLabels, list[float]] | None:
        """Reports without ids: the durations per label set, or ``None``."""
        durations: dict[ReportLabels, list[float]] = {}
        known = self._known
        for report in reports:
            if type(report) is not dict:
                return None
            try:
                # Exactly the four keys, or those and "service": nothing missing or extra.
                size = len(report)
                if size == 5:
                    key = _WITH_SERVICE(report)
                elif size == 4:
                    key = _WITHOUT_SERVICE(report)
                else:
                    return None
                duration = report["duration"]
                labels = known.get(key)
            except (KeyError, TypeError):  # a key missing, or a label that is not hashable
                return None
            # Per report, even for a known label set: 200.0 == 200 as a dict key.
            if (
                type(key[2]) is not int
                or type(duration) is not float
                or not 0.0 <= duration <= MAX_DURATION_SECONDS
            ):
                return None
            if labels is None:
                labels = self._learn(key)
                if labels is None:
                    return None
            values = durations.get(labels)
            if values is None:
                durations[labels] = [duration]
            else:
                values.append(duration)
        return durations

    def _read_traced(self, reports: list[Any]) -> Reading | None:
        """Reports with or without ids, each as :meth:`_read_untraced` reads one once its ids
        are set aside; ``None`` unless every id is exactly a valid one (and a ``span_id``
        comes with a ``trace_id``)."""
        durations: dict[ReportLabels, list[float]] = {}
        traced: list[TracedReport] = []
        known = self._known
        for report in reports:
            if type(report) is not dict:
                return None
            trace_id = span_id = None
            ids = 0
            if "trace_id" in report:
                trace_id = report["trace_id"]
                if (
                    type(trace_id) is not str
                    or _TRACE_ID(trace_id) is None
                    or trace_id == _ZERO_TRACE_ID
                ):
                    return None
                ids = 1
                if "span_id" in report:
                    span_id = report["span_id"]
                    if (
                        type(span_id) is not str
                        or _SPAN_ID(span_id) is None
                        or span_id == _ZERO_SPAN_ID
                    ):
                        return None
                    ids = 2
            # A span_id without a trace_id is one key too many, refused below.
            try:
                size = len(report) - ids
                if size == 5:
                    key = _WITH_SERVICE(report)
                elif size == 4:
                    key = _WITHOUT_SERVICE(report)
                else:
                    return None
                duration = report["duration"]
                labels = known.get(key)
            except (KeyError, TypeError):
                return None
            if (
                type(key[2]) is not int
                or type(duration) is not float
                or not 0.0 <= duration <= MAX_DURATION_SECONDS
            ):
                return None
            if labels is None:
                labels = self._learn(key)
                if labels is None:
                    return None
            values = durations.get(labels)
            if values is None:
                durations[labels] = [duration]
            else:
                values.append(duration)
            if trace_id is not None:
                traced.append((labels, duration, trace_id, span_id))
        return Reading(durations, traced)

    def _learn(self, key: tuple[Any, ...]) -> ReportLabels | None:
        """Check and remember a label set seen for the first time; ``None`` if the model
        refuses it or there is no room left to remember it.

        A flood of new label sets (folded into overflow series anyway) thus takes the full
        route once the lane's memory is full, instead of being checked here on every request.
        """
        if len(self._known) >= _LABELS_CACHE_SIZE:
            return None
        labels = self._check_labels(key)
        if labels is not None:
            self._known[key] = labels
        return labels

    def _check_labels(self, key: tuple[Any, ...]) -> ReportLabels | None:
        """The labels as recorded, if the model accepts them as sent."""
        method, route, status = key[:3]
        service = key[3] if len(key) == 4 else None
        if not (type(method) is str and type(route) is str and type(service) in _SERVICE_TYPES):
            return None  # refused by the model too; and only exact str keys are remembered
        try:
            report = HttpReport(
                method=method, route=route, status=status, duration=0.0, service=service
            )
        except ValidationError:
            return None
        return (report.service, report.method, report.route, report.status)


def is_json_content_type(value: bytes | None) -> bool:
    """Whether FastAPI would parse a body with this Content-Type as JSON, for the plain cases.

    Only ``application/json`` (any case, any parameters) and a missing header qualify here;
    rarer forms FastAPI also parses (``application/*+json``) simply take the full route.
    """
    if value is None:
        return True
    media_type = value.split(b";", 1)[0].strip().lower()
    return media_type == b"application/json"


class IngestFastLane:
    """Record valid HTTP reports without the framework round trip; replay anything else.

    Args:
        app: the full application, which answers every request this lane does not take.
        recorder: where accepted reports are recorded (the one the routes use).
    """

    def __init__(self, app: ASGIApp, *, recorder: Recorder) -> None:
        self.app = app
        self.recorder = recorder
        self._reports = ValidReports()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        batch = _LANES.get(scope["path"]) if scope["type"] == "http" else None
        if batch is None or scope["method"] != "POST" or not _takes(scope):
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:
            return  # the client went away before sending its body: nothing to answer
        reading = self._reports.read(body, batch=batch) if body else None
        if reading is not None:
            durations = reading.durations
            overflowed = self.recorder.record_http_durations(durations, reading.traced)
            accepted = sum(map(len, durations.values()))
            answer = f'{{"accepted":{accepted},"overflowed":{overflowed}}}'.encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-length", str(len(answer)).encode()), *_JSON_HEADERS],
                }
            )
            await send({"type": "http.response.body", "body": answer})
            return
        await self.app(scope, replay_body(body, receive), send)


def _takes(scope: Scope) -> bool:
    content_type: bytes | None = None
    for name, value in scope["headers"]:
        if name == b"content-type":
            content_type = value
            break
    return is_json_content_type(content_type)


async def _read_body(receive: Receive) -> bytes | None:
    """The whole body (already capped by the body-size guard); ``None`` on a disconnect."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)
