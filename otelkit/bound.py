"""Histogram series bound to the SDK's aggregation objects: recording without the pipeline.

``Histogram.record()`` walks every measurement through the measurement consumer, each
reader's storage and each view match, rebuilding the attribute key every time: about 10 µs
per call on a slow core, 2.5 to 3 times that from 1.45 on (which also cleans and re-hashes
the attributes), against about 2 µs for the aggregation itself. A :class:`BoundSeries`
holds, for one attribute set, the aggregation objects ``record()`` would reach and updates
them exactly as their own ``aggregate()`` does, under their lock.

What this relies on (opentelemetry-sdk internals, verified for each of
``VERIFIED_SDK_VERSIONS``; ``tests/otelkit/test_bound.py`` compares every field of every data
point with the public path, cumulative and delta, and pins each fallback):

* ``Histogram._measurement_consumer._reader_storages``: reader -> ``MetricReaderStorage``,
  never mutated; from 1.43 replaced when a reader is added or removed (a binding checks it
  per call);
* ``..._sdk_config.exemplar_filter``: only an ``AlwaysOffExemplarFilter`` is bound, so no
  exemplar is ever due (``aggregate()`` offers the reservoir nothing then);
* ``MetricReaderStorage._get_or_init_view_instrument_match(histogram)`` and each match's
  ``_view._attribute_keys`` and ``_attributes_aggregation`` (key of the kept attributes ->
  aggregation; entries are created by ``record()`` and never removed, except by the delta
  collections of 1.45.2, below). The key is
  ``frozenset(kept.items())`` up to 1.44; from 1.45 it is ``_hash_attributes(kept)`` of the
  attributes ``Measurement`` cleaned, which leaves non-empty ``str`` keys with ``str`` values
  as they are (only such attribute sets are bound there);
* from 1.41, ``Histogram._meter_config.is_enabled`` (1.40 has no meter configuration);
* from 1.45.2, the cardinality limit (2,000 attribute sets per stream unless a view or reader
  sets another): an attribute set first seen past it is folded by ``record()`` into the
  ``otel.metric.overflow`` series, so it has no entry of its own and is not bound. A match
  whose ``_reset_on_collect`` is set (a delta reader) swaps ``_attributes_aggregation`` for a
  new dict under its ``_lock`` at each collection, then collects the old dict's aggregations
  under their locks: per call, a binding checks under the aggregation's lock that the current
  dict still holds it under the key and, where not, takes the match's ``_lock`` and its
  ``_get_or_create_aggregation(key, attributes)`` as ``record()`` does (overflow included);
* ``_ExplicitBucketHistogramAggregation``'s ``_lock``, ``_value`` (``None`` or bucket counts),
  ``_sum``, ``_min``, ``_max``, ``_record_min_max``, ``_boundaries`` and
  ``_get_empty_bucket_counts()``, as its ``aggregate()`` uses them (the same in every verified
  version: ``bisect_left`` bucket index, ``min()``/``max()``, the reservoir offered a value
  only when the exemplar filter asks for it).

``record()`` up to 1.43 also aggregates NaN and +inf (1.44 on drops them); a binding takes
only finite values >= 0 on every version and answers ``False`` for any other, so the caller's
``record()`` does with it whatever the installed version does.

Anything else (another SDK version, a provider that is not the SDK's, another exemplar
filter, a view that changes the aggregation) gives no binding, and callers use ``record()``.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from opentelemetry.metrics import Histogram
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter
from opentelemetry.sdk.metrics import Histogram as SdkHistogram
from opentelemetry.sdk.metrics._internal import _view_instrument_match
from opentelemetry.sdk.metrics._internal.aggregation import (
    _DropAggregation,
    _ExplicitBucketHistogramAggregation,
)
from opentelemetry.sdk.version import __version__ as SDK_VERSION


@dataclass(frozen=True, slots=True)
class _Shape:
    """Where the internals listed in the module docstring differ between SDK releases."""

    hashed_keys: bool
    """Aggregations are keyed by ``_hash_attributes`` of cleaned attributes (1.45 on), not by a
    ``frozenset`` of the attribute items."""
    meter_config: bool
    """Instruments carry ``_meter_config``, whose ``is_enabled`` turns recording off (1.41 on)."""
    reset_on_collect: bool
    """View matches have ``_reset_on_collect`` and a cardinality limit (1.45.2 on)."""


_FROZENSET_KEYS_NO_METER_CONFIG: Final = _Shape(
    hashed_keys=False, meter_config=False, reset_on_collect=False
)
_FROZENSET_KEYS: Final = _Shape(hashed_keys=False, meter_config=True, reset_on_collect=False)
_HASHED_KEYS: Final = _Shape(hashed_keys=True, meter_config=True, reset_on_collect=False)
_HASHED_KEYS_LIMITED: Final = _Shape(hashed_keys=True, meter_config=True, reset_on_collect=True)

_SHAPES: Final[Mapping[str, _Shape]] = {
    "1.40.0": _FROZENSET_KEYS_NO_METER_CONFIG,
    "1.41.0": _FROZENSET_KEYS,
    "1.41.1": _FROZENSET_KEYS,
    "1.42.0": _FROZENSET_KEYS,
    "1.42.1": _FROZENSET_KEYS,
    "1.43.0": _FROZENSET_KEYS,
    "1.44.0": _FROZENSET_KEYS,
    "1.45.0": _HASHED_KEYS,
    "1.45.1": _HASHED_KEYS,
    "1.45.2": _HASHED_KEYS_LIMITED,
}
"""Each verified SDK release and the shape of its internals."""

VERIFIED_SDK_VERSIONS: Final = frozenset(_SHAPES)
"""SDK versions whose internals match the list above (checked by tests/otelkit/test_bound.py)."""

_KeyFunction = Callable[[Mapping[str, str]], Hashable]
"""Maps the attributes a view match keeps to the key of their aggregation in that match."""

_hash_attributes: _KeyFunction | None = getattr(_view_instrument_match, "_hash_attributes", None)
"""The SDK's aggregation key function from 1.45 on (``None`` before)."""


def _frozen_items(kept: Mapping[str, str]) -> Hashable:
    """The aggregation key up to 1.44."""
    return frozenset(kept.items())


def _installed() -> tuple[_Shape, _KeyFunction] | None:
    """The installed SDK's shape and key function, or ``None`` where it was not verified."""
    shape = _SHAPES.get(SDK_VERSION)
    if shape is None:
        return None
    key_of = _hash_attributes if shape.hashed_keys else _frozen_items
    return None if key_of is None else (shape, key_of)


def _release(version: str) -> tuple[int, ...]:
    """``"1.45.2"`` as ``(1, 45, 2)``, to order versions."""
    return tuple(int(part) for part in version.split("."))


def fast_path_available() -> bool:
    """Whether :func:`bind` can bind on the installed SDK (its internals were verified).

    Even then a histogram binds only where the module docstring allows it (an AlwaysOff
    exemplar filter, explicit-bucket aggregations); elsewhere callers use ``record()``.
    """
    return _installed() is not None


def fast_path_description() -> str:
    """One line naming the installed SDK version and the path histogram values take."""
    if fast_path_available():
        return (
            f"opentelemetry-sdk {SDK_VERSION}: histogram series record straight into the SDK's "
            "aggregations (otelkit.bound) when exemplars are off, else via Histogram.record()"
        )
    verified = sorted(VERIFIED_SDK_VERSIONS, key=_release)
    return (
        f"opentelemetry-sdk {SDK_VERSION}: not verified for otelkit.bound ({verified[0]} to "
        f"{verified[-1]} are), so every histogram value goes through Histogram.record()"
    )


def _cleaned_unchanged(attributes: Mapping[str, str]) -> bool:
    """Whether the SDK's attribute cleaning (1.45 on) keeps ``attributes`` as they are."""
    return all(
        isinstance(key, str) and key and isinstance(value, str) for key, value in attributes.items()
    )


def bind(histogram: Histogram, attributes: Mapping[str, str]) -> BoundSeries | None:
    """The series of ``histogram`` for ``attributes``, or ``None`` where only ``record()`` fits.

    Call it after one ``record()`` with ``attributes``: that call creates the aggregation
    objects (in every reader) that the binding then holds. An attribute set that ``record()``
    folded into the overflow series (past the SDK's cardinality limit) has none: ``None``.
    """
    installed = _installed()
    if installed is None or not isinstance(histogram, SdkHistogram):
        return None
    shape, key_of = installed
    if shape.hashed_keys and not _cleaned_unchanged(attributes):
        return None
    instrument: Any = histogram  # typed loosely: which internals it has depends on the version
    try:
        consumer: Any = instrument._measurement_consumer
        if not isinstance(consumer._sdk_config.exemplar_filter, AlwaysOffExemplarFilter):
            return None
        meter_config: Any = instrument._meter_config if shape.meter_config else None
        storages = consumer._reader_storages
        targets: list[Any] = []
        resets: list[_ResetTarget] = []
        for storage in storages.values():
            for match in storage._get_or_init_view_instrument_match(histogram):
                keys = match._view._attribute_keys
                kept = {k: v for k, v in attributes.items() if keys is None or k in keys}
                key = key_of(kept)
                aggregation = match._attributes_aggregation.get(key)
                if type(aggregation) is _DropAggregation:
                    continue
                if type(aggregation) is not _ExplicitBucketHistogramAggregation:
                    return None  # not recorded yet, folded into overflow, or another aggregation
                if shape.reset_on_collect and match._reset_on_collect:
                    resets.append(_ResetTarget(match, key, kept, aggregation))
                else:
                    targets.append(aggregation)
    except AttributeError:
        return None
    if resets:
        return _ResettingSeries(consumer, storages, meter_config, tuple(targets), tuple(resets))
    return BoundSeries(consumer, storages, meter_config, tuple(targets))


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
        is not a finite number >= 0 (``record()`` then drops it, or up to SDK 1.43 aggregates
        NaN and +inf).
        """
        if self._consumer._reader_storages is not self._storages or not _recordable(value):
            return False
        config = self._meter_config
        if config is not None and not config.is_enabled:
            return True  # a disabled meter records nothing, as record() would
        for aggregation in self._targets:
            # _add_locked's steps, inline: this loop is the whole per-value cost.
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
        if not self._accepts_all(values):
            return False
        config = self._meter_config
        if not values or (config is not None and not config.is_enabled):
            return True
        for aggregation in self._targets:
            with aggregation._lock:
                _add_many_locked(aggregation, values)
        return True

    def _accepts_all(self, values: Sequence[float]) -> bool:
        """Whether the binding still holds and ``record()`` would take every one of ``values``."""
        if self._consumer._reader_storages is not self._storages:
            return False
        return all(_recordable(value) for value in values)


class _ResetTarget:
    """One delta stream (SDK 1.45.2 on) whose aggregation table is replaced at each collection.

    ``aggregation`` is this attribute set's aggregation as last found; it is current while the
    match's table still files it under ``key`` (a new table never holds an old aggregation),
    and is looked up again, under the match's lock, once it is not. Only the aggregation is
    kept, not the table: an idle binding holds no other set's aggregations from the past.
    """

    __slots__ = ("aggregation", "attributes", "key", "match")

    def __init__(
        self, match: Any, key: Hashable, attributes: dict[str, str], aggregation: Any
    ) -> None:
        self.match = match
        self.key = key
        self.attributes = attributes
        self.aggregation = aggregation

    def add(self, value: float) -> None:
        """Add ``value`` where ``record()`` would put it now."""
        aggregation = self.aggregation
        with aggregation._lock:
            # Checked under the aggregation's lock: a collection swaps the table before it
            # collects (under this lock) the aggregations of the table it took away.
            if self.match._attributes_aggregation.get(self.key) is aggregation:
                _add_locked(aggregation, value)
                return
        with self.match._lock:
            aggregation = self._resolve()
            with aggregation._lock:
                _add_locked(aggregation, value)

    def add_many(self, values: Sequence[float]) -> None:
        """Add ``values`` in order where ``record()`` would put them now."""
        aggregation = self.aggregation
        with aggregation._lock:
            if self.match._attributes_aggregation.get(self.key) is aggregation:
                _add_many_locked(aggregation, values)
                return
        with self.match._lock:
            aggregation = self._resolve()
            with aggregation._lock:
                _add_many_locked(aggregation, values)

    def _resolve(self) -> Any:
        """This set's aggregation in the current table, found or created as ``record()`` does
        (the overflow series' once the table is full); the caller holds the match's lock."""
        self.aggregation = self.match._get_or_create_aggregation(self.key, dict(self.attributes))
        return self.aggregation


class _ResettingSeries(BoundSeries):
    """A :class:`BoundSeries` that also feeds delta streams whose aggregations are replaced."""

    __slots__ = ("_resets",)

    def __init__(
        self,
        consumer: Any,
        storages: object,
        meter_config: Any,
        targets: tuple[Any, ...],
        resets: tuple[_ResetTarget, ...],
    ) -> None:
        super().__init__(consumer, storages, meter_config, targets)
        self._resets = resets

    def record(self, value: float) -> bool:
        """As :meth:`BoundSeries.record`, the delta streams included."""
        if self._consumer._reader_storages is not self._storages or not _recordable(value):
            return False
        config = self._meter_config
        if config is not None and not config.is_enabled:
            return True
        for aggregation in self._targets:
            with aggregation._lock:
                _add_locked(aggregation, value)
        for target in self._resets:
            target.add(value)
        return True

    def record_many(self, values: Sequence[float]) -> bool:
        """As :meth:`BoundSeries.record_many`, the delta streams included."""
        if not self._accepts_all(values):
            return False
        config = self._meter_config
        if not values or (config is not None and not config.is_enabled):
            return True
        for aggregation in self._targets:
            with aggregation._lock:
                _add_many_locked(aggregation, values)
        for target in self._resets:
            target.add_many(values)
        return True


def _add_locked(aggregation: Any, value: float) -> None:
    """Add ``value`` as the aggregation's ``aggregate()`` does; the caller holds its lock."""
    if aggregation._value is None:
        aggregation._value = aggregation._get_empty_bucket_counts()
    aggregation._sum += value
    if aggregation._record_min_max:
        aggregation._min = min(aggregation._min, value)
        aggregation._max = max(aggregation._max, value)
    aggregation._value[bisect_left(aggregation._boundaries, value)] += 1


def _add_many_locked(aggregation: Any, values: Sequence[float]) -> None:
    """Add ``values`` in order as as many ``aggregate()`` calls do; the caller holds the lock."""
    if aggregation._value is None:
        aggregation._value = aggregation._get_empty_bucket_counts()
    counts = aggregation._value
    boundaries = aggregation._boundaries
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


def _recordable(value: float) -> bool:
    """Whether a binding takes ``value``: finite and >= 0, what ``record()`` takes from SDK 1.44
    on (an int too large for a float counts as infinite there: ``math.isfinite`` raises on it)."""
    try:
        return value >= 0 and math.isfinite(value)
    except OverflowError:
        return False
