"""Error answers that name what a request broke: the field (or where in the body) and the rule.

Used by the app's exception handlers; also which self-metric kind a refused write counts as.
"""

from __future__ import annotations

import json
from typing import Any

from otelkit.instruments import ReportKind

UNPARSABLE_BODY = "There was an error parsing the body"
"""FastAPI's detail for a body ``json`` could not parse."""
_UNPARSABLE_BODY_DETAIL = (
    "body: must be UTF-8 JSON nested at most a few hundred levels deep (it could not be parsed)"
)
_TOO_DEEP_DETAIL = "body: must be JSON nested at most a few hundred levels deep"
_NOT_UTF8_DETAIL = "body: must be UTF-8 encoded JSON"
_TOO_MANY_DIGITS_RULE = (
    "integer literals may have at most 4300 digits (Python's int conversion limit)"
)
_UNREADABLE_INTEGER = object()
"""Stands in for an integer literal Python's ``int`` refuses, to find where it is."""


def unparsable_body_detail(cause: BaseException | None, body: bytes | None = None) -> str:
    """Why ``json`` could not parse a body, named as the rule it broke (with ``body``, an
    integer literal too long to read is named by where it is: ``body.reports.3.duration``)."""
    if isinstance(cause, RecursionError):
        return _TOO_DEEP_DETAIL
    if isinstance(cause, UnicodeDecodeError):
        return _NOT_UTF8_DETAIL
    if isinstance(cause, ValueError) and "integer string conversion" in str(cause):
        return f"{unreadable_integer_location(body)}: {_TOO_MANY_DIGITS_RULE}"
    return _UNPARSABLE_BODY_DETAIL


def _read_integer(literal: str) -> object:
    try:
        return int(literal)
    except ValueError:
        return _UNREADABLE_INTEGER


def unreadable_integer_location(body: bytes | None) -> str:
    """Where the first integer literal too long for Python's ``int`` is in a JSON ``body``,
    as ``body.reports.3.duration``; ``body`` when that cannot be told."""
    if body is None:
        return "body"
    try:
        document = json.loads(body, parse_int=_read_integer)
    except (ValueError, RecursionError):
        return "body"
    pending: list[tuple[list[str], Any]] = [([], document)]
    while pending:
        path, value = pending.pop()
        if value is _UNREADABLE_INTEGER:
            return ".".join(["body", *path])
        if isinstance(value, dict):
            items = [(str(key), item) for key, item in value.items()]
        elif isinstance(value, list):
            items = [(str(index), item) for index, item in enumerate(value)]
        else:
            continue
        pending.extend(([*path, key], item) for key, item in reversed(items))
    return "body"


def report_kind(path: str) -> ReportKind | None:
    """Which self-metric kind a write to ``path`` counts as (``None`` when it is no report)."""
    if path.startswith("/api/metrics/http"):
        return "http"
    if path.startswith("/api/health/"):
        return "health"
    if path == "/api/metrics/users":
        return "users"
    return None


def reports_in(body: Any) -> int:
    """How many reports a rejected body carried (a batch counts each of its reports)."""
    if isinstance(body, dict) and isinstance(body.get("reports"), list):
        return max(1, len(body["reports"]))
    return 1


def describe(error: Any) -> dict[str, Any]:
    """A validation error without the offending input, which may not even be encodable."""
    msg = str(error.get("msg", "invalid"))
    ctx = error.get("ctx") or {}
    if isinstance(ctx.get("error"), str) and error.get("type") == "json_invalid":
        msg = f"{msg}: {ctx['error']}"
    return {"loc": list(error.get("loc", ())), "msg": msg, "type": str(error.get("type", ""))}
