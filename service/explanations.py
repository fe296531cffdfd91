"""Explanations by occlusion: how far each feature moved a prediction from its reference value.

For each record and each feature, the feature is replaced by its reference value (the manifest's
`Feature.reference`: the training median for a number, 0 or 1 for a bool, the most frequent
category) and the record is run again. The feature's contribution is

    P(record) - P(record with that feature set to its reference)

where P is the probability of the positive label (binary) or of the label predicted for the
record (multi-class). Positive: the feature's value raised that probability; negative: lowered
it. This is occlusion against one reference point, not SHAP: features interact, so the
contributions of a record need not sum to anything, and a feature whose value is its reference
contributes exactly zero. A missing value (which the graph imputes) is explained like any other
value: it is replaced by the reference.

The records and their variants (one per record and feature) go through one `LoadedModel.predict`
(one session run): rows [0, n) are the records, rows [(j + 1) n, (j + 2) n) the records with
feature j at its reference, so a request of n records over m features runs n x (m + 1) rows;
`explain_limit` bounds n per request.
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

import numpy as np
import numpy.typing as npt

from service.errors import BatchTooLarge, InvalidInput, Problem
from service.manifest import Feature
from service.model import LoadedModel, Prediction
from service.validation import Batch

PARAMETER = "explain"
# Model rows (records x (features + 1)) in one explained run: 1,000 records of a 64-feature model
# (65,000 rows) fit; so do 9,000 of an 10-feature one.
MAX_EXPLAINED_ROWS = 100_000
TRUE_WORDS = frozenset({"true", "1"})
FALSE_WORDS = frozenset({"false", "0"})


@dataclass(frozen=True)
class Explained(Prediction):
    """A prediction and each feature's contribution per record: [n, m], features in manifest
    (model input) order; see the module's docstring for what a contribution is."""

    contributions: npt.NDArray[np.float64]


class ExplainInvalid(InvalidInput):
    """The `explain` parameter is not a boolean."""

    def __init__(self, value: object, location: tuple[str, ...] = ("query",)) -> None:
        msg = f"Input should be a valid boolean (true or false), got {str(value)[:40]!r}"
        super().__init__([Problem(None, PARAMETER, msg, "bool_parsing", value)], location)


class NoReferences(InvalidInput):
    """The version's manifest predates explanations: it has no reference values."""

    def __init__(self, model: LoadedModel, location: tuple[str, ...] = ("query",)) -> None:
        msg = (
            f"version {model.version} of {model.name!r} has no reference values to explain "
            "against; retrain it"
        )
        super().__init__([Problem(None, PARAMETER, msg, "no_references")], location)


class TooManyToExplain(BatchTooLarge):
    """More records than one explained request may carry (`explain_limit`): 413."""

    status_code = HTTPStatus.REQUEST_ENTITY_TOO_LARGE

    def __init__(self, count: int, limit: int, features: int) -> None:
        msg = (
            f"explain=true takes at most {limit} records per request for this model (each "
            f"record is run {features + 1} times: once, then once per feature); got {count}"
        )
        InvalidInput.__init__(self, [Problem(None, "records", msg, "too_long")], ("body",))


def parse_flag(text: str) -> bool:
    """A query parameter's `true`/`false` (or 1/0, any case); anything else is refused."""
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ExplainInvalid(text)


def query_flag(query_string: bytes) -> bool:
    """`explain` of a raw query string (the last one given wins); False when absent."""
    found: str | None = None
    for key, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if key == PARAMETER:
            found = value
    return False if found is None else parse_flag(found)


def explains(model: LoadedModel) -> bool:
    """True when every feature of the version has a reference value (a manifest written since)."""
    return all(feature.reference is not None for feature in model.manifest.features)


def explain_limit(model: LoadedModel, max_records: int) -> int:
    """Records one explained request may carry: the batch limit, and at most
    MAX_EXPLAINED_ROWS model rows (at least one record, however wide the model)."""
    per_run = MAX_EXPLAINED_ROWS // (len(model.manifest.features) + 1)
    return max(1, min(max_records, per_run))


def check_explainable(model: LoadedModel) -> None:
    """Refuse a version without reference values (NoReferences), before the body is read."""
    if not explains(model):
        raise NoReferences(model)


def check(model: LoadedModel, size: int, max_records: int) -> None:
    """Refuse, before any inference, what cannot be explained: a version without references
    (NoReferences) or more records than `explain_limit` (TooManyToExplain)."""
    check_explainable(model)
    limit = explain_limit(model, max_records)
    if size > limit:
        raise TooManyToExplain(size, limit, len(model.manifest.features))


def explain(model: LoadedModel, batch: Batch) -> Explained:
    """The batch's prediction and contributions, in one run of n x (m + 1) rows; a batch over
    MAX_EXPLAINED_ROWS rows (the `score` command's blocks) runs in pieces of whole records."""
    check_explainable(model)
    per_run = explain_limit(model, batch.size)
    if batch.size <= per_run:
        return _explained(model, batch)
    pieces = [
        _explained(model, _rows(batch, start, start + per_run))
        for start in range(0, batch.size, per_run)
    ]
    return Explained(
        np.concatenate([p.probabilities for p in pieces]),
        np.concatenate([p.classes for p in pieces]),
        np.concatenate([p.contributions for p in pieces]),
    )


def reference_values(model: LoadedModel) -> list[Any]:
    """Each feature's reference as the model takes it (float32 for a number, str for a category)."""
    return [_as_input(feature) for feature in model.manifest.features]


def _explained(model: LoadedModel, batch: Batch) -> Explained:
    features = model.manifest.features
    n, m = batch.size, len(features)
    references = reference_values(model)
    inputs, same = _variants(model, batch, references)
    run = model.predict(Batch((m + 1) * n, inputs, {}))
    probabilities = run.probabilities.reshape(m + 1, n, -1).astype(np.float64)
    classes = run.classes[:n]
    rows = np.arange(n)
    target: int | npt.NDArray[np.intp] = classes
    if model.manifest.kind == "binary":
        target = model.manifest.positive_index
    own = probabilities[0, rows, target]  # [n]
    variants = probabilities[1:, rows, target]  # [m, n]
    contributions = np.ascontiguousarray((own[np.newaxis, :] - variants).T)  # [n, m]
    contributions[same] = 0.0
    return Explained(run.probabilities[:n], classes, contributions)


def _variants(
    model: LoadedModel, batch: Batch, references: list[Any]
) -> tuple[dict[str, npt.NDArray[Any]], npt.NDArray[np.bool_]]:
    """The stacked inputs (the records, then one block per feature with that feature at its
    reference) and where a value already is its reference ([n, m]).

    The numbers are tiled as one [features, rows] matrix, each feature's input a row of it, so
    a request costs a few numpy calls whatever the model's width; categories one tile each.
    """
    features = model.manifest.features
    n, m = batch.size, len(features)
    position = {feature.name: j for j, feature in enumerate(features)}
    same = np.zeros((n, m), dtype=np.bool_)
    inputs: dict[str, npt.NDArray[Any]] = {}
    numeric = [f for f in features if f.type != "category"]
    if numeric:
        values = np.vstack([batch.inputs[f.name].reshape(1, n) for f in numeric])  # [q, n]
        at = np.array([position[f.name] for f in numeric])
        own = np.array([references[j] for j in at], dtype=np.float32)
        stacked = np.tile(values, (1, m + 1))  # [q, (m + 1) n]
        blocks = stacked.reshape(len(numeric), m + 1, n)
        blocks[np.arange(len(numeric)), at + 1, :] = own[:, np.newaxis]
        same[:, at] = (values == own[:, np.newaxis]).T
        for row, feature in zip(stacked, numeric, strict=True):
            inputs[feature.name] = row.reshape(-1, 1)
    for feature in features:
        if feature.type == "category":
            j = position[feature.name]
            column = batch.inputs[feature.name]
            tiled = np.tile(column, (m + 1, 1))
            tiled[(j + 1) * n : (j + 2) * n] = references[j]
            inputs[feature.name] = tiled
            same[:, j] = column[:, 0] == references[j]
    return {f.name: inputs[f.name] for f in features}, same


def _as_input(feature: Feature) -> Any:
    if feature.type == "category":
        return str(feature.reference)
    return np.float32(float(feature.reference or 0.0))


def _rows(batch: Batch, start: int, stop: int) -> Batch:
    """Records [start, stop) of a batch (its inputs only: flags are not needed to explain)."""
    inputs = {name: array[start:stop] for name, array in batch.inputs.items()}
    return Batch(len(next(iter(inputs.values()))), inputs, {})
