"""Prometheus metrics of one app (its own CollectorRegistry, so tests can build many apps)."""

from __future__ import annotations

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
)

from service.model import LoadedModel

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


class Metrics:
    """Every series the service exports; label values come from known models only (bounded)."""

    def __init__(self) -> None:
        # The *_created series only double the scrape size.
        disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus_client
        self.registry = CollectorRegistry()
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
            registry=self.registry,
        )
        self.reloads = Counter(
            "predict_model_reloads",
            "Model loads by result (success or failure).",
            ["model", "result"],
            registry=self.registry,
        )
        # `labels()` costs more than the increment itself (it validates and hashes every call), so
        # each child is looked up once; label sets are bounded (routes and known models).
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._record_children: dict[tuple[str, str], Any] = {}
        self._label_children: dict[tuple[str, str], Any] = {}
        self._range_children: dict[tuple[str, str], Any] = {}
        self._imputed_children: dict[tuple[str, str], Any] = {}

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def observe_request(self, route: str, model: str, status: int, seconds: float) -> None:
        key = (route, model, status)
        children = self._request_children.get(key)
        if children is None:
            labels = (route, model, str(status))
            children = (self.requests.labels(*labels), self.latency.labels(*labels))
            self._request_children[key] = children
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
        classes: npt.NDArray[np.intp],
        out_of_range: dict[str, npt.NDArray[np.bool_]],
        imputed: dict[str, npt.NDArray[np.bool_]] | None = None,
    ) -> None:
        """Count labels with one bincount rather than per record; then the values outside the
        training range and the missing values imputed (masks of the features with any)."""
        name = model.name
        labels = model.manifest.labels
        if len(classes) == 1:
            self._child(self.predictions, self._label_children, name, labels[int(classes[0])]).inc()
        else:
            counts = np.bincount(classes, minlength=len(labels))
            for label, count in zip(labels, counts.tolist(), strict=True):
                if count:
                    self._child(self.predictions, self._label_children, name, label).inc(count)
        for feature, mask in out_of_range.items():
            child = self._child(self.out_of_range, self._range_children, name, feature)
            child.inc(int(np.count_nonzero(mask)))
        for feature, mask in (imputed or {}).items():
            child = self._child(self.imputed, self._imputed_children, name, feature)
            child.inc(int(np.count_nonzero(mask)))

    def loaded(self, model: LoadedModel, previous: LoadedModel | None) -> None:
        if previous is not None:
            self.model_info.remove(previous.name, previous.version)
        self.model_info.labels(model.name, model.version).set(1)
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
