"""Turn a model's output into what v1 callers get: one JSON object per record, or CSV columns."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from service.batch import Batch
from service.model import LoadedModel, Prediction

# The model computes in float32 (about 7 significant digits); more decimals would be noise.
DECIMALS = 7
FLAG_SEPARATOR = ";"


def predicted_probability(model: LoadedModel, prediction: Prediction) -> npt.NDArray[np.float64]:
    """Binary: P(positive class), whatever the label; multi-class: P(predicted label), the max."""
    probabilities = prediction.probabilities
    if model.manifest.kind == "binary":
        column = probabilities[:, model.manifest.positive_index]
    else:
        column = probabilities[np.arange(len(probabilities)), prediction.classes]
    return _rounded(column)


def prediction_records(
    model: LoadedModel, batch: Batch, prediction: Prediction
) -> list[dict[str, Any]]:
    """Per record: label, probability, probabilities by label, out_of_range (features)."""
    labels = model.manifest.labels
    names = np.asarray(labels, dtype=object)[prediction.classes].tolist()
    rows = _rounded(prediction.probabilities).tolist()
    chosen = predicted_probability(model, prediction).tolist()
    return [
        {
            "label": name,
            "probability": p,
            "probabilities": dict(zip(labels, row, strict=True)),
            "out_of_range": flags,
        }
        for name, p, row, flags in zip(names, chosen, rows, batch.flags(), strict=True)
    ]


def prediction_header(model: LoadedModel, taken: set[str]) -> list[str]:
    """CSV columns appended to the caller's: label, probability, p_<label>..., out_of_range.

    If the caller's header already uses one of those names (case-insensitively), every appended
    column is prefixed with `predicted_` so no column is ever ambiguous.
    """
    names = [
        "label",
        "probability",
        *(f"p_{label}" for label in model.manifest.labels),
        "out_of_range",
    ]
    if taken & {name.lower() for name in names}:
        names = [f"predicted_{name}" for name in names]
    return names


def prediction_cells(model: LoadedModel, batch: Batch, prediction: Prediction) -> list[list[str]]:
    """The appended CSV cells per row, formatted once per column (not per cell) where possible."""
    labels = np.asarray(model.manifest.labels, dtype=object)[prediction.classes].tolist()
    chosen = _text(predicted_probability(model, prediction))
    columns = [_text(_rounded(column)) for column in prediction.probabilities.T]
    flags = [FLAG_SEPARATOR.join(row) for row in batch.flags()]
    return [list(cells) for cells in zip(labels, chosen, *columns, flags, strict=True)]


def _rounded(values: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    return values.astype(np.float64).round(DECIMALS)


def _text(values: npt.NDArray[np.float64]) -> list[str]:
    return [repr(value) for value in values.tolist()]
