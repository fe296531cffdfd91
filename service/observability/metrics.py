"""Prometheus metrics of one app (its own CollectorRegistry, so tests can build many apps).

With several workers (`service.server.Supervisor`) each worker writes its values to files in
prometheus-client's multiprocess directory, and `/metrics` from any worker reports the sum over
all of them.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    values,
)
from prometheus_client.multiprocess import MultiProcessCollector

from service.drift import PREDICTION, Binning, Codes, Tally, binning_of
from service.model import LoadedModel, Prediction
from service.validation import Batch

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
RECORD_BUCKETS = (1, 10, 100, 1_000, 10_000, 100_000, 1_000_000)
# prometheus-client's own variable: the directory of its multiprocess mode.
MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """The directory this process writes its metrics to, or None in single-process mode.

    prometheus-client chooses once, when it is imported, between in-memory values and values in
    files of this directory; the choice follows that one, so the two cannot disagree.
    """
    if values.ValueClass is values.MutexValue:
        return None
    return os.environ.get(MULTIPROCESS_DIR_ENV) or None


class Metrics:
    """Every series the service exports; label values come from known models only (bounded).

    Single-process mode (one worker, and tests building many apps in one process): the values
    live in this app's own registry. Multiprocess mode (`multiprocess_dir()` is set): each
    process writes its values to its own files there; counters and histograms are summed over
    every process that ever wrote (a dead worker's counts stay), `predict_model_info` is the
    maximum over live workers.
    """

    def __init__(self) -> None:
        # The *_created series only double the scrape size.
        disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus_client
        self.registry = CollectorRegistry()
        self.multiprocess_dir = multiprocess_dir()
        labels = ["route", "model", "status"]
        self.requests = Counter(
            "predict_http_requests",
            "HTTP requests by route template, model and status.",
            labels,
            registry=self.registry,
        )
        self.latency = Histogram(
            "predict_http_request_duration_seconds",
            "Time from request start to response end.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.records = Histogram(
            "predict_records_per_request",
            "Records (rows) in each prediction request.",
            ["route", "model"],
            buckets=RECORD_BUCKETS,
            registry=self.registry,
        )
        self.predictions = Counter(
            "predict_predictions",
            "Predictions made, by model and predicted label.",
            ["model", "label"],
            registry=self.registry,
        )
        self.out_of_range = Counter(
            "predict_out_of_range",
            "Values outside the range seen in training, by feature.",
            ["model", "feature"],
            registry=self.registry,
        )
        self.imputed = Counter(
            "predict_imputed",
            "Missing values of nullable features, imputed by the model, by feature.",
            ["model", "feature"],
            registry=self.registry,
        )
        self.model_info = Gauge(
            "predict_model_info",
            "The version each task serves (value 1).",
            ["model", "version"],
            # Over live workers: 1 while any worker serves the version; a dead worker's value
            # goes with it (`Supervisor` marks it dead).
            multiprocess_mode="livemax",
            registry=self.registry,
        )
        self.reloads = Counter(
            "predict_model_reloads",
            "Model loads by result (success or failure).",
            ["model", "result"],
            registry=self.registry,
        )
        grpc_labels = ["method", "model", "code"]
        self.grpc_requests = Counter(
            "predict_grpc_requests",
            "gRPC calls by method, model and status code.",
            grpc_labels,
            registry=self.registry,
        )
        self.grpc_latency = Histogram(
            "predict_grpc_request_duration_seconds",
            "Time from gRPC call start to response end.",
            grpc_labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        drift = ["model", "version", "feature", "bin"]
        self.feature_bins = Counter(
            "predict_feature_bin",
            "Validated records by the training bin their feature's value fell in (drift).",
            drift,
            registry=self.registry,
        )
        self.prediction_bins = Counter(
            "predict_prediction_bin",
            "Predictions by bin (binary: P(positive label) at the test sample's deciles; "
            "multi-class: the predicted label).",
            ["model", "version", "bin"],
            registry=self.registry,
        )
        # The same value in every worker: the maximum is that value, also after a worker died.
        self.feature_reference = Gauge(
            "predict_feature_reference_share",
            "Share of the training rows in each bin of a feature (what drift compares with).",
            drift,
            multiprocess_mode="max",
            registry=self.registry,
        )
        self.prediction_reference = Gauge(
            "predict_prediction_reference_share",
            "Share of the test sample's predictions in each bin.",
            ["model", "version", "bin"],
            multiprocess_mode="max",
            registry=self.registry,
        )
        # Each worker's own window; over live workers the largest (alerts err on the safe side).
        self.feature_psi = Gauge(
            "predict_feature_psi",
            "Population Stability Index of a feature over the default drift window.",
            ["model", "version", "feature"],
            multiprocess_mode="livemax",
            registry=self.registry,
        )
        self.prediction_psi = Gauge(
            "predict_prediction_psi",
            "Population Stability Index of the predictions over the default drift window.",
            ["model", "version"],
            multiprocess_mode="livemax",
            registry=self.registry,
        )
        self._tallies: dict[tuple[str, str], _Drift | None] = {}
        self._push_lock = threading.Lock()
        # `labels()` costs more than the increment itself (it validates and hashes every call), so
        # each child is looked up once; label sets are bounded (routes and known models).
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._grpc_children: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        self._record_children: dict[tuple[str, str], Any] = {}
        self._label_children: dict[tuple[str, str], Any] = {}
        self._range_children: dict[tuple[str, str], Any] = {}
        self._imputed_children: dict[tuple[str, str], Any] = {}

    def render(self) -> bytes:
        """The text exposition: this app's registry, or in multiprocess mode every process's files.

        The files are collected into a fresh registry, not this app's: its own series are in the
        files too, and would otherwise show twice.
        """
        self.push_drift()
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        # untyped in prometheus_client; registers itself with `registry`
        MultiProcessCollector(registry, self.multiprocess_dir)  # type: ignore[no-untyped-call]
        return generate_latest(registry)

    def observe_request(self, route: str, model: str, status: int, seconds: float) -> None:
        key = (route, model, status)
        children = self._request_children.get(key)
        if children is None:
            labels = (route, model, str(status))
            children = (self.requests.labels(*labels), self.latency.labels(*labels))
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def observe_grpc(self, method: str, model: str, code: str, seconds: float) -> None:
        """One gRPC call: `method` as the service names it, `code` the status code's name."""
        key = (method, model, code)
        children = self._grpc_children.get(key)
        if children is None:
            children = (self.grpc_requests.labels(*key), self.grpc_latency.labels(*key))
            self._grpc_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def observe_records(self, route: str, model: str, count: int) -> None:
        child = self._record_children.get((route, model))
        if child is None:
            child = self._record_children[(route, model)] = self.records.labels(route, model)
        child.observe(count)

    def observe_predictions(
        self,
        model: LoadedModel,
        batch: Batch,
        prediction: Prediction,
        drift: Codes | None = None,
    ) -> None:
        """Count labels with one bincount rather than per record; the values outside the
        training range and the missing values imputed (masks of the features with any); and the
        records' drift bins (queued, see `service.drift.Tally`; `drift`: the bins of a batch whose
        inputs were dropped, a CSV chunk)."""
        name = model.name
        labels = model.manifest.labels
        classes = prediction.classes
        if len(classes) == 1:
            self._child(self.predictions, self._label_children, name, labels[int(classes[0])]).inc()
        else:
            counts = np.bincount(classes, minlength=len(labels))
            for label, count in zip(labels, counts.tolist(), strict=True):
                if count:
                    self._child(self.predictions, self._label_children, name, label).inc(count)
        for feature, mask in batch.out_of_range.items():
            child = self._child(self.out_of_range, self._range_children, name, feature)
            child.inc(int(np.count_nonzero(mask)))
        for feature, mask in batch.imputed.items():
            child = self._child(self.imputed, self._imputed_children, name, feature)
            child.inc(int(np.count_nonzero(mask)))
        tracked = self._tallies.get((name, model.version), _UNKNOWN)
        if tracked is _UNKNOWN:
            tracked = self._track(model)
        if tracked is not None:
            if drift is None:
                tracked.tally.add(batch, prediction)
            else:
                tracked.tally.add_codes(drift)

    def tally(self, model: LoadedModel) -> Tally | None:
        """The version's drift counts in this process; None if its manifest has no reference."""
        tracked = self._tallies.get((model.name, model.version), _UNKNOWN)
        if tracked is _UNKNOWN:
            tracked = self._track(model)
        return None if tracked is None else tracked.tally

    def push_drift(self) -> None:
        """Add the drift counts binned since the last push to the Prometheus counters.

        Called at each scrape and periodically (`service.api.drift.keep_pushed`), so the
        counters of every worker, summed, trail the requests by at most that period.
        """
        with self._push_lock:
            for tracked in list(self._tallies.values()):
                if tracked is not None:
                    tracked.push()

    def observe_psi(self, model: LoadedModel, values: dict[str, float | None]) -> None:
        """The PSI per column (features and `service.drift.PREDICTION`) of the default window."""
        for column, value in values.items():
            if value is None:
                continue
            if column == PREDICTION:
                self.prediction_psi.labels(model.name, model.version).set(value)
            else:
                self.feature_psi.labels(model.name, model.version, column).set(value)

    def _track(self, model: LoadedModel) -> _Drift | None:
        """Start counting a version's drift: its series, at 0, and its reference shares."""
        key = (model.name, model.version)
        with self._push_lock:
            if key in self._tallies:
                return self._tallies[key]
            rules = binning_of(model)
            tracked = None if rules is None else _Drift(Tally(rules), self._children(model, rules))
            self._tallies[key] = tracked
            return tracked

    def _children(self, model: LoadedModel, rules: Binning) -> list[Any]:
        children: list[Any] = []
        for column in rules.columns:
            shares = column.distribution.shares
            for bin_name, share in zip(column.distribution.bins, shares, strict=True):
                if column.name == PREDICTION:
                    series = (model.name, model.version, bin_name)
                    children.append(self.prediction_bins.labels(*series))
                    self.prediction_reference.labels(*series).set(share)
                else:
                    labels = (model.name, model.version, column.name, bin_name)
                    children.append(self.feature_bins.labels(*labels))
                    self.feature_reference.labels(*labels).set(share)
        return children

    def loaded(self, model: LoadedModel, previous: LoadedModel | None) -> None:
        """`model` now serves, in place of `previous`.

        The previous version's series goes; in multiprocess mode it stays at 0 instead, because
        prometheus-client cannot remove a series from its files (`remove()` only warns there).
        """
        if previous is not None:
            retired = self._tallies.get((previous.name, previous.version))
            if retired is not None and previous.version != model.version:
                retired.tally.retire()  # its counts stay; its window's memory goes
                self.push_drift()
            if self.multiprocess_dir is None:
                self.model_info.remove(previous.name, previous.version)
            else:
                self.model_info.labels(previous.name, previous.version).set(0)
        self.model_info.labels(model.name, model.version).set(1)
        self._track(model)
        self.reloads.labels(model.name, "success").inc()

    def refused(self, name: str, version: str | None) -> None:
        self.reloads.labels(name, "failure").inc()

    @staticmethod
    def _child(
        metric: Counter, children: dict[tuple[str, str], Any], model: str, value: str
    ) -> Any:
        child = children.get((model, value))
        if child is None:
            child = children[(model, value)] = metric.labels(model, value)
        return child


@dataclass
class _Drift:
    """A version's tally and its counters' children, one per bin (the tally's order)."""

    tally: Tally
    children: list[Any]
    pushed: npt.NDArray[np.int64] | None = None

    def push(self) -> None:
        totals = self.tally.totals()
        delta = totals if self.pushed is None else totals - self.pushed
        for index in np.flatnonzero(delta).tolist():
            self.children[index].inc(int(delta[index]))
        self.pushed = totals


_UNKNOWN: Any = object()  # a version not looked at yet (None: one without reference)
