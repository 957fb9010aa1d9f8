"""Prometheus text and OpenMetrics rendering, byte for byte prometheus_client's, made cheap.

prometheus_client's encoders sort, escape and format every label of every sample on every
scrape: for a histogram, the same labels 17 times per series (each bucket, ``_count``,
``_sum``). Here the label block of each series is rendered once per scrape and only ``le`` is
spliced in per bucket, which makes a scrape of 1,000 histogram series about twice as cheap.

The output is defined as prometheus_client 0.26's ``generate_latest`` and
``openmetrics.exposition.generate_latest`` (the tests compare the two byte for byte). What
this relies on, and what happens otherwise:

* the public escaping helpers ``escape_metric_name`` and ``escape_label_name``, and
  ``floatToGoString``, called exactly as the encoders call them;
* label values escaped as the encoders do under every escaping scheme (backslash, newline,
  double quote), and exemplars written as the OpenMetrics encoder writes them (its
  ``_compose_exemplar_string``: label names as they are, values escaped, sorted);
* a family whose samples carry native histograms, or exemplars where OpenMetrics allows none
  (or any exemplar, in the text format), or whose metric or sample names are not plain
  ``[a-zA-Z_][a-zA-Z0-9_]*``, is rendered by prometheus_client's own encoder, as is every
  family under an escaping scheme other than ``underscores`` and ``allow-utf-8`` (label
  names, plain or not, go through ``escape_label_name`` on the fast path);
* a sample value that cannot be rendered raises what the encoders raise, the family appended
  to the exception's arguments as they append it.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterable
from functools import partial
from typing import cast

from prometheus_client import exposition as text_format
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar, Sample
from prometheus_client.utils import floatToGoString

Encoder = Callable[[Collector], bytes]

# prometheus_client leaves these two untyped.
_go_float = cast(Callable[[float], str], floatToGoString)
_openmetrics_latest = cast(Callable[..., bytes], openmetrics.generate_latest)

_PLAIN_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_FAST_ESCAPINGS = frozenset({openmetrics.UNDERSCORES, openmetrics.ALLOWUTF8})
_OPENMETRICS_SUFFIXES = ("_created", "_gsum", "_gcount")
_EOF = "# EOF\n"

MAX_CACHED_NAMES = 4_096
"""Escaped metric and label names, and le values, kept between scrapes (a registry has a
few dozen of each; the bound only guards against a pathological one)."""


def _escape_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _exemplar_allowed(family: Metric, sample: Sample) -> bool:
    """Where the OpenMetrics encoder writes an exemplar (elsewhere it raises ValueError)."""
    kind, name = family.type, sample.name
    if kind == "counter":
        return name.endswith("_total")
    if kind == "gaugehistogram":
        return name.endswith("_bucket")
    if kind == "histogram":
        return name.endswith("_bucket") or name == family.name
    return False


def _exemplar_text(exemplar: Exemplar) -> str:
    """`` # {labels} value [timestamp]``, as the OpenMetrics encoder writes an exemplar."""
    labels = ",".join(
        f'{name}="{_escape_value(value)}"' for name, value in sorted(exemplar.labels.items())
    )
    if exemplar.timestamp is None:
        return f" # {{{labels}}} {_go_float(exemplar.value)}"
    return f" # {{{labels}}} {_go_float(exemplar.value)} {exemplar.timestamp}"


class _Family:
    """One family as a collector, to hand a single family to prometheus_client's encoders."""

    def __init__(self, family: Metric) -> None:
        self.family = family

    def collect(self) -> Iterable[Metric]:
        return [self.family]


class LabelBlocks:
    """Rendered ``{label="value",...}`` blocks, for one escaping scheme.

    A histogram's samples come series by series: its buckets (the series' labels plus
    ``le``), then ``_count`` and ``_sum`` (the series' labels). The block of the series is
    rendered once and reused while the samples stay on it, with ``le`` spliced in where it
    sorts. Nothing about a series outlives its run of samples: a collector's cache of every
    series would cost more memory than the rendering it saves.
    """

    def __init__(self, escaping: str) -> None:
        self.escaping = escaping
        self._last: tuple[tuple[tuple[str, str], ...], tuple[str, int]] | None = None
        self._names: dict[str, str] = {}
        self._metric_names: dict[str, str] = {}
        self._le: dict[str, str] = {}

    def block(self, labels: dict[str, str]) -> str:
        """What the encoders render for ``labels`` (sorted by name, escaped, braced)."""
        if not labels:
            return ""
        items = tuple(labels.items())
        le: str | None = None
        if items[-1][0] == "le":
            le = items[-1][1]
            items = items[:-1]
        last = self._last
        if last is not None and last[0] == items:
            entry = last[1]
        else:
            entry = self._render(items)
            self._last = (items, entry)
        whole, at = entry
        if le is None:
            return whole
        le_part = self._le.get(le)
        if le_part is None:
            le_part = f'{self._name("le")}="{_escape_value(le)}"'
            if len(self._le) < MAX_CACHED_NAMES:
                self._le[le] = le_part
        if at == 1:  # le sorts first
            return "{" + le_part + ("," + whole[1:] if len(whole) > 2 else "}")
        return whole[:at] + "," + le_part + whole[at:]

    def forget_series(self) -> None:
        """Drop the series in hand (at the end of a render)."""
        self._last = None

    def metric_name(self, name: str) -> str:
        """``escape_metric_name(name, escaping)``, kept."""
        escaped = self._metric_names.get(name)
        if escaped is None:
            escaped = openmetrics.escape_metric_name(name, self.escaping)
            if len(self._metric_names) < MAX_CACHED_NAMES:
                self._metric_names[name] = escaped
        return escaped

    def _name(self, name: str) -> str:
        escaped = self._names.get(name)
        if escaped is None:
            escaped = openmetrics.escape_label_name(name, self.escaping)
            if len(self._names) < MAX_CACHED_NAMES:
                self._names[name] = escaped
        return escaped

    def _render(self, items: tuple[tuple[str, str], ...]) -> tuple[str, int]:
        """The block, and where le goes in it: after the labels that sort before it."""
        ordered = sorted(items)
        parts = [f'{self._name(name)}="{_escape_value(value)}"' for name, value in ordered]
        before = bisect.bisect_left([name for name, _ in ordered], "le")
        head = ",".join(parts[:before])
        whole = "{" + ",".join(parts) + "}" if parts else "{}"
        return whole, 1 + len(head)


class FastRenderer:
    """Renders registries as prometheus_client would, reusing label blocks between scrapes."""

    def __init__(self) -> None:
        self._blocks: dict[str, LabelBlocks] = {}
        self._plain: dict[str, bool] = {}

    def _labels(self, escaping: str) -> LabelBlocks:
        blocks = self._blocks.get(escaping)
        if blocks is None:
            blocks = self._blocks[escaping] = LabelBlocks(escaping)
        return blocks

    def _is_plain(self, name: str) -> bool:
        plain = self._plain.get(name)
        if plain is None:
            plain = _PLAIN_NAME.fullmatch(name) is not None
            if len(self._plain) < MAX_CACHED_NAMES:
                self._plain[name] = plain
        return plain

    def _render(
        self,
        registry: Collector,
        escaping: str,
        family_lines: Callable[[Metric, LabelBlocks], list[str] | None],
        fallback: Callable[[Metric], str],
    ) -> list[str]:
        """Each family through ``family_lines``, or ``fallback`` where it declines."""
        blocks = self._labels(escaping)
        output: list[str] = []
        try:
            for family in registry.collect():
                try:
                    lines = family_lines(family, blocks) if self._is_plain(family.name) else None
                except Exception as exception:
                    # As prometheus_client's encoders do, so that the error names the family
                    # (its fallback, below, already does).
                    exception.args = (exception.args or ("",)) + (family,)
                    raise
                if lines is None:
                    output.append(fallback(family))
                else:
                    output.extend(lines)
        finally:
            blocks.forget_series()
        return output

    def _declines(self, sample: Sample) -> bool:
        """Whether a sample needs prometheus_client's own encoder (see the module docstring)."""
        return (
            sample.exemplar is not None
            or sample.native_histogram is not None
            or not self._is_plain(sample.name)
        )

    # -- Prometheus text format ----------------------------------------------------------------

    def text(self, registry: Collector, escaping: str = openmetrics.UNDERSCORES) -> bytes:
        """``prometheus_client.exposition.generate_latest(registry, escaping)``."""
        if escaping not in _FAST_ESCAPINGS:
            return text_format.generate_latest(registry, escaping)

        def fallback(family: Metric) -> str:
            return text_format.generate_latest(_Family(family), escaping).decode()

        return "".join(self._render(registry, escaping, self._text_family, fallback)).encode()

    def _text_family(self, family: Metric, blocks: LabelBlocks) -> list[str] | None:
        name, kind = family.name, family.type
        if kind == "counter":
            name += "_total"
        elif kind == "info":
            name, kind = name + "_info", "gauge"
        elif kind == "stateset":
            kind = "gauge"
        elif kind == "gaugehistogram":
            kind = "histogram"
        elif kind == "unknown":
            kind = "untyped"
        help_text = family.documentation.replace("\\", r"\\").replace("\n", r"\n")
        output = [f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n"]
        deferred: dict[str, list[str]] = {}
        # OpenMetrics-only samples, rendered as gauges after the family.
        openmetrics_only = {family.name + suffix: suffix for suffix in _OPENMETRICS_SUFFIXES}
        metric_name, block, declines = blocks.metric_name, blocks.block, self._declines
        for sample in family.samples:
            if declines(sample):
                return None
            timestamp = ""
            if sample.timestamp is not None:
                timestamp = f" {int(float(sample.timestamp) * 1000):d}"
            line = (
                f"{metric_name(sample.name)}{block(sample.labels)} "
                f"{_go_float(sample.value)}{timestamp}\n"
            )
            suffix = openmetrics_only.get(sample.name)
            if suffix is None:
                output.append(line)
            else:
                deferred.setdefault(suffix, []).append(line)
        for suffix, lines in sorted(deferred.items()):
            output.append(
                f"# HELP {family.name}{suffix} {help_text}\n# TYPE {family.name}{suffix} gauge\n"
            )
            output.extend(lines)
        return output

    # -- OpenMetrics ---------------------------------------------------------------------------

    def openmetrics(
        self, registry: Collector, escaping: str = openmetrics.UNDERSCORES, version: str = "1.0.0"
    ) -> bytes:
        """``prometheus_client.openmetrics.exposition.generate_latest(...)``."""
        if escaping not in _FAST_ESCAPINGS:
            return _openmetrics_latest(registry, escaping, version)

        def fallback(family: Metric) -> str:
            rendered = _openmetrics_latest(_Family(family), escaping, version)
            return rendered.decode().removesuffix(_EOF)

        output = self._render(registry, escaping, self._openmetrics_family, fallback)
        output.append(_EOF)
        return "".join(output).encode()

    def _openmetrics_family(self, family: Metric, blocks: LabelBlocks) -> list[str] | None:
        name = family.name
        help_text = _escape_value(family.documentation)
        output = [f"# HELP {name} {help_text}\n# TYPE {name} {family.type}\n"]
        if family.unit:
            output.append(f"# UNIT {name} {family.unit}\n")
        block, plain = blocks.block, self._is_plain
        for sample in family.samples:
            if sample.native_histogram is not None or not plain(sample.name):
                return None
            value = _go_float(sample.value) if sample.value is not None else ""
            timestamp = f" {sample.timestamp}" if sample.timestamp is not None else ""
            exemplar = sample.exemplar
            if exemplar is None:
                output.append(f"{sample.name}{block(sample.labels)} {value}{timestamp}\n")
            elif _exemplar_allowed(family, sample):
                output.append(
                    f"{sample.name}{block(sample.labels)} {value}{timestamp}"
                    f"{_exemplar_text(exemplar)}\n"
                )
            else:
                return None
        return output

    # -- content negotiation -------------------------------------------------------------------

    def choose(self, accept: str | None) -> tuple[Encoder, str]:
        """prometheus_client's ``choose_encoder``, with this renderer's encoders in place."""
        encoder, content_type = text_format.choose_encoder(accept or "")
        function = encoder.func if isinstance(encoder, partial) else encoder
        keywords = encoder.keywords if isinstance(encoder, partial) else {}
        if function is text_format.generate_latest:
            return partial(self.text, **keywords), content_type
        if function is openmetrics.generate_latest:
            return partial(self.openmetrics, **keywords), content_type
        return encoder, content_type
