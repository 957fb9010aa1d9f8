"""Item 3: hostile numbers in every numeric field, and any JSON value as a trace id (property
test).

NaN, ±Infinity, overflowing floats, negatives, huge integers, booleans, strings, lists and
nested objects as ``duration``, ``status`` and ``count``, and numbers (id-length digit runs
among them), ``null``, booleans, strings, lists and objects as ``trace_id`` and ``span_id``,
alone and inside batches of valid reports (some with valid ids), interleaved with valid
reports. Every hostile write is a 4xx naming the field (and the batch index); the histogram
``_sum`` stays finite and equal to the exact sum of the accepted durations; each bucket's
exemplar on OpenMetrics /metrics is the latest accepted report with ids in it.
"""

from __future__ import annotations

import asyncio
import json
import math
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from otelkit.instruments import (
    ACTIVE_USERS,
    COLLECTOR_REPORTS,
    DURATION_BUCKETS_SECONDS,
    HTTP_REQUEST_DURATION,
)
from otelkit.reports import MAX_DURATION_SECONDS, MAX_USER_COUNT
from otelkit_collector.app import create_app
from otelkit_collector.settings import CollectorSettings
from tests.conftest import open_client
from tests.reliability.conftest import SCALE, first, parse_text, record_figure

SUM_RELATIVE_TOLERANCE = 1e-9
SERIES = frozenset({("method", "GET"), ("route", "/r"), ("status", "200")})
OPENMETRICS = {"accept": "application/openmetrics-text; version=1.0.0"}
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def dumps(value: Any) -> str:
    return json.dumps(value, allow_nan=True)


json_scalars = st.one_of(
    st.booleans(), st.none(), st.text(max_size=8), st.integers(), st.floats(allow_nan=True)
)
nested = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=8,
).map(dumps)
NOT_NUMBERS = st.one_of(
    st.sampled_from(["true", "false", "null", '"0.1"', '"NaN"', '"200"', '""', "[]", "{}"]),
    st.text(max_size=12).map(dumps),
    st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=3).map(dumps),
    nested.filter(lambda text: text[0] in "[{"),
)
NON_FINITE = st.sampled_from(
    ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1E999", "-2e308", "1" + "0" * 5000]
)
"""Not finite (or, for the 5,000-digit integer, not even parseable by Python's json)."""
FLOAT_LITERALS = st.floats(allow_nan=False, allow_infinity=False).map(repr)
"""Any float literal (``200.0``, ``1e+16``): never an integer for a strict int field."""

HOSTILE = {
    "duration": st.one_of(
        NON_FINITE,
        NOT_NUMBERS,
        st.floats(max_value=-5e-324, allow_infinity=False).map(dumps),
        st.integers(max_value=-1).map(dumps),
        st.floats(min_value=math.nextafter(MAX_DURATION_SECONDS, math.inf)).map(dumps),
        st.integers(min_value=int(MAX_DURATION_SECONDS) + 1).map(dumps),
        st.sampled_from(["-1", "-0.001", str(10**30), str(-(10**30)), "86400.00000000003"]),
    ),
    "status": st.one_of(
        NON_FINITE,
        NOT_NUMBERS,
        FLOAT_LITERALS,
        st.integers(max_value=99).map(dumps),
        st.integers(min_value=600).map(dumps),
        st.sampled_from(["-1", "0", "99", "600", "200.0", "2e2", str(10**30)]),
    ),
    "count": st.one_of(
        NON_FINITE,
        NOT_NUMBERS,
        FLOAT_LITERALS,
        st.integers(max_value=-1).map(dumps),
        st.integers(min_value=MAX_USER_COUNT + 1).map(dumps),
        st.sampled_from(["-1", "3.0", "0.5", str(10**30)]),
    ),
}
NOT_IDS = st.one_of(
    NON_FINITE,
    NOT_NUMBERS,
    FLOAT_LITERALS,
    st.integers().map(dumps),
    # Digit runs as long as an id, as numbers: hex ids that happen to have no letter.
    st.integers(min_value=10**15, max_value=10**32 - 1).map(dumps),
    st.sampled_from(["null", "0", "1", "-1", "1e31", "0.0", str(16**32), str(-(16**16))]),
)
"""Anything but a string: every one refused as ``trace_id`` or ``span_id``."""
HOSTILE["trace_id"] = NOT_IDS
HOSTILE["span_id"] = NOT_IDS
HTTP_FIELDS = ["duration", "status", "trace_id", "span_id"]
VALID_IDS = st.one_of(
    st.none(),
    st.tuples(
        st.integers(min_value=1, max_value=16**32 - 1).map(lambda n: f"{n:032x}"),
        st.one_of(
            st.none(), st.integers(min_value=1, max_value=16**16 - 1).map(lambda n: f"{n:016x}")
        ),
    ),
)
"""No ids, or a valid trace_id with or without a valid span_id."""
VALID_DURATIONS = st.one_of(
    st.floats(min_value=0.0, max_value=MAX_DURATION_SECONDS),
    st.integers(min_value=0, max_value=int(MAX_DURATION_SECONDS)),
    st.sampled_from([0.0, 5e-324, 2.2250738585072014e-308, 0.1, 0.005, 10.0, 86_400.0]),
)


Ids = tuple[str, str | None] | None
VALID_REPORTS = st.tuples(VALID_DURATIONS, VALID_IDS)
"""A valid report's (duration, ids)."""


@st.composite
def operations(draw: st.DrawFn) -> list[tuple[str, Any]]:
    """A run of valid and hostile writes, in any order."""
    kinds = st.sampled_from(["valid", "valid-batch", "single", "batch", "users", "valid-users"])
    result: list[tuple[str, Any]] = []
    for kind in draw(st.lists(kinds, min_size=1, max_size=12)):
        if kind == "valid":
            result.append((kind, draw(VALID_REPORTS)))
        elif kind == "valid-batch":
            result.append((kind, draw(st.lists(VALID_REPORTS, min_size=1, max_size=20))))
        elif kind == "single":
            name = draw(st.sampled_from(HTTP_FIELDS))
            result.append((kind, (name, draw(HOSTILE[name]))))
        elif kind == "batch":
            valid = draw(st.lists(VALID_REPORTS, min_size=1, max_size=20))
            index = draw(st.integers(min_value=0, max_value=len(valid)))
            name = draw(st.sampled_from(HTTP_FIELDS))
            result.append((kind, (valid, index, name, draw(HOSTILE[name]))))
        elif kind == "users":
            result.append((kind, draw(HOSTILE["count"])))
        else:
            result.append((kind, draw(st.integers(min_value=0, max_value=MAX_USER_COUNT))))
    return result


TOO_MANY_DIGITS = "1" + "0" * 5000
UNREADABLE_INTEGERS: list[tuple[str, Any]] = [
    ("batch", ([(0.1, None), (0.2, None), (0.3, None)], 1, "status", TOO_MANY_DIGITS)),
    ("valid", (0.4, None)),
    ("batch", ([(0.5, None), (0.6, None)], 2, "duration", TOO_MANY_DIGITS)),
    ("single", ("trace_id", TOO_MANY_DIGITS)),
    ("users", TOO_MANY_DIGITS),
]
"""Always tried: integer literals Python's json cannot read (a 400, not a 422), in the middle
and at the end of batches, whose error must still name the report's index and field."""


def report_text(duration: str = "0.1", status: str = "200", ids: str = "") -> str:
    """A report as JSON text; ``ids`` are more members, written as JSON text."""
    return f'{{"method":"GET","route":"/r","status":{status},"duration":{duration}{ids}}}'


def valid_report(duration: float, ids: Ids) -> str:
    if ids is None:
        return report_text(dumps(duration))
    trace_id, span_id = ids
    members = f',"trace_id":"{trace_id}"' + (f',"span_id":"{span_id}"' if span_id else "")
    return report_text(dumps(duration), ids=members)


def hostile_report(name: str, value: str) -> str:
    if name == "trace_id":
        return report_text(ids=f',"trace_id":{value}')
    if name == "span_id":  # next to a valid trace_id: the span_id alone is at fault
        return report_text(ids=f',"trace_id":"{TRACE_ID}","span_id":{value}')
    return report_text(**{name: value})


def bucket_of(duration: float) -> int:
    """The index of the histogram bucket a duration falls in (le is inclusive)."""
    return bisect_left(DURATION_BUCKETS_SECONDS, duration)


def shown_exemplars(exposition: str) -> dict[int, tuple[str, str | None, float]]:
    """(trace_id, span_id, value) of each bucket's exemplar, by bucket index."""
    return {
        bucket_of(float(sample.labels["le"])): (
            sample.exemplar.labels["trace_id"],
            sample.exemplar.labels.get("span_id"),
            sample.exemplar.value,
        )
        for family in text_string_to_metric_families(exposition)
        if family.name == HTTP_REQUEST_DURATION.prometheus_name
        for sample in family.samples
        if sample.exemplar is not None
    }


@dataclass
class Tally:
    hostile_writes: int = 0
    refused: int = 0
    valid_writes: int = 0
    accepted_durations: int = 0
    traced_reports: int = 0
    examples: int = 0
    worst_sum_error: float = 0.0
    problems: list[str] = field(default_factory=list)


def names_the_field(response_body: Any, location: list[Any]) -> bool:
    """Whether a refusal points at ``location``: a 422 in the ``loc`` of one of its errors, a
    400 (a body Python's json cannot read, e.g. a 5,000-digit integer) by its message
    starting with the location written out (``body.reports.3.duration: ``), then the rule it
    broke rather than a catch-all."""
    detail = response_body.get("detail") if isinstance(response_body, dict) else None
    if isinstance(detail, str):
        named = ".".join(map(str, location)) + ": "
        return detail.startswith(named) and "could not be parsed" not in detail
    return any(error.get("loc", [])[: len(location)] == location for error in detail or [])


async def exercise(ops: list[tuple[str, Any]], tally: Tally) -> list[str]:
    """Apply ``ops`` to a fresh collector; return what went wrong."""
    app = create_app(CollectorSettings.from_env(environ={}), registry=CollectorRegistry())
    accepted: list[float] = []
    exemplars: dict[int, tuple[str, str | None, float]] = {}
    users: int | None = None
    rejected_reports = 0
    problems: list[str] = []
    async with open_client(app) as http:

        async def post(url: str, body: str) -> tuple[int, Any]:
            response = await http.post(
                url, content=body.encode(), headers={"content-type": "application/json"}
            )
            return response.status_code, response.json()

        for kind, data in ops:
            if kind in ("valid", "valid-batch", "valid-users"):
                tally.valid_writes += 1
                sent: list[tuple[float, Ids]] = []
                if kind == "valid":
                    status, body = await post("/api/metrics/http", valid_report(*data))
                    sent = [data]
                elif kind == "valid-batch":
                    reports = ",".join(valid_report(*report) for report in data)
                    status, body = await post(
                        "/api/metrics/http/batch", f'{{"reports":[{reports}]}}'
                    )
                    sent = data
                else:
                    status, body = await post("/api/metrics/users", f'{{"count":{data}}}')
                    users = data
                if status != 200:
                    problems.append(f"valid {kind} {data!r} refused: {status} {body}")
                for duration, ids in sent:
                    accepted.append(float(duration))
                    if ids is not None:
                        exemplars[bucket_of(duration)] = (*ids, float(duration))
                tally.traced_reports += sum(ids is not None for _duration, ids in sent)
                continue
            tally.hostile_writes += 1
            if kind == "single":
                name, value = data
                status, body = await post("/api/metrics/http", hostile_report(name, value))
                location: list[Any] = ["body", name]
                rejected_reports += 1
            elif kind == "batch":
                valid, index, name, value = data
                reports = [valid_report(*report) for report in valid]
                reports.insert(index, hostile_report(name, value))
                batch = f'{{"reports":[{",".join(reports)}]}}'
                status, body = await post("/api/metrics/http/batch", batch)
                location = ["body", "reports", index, name]
                # A body json cannot parse has no countable reports: it counts as one.
                rejected_reports += 1 if status == 400 else len(reports)
            else:
                status, body = await post("/api/metrics/users", f'{{"count":{data}}}')
                location, value = ["body", "count"], data
            if 400 <= status < 500 and names_the_field(body, location):
                tally.refused += 1
            else:
                problems.append(f"{kind} {location} = {value[:80]!r}: {status} {body}")

        exposition = parse_text((await http.get("/metrics")).text)
        openmetrics = await http.get("/metrics", headers=OPENMETRICS)
    try:
        shown = shown_exemplars(openmetrics.text)
    except ValueError as exc:
        problems.append(f"OpenMetrics /metrics ({openmetrics.status_code}) does not parse: {exc}")
    else:
        if shown != exemplars:
            problems.append(f"exemplars {shown} != latest accepted ids per bucket {exemplars}")
    name = HTTP_REQUEST_DURATION.prometheus_name
    total = exposition.get((f"{name}_sum", SERIES), 0.0)
    count = exposition.get((f"{name}_count", SERIES), 0.0)
    exact = math.fsum(accepted)
    error = abs(total - exact) / exact if exact else abs(total)
    tally.worst_sum_error = max(tally.worst_sum_error, error)
    tally.accepted_durations += len(accepted)
    if not math.isfinite(total) or not error <= SUM_RELATIVE_TOLERANCE:
        problems.append(f"_sum {total!r} != exact {exact!r} (relative error {error:.2e})")
    if count != len(accepted):
        problems.append(f"_count {count} != {len(accepted)} accepted")
    shown_users = exposition.get((ACTIVE_USERS.prometheus_name, frozenset()))
    if shown_users != (None if users is None else float(users)):
        problems.append(f"active users {shown_users} != last valid count {users}")
    refused_counter = exposition.get(
        (COLLECTOR_REPORTS.prometheus_name, frozenset({("kind", "http"), ("outcome", "rejected")})),
        0.0,
    )
    if refused_counter != rejected_reports:
        problems.append(f"rejected self-metric {refused_counter} != {rejected_reports}")
    return problems


def test_hostile_numbers_are_refused_and_sums_stay_exact() -> None:
    """Hostile numbers always get a 4xx naming the field; _sum equals the exact sum."""
    tally = Tally()

    @settings(
        max_examples=SCALE.number_examples,
        deadline=None,
        database=None,
        derandomize=SCALE.name == "ci",
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(ops=operations())
    @example(ops=UNREADABLE_INTEGERS)
    def property_holds(ops: list[tuple[str, Any]]) -> None:
        tally.examples += 1
        problems = asyncio.run(exercise(ops, tally))
        tally.problems.extend(problems)
        assert not problems, first(problems)

    try:
        property_holds()
    finally:
        share = tally.refused / tally.hostile_writes if tally.hostile_writes else 0.0
        record_figure(
            "3 numbers",
            f"{tally.hostile_writes:,} hostile writes (single, inside batches, users) over "
            f"{tally.examples} examples: {share:.1%} 4xx naming the field; "
            f"{tally.valid_writes:,} valid writes ({tally.accepted_durations:,} durations, "
            f"{tally.traced_reports:,} with ids): worst _sum error "
            f"{tally.worst_sum_error:.1e} relative, always finite; exemplars the latest ids "
            f"per bucket; {len(tally.problems)} problems",
            "100 % 4xx; _sum finite and == fsum(accepted durations) within 1e-9; "
            "exemplar == latest accepted ids per bucket",
            tally.hostile_writes > 0 and not tally.problems,
        )
