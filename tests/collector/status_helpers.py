"""Reading the status page in tests: its elements, rows and figures, parsed as a browser would."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html.parser import HTMLParser

# The catalogue's buckets as the contract states them (seconds).
BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)


@dataclass
class Element:
    tag: str
    attrs: dict[str, str | None]


@dataclass
class Row:
    """One table row: its attributes, the text of each cell, and each cell's ``<data>`` values."""

    attrs: dict[str, str | None]
    cells: list[str] = field(default_factory=list)
    values: list[list[float]] = field(default_factory=list)
    links: list[str] = field(default_factory=list)


class Page(HTMLParser):
    """Every element, the visible text, and the rows of every table."""

    def __init__(self, body: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self.text: list[str] = []
        self.rows: list[Row] = []
        self.script_text: list[str] = []
        self._row: Row | None = None
        self._in_cell = False
        self._in_script = False
        self.feed(body)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append(Element(tag, dict(attrs)))
        if tag == "script":
            self._in_script = True
        if tag == "tr":
            self._row = Row(dict(attrs))
            self.rows.append(self._row)
        elif tag in {"td", "th"} and self._row is not None:
            self._row.cells.append("")
            self._row.values.append([])
            self._in_cell = True
        elif tag == "data" and self._row is not None and self._in_cell:
            self._row.values[-1].append(float(dict(attrs)["value"] or "nan"))
        elif tag == "a" and self._row is not None:
            self._row.links.append(dict(attrs).get("href") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False
        if tag in {"td", "th"}:
            self._in_cell = False
        elif tag == "tr":
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.script_text.append(data)
            return
        self.text.append(data)
        if self._row is not None and self._in_cell:
            self._row.cells[-1] += data

    def rows_of(self, css_class: str) -> list[Row]:
        return [row for row in self.rows if row.attrs.get("class") == css_class]

    def all_text(self) -> str:
        return "".join(self.text)


def reference_quantile(q: float, cumulative: list[float]) -> float | None:
    """Prometheus' histogram_quantile over cumulative ``le`` counts (``+Inf`` last), written
    from its documentation independently of the collector's code."""
    total = cumulative[-1]
    if total == 0:
        return None
    rank = q * total
    index = next(i for i, count in enumerate(cumulative) if count >= rank)
    if index == len(BOUNDS):
        return BOUNDS[-1]
    start = 0.0 if index == 0 else BOUNDS[index - 1]
    below = 0.0 if index == 0 else cumulative[index - 1]
    return start + (BOUNDS[index] - start) * (rank - below) / (cumulative[index] - below)


def close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
