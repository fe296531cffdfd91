"""Data-quality checks at training time: facts about the rows a model is trained on, and warnings.

Warnings only: nothing here changes the data, the model or its metrics. The checks run once on
the whole data set (all splits), are vectorised pandas, and give the same report for the same
rows. The report goes to the CLI summary, `report/metrics.json` (`data_quality`) and the model
card.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from service.manifest import normalize_header
from training.data import Dataset, missing_mask
from training.spec import TaskSpec

# Largest class over smallest class beyond which accuracy says little on its own.
IMBALANCE_RATIO = 5.0
# Name parts that say a column is a rate, so that values from 0 to 100 are read as percentages.
RATE_WORDS = frozenset(
    {"pct", "percent", "percentage", "rate", "ratio", "share", "fraction", "proportion"}
)


class DataQuality(BaseModel):
    """What the checks found, column lists in spec order, and the warnings they lead to."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rows: int
    duplicate_rows: int  # rows repeating an earlier row exactly (features and label)
    conflicting_rows: int  # rows whose features equal another row's that has another label
    constant_columns: list[str]
    missing_rate: dict[str, float]
    class_counts: dict[str, int]
    whole_number_columns: list[str]  # declared float, every value a whole number
    fraction_columns: list[str]  # every value from 0 to 1, not only 0 and 1
    percent_columns: list[str]  # named like a rate, every value from 0 to 100
    warnings: list[str]


def assess(spec: TaskSpec, data: Dataset) -> DataQuality:
    """Check the rows a run trains on (read only)."""
    X, y = data.X, data.y
    feature_hash = pd.util.hash_pandas_object(X, index=False).to_numpy()
    keyed = pd.DataFrame({"features": feature_hash, "label": y})
    labels_per_features = keyed.groupby("features")["label"].transform("nunique")
    constant = X.nunique(dropna=False) <= 1
    counts = np.bincount(y, minlength=len(spec.target.labels))
    numeric = [f for f in spec.features if f.type in ("float", "int") and not constant[f.name]]
    values = X[[f.name for f in numeric]].astype(np.float64)
    low, high = values.min(), values.max()
    whole = (values.isna() | (values == values.round())).all()
    seen = values.notna().any()
    fraction = seen & (low >= 0) & (high <= 1) & ~whole
    percent = seen & (low >= 0) & (high <= 100) & (high > 1)
    headers = data.headers
    quality = DataQuality(
        rows=len(y),
        duplicate_rows=int(keyed.duplicated().sum()),
        conflicting_rows=int((labels_per_features > 1).sum()),
        constant_columns=[name for name in spec.feature_names if constant[name]],
        missing_rate={name: float(rate) for name, rate in missing_mask(spec, X).mean().items()},
        class_counts={label: int(n) for label, n in zip(spec.target.labels, counts, strict=True)},
        whole_number_columns=[
            f.name for f in numeric if f.type == "float" and seen[f.name] and whole[f.name]
        ],
        fraction_columns=[f.name for f in numeric if f.type == "float" and fraction[f.name]],
        percent_columns=[
            f.name
            for f in numeric
            if percent[f.name] and _rate_named(f.name, headers.get(f.name, f.name))
        ],
        warnings=[],
    )
    return quality.model_copy(update={"warnings": warnings(quality)})


def warnings(quality: DataQuality) -> list[str]:
    """One sentence per finding, saying what to check; deterministic order."""
    rows = max(quality.rows, 1)
    found: list[str] = []
    if quality.duplicate_rows:
        found.append(
            f"{quality.duplicate_rows} duplicate rows ({quality.duplicate_rows / rows:.1%}): "
            "repeated records weigh more in training and can sit in both the train and test "
            "splits, which flatters the metrics"
        )
    if quality.conflicting_rows:
        found.append(
            f"{quality.conflicting_rows} rows have the same features as a row with another label: "
            "no model can get them all right (label noise, or a feature is missing)"
        )
    if quality.constant_columns:
        found.append(
            f"constant columns (one value in every row, so no information): "
            f"{_names(quality.constant_columns)}"
        )
    missing = {name: rate for name, rate in quality.missing_rate.items() if rate > 0}
    if missing:
        listed = ", ".join(f"{name} {rate:.1%}" for name, rate in missing.items())
        found.append(f"missing values: {listed}")
    found.extend(_balance(quality.class_counts))
    if quality.whole_number_columns:
        found.append(
            'declared float but every value is a whole number (a count? declare type = "int"): '
            f"{_names(quality.whole_number_columns)}"
        )
    if quality.fraction_columns:
        found.append(
            "every value lies from 0 to 1, like a fraction: requests must use the same scale "
            f"(0.45, not 45): {_names(quality.fraction_columns)}"
        )
    if quality.percent_columns:
        found.append(
            "named like a rate with every value from 0 to 100, like a percentage: requests must "
            f"use the same scale (45, not 0.45): {_names(quality.percent_columns)}"
        )
    return found


def _balance(counts: dict[str, int]) -> list[str]:
    empty = [label for label, n in counts.items() if n == 0]
    if empty:
        return [f"no rows of class {_names(empty)}: the model can never learn to predict it"]
    largest = max(counts, key=lambda label: counts[label])
    smallest = min(counts, key=lambda label: counts[label])
    ratio = counts[largest] / counts[smallest]
    if ratio <= IMBALANCE_RATIO:
        return []
    total = sum(counts.values())
    return [
        f"imbalanced classes: {smallest!r} is {counts[smallest] / total:.1%} of the rows, "
        f"{ratio:.1f} times fewer than {largest!r}; judge the model by ROC AUC, precision and "
        "recall rather than accuracy"
    ]


def _rate_named(name: str, header: str) -> bool:
    words = {
        part for text in (name, header) for part in re.split(r"_+", normalize_header(text)) if part
    }
    return "%" in header or not RATE_WORDS.isdisjoint(words)


def _names(names: list[str]) -> str:
    return ", ".join(names)
