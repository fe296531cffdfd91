"""What the manifest keeps of the training data for insight at serving time: each feature's
distribution over bins (drift) and its reference value (explanations), and the predictions'
distribution on the metrics' sample.

Numbers are binned at their training deciles (repeated deciles merged, so a feature with few
values gets fewer bins), a bool as false/true, a category per category plus "other"; every
distribution ends with a "missing" bin. The rules the service bins by are in
`service.manifest.Distribution`.
"""

from __future__ import annotations

import itertools

import numpy as np
import numpy.typing as npt
import pandas as pd

from service.manifest import MISSING_BIN, OTHER_BIN, Distribution
from training.spec import FeatureSpec

DECILES = np.linspace(0.1, 0.9, 9)
Floats = npt.NDArray[np.float64]


def feature_distribution(feature: FeatureSpec, column: pd.Series) -> Distribution:
    """The training rows of one feature over its bins (missing values in the last one)."""
    missing = column.isna().to_numpy()
    total = len(column)
    if feature.type == "category":
        categories = list(feature.categories or [])
        present = column[~missing].astype(str)
        counts = [int((present == category).sum()) for category in categories]
        other = len(present) - sum(counts)
        shares = [*counts, other, int(missing.sum())]
        return Distribution(
            bins=[*categories, OTHER_BIN, MISSING_BIN],
            categories=categories,
            shares=_shares(shares, total),
        )
    values = column[~missing].astype(np.float64).to_numpy()
    edges = [0.5] if feature.type == "bool" else _deciles(values)
    binned = np.bincount(np.searchsorted(edges, values, side="left"), minlength=len(edges) + 1)
    names = ["false", "true"] if feature.type == "bool" else bin_names(edges)
    return Distribution(
        bins=[*names, MISSING_BIN],
        edges=edges,
        shares=_shares([*binned.tolist(), int(missing.sum())], total),
    )


def prediction_distribution(
    probabilities: Floats, labels: list[str], positive: int | None
) -> Distribution:
    """The predictions on a sample: P(positive label) binned at that sample's deciles (binary,
    `positive` its index), else the share of each predicted (most probable) label."""
    if positive is not None:
        scores = probabilities[:, positive]
        edges = _deciles(scores)
        counts = np.bincount(np.searchsorted(edges, scores, side="left"), minlength=len(edges) + 1)
        return Distribution(
            bins=[*bin_names(edges), MISSING_BIN],
            edges=edges,
            shares=_shares([*counts.tolist(), 0], len(scores)),
        )
    counts = np.bincount(np.argmax(probabilities, axis=1), minlength=len(labels))
    return Distribution(
        bins=[*labels, OTHER_BIN, MISSING_BIN],
        categories=list(labels),
        shares=_shares([*counts.tolist(), 0, 0], len(probabilities)),
    )


def reference_value(feature: FeatureSpec, column: pd.Series) -> float | str:
    """What an explanation puts in the feature's place: the training median of a number (a
    whole number for an int, 0 or 1 for a bool: values the feature can take), the most frequent
    category of a category."""
    present = column.dropna()
    if feature.type == "category":
        counts = present.astype(str).value_counts()
        return str(counts.index[0])  # value_counts: most frequent first, ties in order seen
    values = present.astype(np.float64).to_numpy()
    median = float(np.median(values))
    if feature.type == "bool":
        return 1.0 if median >= 0.5 else 0.0
    if feature.type == "int":
        return float(np.floor(median + 0.5))
    return median


def _deciles(values: Floats) -> list[float]:
    """The distinct deciles: inner bin edges, increasing (none for a constant column)."""
    if len(values) == 0:
        return []
    edges = np.unique(np.quantile(values, DECILES))
    return [float(edge) for edge in edges]


def bin_names(edges: list[float]) -> list[str]:
    """`<=a`, `a..b` (above a, up to b), `>z`: one short, distinct name per bin."""
    if not edges:
        return ["all"]
    digits = 6
    while True:
        texts = [f"{edge:.{digits}g}" for edge in edges]
        if len(set(texts)) == len(texts) or digits >= 17:
            break
        digits += 2
    inner = [f"{low}..{high}" for low, high in itertools.pairwise(texts)]
    return [f"<={texts[0]}", *inner, f">{texts[-1]}"]


def _shares(counts: list[int], total: int) -> list[float]:
    if total == 0:
        return [0.0] * (len(counts) - 1) + [1.0]
    shares = [count / total for count in counts]
    # Rounding may leave the sum a hair off 1; the largest bin takes the difference.
    biggest = int(np.argmax(shares))
    shares[biggest] += 1.0 - sum(shares)
    return shares
