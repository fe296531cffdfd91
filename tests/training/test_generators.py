"""Tests for the synthetic data generators: schema, domains, realism and the known truth."""

import numpy as np
import pandas as pd
import pytest

from training.generators import (
    DEFAULT_ROWS,
    SOURCES,
    Sample,
    UnknownSource,
    churn_probability,
    draft_pick_probability,
    generate,
)

DRAFT_PICK_HEADER = (
    "height_cm,weight_kg,points_per_game,rebounds_per_game,wins,losses,assists_per_game,"
    "free_throws_made_per_game,blocks_per_game,games_played,good_pick"
)
CHURN_HEADER = (
    "RowNumber,CustomerId,Surname,CreditScore,Geography,Gender,Age,Tenure,Balance,"
    "NumOfProducts,HasCrCard,IsActiveMember,EstimatedSalary,Exited"
)
DRAFT_PICK_DOMAINS = {
    "height_cm": (150, 240),
    "weight_kg": (50, 180),
    "points_per_game": (0, 50),
    "rebounds_per_game": (0, 25),
    "wins": (0, 50),
    "losses": (0, 50),
    "assists_per_game": (0, 15),
    "free_throws_made_per_game": (0, 15),
    "blocks_per_game": (0, 8),
    "games_played": (1, 50),
    "good_pick": (0, 1),
}
CHURN_DOMAINS = {
    "CreditScore": (350, 850),
    "Age": (18, 92),
    "Tenure": (0, 10),
    "Balance": (0, 260_000),
    "NumOfProducts": (1, 4),
    "HasCrCard": (0, 1),
    "IsActiveMember": (0, 1),
    "EstimatedSalary": (11, 200_000),
    "Exited": (0, 1),
}
DRAFT_PICK_INTS = {"wins", "losses", "games_played", "good_pick"}
CHURN_STRINGS = {"Surname", "Geography", "Gender"}
CHURN_FLOATS = {"Balance", "EstimatedSalary"}
LARGE = 20_000


@pytest.fixture(scope="module")
def draft_pick() -> Sample:
    return generate("draft_pick", LARGE, seed=3)


@pytest.fixture(scope="module")
def churn() -> Sample:
    return generate("churn", LARGE, seed=3)


@pytest.mark.parametrize("source", ["draft_pick", "churn"])
def test_same_seed_gives_identical_sample(source: str) -> None:
    first, second = generate(source, 500, seed=11), generate(source, 500, seed=11)
    pd.testing.assert_frame_equal(first.frame, second.frame)
    assert first.probability is not None and second.probability is not None
    np.testing.assert_array_equal(first.probability, second.probability)


@pytest.mark.parametrize("source", ["draft_pick", "churn"])
def test_different_seeds_give_different_samples(source: str) -> None:
    first, second = generate(source, 500, seed=11), generate(source, 500, seed=12)
    assert not first.frame.equals(second.frame)


def test_default_rows_apply_when_rows_is_none() -> None:
    assert tuple(DEFAULT_ROWS) == SOURCES
    assert len(generate("draft_pick").frame) == DEFAULT_ROWS["draft_pick"] == 1100


def test_unknown_source_raises_unknown_source() -> None:
    with pytest.raises(UnknownSource, match="no_such_task"):
        generate("no_such_task")


def test_non_positive_rows_are_rejected() -> None:
    with pytest.raises(ValueError, match="rows"):
        generate("churn", 0)


def test_draft_pick_schema(draft_pick: Sample) -> None:
    frame = draft_pick.frame
    assert ",".join(frame.columns) == DRAFT_PICK_HEADER
    for column in frame.columns:
        expected = np.int64 if column in DRAFT_PICK_INTS else np.float64
        assert frame[column].dtype == expected, column


def test_draft_pick_stays_inside_domains(draft_pick: Sample) -> None:
    frame = draft_pick.frame
    for column, (low, high) in DRAFT_PICK_DOMAINS.items():
        assert frame[column].between(low, high).all(), column
    assert (frame["games_played"] <= frame["wins"] + frame["losses"]).all()
    assert (frame["wins"] + frame["losses"]).between(28, 38).all()
    floats = frame.select_dtypes("float")
    np.testing.assert_array_equal(floats.to_numpy(), floats.round(1).to_numpy())


def test_draft_pick_has_realistic_correlations(draft_pick: Sample) -> None:
    frame = draft_pick.frame
    assert 194 < frame["height_cm"].mean() < 202
    assert frame["height_cm"].corr(frame["weight_kg"]) > 0.5
    assert frame["height_cm"].corr(frame["rebounds_per_game"]) > 0.3
    assert frame["height_cm"].corr(frame["blocks_per_game"]) > 0.3
    assert frame["height_cm"].corr(frame["assists_per_game"]) < -0.3
    assert frame["points_per_game"].corr(frame["free_throws_made_per_game"]) > 0.5


def test_draft_pick_positive_rate() -> None:
    assert 0.2 <= generate("draft_pick", 5_000, seed=5).frame["good_pick"].mean() <= 0.45


def test_churn_schema(churn: Sample) -> None:
    frame = churn.frame
    assert frame.head(0).to_csv(index=False).strip() == CHURN_HEADER
    for column in frame.columns:
        if column in CHURN_STRINGS:
            assert pd.api.types.is_string_dtype(frame[column]), column
        else:
            expected = np.float64 if column in CHURN_FLOATS else np.int64
            assert frame[column].dtype == expected, column


def test_churn_stays_inside_domains(churn: Sample) -> None:
    frame = churn.frame
    for column, (low, high) in CHURN_DOMAINS.items():
        assert frame[column].between(low, high).all(), column
    assert frame["RowNumber"].tolist() == list(range(1, LARGE + 1))
    assert frame["CustomerId"].is_unique
    assert frame["CustomerId"].between(15_600_000, 15_699_999).all()
    assert set(frame["Geography"]) == {"France", "Germany", "Spain"}
    assert set(frame["Gender"]) == {"Female", "Male"}
    assert 30 <= frame["Surname"].nunique() <= 60
    np.testing.assert_array_equal(frame["Balance"], frame["Balance"].round(2))


def test_churn_marginals_follow_the_bank_data(churn: Sample) -> None:
    frame = churn.frame
    zero_balance = frame["Balance"] == 0.0
    assert frame["Geography"].value_counts(normalize=True)["France"] == pytest.approx(0.5, abs=0.03)
    assert (frame["Gender"] == "Male").mean() == pytest.approx(0.55, abs=0.03)
    assert zero_balance.mean() == pytest.approx(0.36, abs=0.03)
    assert zero_balance[frame["Geography"] == "Germany"].mean() < 0.05
    assert 35 <= frame["Age"].median() <= 39
    shares = frame["NumOfProducts"].value_counts(normalize=True)
    assert shares[1] == pytest.approx(0.50, abs=0.03)
    assert shares[2] == pytest.approx(0.46, abs=0.03)
    assert shares[4] < shares[3] < 0.05


def test_churn_positive_rate() -> None:
    assert 0.17 <= generate("churn", 10_000, seed=5).frame["Exited"].mean() <= 0.23


@pytest.mark.parametrize("fixture", ["draft_pick", "churn"])
def test_labels_follow_the_true_probability(fixture: str, request: pytest.FixtureRequest) -> None:
    sample: Sample = request.getfixturevalue(fixture)
    assert sample.probability is not None
    assert ((sample.probability >= 0) & (sample.probability <= 1)).all()
    labels = sample.frame.iloc[:, -1]
    assert labels.mean() == pytest.approx(sample.probability.mean(), abs=0.02)
    # A decisive truth: labels where p is high are mostly positive, and vice versa.
    assert labels[sample.probability > 0.8].mean() > 0.8
    assert labels[sample.probability < 0.2].mean() < 0.2


def test_probability_is_a_function_of_the_csv_columns(draft_pick: Sample, churn: Sample) -> None:
    """Training recomputes the Bayes-optimal metrics from a frame, so the truth must match."""
    assert draft_pick.probability is not None and churn.probability is not None
    np.testing.assert_array_equal(draft_pick_probability(draft_pick.frame), draft_pick.probability)
    np.testing.assert_array_equal(churn_probability(churn.frame), churn.probability)


def test_digits_are_the_bundled_data_set() -> None:
    sample = generate("digits")
    frame = sample.frame
    assert sample.probability is None
    assert frame.shape == (1797, 65)
    assert frame.columns[0] == "pixel_0_0" and frame.columns[-2] == "pixel_7_7"
    assert frame.columns[-1] == "digit"
    assert (frame.dtypes == np.int64).all()
    assert frame.drop(columns="digit").to_numpy().min() == 0
    assert frame.drop(columns="digit").to_numpy().max() == 16
    assert sorted(frame["digit"].unique()) == list(range(10))


def test_digits_subset_is_seeded_and_balanced() -> None:
    first, second = generate("digits", 500, seed=1), generate("digits", 500, seed=1)
    pd.testing.assert_frame_equal(first.frame, second.frame)
    assert not first.frame.equals(generate("digits", 500, seed=2).frame)
    assert first.frame["digit"].value_counts().between(49, 51).all()


def test_digits_larger_than_bundled_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="1797") as raised:
        generate("digits", 1798)
    assert not isinstance(raised.value, UnknownSource)
