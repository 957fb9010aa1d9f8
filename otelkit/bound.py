"""Histogram series bound to the SDK's aggregation objects: recording without the pipeline.

``Histogram.record()`` walks every measurement through the measurement consumer, each
reader's storage and each view match, rebuilding the attribute key (a frozenset) every
time: about 10 µs per call on a slow core, against about 2 µs for the aggregation itself.
A :class:`BoundSeries` holds, for one attribute set, the aggregation objects ``record()``
would reach and updates them exactly as their own ``aggregate()`` does, under their lock.

What this relies on (opentelemetry-sdk internals, verified for ``VERIFIED_SDK_VERSIONS``;
``tests/otelkit/test_bound.py`` compares every field of every data point with the public path,
cumulative and delta, and pins each fallback):

* ``Histogram._measurement_consumer._reader_storages``: reader -> ``MetricReaderStorage``,
  replaced, never mutated, when a reader is added or removed (a binding checks it per call);
* ``..._sdk_config.exemplar_filter``: only an ``AlwaysOffExemplarFilter`` is bound, so no
  exemplar is ever due;
* ``MetricReaderStorage._get_or_init_view_instrument_match(histogram)`` and each match's
  ``_view._attribute_keys`` and ``_attributes_aggregation`` (``frozenset`` of the kept
  attributes -> aggregation; entries are created by the first ``record()`` and never removed);
* ``_ExplicitBucketHistogramAggregation``'s ``_lock``, ``_value`` (``None`` or bucket counts),
  ``_sum``, ``_min``, ``_max``, ``_record_min_max``, ``_boundaries`` and
  ``_get_empty_bucket_counts()``, as its ``aggregate()`` uses them.

Anything else (another SDK version, a provider that is not the SDK's, another exemplar
filter, a view that changes the aggregation) gives no binding, and callers use ``record()``.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from typing import Any, Final

from opentelemetry.metrics import Histogram
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter
from opentelemetry.sdk.metrics import Histogram as SdkHistogram
from opentelemetry.sdk.metrics._internal.aggregation import (
    _DropAggregation,
    _ExplicitBucketHistogramAggregation,
)
from opentelemetry.sdk.version import __version__ as SDK_VERSION

VERIFIED_SDK_VERSIONS: Final = frozenset({"1.44.0"})
"""SDK versions whose internals match the list above (checked by tests/otelkit/test_bound.py)."""


def bind(histogram: Histogram, attributes: Mapping[str, str]) -> BoundSeries | None:
    """The series of ``histogram`` for ``attributes``, or ``None`` where only ``record()`` fits.

    Call it after one ``record()`` with ``attributes``: that call creates the aggregation
    objects (in every reader) that the binding then holds.
    """
    if SDK_VERSION not in VERIFIED_SDK_VERSIONS or not isinstance(histogram, SdkHistogram):
        return None
    try:
        consumer: Any = histogram._measurement_consumer
        if not isinstance(consumer._sdk_config.exemplar_filter, AlwaysOffExemplarFilter):
            return None
        storages = consumer._reader_storages
        targets: list[Any] = []
        for storage in storages.values():
            for match in storage._get_or_init_view_instrument_match(histogram):
                keys = match._view._attribute_keys
                kept = {k: v for k, v in attributes.items() if keys is None or k in keys}
                aggregation = match._attributes_aggregation.get(frozenset(kept.items()))
                if type(aggregation) is _DropAggregation:
                    continue
                if type(aggregation) is not _ExplicitBucketHistogramAggregation:
                    return None  # not recorded yet, or a view chose another aggregation
                targets.append(aggregation)
    except AttributeError:
        return None
    return BoundSeries(consumer, storages, histogram._meter_config, tuple(targets))


class BoundSeries:
    """One attribute set of an SDK histogram; see the module docstring for what it relies on."""

    __slots__ = ("_consumer", "_meter_config", "_storages", "_targets")

    def __init__(
        self, consumer: Any, storages: object, meter_config: Any, targets: tuple[Any, ...]
    ) -> None:
        self._consumer = consumer
        self._storages = storages
        self._meter_config = meter_config
        self._targets = targets

    def record(self, value: float) -> bool:
        """Add one value, as ``record()`` would; ``False`` (nothing added) means use ``record()``.

        That is the case when readers were added or removed since binding, or when ``value``
        is not a finite number >= 0 (``record()`` then logs and drops it).
        """
        if self._consumer._reader_storages is not self._storages or not _recordable(value):
            return False
        config = self._meter_config
        if config is not None and not config.is_enabled:
            return True  # a disabled meter records nothing, as record() would
        for aggregation in self._targets:
            index = bisect_left(aggregation._boundaries, value)
            with aggregation._lock:
                if aggregation._value is None:
                    aggregation._value = aggregation._get_empty_bucket_counts()
                aggregation._sum += value
                if aggregation._record_min_max:
                    aggregation._min = min(aggregation._min, value)
                    aggregation._max = max(aggregation._max, value)
                aggregation._value[index] += 1
        return True

    def record_many(self, values: Sequence[float]) -> bool:
        """Add ``values`` in order under one lock per aggregation; all or nothing, like ``record``.

        The sum is accumulated value by value, so it is bit for bit what as many ``record()``
        calls would give.
        """
        if self._consumer._reader_storages is not self._storages:
            return False
        for value in values:
            if not _recordable(value):
                return False
        config = self._meter_config
        if not values or (config is not None and not config.is_enabled):
            return True
        for aggregation in self._targets:
            boundaries = aggregation._boundaries
            with aggregation._lock:
                if aggregation._value is None:
                    aggregation._value = aggregation._get_empty_bucket_counts()
                counts = aggregation._value
                total, low, high = aggregation._sum, aggregation._min, aggregation._max
                for value in values:
                    total += value
                    counts[bisect_left(boundaries, value)] += 1
                    # min()/max() as aggregate() uses them: the kept one on ties.
                    if value < low:
                        low = value
                    if value > high:
                        high = value
                aggregation._sum = total
                if aggregation._record_min_max:
                    aggregation._min, aggregation._max = low, high
        return True


def _recordable(value: float) -> bool:
    """Whether ``record()`` would take ``value``: finite and >= 0 (an int too large for a
    float counts as infinite there: ``math.isfinite`` raises on it)."""
    try:
        return value >= 0 and math.isfinite(value)
    except OverflowError:
        return False
