"""The raw onnxruntime limit, in-process: no HTTP, no validation, just `InferenceSession.run`.

The session is built like the service builds it (one intra-op thread), and fed arrays shaped
like the service's: float32 [n, 1] per numeric feature, object (str) [n, 1] per category.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from service.manifest import Manifest


@dataclass(frozen=True)
class RawLimit:
    """`session.run` calls per second with `rows` records per call."""

    rows: int
    calls_per_second: float

    @property
    def rows_per_second(self) -> float:
        return self.rows * self.calls_per_second


def measure(
    model_file: Path,
    manifest: Manifest,
    records: list[dict[str, Any]],
    sizes: list[int],
    seconds: float,
) -> dict[int, RawLimit]:
    """Calls per second for each batch size (the first `size` records), `seconds` each."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
    limits: dict[int, RawLimit] = {}
    for size in sizes:
        feeds = _feeds(manifest, records[:size])
        rate = _rate(lambda feeds=feeds: session.run(["probabilities"], feeds), seconds)
        limits[size] = RawLimit(size, rate)
    return limits


def _feeds(manifest: Manifest, records: list[dict[str, Any]]) -> dict[str, npt.NDArray[Any]]:
    feeds: dict[str, npt.NDArray[Any]] = {}
    for feature in manifest.features:
        column = [record[feature.name] for record in records]
        dtype = object if feature.type == "category" else np.float32
        feeds[feature.name] = np.array(column, dtype=dtype).reshape(-1, 1)
    return feeds


def _rate(call: Any, seconds: float) -> float:
    """Calls per second over at least `seconds` (after a short warm-up)."""
    for _ in range(5):
        call()
    count, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        call()
        count += 1
    return count / elapsed
