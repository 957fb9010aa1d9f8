"""Push report payloads shared by the library (sender) and the collector (receiver).

Every limit a hostile client could probe is spelled out here: string lengths, character
rules for label values, numeric ranges, finite floats only, closed sets.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from otelkit.instruments import normalize_method

MAX_SERVICE_LENGTH: Final = 128
MAX_ROUTE_LENGTH: Final = 256
MAX_METHOD_LENGTH: Final = 16
MAX_DURATION_SECONDS: Final = 86_400.0
MAX_USER_COUNT: Final = 1_000_000_000_000
MAX_BATCH_REPORTS: Final = 1_000

LABEL_TEXT_PATTERN: Final = r"^[^\u0000-\u001f\u007f-\u009f]*$"
"""What :func:`check_label_text` accepts, as a JSON Schema pattern (documentation only: the
validator names the offending character, which a pattern mismatch could not)."""
METHOD_PATTERN: Final = r"^[A-Za-z]+$"
"""What a method token may look like, as a JSON Schema pattern (documentation only)."""

HealthStatus = Literal["healthy", "degraded", "unhealthy", "down"]
HEALTH_STATUSES: Final[tuple[HealthStatus, ...]] = ("healthy", "degraded", "unhealthy", "down")


_CONTROL_CHARACTER = re.compile("[\u0000-\u001f\u007f-\u009f]")
"""Unicode category Cc, exactly: one regex search instead of a per-character lookup."""


def check_label_text(value: str) -> str:
    """Reject text that cannot be a Prometheus label value as-is.

    Lone surrogates are not valid UTF-8 and would break every later scrape; control
    characters (including newline, tab and NUL) have no place in a label.
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid UTF-8 (no lone surrogates)") from None
    control = _CONTROL_CHARACTER.search(value)
    if control is not None:
        found = ord(control.group())
        raise ValueError(f"must not contain control characters (found U+{found:04X})")
    return value


def _lower_status(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def _check_method(value: str) -> str:
    if not value.isascii() or not value.isalpha():
        raise ValueError("must be an HTTP method token (ASCII letters only)")
    return normalize_method(value)


ServiceName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_SERVICE_LENGTH,
        json_schema_extra={"pattern": LABEL_TEXT_PATTERN},
    ),
    AfterValidator(check_label_text),
]
Route = Annotated[
    str,
    Field(
        min_length=1, max_length=MAX_ROUTE_LENGTH, json_schema_extra={"pattern": LABEL_TEXT_PATTERN}
    ),
    AfterValidator(check_label_text),
]
Method = Annotated[
    str,
    Field(
        min_length=1, max_length=MAX_METHOD_LENGTH, json_schema_extra={"pattern": METHOD_PATTERN}
    ),
    AfterValidator(_check_method),
]
StatusCode = Annotated[int, Field(strict=True, ge=100, le=599)]
DurationSeconds = Annotated[
    float, Field(strict=True, ge=0.0, le=MAX_DURATION_SECONDS, allow_inf_nan=False)
]
UserCount = Annotated[int, Field(strict=True, ge=0, le=MAX_USER_COUNT)]

TRACE_ID_PATTERN: Final = r"^[0-9a-f]{32}$"
SPAN_ID_PATTERN: Final = r"^[0-9a-f]{16}$"


def _hex_id(digits: int) -> AfterValidator:
    """A W3C trace-context id: exactly ``digits`` lowercase hex digits, not all zeros."""

    def check(value: str) -> str:
        if len(value) != digits or not all(c in "0123456789abcdef" for c in value):
            raise ValueError(f"must be exactly {digits} lowercase hex digits (0-9, a-f)")
        if value.count("0") == digits:
            raise ValueError("must not be all zeros (an invalid id in W3C trace context)")
        return value

    return AfterValidator(check)


_ALL_ZEROS: Final = {"pattern": "^0+$"}

TraceId = Annotated[
    str,
    Field(
        strict=True,
        min_length=32,
        max_length=32,
        json_schema_extra={"pattern": TRACE_ID_PATTERN, "not": _ALL_ZEROS},
    ),
    _hex_id(32),
]
SpanId = Annotated[
    str,
    Field(
        strict=True,
        min_length=16,
        max_length=16,
        json_schema_extra={"pattern": SPAN_ID_PATTERN, "not": _ALL_ZEROS},
    ),
    _hex_id(16),
]


def _absent_not_null(schema: dict[str, Any]) -> None:
    """Document an optional id as "a string, or left out": null is refused, so the schema
    offers the string branch only, and no null default."""
    branches = schema.pop("anyOf", None)
    if branches is not None:
        (string,) = [branch for branch in branches if branch.get("type") != "null"]
        schema.update(string)
    schema.pop("default", None)


class _Report(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HttpReport(_Report):
    """One finished HTTP request, as observed by a service."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={"dependentRequired": {"span_id": ["trace_id"]}},
    )

    method: Method = Field(description="HTTP method; non-standard methods are recorded as _OTHER")
    route: Route = Field(description="Route template, e.g. /api/courses/{course_id}")
    status: StatusCode = Field(
        description="HTTP status code, 100-599, as an integer literal (200, not 200.0)"
    )
    duration: DurationSeconds = Field(description="Duration in seconds, finite and >= 0")
    service: ServiceName | None = Field(default=None, description="Reporting service")
    trace_id: TraceId | None = Field(
        default=None,
        description="Trace the request belongs to (32 lowercase hex, not all zeros): the "
        "bucket's exemplar on OpenMetrics /metrics links to it. Leave it out rather than null.",
        json_schema_extra=_absent_not_null,
    )
    span_id: SpanId | None = Field(
        default=None,
        description="The request's span (16 lowercase hex, not all zeros); needs trace_id",
        json_schema_extra=_absent_not_null,
    )

    @field_validator("trace_id", "span_id", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        # Left out means "no trace"; an explicit null is a client bug worth naming.
        if value is None:
            raise ValueError("must be a hex string when given (leave the field out for none)")
        return value

    @model_validator(mode="after")
    def _span_needs_trace(self) -> HttpReport:
        if self.span_id is not None and self.trace_id is None:
            raise ValueError("span_id needs trace_id: an exemplar links to a trace")
        return self


class HttpReportBatch(_Report):
    """Many HTTP reports in one request; validated all-or-nothing."""

    reports: list[HttpReport] = Field(min_length=1, max_length=MAX_BATCH_REPORTS)


class HealthReport(_Report):
    """A service's own view of its health."""

    status: Annotated[HealthStatus, BeforeValidator(_lower_status)] = Field(
        description="One of healthy, degraded, unhealthy, down (case-insensitive); "
        "only healthy counts as 1"
    )


class UsersReport(_Report):
    """The number of users currently active."""

    count: UserCount = Field(description="Active users, an integer literal >= 0 (127, not 127.0)")
    service: ServiceName | None = Field(default=None, description="Reporting service")
