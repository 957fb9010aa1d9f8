"""The fast lane's reader agrees with the models: whatever it takes, the models take the same way.

:class:`~otelkit_collector.fastlane.ValidReports` parses with pydantic's JSON parser and checks each
report itself, asking :class:`~otelkit.reports.HttpReport` only about label sets it has not
seen. Here its answer is compared with the full route's: ``json.loads`` then the models,
grouped by the validated labels, with the reports that carry trace ids in report order.
Refusing a body the models accept is allowed (the body just takes the full route), taking one
they refuse, or grouping or tracing it differently, is not.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from otelkit.reports import (
    MAX_BATCH_REPORTS,
    MAX_ROUTE_LENGTH,
    MAX_SERVICE_LENGTH,
    HttpReport,
    HttpReportBatch,
)
from otelkit_collector.fastlane import Reading, ValidReports
from otelkit_collector.recorder import ReportLabels, TracedReport

Grouped = dict[ReportLabels, list[float]]

SHARED_READER: Final = ValidReports()
"""Lives across examples, so label sets remembered by one body meet every later body."""


def by_models(body: bytes, *, batch: bool) -> Reading | None:
    """What the full route records: ``json.loads``, the models, grouped in report order, and
    the reports with a trace id."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    try:
        if batch:
            reports = HttpReportBatch.model_validate(document).reports
        else:
            reports = [HttpReport.model_validate(document)]
    except ValidationError:
        return None
    grouped: Grouped = {}
    traced: list[TracedReport] = []
    for report in reports:
        labels = (report.service, report.method, report.route, report.status)
        grouped.setdefault(labels, []).append(report.duration)
        if report.trace_id is not None:
            traced.append((labels, report.duration, report.trace_id, report.span_id))
    return Reading(grouped, traced)


def exact(values: list[float]) -> list[str]:
    """Floats as text that tells every float apart (``-0.0`` from ``0.0``, ``1`` from ``1.0``)."""
    return [repr(value) for value in values]


def assert_same_groups(read: Grouped, models: Grouped) -> None:
    """Same label sets, in the same order, each with the very same floats (as a multiset)."""
    assert list(read) == list(models)
    for labels, values in models.items():
        assert Counter(exact(read[labels])) == Counter(exact(values)), labels


def exact_traced(traced: Sequence[TracedReport]) -> list[tuple[object, ...]]:
    """Traced reports with their durations as :func:`exact` text."""
    return [(labels, repr(duration), *ids) for labels, duration, *ids in traced]


def durations_of(reading: Reading | None) -> Grouped | None:
    """A reading's durations (``None`` when the body was refused)."""
    return None if reading is None else reading.durations


# --- Generated bodies -------------------------------------------------------------------------


@dataclass(frozen=True)
class Text:
    """A piece of JSON text and whether it is the plainest valid form of its field."""

    json: str
    plain: bool


def quoted(value: str, *, ascii_only: bool = True) -> str:
    return json.dumps(value, ensure_ascii=ascii_only)


PLAIN_METHODS: Final = ("GET", "get", "Get", "POST", "delete", "PURGE", "Patch", "OPTIONS")
BAD_METHODS: Final = ("G E T", "", "GET\n", "GÉT", "X" * 17, "ge-t", "GET1")

PLAIN_LABEL_TEXTS: Final = (
    "/api/courses",
    "/api/courses/{course_id}",
    "/é",
    "日本/𝄞",
    'quote " and \\ slash',
    "\u00a0nbsp",
    "x" * MAX_SERVICE_LENGTH,
)
BAD_LABEL_TEXTS: Final = (
    "",
    "new\nline",
    "tab\t",
    "nul\x00",
    "del\x7f",
    "c1\x85",
    "x" * (MAX_SERVICE_LENGTH + 1),
    "/" * MAX_ROUTE_LENGTH,
    "/" * (MAX_ROUTE_LENGTH + 1),
)
HAND_ESCAPED_LABELS: Final = (
    Text('"/caf\\u00e9"', plain=False),
    Text('"\\/api\\/x"', plain=False),
    Text('"\\ud83d\\ude00"', plain=False),
    Text('"\\ud800"', plain=False),
    Text('"a\\udc00b"', plain=False),
    Text('"\\u0000"', plain=False),
    Text('"\\u007f"', plain=False),
    Text('"\\t"', plain=False),
)
NOT_STRINGS: Final = ("null", "1", "1.5", "true", "[]", "{}", '["/a"]', '{"a": 1}')

label_free_text = st.text(
    alphabet=st.characters(exclude_categories=("Cs", "Cc")), min_size=1, max_size=12
)
"""Label text the models accept (no control characters, no surrogates, short enough)."""


@st.composite
def labels(draw: st.DrawFn, *, max_length: int, only_plain: bool = False) -> Text:
    """A route or service value: plain text, any text, hand-written escapes or no string."""
    kinds = ("plain", "plain", "any", "bad", "escaped", "not-string")
    kind = "plain" if only_plain else draw(st.sampled_from(kinds))
    if kind == "plain":
        value = draw(st.one_of(st.sampled_from(PLAIN_LABEL_TEXTS), label_free_text))
        plain = len(value) <= max_length
        return Text(quoted(value, ascii_only=draw(st.booleans())), plain)
    if kind == "any":
        value = draw(st.text(max_size=8))
        return Text(quoted(value, ascii_only=draw(st.booleans())), plain=False)
    if kind == "bad":
        value = draw(st.sampled_from(BAD_LABEL_TEXTS))
        return Text(quoted(value, ascii_only=draw(st.booleans())), plain=False)
    if kind == "escaped":
        return draw(st.sampled_from(HAND_ESCAPED_LABELS))
    return Text(draw(st.sampled_from(NOT_STRINGS)), plain=False)


@st.composite
def methods(draw: st.DrawFn, *, only_plain: bool = False) -> Text:
    kind = "plain" if only_plain else draw(st.sampled_from(("plain", "plain", "bad", "not-string")))
    if kind == "plain":
        return Text(quoted(draw(st.sampled_from(PLAIN_METHODS))), plain=True)
    if kind == "bad":
        return Text(quoted(draw(st.sampled_from(BAD_METHODS))), plain=False)
    return Text(draw(st.sampled_from(NOT_STRINGS)), plain=False)


def bad_ids(digits: int) -> tuple[str, ...]:
    """Text that is no valid id of ``digits`` hex digits, each for one reason."""
    valid = ("0123456789abcdef" * 2)[:digits]
    return (
        "0" * digits,
        valid[:-1],
        valid + "a",
        valid.upper(),
        "g" + valid[1:],
        " " + valid[1:],
        valid[1:] + " ",
        "\uff10" + valid[1:],  # fullwidth digit zero
        "\u0663" + valid[1:],  # arabic-indic digit three
        valid[:-1] + "\n",
        "",
    )


@st.composite
def hex_ids(draw: st.DrawFn, *, digits: int, only_plain: bool = False) -> Text:
    """A ``trace_id`` (32) or ``span_id`` (16) value: a valid id, a bad one or no string."""
    kinds = ("valid",) if only_plain else ("valid", "valid", "bad", "not-string")
    kind = draw(st.sampled_from(kinds))
    if kind == "valid":
        value = format(draw(st.integers(min_value=1, max_value=16**digits - 1)), f"0{digits}x")
        return Text(quoted(value), plain=True)
    if kind == "bad":
        value = draw(st.sampled_from(bad_ids(digits)))
        return Text(quoted(value, ascii_only=draw(st.booleans())), plain=False)
    return Text(draw(st.sampled_from(NOT_STRINGS)), plain=False)


STATUS_CODES: Final = st.one_of(
    st.sampled_from((200, 201, 404, 503)), st.integers(min_value=100, max_value=599)
)


@st.composite
def statuses(draw: st.DrawFn, *, only_plain: bool = False) -> Text:
    kinds = ("plain", "plain", "int", "float", "other")
    kind = "plain" if only_plain else draw(st.sampled_from(kinds))
    if kind == "plain":
        return Text(str(draw(STATUS_CODES)), plain=True)
    if kind == "int":
        return Text(str(draw(st.integers(min_value=-1_000, max_value=1_000))), plain=False)
    if kind == "float":  # equal to an int, and hashed like it
        return Text(
            draw(st.sampled_from(("{}.0", "{}e0", "{}.000"))).format(draw(STATUS_CODES)),
            plain=False,
        )
    other = ("200.0", "2e2", "true", "false", '"200"', "null", "-0", "99", "600", "1" + "0" * 30)
    return Text(draw(st.sampled_from(other)), plain=False)


@st.composite
def durations(draw: st.DrawFn, *, only_plain: bool = False) -> Text:
    kinds = ("plain", "plain", "float", "int", "other")
    kind = "plain" if only_plain else draw(st.sampled_from(kinds))
    if kind == "int":
        return Text(str(draw(st.integers(min_value=-1, max_value=100_000))), plain=False)
    if kind == "plain":
        value = draw(
            st.one_of(
                st.floats(min_value=0.0, max_value=86_400.0),
                st.floats(min_value=0.0, max_value=1.0),
                st.sampled_from((0.0, 1.0, 86_400.0, 5e-324, 0.005, 0.1)),
            )
        )
        return Text(repr(value), plain=True)
    if kind == "float":
        value = draw(st.floats(allow_nan=False, allow_infinity=False))
        return Text(repr(value), plain=False)
    other = (
        "0",
        "1",
        "-0.0",
        "-1.5",
        "86400.00001",
        "1e400",
        "-1e400",
        "NaN",
        "Infinity",
        "-Infinity",
        "1E-3",
        "0.1e1",
        "1e-400",
        '"0.1"',
        "null",
        "true",
        "[0.1]",
        "0.1000000000000000055511151231257827",
    )
    return Text(draw(st.sampled_from(other)), plain=False)


@st.composite
def services(draw: st.DrawFn, *, only_plain: bool = False) -> Text | None:
    """``None`` for no service key at all; JSON ``null`` is plain: it means no service too."""
    kinds = ("absent", "null", "label") if only_plain else ("absent", "null", "label", "number")
    kind = draw(st.sampled_from(kinds))
    if kind == "absent":
        return None
    if kind == "null":
        return Text("null", plain=True)
    if kind == "number":
        return Text(draw(st.sampled_from(("0", "1.5", "false", '""'))), plain=False)
    return draw(labels(max_length=MAX_SERVICE_LENGTH, only_plain=only_plain))


FIELD_VALUES: Final[dict[bool, dict[str, st.SearchStrategy[Text]]]] = {
    only_plain: {
        "method": methods(only_plain=only_plain),
        "route": labels(max_length=MAX_ROUTE_LENGTH, only_plain=only_plain),
        "status": statuses(only_plain=only_plain),
        "duration": durations(only_plain=only_plain),
        "service": labels(max_length=MAX_SERVICE_LENGTH, only_plain=only_plain),
        "trace_id": hex_ids(digits=32, only_plain=only_plain),
        "span_id": hex_ids(digits=16, only_plain=only_plain),
    }
    for only_plain in (False, True)
}
"""Per field, values of any kind (``False``) or plain ones only (``True``)."""


SERVICES: Final = {only_plain: services(only_plain=only_plain) for only_plain in (False, True)}


REPORT_KEYS: Final = ("method", "route", "status", "duration", "service", "trace_id", "span_id")


def plain_report(draw: st.DrawFn) -> dict[str, Text | None]:
    """A plain report's values by key (``None`` for no such key): half of them traced."""
    report: dict[str, Text | None] = {key: draw(FIELD_VALUES[True][key]) for key in REPORT_KEYS[:4]}
    report["service"] = draw(SERVICES[True])
    ids = draw(st.sampled_from(("none", "none", "trace", "both")))
    report["trace_id"] = draw(FIELD_VALUES[True]["trace_id"]) if ids != "none" else None
    report["span_id"] = draw(FIELD_VALUES[True]["span_id"]) if ids == "both" else None
    return report


def replace_values(draw: st.DrawFn, report: dict[str, Text | None], most: int) -> None:
    """Replace up to ``most`` of the report's values by values of any kind."""
    for key in draw(st.lists(st.sampled_from(REPORT_KEYS), max_size=most, unique=True)):
        report[key] = draw(SERVICES[False] if key == "service" else FIELD_VALUES[False][key])


def write_report(draw: st.DrawFn, report: dict[str, Text | None], *, mutate: bool) -> Text:
    """The report as JSON text, keys maybe reordered and, if ``mutate``, one key dropped,
    added or duplicated."""
    fields = [(key, text) for key, text in report.items() if text is not None]
    # A span_id needs a trace_id (a value replaced in may have added one without the other).
    plain = all(text.plain for _key, text in fields) and (
        report.get("span_id") is None or report.get("trace_id") is not None
    )
    if draw(st.booleans()):
        fields = draw(st.permutations(fields))
    mutations = ("none", "none", "none", "drop", "extra", "duplicate")
    mutation = draw(st.sampled_from(mutations)) if mutate else "none"
    if mutation == "drop":
        del fields[draw(st.integers(min_value=0, max_value=len(fields) - 1))]
        plain = False
    elif mutation == "extra":
        extra = draw(st.sampled_from(("extra", "Method", "services", "durations", "")))
        fields.insert(draw(st.integers(0, len(fields))), (extra, Text("1", plain=False)))
        plain = False
    elif mutation == "duplicate":
        key = draw(st.sampled_from([key for key, _text in fields]))
        value = draw(FIELD_VALUES[False][key])
        fields.insert(draw(st.integers(0, len(fields))), (key, value))
        plain = False
    separator = draw(st.sampled_from((",", ", ", " ,\n\t")))
    members = separator.join(f"{quoted(key)}:{text.json}" for key, text in fields)
    return Text("{" + members + "}", plain)


@st.composite
def reports(draw: st.DrawFn, *, only_plain: bool = False) -> Text:
    """A report object written by hand: keys may be missing, extra, duplicated or reordered.

    Each starts plain; unless ``only_plain``, up to two of its values may then be replaced by
    values of any kind and one key mutated, so most refusals hinge on a single rule.
    """
    if not only_plain and draw(st.integers(min_value=0, max_value=19)) == 0:
        return Text(draw(st.sampled_from(("[]", "null", "1", '"GET"', "[{}]"))), plain=False)
    report = plain_report(draw)
    if not only_plain:
        replace_values(draw, report, most=2)
    return write_report(draw, report, mutate=not only_plain)


@st.composite
def variant_reports(draw: st.DrawFn) -> list[Text]:
    """Copies of one plain report, most with one value replaced or one key mutated: label
    sets equal as sent, equal only once validated ("get" and "GET"), or as hashed (200 and
    200.0), side by side."""
    base = plain_report(draw)
    status = base["status"]
    items = []
    for _ in range(draw(st.integers(min_value=2, max_value=6))):
        report = dict(base)
        if status is not None and draw(st.integers(0, 3)) == 0:  # the base's status, as a float
            report["status"] = Text(f"{status.json}.0", plain=False)
        else:
            replace_values(draw, report, most=1)
        items.append(write_report(draw, report, mutate=draw(st.integers(0, 3)) == 0))
    return items


@dataclass(frozen=True)
class Body:
    """A request body for one of the two endpoints, and whether the reader must take it."""

    data: bytes
    batch: bool
    plain: bool


@st.composite
def single_bodies(draw: st.DrawFn) -> Body:
    report = draw(reports())
    return Body(report.json.encode(), batch=False, plain=report.plain)


@st.composite
def batch_bodies(draw: st.DrawFn) -> Body:
    kinds = ("reports", "reports", "variants", "variants", "empty", "long", "other")
    kind = draw(st.sampled_from(kinds))
    if kind in ("reports", "variants"):
        if kind == "variants":
            items = draw(variant_reports())
        else:
            items = draw(st.lists(reports(only_plain=draw(st.booleans())), min_size=1, max_size=6))
        text = '{"reports": [' + ", ".join(item.json for item in items) + "]}"
        return Body(text.encode(), batch=True, plain=all(item.plain for item in items))
    if kind == "empty":
        return Body(b'{"reports": []}', batch=True, plain=False)
    if kind == "long":
        item = draw(reports())
        size = draw(st.sampled_from((MAX_BATCH_REPORTS, MAX_BATCH_REPORTS + 1)))
        text = '{"reports": [' + ",".join([item.json] * size) + "]}"
        return Body(text.encode(), batch=True, plain=item.plain and size == MAX_BATCH_REPORTS)
    item = draw(reports()).json
    other = (
        '{"reports": {}}',
        '{"reports": null}',
        '{"reports": "x"}',
        f"[{item}]",
        f'{{"reports": [{item}], "extra": 1}}',
        f'{{"reports": [], "reports": [{item}]}}',
        f'{{"reports": [{item}], "reports": []}}',
        f'{{"Reports": [{item}]}}',
    )
    return Body(draw(st.sampled_from(other)).encode(), batch=True, plain=False)


@st.composite
def bodies(draw: st.DrawFn) -> Body:
    body = draw(st.one_of(single_bodies(), batch_bodies()))
    encoding = draw(st.sampled_from(("utf-8",) * 8 + ("bom", "utf-16")))
    if encoding == "bom":
        return Body(b"\xef\xbb\xbf" + body.data, body.batch, plain=False)
    if encoding == "utf-16":
        return Body(body.data.decode().encode("utf-16"), body.batch, plain=False)
    return body


@given(body=bodies())
@settings(max_examples=200, deadline=None)
def test_what_the_reader_takes_the_models_take_the_same_way(body: Body) -> None:
    """Every body the reader takes validates with the models into the same groups of the same
    floats; every plainly valid body is taken; remembered label sets change nothing."""
    read = ValidReports().read(body.data, batch=body.batch)
    models = by_models(body.data, batch=body.batch)
    event("taken" if read is not None else "valid, refused" if models else "invalid")
    if models is not None:
        event("traced" if models.traced else "untraced")

    if read is not None:
        assert models is not None, "the reader took a body the models refuse"
        assert_same_groups(read.durations, models.durations)
        assert exact_traced(read.traced) == exact_traced(models.traced)
    if body.plain:
        assert models is not None, "the strategy's plain bodies must be valid"
        assert read is not None, "the reader refused a plainly valid body"
    remembered = SHARED_READER.read(body.data, batch=body.batch)
    if read is None or remembered is None:
        assert read is remembered
    else:
        assert list(remembered.durations) == list(read.durations)
        assert {k: exact(v) for k, v in remembered.durations.items()} == {
            k: exact(v) for k, v in read.durations.items()
        }
        assert exact_traced(remembered.traced) == exact_traced(read.traced)


# --- Explicit cases ----------------------------------------------------------------------------


def report_text(**fields: object) -> dict[str, object]:
    return {"method": "GET", "route": "/a", "status": 200, "duration": 0.5, **fields}


def batch_of(*items: dict[str, object]) -> bytes:
    return json.dumps({"reports": list(items)}).encode()


@pytest.mark.parametrize(
    ("body", "batch", "expected"),
    [
        pytest.param(
            b'{"method": "GET", "method": "POST", "route": "/a", "status": 200, "duration": 0.5}',
            False,
            {(None, "POST", "/a", 200): [0.5]},
            id="duplicate-key-last-wins",
        ),
        pytest.param(
            b'{"method": "GET", "route": "/a", "status": 200, "duration": 0.5, "duration": 0.25,'
            b' "service": "x", "service": null}',
            False,
            {(None, "GET", "/a", 200): [0.25]},
            id="duplicate-duration-and-service-last-wins",
        ),
        pytest.param(
            b'{"reports": [], "reports": [{"method": "GET", "route": "/a", "status": 200,'
            b' "duration": 0.5}]}',
            True,
            {(None, "GET", "/a", 200): [0.5]},
            id="duplicate-reports-key-last-wins",
        ),
        pytest.param(
            b'{"method": "GET", "route": "/caf\\u00e9", "status": 200, "duration": 0.5,'
            b' "service": "\\ud83d\\ude00"}',
            False,
            {("\U0001f600", "GET", "/caf\u00e9", 200): [0.5]},
            id="escaped-unicode",
        ),
        pytest.param(
            json.dumps(report_text(duration=-0.0)).encode(),
            False,
            {(None, "GET", "/a", 200): [-0.0]},
            id="negative-zero-duration",
        ),
    ],
)
def test_taken_bodies_are_grouped_as_the_models_group_them(
    body: bytes, batch: bool, expected: Grouped
) -> None:
    """The reader's groups are the models' groups, label for label and float for float."""
    read = durations_of(ValidReports().read(body, batch=batch))
    models = durations_of(by_models(body, batch=batch))

    assert read is not None
    assert models is not None
    assert {k: exact(v) for k, v in models.items()} == {k: exact(v) for k, v in expected.items()}
    assert {k: exact(v) for k, v in read.items()} == {k: exact(v) for k, v in expected.items()}


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(
            batch_of(report_text(method="get", duration=0.1), report_text(duration=0.2)),
            id="get-and-GET",
        ),
        pytest.param(
            batch_of(report_text(method="purge"), report_text(method="BREW", duration=0.25)),
            id="two-other-methods",
        ),
        pytest.param(
            batch_of(report_text(service=None, duration=0.1), report_text(duration=0.2)),
            id="service-null-and-absent",
        ),
        pytest.param(
            batch_of(
                report_text(method="get", duration=0.1),
                report_text(method="GET", duration=0.2),
                report_text(method="get", duration=0.3),
            ),
            id="get-GET-get",
        ),
    ],
)
def test_one_label_set_spelled_two_ways_keeps_report_order(body: bytes) -> None:
    """Reports whose labels differ as sent but not as validated share one group, in order."""
    # The models' order is the one the histogram's sum is accumulated in: floats added in
    # another order can sum to another float (see test_fastlane's "sum-order" cases).
    models = durations_of(by_models(body, batch=True))
    read = durations_of(ValidReports().read(body, batch=True))

    assert models is not None
    assert read is not None
    assert {k: exact(v) for k, v in read.items()} == {k: exact(v) for k, v in models.items()}
    assert len(read) == 1


@pytest.mark.parametrize(
    ("body", "batch"),
    [
        pytest.param(json.dumps(report_text(status=200.0)).encode(), False, id="float-status"),
        pytest.param(json.dumps(report_text(status=True)).encode(), False, id="bool-status"),
        pytest.param(batch_of(report_text(), report_text(status=200.0)), True, id="float-in-batch"),
        pytest.param(json.dumps(report_text(status="200")).encode(), False, id="string-status"),
        pytest.param(json.dumps(report_text(duration=1)).encode(), False, id="int-duration"),
        pytest.param(
            b'{"method": "GET", "route": "\\ud800", "status": 200, "duration": 0.5}',
            False,
            id="lone-surrogate",
        ),
        pytest.param(
            b"\xef\xbb\xbf" + json.dumps(report_text()).encode(), False, id="utf-8-byte-order-mark"
        ),
        pytest.param(
            b'{"method": "GET", "route": "/a", "status": 200, "duration": NaN}', False, id="nan"
        ),
        pytest.param(
            b'{"method": "GET", "route": "/a", "status": 200, "duration": 1e400}', False, id="1e400"
        ),
    ],
)
def test_bodies_not_valid_as_sent_are_refused(body: bytes, batch: bool) -> None:
    """Bodies the models coerce, refuse or cannot even read in pydantic's parser go to the full
    route."""
    assert ValidReports().read(body, batch=batch) is None


@pytest.mark.parametrize(
    "later",
    [
        pytest.param(report_text(status=200.0), id="float-status"),
        pytest.param(report_text(status=200, duration=1), id="int-duration"),
        pytest.param(report_text(status=200, duration=86_400.5), id="duration-too-long"),
        pytest.param(report_text(service=False), id="false-service"),
        pytest.param(report_text(service=0), id="zero-service"),
    ],
)
def test_remembered_labels_do_not_let_a_bad_report_through(later: dict[str, object]) -> None:
    """A label set accepted once is remembered, yet a later report with those labels and a bad
    field is still refused, alone or next to a good one."""
    reader = ValidReports()
    for service in ({}, {"service": None}):
        first = json.dumps(report_text(**service)).encode()
        assert durations_of(reader.read(first, batch=False)) == {(None, "GET", "/a", 200): [0.5]}
        assert durations_of(reader.read(first, batch=False)) == {(None, "GET", "/a", 200): [0.5]}

    assert reader.read(json.dumps(later).encode(), batch=False) is None
    assert reader.read(batch_of(report_text(), later), batch=True) is None


def test_label_sets_past_the_lanes_memory_take_the_full_route(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Once the reader remembers as many label sets as it may, new ones are left to the full
    route (a flood is not checked twice per request), while the remembered ones still pass."""
    monkeypatch.setattr("otelkit_collector.fastlane._LABELS_CACHE_SIZE", 2)
    reader = ValidReports()
    first, second, third = (report_text(route=f"/r{i}") for i in range(3))

    assert reader.read(batch_of(first, second), batch=True) is not None
    assert reader.read(batch_of(third), batch=True) is None
    assert reader.read(batch_of(first, third), batch=True) is None
    assert durations_of(reader.read(batch_of(second, first, second), batch=True)) == {
        (None, "GET", "/r1", 200): [0.5, 0.5],
        (None, "GET", "/r0", 200): [0.5],
    }
    assert by_models(batch_of(third), batch=True) is not None


# --- Trace ids ---------------------------------------------------------------------------------

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"


@pytest.mark.parametrize(
    ("body", "batch", "traced"),
    [
        pytest.param(
            json.dumps(report_text(trace_id=TRACE_ID, span_id=SPAN_ID)).encode(),
            False,
            [((None, "GET", "/a", 200), 0.5, TRACE_ID, SPAN_ID)],
            id="trace-and-span",
        ),
        pytest.param(
            json.dumps(report_text(trace_id=TRACE_ID)).encode(),
            False,
            [((None, "GET", "/a", 200), 0.5, TRACE_ID, None)],
            id="trace-alone",
        ),
        pytest.param(
            json.dumps(report_text(service="s", trace_id=TRACE_ID, span_id=SPAN_ID)).encode(),
            False,
            [(("s", "GET", "/a", 200), 0.5, TRACE_ID, SPAN_ID)],
            id="with-service",
        ),
        pytest.param(
            json.dumps(report_text(service=None, trace_id=TRACE_ID)).encode(),
            False,
            [((None, "GET", "/a", 200), 0.5, TRACE_ID, None)],
            id="null-service",
        ),
        pytest.param(
            batch_of(
                report_text(duration=0.1),
                report_text(method="get", duration=0.2, trace_id=TRACE_ID),
                report_text(duration=0.3),
                report_text(duration=0.4, trace_id="f" * 32, span_id="e" * 16),
            ),
            True,
            [
                ((None, "GET", "/a", 200), 0.2, TRACE_ID, None),
                ((None, "GET", "/a", 200), 0.4, "f" * 32, "e" * 16),
            ],
            id="batch-mixed",
        ),
        pytest.param(
            b'{"method": "GET", "route": "/a", "status": 200, "duration": 0.5,'
            b' "trace_id": "\\u0034bf92f3577b34da6a3ce929d0e0e4736"}',
            False,
            [((None, "GET", "/a", 200), 0.5, TRACE_ID, None)],
            id="escaped-hex-digit",
        ),
    ],
)
def test_trace_ids_are_read_as_the_models_read_them(
    body: bytes, batch: bool, traced: list[TracedReport]
) -> None:
    """Reports with valid ids are taken, with their ids and durations, in report order."""
    read = ValidReports().read(body, batch=batch)
    models = by_models(body, batch=batch)

    assert read is not None
    assert models is not None
    assert exact_traced(models.traced) == exact_traced(traced)
    assert exact_traced(read.traced) == exact_traced(traced)
    assert {k: exact(v) for k, v in read.durations.items()} == {
        k: exact(v) for k, v in models.durations.items()
    }


HOSTILE_IDS = [
    *(
        pytest.param({field: value}, id=f"{field}-{name}")
        for field, digits in (("trace_id", 32), ("span_id", 16))
        for name, value in (
            ("too-short", "a" * (digits - 1)),
            ("too-long", "a" * (digits + 1)),
            ("upper-case", "A" * digits),
            ("non-hex", "g" * digits),
            ("space", " " + "a" * (digits - 1)),
            ("fullwidth-digit", "\uff10" + "a" * (digits - 1)),
            ("arabic-indic-digit", "\u0663" + "a" * (digits - 1)),
            ("trailing-newline", "a" * (digits - 1) + "\n"),
            ("all-zeros", "0" * digits),
            ("number", 1),
            ("null", None),
            ("list", ["a" * digits]),
            ("object", {"id": "a" * digits}),
        )
    ),
]


@pytest.mark.parametrize("ids", HOSTILE_IDS)
@pytest.mark.parametrize("batch", [False, True], ids=["single", "batch"])
def test_reports_with_bad_ids_are_left_to_the_full_route(
    ids: dict[str, object], batch: bool
) -> None:
    """A bad id, or a span_id without a trace_id, is never taken, alone or in a batch."""
    fields = {"trace_id": TRACE_ID, **ids} if "span_id" in ids else ids
    report = report_text(**fields)
    body = batch_of(report_text(), report) if batch else json.dumps(report).encode()

    assert ValidReports().read(body, batch=batch) is None
    assert by_models(body, batch=batch) is None


@pytest.mark.parametrize("batch", [False, True], ids=["single", "batch"])
def test_span_id_without_trace_id_is_left_to_the_full_route(batch: bool) -> None:
    """A report with a span_id but no trace_id is never taken (the models refuse it)."""
    report = report_text(span_id=SPAN_ID)
    body = batch_of(report_text(), report) if batch else json.dumps(report).encode()

    assert ValidReports().read(body, batch=batch) is None
    assert by_models(body, batch=batch) is None


def test_bodies_without_ids_are_read_by_the_untraced_reading_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A body whose reports carry no ids never reaches the reading that allows ids."""

    def fail(self: ValidReports, reports: list[object]) -> Reading | None:
        raise AssertionError("read again, allowing ids")

    monkeypatch.setattr(ValidReports, "_read_traced", fail)
    body = batch_of(report_text(), report_text(service="s", duration=0.25))

    read = ValidReports().read(body, batch=True)

    assert read is not None
    assert read.traced == ()
