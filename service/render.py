"""Turn a model's output into what v1 callers get: one JSON object per record, or CSV columns."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from service.batch import Batch
from service.model import LoadedModel, Prediction

# The model computes in float32 (about 7 significant digits); more decimals would be noise.
DECIMALS = 7
FLAG_SEPARATOR = ";"
REPR_AGREES_FROM = 1e-4
NEEDS_QUOTES = frozenset(',"\r\n')


def prediction_records(
    model: LoadedModel, batch: Batch, prediction: Prediction
) -> list[dict[str, Any]]:
    """Per record: label, probability, probabilities by label, out_of_range (features).

    One rounding and one `tolist` for the whole batch; the chosen probability is read from the
    rounded row rather than computed again.
    """
    labels = model.manifest.labels
    classes = prediction.classes.tolist()
    rows = rounded(prediction.probabilities).tolist()
    if model.manifest.kind == "binary":
        positive = model.manifest.positive_index
        chosen = [row[positive] for row in rows]
    else:
        chosen = [row[index] for row, index in zip(rows, classes, strict=True)]
    return [
        {
            "label": labels[index],
            "probability": p,
            "probabilities": dict(zip(labels, row, strict=True)),
            "out_of_range": flags,
        }
        for index, p, row, flags in zip(classes, chosen, rows, batch.flags(), strict=True)
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


def prediction_columns(model: LoadedModel, batch: Batch, prediction: Prediction) -> list[list[str]]:
    """The appended CSV cells by column (label, probability, p_<label>..., out_of_range), each
    formatted in one call; a binary model's probability is its positive column's text, reused.
    """
    values = rounded(prediction.probabilities)
    columns = [probability_text(column) for column in values.T]
    if model.manifest.kind == "binary":
        chosen = columns[model.manifest.positive_index]
    else:
        chosen = probability_text(values[np.arange(len(values)), prediction.classes])
    labels = np.asarray(model.manifest.labels, dtype=object)[prediction.classes].tolist()
    flags = [""] * len(labels)  # then only the records with flags are joined
    for row, names in batch.flagged():
        flags[row] = FLAG_SEPARATOR.join(names)
    return [labels, chosen, *columns, flags]


def prediction_cells(model: LoadedModel, batch: Batch, prediction: Prediction) -> list[list[str]]:
    """The appended CSV cells by row (see `prediction_columns`)."""
    return list(map(list, zip(*prediction_columns(model, batch, prediction), strict=True)))


def plain_labels(model: LoadedModel) -> bool:
    """True when no label needs CSV quoting, so rows can be joined with commas directly."""
    return not any(set(label) & NEEDS_QUOTES for label in model.manifest.labels)


def rounded(values: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """Probabilities as written: float64, rounded to DECIMALS."""
    return values.astype(np.float64).round(DECIMALS)


def needs_repr(values: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
    """The rounded values written in exponent notation (below 1e-4, zero excepted) or unexpected
    (NaN, negative, > 1): formatted one by one with `repr`, the rest in one whole-array call.
    """
    magnitude = np.abs(values)
    usual = ((magnitude >= REPR_AGREES_FROM) & (magnitude <= 1.0)) | (values == 0.0)
    odd: npt.NDArray[np.bool_] = ~usual | np.signbit(values)
    return odd


def probability_text(values: npt.NDArray[np.float64]) -> list[str]:
    """Rounded probabilities as `repr` writes them (the CSV cells), formatted by orjson in one call.

    orjson and `repr` agree on every 7-decimal value from 1e-4 to 1 (checked exhaustively, see
    tests/service/test_render_text.py); below that `repr` switches to exponent notation, so zero
    excepted, those few values (and anything unexpected: NaN, > 1) are formatted by `repr`.
    """
    if not len(values):
        return []
    values = np.ascontiguousarray(values, dtype=np.float64)
    encoded = orjson.dumps(values, option=orjson.OPT_SERIALIZE_NUMPY)
    tokens = encoded[1:-1].decode("ascii").split(",")
    for index in np.flatnonzero(needs_repr(values)).tolist():
        tokens[index] = repr(float(values[index]))
    return tokens
