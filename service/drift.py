"""Drift: each served record's bins (the manifest's reference distributions), counted per model
version, a sliding window of the recent ones, and the Population Stability Index against training.

A `Tally` holds one version's counts. A one-record request only queues its values (`Tally.add`:
Python scalars, a deque append); queued records are binned together, vectorised, once enough
have queued or when someone reads (`Tally.totals`, `Tally.window`); a larger batch is binned at
once. Binned records go to a ring of the last `WINDOW_CAPACITY` records' bin indices and arrival
times (the window), and are folded into the cumulative counts before the ring overwrites them.
"""

from __future__ import annotations

import math
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from operator import itemgetter
from typing import Any

import numpy as np
import numpy.typing as npt

from service.errors import ServiceError
from service.manifest import MISSING_CATEGORY, Distribution, Manifest
from service.model import LoadedModel, Prediction
from service.validation import Batch, Validator

# Records whose bins one worker keeps for the window: 100,000 x (features + 1) bytes (uint8
# bins; uint16 past 255 bins), plus 8 bytes of arrival time each.
WINDOW_CAPACITY = 100_000
# Shares are floored at this before PSI's logarithm, so an empty bin stays finite.
EPSILON = 1e-4
# One-record batches queued before they are binned together (larger ones are binned at once).
QUEUED_RECORDS = 256
PREDICTION = "prediction"  # the name of the predictions' column in `Binning.columns`

Codes = npt.NDArray[np.uint8] | npt.NDArray[np.uint16]


class NoReference(ServiceError):
    """The served version's manifest has no reference distributions (written before drift)."""

    status_code = HTTPStatus.CONFLICT

    def __init__(self, name: str, version: str) -> None:
        super().__init__(
            f"model {name!r} version {version!r} has no reference distributions; retrain it"
        )


@dataclass(frozen=True)
class Column:
    """One feature (or the predictions) and the distribution its values are binned into."""

    name: str
    distribution: Distribution
    offset: int  # where its bins start among all columns' bins

    @property
    def size(self) -> int:
        return len(self.distribution.bins)


class Binning:
    """A version's columns (its features, then its predictions) and how values find their bin.

    Numbers: `searchsorted(edges, v, side="left")`, NaN (missing) in the last bin. Categories
    and predicted labels: their index, an unknown one in OTHER_BIN, MISSING_CATEGORY in the last.
    """

    def __init__(self, manifest: Manifest) -> None:
        distributions = [(f.name, f.distribution) for f in manifest.features]
        distributions.append((PREDICTION, manifest.prediction_distribution))
        self.columns: list[Column] = []
        offset = 0
        for name, distribution in distributions:
            assert distribution is not None  # `binning` checked
            self.columns.append(Column(name, distribution, offset))
            offset += len(distribution.bins)
        self.size = offset
        widest = max(column.size for column in self.columns)
        self.dtype: type[np.unsignedinteger[Any]] = np.uint8 if widest <= 256 else np.uint16
        self._edges = [np.asarray(c.distribution.edges, dtype=np.float64) for c in self.columns]
        self._lookups = [_lookup(c.distribution) for c in self.columns]
        # Only a nullable feature's values can be missing (NaN) once validated.
        self._nullable = [f.nullable for f in manifest.features] + [False]
        self._binary = manifest.kind == "binary"
        self._positive = manifest.positive_index
        prediction = self.columns[-1].distribution
        index = {label: i for i, label in enumerate(prediction.categories)}
        other = len(prediction.categories)
        self._label_bins = np.array([index.get(label, other) for label in manifest.labels])
        # A one-record batch's values, in column order, as Python scalars (see `Tally.add`).
        getter = itemgetter(*(column.name for column in self.columns[:-1]))
        self.values: Callable[[Mapping[str, Any]], Any] = (
            getter if len(self.columns) > 2 else lambda inputs: (getter(inputs),)
        )

    def answers(self, prediction: Prediction) -> npt.NDArray[Any]:
        """What the predictions' column bins: P(positive label) (binary), else the class index."""
        if self._binary:
            return prediction.probabilities[:, self._positive]
        return prediction.classes

    def answer(self, prediction: Prediction) -> float | int:
        """`answers` of a one-record prediction, as a Python scalar."""
        if self._binary:
            return float(prediction.probabilities.item(0, self._positive))
        return int(prediction.classes.item(0))

    def codes(
        self, inputs: Mapping[str, npt.NDArray[Any]], answers: npt.NDArray[Any], size: int
    ) -> Codes:
        """Each record's bin per column: [records, features + 1], bins local to their column."""
        codes = np.empty((size, len(self.columns)), dtype=self.dtype)
        for j, column in enumerate(self.columns[:-1]):
            codes[:, j] = self._bin(j, inputs[column.name].reshape(-1))
        if self._binary:
            codes[:, -1] = self._bin(-1, answers)
        else:
            codes[:, -1] = self._label_bins[answers]
        return codes

    def counts(self, codes: Codes) -> npt.NDArray[np.int64]:
        """Records per bin, every column's bins one after the other (`Column.offset`)."""
        per_column = [
            np.bincount(codes[:, j], minlength=column.size) for j, column in enumerate(self.columns)
        ]
        return np.concatenate(per_column).astype(np.int64)

    def _bin(self, j: int, values: npt.NDArray[Any]) -> npt.NDArray[np.intp]:
        lookup = self._lookups[j]
        if lookup is not None:
            index, other = lookup
            listed = values.tolist()
            try:  # validated records hold known categories only: the quicker lookup
                return np.array(list(map(index.__getitem__, listed)), dtype=np.intp)
            except KeyError:
                return np.array([index.get(value, other) for value in listed], dtype=np.intp)
        bins = np.searchsorted(self._edges[j], values, side="left")
        if self._nullable[j]:
            bins[np.isnan(values)] = self.columns[j].size - 1
        return bins


def binning(manifest: Manifest) -> Binning | None:
    """The version's binning, or None when its manifest has no reference distributions."""
    if manifest.prediction_distribution is None:
        return None
    if any(feature.distribution is None for feature in manifest.features):
        return None
    return Binning(manifest)


class Tally:
    """One version's drift counts: cumulative per bin, and the last records' bins (the window).

    Thread-safe: requests add from the event loop and from worker threads.
    """

    def __init__(self, binning: Binning, capacity: int = WINDOW_CAPACITY) -> None:
        self.binning = binning
        self.capacity = capacity
        self._queued: deque[tuple[float, tuple[Any, ...], Any]] = deque()
        self._lock = threading.Lock()
        self._totals = np.zeros(binning.size, dtype=np.int64)
        self._ring: Codes | None = None  # allocated on first use, freed by `retire`
        self._times = np.zeros(0, dtype=np.float64)
        self._written = 0  # records ever written to the ring
        self._folded = 0  # of those, the ones counted in `_totals`

    def add(self, batch: Batch, prediction: Prediction) -> None:
        """Count a validated batch and its prediction. One record is only queued, as Python
        scalars (no arrays kept alive), and binned later with others; a larger batch at once."""
        rules = self.binning
        if batch.size == 1:
            values = tuple(map(np.ndarray.item, rules.values(batch.inputs)))
            self._queued.append((time.time(), values, rules.answer(prediction)))
            if len(self._queued) >= QUEUED_RECORDS:
                self.bin_queued()
            return
        codes = rules.codes(batch.inputs, rules.answers(prediction), batch.size)
        self.add_codes(codes)

    def add_codes(self, codes: Codes) -> None:
        """Records binned already (`Binning.codes`: a CSV chunk, whose inputs are dropped)."""
        with self._lock:
            self._bin_queued()
            self._write(codes, np.full(len(codes), time.time()))

    def bin_queued(self) -> None:
        with self._lock:
            self._bin_queued()

    def totals(self) -> npt.NDArray[np.int64]:
        """Records per bin since this tally began (every column's bins, `Column.offset`)."""
        with self._lock:
            self._bin_queued()
            self._fold()
            return self._totals.copy()

    def window(self, records: int | None = None, seconds: float | None = None) -> Window:
        """Per bin, the last `records` records, or those of the last `seconds`; at most the
        ring's capacity (`Window.complete` says whether the ring held all that was asked)."""
        with self._lock:
            self._bin_queued()
            stored = min(self._written, self.capacity)
            if self._ring is None or stored == 0:
                return Window(np.zeros(self.binning.size, dtype=np.int64), 0, True)
            if seconds is not None:
                recent = self._times[:stored] >= time.time() - seconds
                codes = self._ring[:stored][recent]
                # The oldest record kept is within the window: older ones may be missing.
                complete = self._written <= self.capacity or not recent.all()
            else:
                wanted = min(records or stored, stored)
                end = self._written % self.capacity
                rows = np.arange(end - wanted, end) % self.capacity
                codes = self._ring[rows]
                complete = records is None or records <= stored
        return Window(self.binning.counts(codes), len(codes), complete)

    def retire(self) -> None:
        """The version no longer serves: count the window's records and free it."""
        with self._lock:
            self._bin_queued()
            self._fold()
            self._ring, self._times = None, np.zeros(0, dtype=np.float64)
            self._written = self._folded = 0

    def _bin_queued(self) -> None:
        queued = [self._queued.popleft() for _ in range(len(self._queued))]
        if not queued:
            return
        times, rows, answers = zip(*queued, strict=True)
        columns = self.binning.columns[:-1]
        inputs = {
            column.name: np.array(values, dtype=object if column.distribution.categories else float)
            for column, values in zip(columns, zip(*rows, strict=True), strict=True)
        }
        codes = self.binning.codes(inputs, np.array(answers), len(queued))
        self._write(codes, np.array(times, dtype=np.float64))

    def _write(self, codes: Codes, times: npt.NDArray[np.float64]) -> None:
        """Into the ring, folding the records it would overwrite into the totals first."""
        if self._ring is None:
            shape = (self.capacity, len(self.binning.columns))
            self._ring = np.zeros(shape, dtype=self.binning.dtype)
            self._times = np.zeros(self.capacity, dtype=np.float64)
        if len(codes) >= self.capacity:  # only the last `capacity` stay in the window
            self._fold()
            self._totals += self.binning.counts(codes[: -self.capacity])
            self._written = self._folded = self._written + len(codes) - self.capacity
            codes, times = codes[-self.capacity :], times[-self.capacity :]
        elif self._written - self._folded + len(codes) > self.capacity:
            self._fold()
        start = self._written % self.capacity
        first = min(len(codes), self.capacity - start)  # up to the ring's end, then from 0
        self._ring[start : start + first] = codes[:first]
        self._times[start : start + first] = times[:first]
        self._ring[: len(codes) - first] = codes[first:]
        self._times[: len(codes) - first] = times[first:]
        self._written += len(codes)

    def _fold(self) -> None:
        """Count the ring's records not counted yet."""
        if self._ring is None or self._written == self._folded:
            return
        start, stop = self._folded % self.capacity, self._written % self.capacity
        if start < stop:
            self._totals += self.binning.counts(self._ring[start:stop])
        else:  # wrapped (or the whole ring: start == stop)
            self._totals += self.binning.counts(self._ring[start:])
            self._totals += self.binning.counts(self._ring[:stop])
        self._folded = self._written


@dataclass(frozen=True)
class Window:
    """Records per bin in a window (every column's bins), how many records, and whether the
    ring held every record the window asked for."""

    counts: npt.NDArray[np.int64]
    records: int
    complete: bool


def psi(counts: npt.NDArray[np.int64], shares: list[float]) -> float | None:
    """Population Stability Index of observed `counts` against expected `shares`:
    sum of (a - e) * ln(a / e), both shares floored at EPSILON; None without any record."""
    total = int(counts.sum())
    if total == 0:
        return None
    actual = np.maximum(counts / total, EPSILON)
    expected = np.maximum(np.asarray(shares, dtype=np.float64), EPSILON)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def status(value: float | None, watch: float, alert: float) -> str:
    """`stable` below `watch`, `watch` below `alert`, else `drifted`; `no_data` for no records."""
    if value is None or math.isnan(value):
        return "no_data"
    if value < watch:
        return "stable"
    return "watch" if value < alert else "drifted"


def codes_for(model: LoadedModel, batch: Batch, prediction: Prediction) -> Codes | None:
    """A batch's bins, to keep when its inputs are dropped (CSV chunks); None without reference."""
    rules = binning_of(model)
    if rules is None:
        return None
    return rules.codes(batch.inputs, rules.answers(prediction), batch.size)


def binning_of(model: LoadedModel) -> Binning | None:
    """The version's binning, built once per loaded version (None without reference)."""
    if model.validator not in _binnings:  # two threads may both build it; either copy is right
        _binnings[model.validator] = binning(model.manifest)
    return _binnings[model.validator]


_binnings: weakref.WeakKeyDictionary[Validator, Binning | None] = weakref.WeakKeyDictionary()


def _lookup(distribution: Distribution) -> tuple[dict[Any, int], int] | None:
    """Category (or label) -> bin; None for a numeric distribution."""
    if not distribution.categories:
        return None
    index: dict[Any, int] = {name: i for i, name in enumerate(distribution.categories)}
    index[MISSING_CATEGORY] = len(distribution.bins) - 1
    return index, len(distribution.categories)
