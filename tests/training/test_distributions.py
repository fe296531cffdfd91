"""What the manifest keeps for drift and explanations: bins, shares and reference values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from service.manifest import MISSING_BIN, OTHER_BIN, Distribution, Manifest, read_pointer
from tests.service.helpers import REPO
from training.distributions import (
    bin_names,
    feature_distribution,
    prediction_distribution,
    reference_value,
)
from training.spec import FeatureSpec


def number(kind: str = "float", impute: str | None = None) -> FeatureSpec:
    return FeatureSpec(name="x", type=kind, min=0, max=1000, impute=impute)  # type: ignore[arg-type]


def test_numbers_are_binned_at_their_training_deciles() -> None:
    values = pd.Series(np.arange(1, 101, dtype=np.float64))
    found = feature_distribution(number(), values)
    assert len(found.edges) == 9 and found.bins[-1] == MISSING_BIN
    # The service's rule: bin = searchsorted(edges, v, "left"); every bin holds a tenth.
    counts = np.bincount(np.searchsorted(found.edges, values, side="left"), minlength=10)
    assert counts.tolist() == [10] * 10
    assert found.shares == pytest.approx([0.1] * 10 + [0.0])
    assert found.bins[0].startswith("<=") and found.bins[9].startswith(">")


def test_missing_values_fill_the_last_bin_and_repeated_deciles_merge() -> None:
    values = pd.Series([0.0] * 60 + [5.0] * 20 + [None] * 20, dtype="float64")
    found = feature_distribution(number(impute="median"), values)
    assert found.edges == [0.0, 5.0]
    assert found.shares == pytest.approx([0.6, 0.2, 0.0, 0.2])
    assert len(set(found.bins)) == len(found.bins)


def test_bools_and_categories() -> None:
    flags = feature_distribution(number("bool"), pd.Series([0, 1, 1, 1], dtype="float64"))
    assert flags.bins == ["false", "true", MISSING_BIN]
    assert flags.shares == pytest.approx([0.25, 0.75, 0.0])
    spec = FeatureSpec(name="c", type="category", categories=("a", "b"))
    found = feature_distribution(spec, pd.Series(["a", "b", "b", "b"]))
    assert found.bins == ["a", "b", OTHER_BIN, MISSING_BIN]
    assert found.shares == pytest.approx([0.25, 0.75, 0.0, 0.0])
    assert reference_value(spec, pd.Series(["a", "b", "b", "b"])) == "b"


def test_reference_values_are_values_the_feature_can_take() -> None:
    assert reference_value(number(), pd.Series([1.0, 2.0, 10.0, 11.0])) == 6.0
    assert reference_value(number("int"), pd.Series([1.0, 2.0, 10.0, 11.0])) == 6.0
    assert reference_value(number("int"), pd.Series([1.0, 2.0])) == 2.0  # 1.5 rounds up
    assert reference_value(number("bool"), pd.Series([0.0, 1.0, 1.0])) == 1.0
    assert reference_value(number(impute="median"), pd.Series([None, 3.0, 5.0])) == 4.0


def test_prediction_distributions() -> None:
    probabilities = np.column_stack([1 - np.linspace(0, 1, 101), np.linspace(0, 1, 101)])
    binary = prediction_distribution(probabilities, ["no", "yes"], positive=1)
    assert len(binary.edges) == 9 and binary.shares[-1] == 0.0
    multi = prediction_distribution(probabilities, ["no", "yes"], positive=None)
    assert multi.categories == ["no", "yes"]
    assert multi.shares == pytest.approx([51 / 101, 50 / 101, 0.0, 0.0])  # a tie: the first


def test_bin_names_stay_distinct_for_close_edges() -> None:
    names = bin_names([100000.0, 100000.5, 100001.0])
    assert len(set(names)) == 4


def test_an_inconsistent_distribution_is_refused() -> None:
    with pytest.raises(ValidationError, match="sum to 1"):
        Distribution(bins=["<=1", ">1", MISSING_BIN], edges=[1.0], shares=[0.5, 0.4, 0.0])
    with pytest.raises(ValidationError, match="bins, then"):
        Distribution(bins=["<=1", ">1"], edges=[1.0], shares=[0.5, 0.5])
    with pytest.raises(ValidationError, match="increase"):
        Distribution(
            bins=["a", "b", "c", MISSING_BIN], edges=[2.0, 1.0], shares=[0.5, 0.5, 0.0, 0.0]
        )


@pytest.mark.parametrize("task", ["churn", "digits", "draft_pick"])
def test_committed_models_carry_distributions_and_references(task: str) -> None:
    folder = REPO / "models" / task
    manifest = Manifest.load(folder / read_pointer(folder))
    for feature in manifest.features:
        assert feature.distribution is not None and feature.reference is not None
        if feature.type == "category":
            assert feature.reference in (feature.categories or [])
        else:
            assert isinstance(feature.reference, float)
    assert manifest.prediction_distribution is not None
