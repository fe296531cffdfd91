"""Fixtures of the missing-value tests: a registry with the loans model of tests/missing_values.py
(trained by the real training code; features that may be missing, of every type), its fitted
scikit-learn pipeline (the reference for its probabilities) and a server over it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import pytest
from sklearn.pipeline import Pipeline

from service.manifest import Feature, Manifest
from tests.missing_values import TASK, model_frame, train_missing_model
from tests.service.helpers import Server


@dataclass(frozen=True)
class NullableModel:
    """The registry, the task served from it, its manifest and scikit-learn's fitted pipeline."""

    models_dir: Path
    task: str
    manifest: Manifest
    pipeline: Pipeline

    @property
    def folder(self) -> Path:
        return self.models_dir / self.task / self.manifest.version

    @property
    def nullable(self) -> list[Feature]:
        return [f for f in self.manifest.features if f.nullable]

    def probabilities(self, records: Sequence[Mapping[str, Any]]) -> npt.NDArray[np.float64]:
        """scikit-learn's probabilities, a missing value (absent or None) given as NaN, or
        MISSING_CATEGORY for a category: what the service gives the graph."""
        frame = model_frame(self.manifest, records)
        return np.asarray(self.pipeline.predict_proba(frame), dtype=np.float64)

    def full_record(self) -> dict[str, Any]:
        """The first example with every feature given (a value from its domain where the
        example leaves it missing)."""
        record = dict(self.manifest.examples[0].record)
        for feature in self.manifest.features:
            record.setdefault(feature.name, _some_value(feature))
        return record


@pytest.fixture(scope="session")
def nullable(tmp_path_factory: pytest.TempPathFactory) -> NullableModel:
    models = tmp_path_factory.mktemp("nullable-registry") / "models"
    result = train_missing_model(models)
    assert result.promoted, result.message
    return NullableModel(models, TASK, result.manifest, result.pipeline)


@pytest.fixture(scope="session")
def nullable_server(
    nullable: NullableModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("nullable-logs") / "server.log"
    running = Server(nullable.models_dir, log, {"PREDICT_POLL_INTERVAL_SECONDS": "0"}).start()
    yield running
    running.stop()


@pytest.fixture
def http(nullable_server: Server) -> Iterator[httpx.Client]:
    with nullable_server.client() as client:
        yield client


def _some_value(feature: Feature) -> Any:
    if feature.type == "category":
        return (feature.categories or [""])[-1]
    if feature.type == "bool":
        return True
    low = feature.train_min if feature.train_min is not None else feature.min or 0.0
    return int(low) if feature.type == "int" else float(low)
