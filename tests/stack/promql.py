"""Metric and label names a PromQL expression uses, so tests can hold them to the catalogue.

A deliberately small extractor: it strips string literals, label matchers, range selectors
and grouping clauses, then every identifier not followed by ``(`` (a function call) and not
a PromQL keyword is a metric name. Enough for the expressions this repository ships.
"""

from __future__ import annotations

import re

from otelkit.instruments import CATALOGUE

_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{([^}]*)\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
# Not preceded by a word character, dot or `$` (so no `e3` out of `1e3`, no Grafana
# variables), not followed by `(` (function calls); `\b` stops backtracking into a prefix.
_IDENTIFIER = re.compile(r"(?<![\w:.$])([A-Za-z_:][\w:]*)\b(?!\s*\()")
_MATCHER_LABEL = re.compile(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)")
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?P<metric>[^,]+?)\s*,\s*(?P<label>\w+)\s*\)\s*$")

KEYWORDS = frozenset(
    {
        "and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
        "group_right", "bool", "offset", "inf", "nan",
    }
)  # fmt: skip

ALWAYS_PRESENT = frozenset({"up"})
"""Series Prometheus itself writes for every target."""
TARGET_LABELS = frozenset({"job", "instance"})
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def _without_strings(expr: str) -> str:
    return _STRING.sub('""', expr)


def metric_names(expr: str) -> set[str]:
    """The metric names ``expr`` selects."""
    stripped = _without_strings(expr)
    stripped = _MATCHERS.sub("{}", stripped)
    stripped = _RANGE.sub("[]", stripped)
    stripped = _GROUPING.sub(" ", stripped)
    return {name for name in _IDENTIFIER.findall(stripped) if name.lower() not in KEYWORDS}


def label_names(expr: str) -> set[str]:
    """The label names ``expr`` filters on (matchers) or groups by (``by``, ``on``, ...)."""
    stripped = _without_strings(expr)
    names = {
        name
        for matchers in _MATCHERS.findall(stripped)
        for name in _MATCHER_LABEL.findall(matchers)
    }
    for clause in _GROUPING.findall(stripped):
        names.update(label.strip() for label in clause.split(",") if label.strip())
    return names


def label_values_query(query: str) -> tuple[str, str]:
    """``(metric, label)`` of a Grafana ``label_values(metric, label)`` variable query."""
    match = _LABEL_VALUES.match(query)
    if match is None:
        raise ValueError(f"not a label_values(metric, label) query: {query!r}")
    return match["metric"], match["label"]


def catalogue_metric_names() -> frozenset[str]:
    """Every series name the catalogue's families expose, plus ``up``."""
    names = set(ALWAYS_PRESENT)
    for spec in CATALOGUE:
        names.add(spec.prometheus_name)
        if spec.kind == "histogram":
            names.update(spec.prometheus_name + suffix for suffix in HISTOGRAM_SUFFIXES)
    return frozenset(names)


def catalogue_label_names() -> frozenset[str]:
    """Every label a catalogue series can carry: its keys, ``le``, and the target labels."""
    names = set(TARGET_LABELS) | {"le"}
    for spec in CATALOGUE:
        names.update(spec.label_keys)
    return frozenset(names)
