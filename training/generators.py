"""Deterministic synthetic data sets for the built-in tasks, with each label's true probability."""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.datasets import load_digits

DEFAULT_ROWS: dict[str, int] = {"draft_pick": 1100, "churn": 10000, "digits": 1797}
SOURCES: tuple[str, ...] = ("draft_pick", "churn", "digits")

DRAFT_PICK_COLUMNS = (
    "height_cm",
    "weight_kg",
    "points_per_game",
    "rebounds_per_game",
    "wins",
    "losses",
    "assists_per_game",
    "free_throws_made_per_game",
    "blocks_per_game",
    "games_played",
    "good_pick",
)
CHURN_COLUMNS = (
    "RowNumber",
    "CustomerId",
    "Surname",
    "CreditScore",
    "Geography",
    "Gender",
    "Age",
    "Tenure",
    "Balance",
    "NumOfProducts",
    "HasCrCard",
    "IsActiveMember",
    "EstimatedSalary",
    "Exited",
)
DIGITS_ROWS = 1797
SURNAMES = (
    "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Robinson",
    "Wright", "Thompson", "Evans", "Walker", "White", "Roberts", "Green", "Hall", "Wood", "Jackson",
    "Clarke", "Martin", "Moreau", "Dubois", "Lefebvre", "Bernard", "Petit", "Durand", "Leroy",
    "Garcia", "Martinez", "Lopez", "Sanchez", "Perez", "Gomez", "Fernandez", "Romero", "Navarro",
    "Muller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Hoffmann",
    "Koch", "Richter", "Klein", "Wolf",
)  # fmt: skip
GEOGRAPHIES = ("France", "Germany", "Spain")
GEOGRAPHY_SHARES = (0.50, 0.25, 0.25)
# Germany's customers almost all hold a balance, as in the public bank churn data.
ZERO_BALANCE_SHARE = {"France": 0.47, "Germany": 0.02, "Spain": 0.47}
# Customers without a balance more often hold two products (a card and a savings plan).
PRODUCT_SHARES_ZERO_BALANCE = (0.30, 0.66, 0.03, 0.01)
PRODUCT_SHARES_WITH_BALANCE = (0.62, 0.345, 0.03, 0.005)
TENURE_WEIGHTS = (0.5, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0.5)

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Sample:
    """A data set as it would arrive in a CSV, plus the true P(positive) where it is known."""

    frame: pd.DataFrame
    probability: FloatArray | None


class UnknownSource(ValueError):
    """Raised for a source name that has no generator."""

    def __init__(self, source: str) -> None:
        super().__init__(f"unknown data source {source!r}; expected one of {', '.join(SOURCES)}")
        self.source = source


def generate(source: str, rows: int | None = None, seed: int = 42) -> Sample:
    """Build `rows` rows of `source`; the same arguments always give the same sample."""
    if source not in SOURCES:
        raise UnknownSource(source)
    n = DEFAULT_ROWS[source] if rows is None else rows
    if n < 1:
        raise ValueError(f"{source}: rows must be at least 1, got {n}")
    return _GENERATORS[source](n, np.random.default_rng(seed))


def draft_pick_probability(frame: pd.DataFrame) -> FloatArray:
    """The true P(good_pick == 1) of each player, from the columns as written to the CSV."""
    height_z = (frame["height_cm"].to_numpy(float) - 198.0) / 9.0
    points = frame["points_per_game"].to_numpy(float)
    blocks = frame["blocks_per_game"].to_numpy(float)
    assists = frame["assists_per_game"].to_numpy(float)
    free_throws = frame["free_throws_made_per_game"].to_numpy(float)
    wins = frame["wins"].to_numpy(float)
    team_games = wins + frame["losses"].to_numpy(float)
    availability = frame["games_played"].to_numpy(float) / team_games
    score = (
        -3.0
        + 8.0 * np.tanh((points - 14.0) / 6.0)  # scoring matters, with diminishing returns
        + 8.0 * (wins / team_games - 0.5)  # winning programmes produce pros
        + 1.4 * height_z * (blocks - 0.8)  # size pays off only with rim protection
        + 0.7 * (assists - 2.5) * np.logaddexp(0.0, -height_z)  # short players must create
        + 0.5 * (free_throws - 3.0)
        + 5.0 * np.log(availability)  # missed games hint at injuries
    )
    return _sigmoid(score)


def churn_probability(frame: pd.DataFrame) -> FloatArray:
    """The true P(Exited == 1) of each customer, from the columns as written to the CSV."""
    age = frame["Age"].to_numpy(float)
    inactive = 1.0 - frame["IsActiveMember"].to_numpy(float)
    germany = (frame["Geography"] == "Germany").to_numpy(float)
    female = (frame["Gender"] == "Female").to_numpy(float)
    products = frame["NumOfProducts"].to_numpy(int)
    balance = frame["Balance"].to_numpy(float)
    credit = frame["CreditScore"].to_numpy(float)
    age_bump = np.exp(-(((age - 54.0) / 13.0) ** 2))  # churn peaks before retirement, then falls
    score = (
        -3.15
        + (3.2 + 1.0 * inactive) * age_bump
        + 0.9 * inactive
        + 0.8 * germany
        + 0.45 * female
        + np.array([0.0, 0.0, -1.4, 2.6, 4.5])[products]
        + 0.5 * np.exp(-(((balance - 120_000.0) / 45_000.0) ** 2))
        - 0.6 * np.tanh((credit - 500.0) / 80.0)
    )
    return _sigmoid(score)


def _generate_draft_pick(rows: int, rng: np.random.Generator) -> Sample:
    """Players whose stats follow their height and a hidden talent, so the features correlate."""
    height = np.clip(rng.normal(198.0, 9.0, rows), 150.0, 240.0)
    height_z = (height - 198.0) / 9.0
    talent = rng.normal(0.0, 1.0, rows)
    weight = np.clip(95.0 + 1.1 * (height - 198.0) + rng.normal(0.0, 8.0, rows), 50.0, 180.0)
    points = np.clip(13.0 + 5.0 * talent + rng.normal(0.0, 3.0, rows), 0.0, 50.0)
    rebounds = np.clip(5.5 + 2.0 * height_z + 0.8 * talent + rng.normal(0, 1.2, rows), 0.0, 25.0)
    assists = np.clip(
        np.exp(0.9 - 0.45 * height_z + 0.15 * talent + rng.normal(0, 0.3, rows)), 0, 15
    )
    blocks = np.clip(
        np.exp(-0.45 + 0.5 * height_z + 0.15 * talent + rng.normal(0, 0.3, rows)), 0, 8
    )
    free_throws = np.clip(0.22 * points + rng.normal(0.0, 0.8, rows), 0.0, 15.0)
    team_games = rng.integers(28, 39, rows)
    wins = rng.binomial(team_games, _sigmoid(0.3 * talent + rng.normal(0.0, 0.7, rows)))
    games_played = team_games - np.minimum(rng.geometric(0.4, rows) - 1, team_games - 1)
    frame = pd.DataFrame(
        {
            "height_cm": height.round(1),
            "weight_kg": weight.round(1),
            "points_per_game": points.round(1),
            "rebounds_per_game": rebounds.round(1),
            "wins": wins.astype(np.int64),
            "losses": (team_games - wins).astype(np.int64),
            "assists_per_game": assists.round(1),
            "free_throws_made_per_game": free_throws.round(1),
            "blocks_per_game": blocks.round(1),
            "games_played": games_played.astype(np.int64),
        }
    )
    return _with_label(frame, "good_pick", draft_pick_probability(frame), rng)


def _generate_churn(rows: int, rng: np.random.Generator) -> Sample:
    """Bank customers laid out like the public churn CSV, with its marginal distributions."""
    geography = rng.choice(np.array(GEOGRAPHIES), rows, p=GEOGRAPHY_SHARES)
    zero_share = np.vectorize(ZERO_BALANCE_SHARE.__getitem__)(geography)
    has_balance = rng.random(rows) >= zero_share
    balance = np.where(has_balance, np.clip(rng.normal(120_000, 30_000, rows), 0, 260_000), 0.0)
    products = np.where(
        has_balance,
        rng.choice(4, rows, p=PRODUCT_SHARES_WITH_BALANCE),
        rng.choice(4, rows, p=PRODUCT_SHARES_ZERO_BALANCE),
    )
    tenure_p = np.array(TENURE_WEIGHTS) / sum(TENURE_WEIGHTS)
    frame = pd.DataFrame(
        {
            "RowNumber": np.arange(1, rows + 1, dtype=np.int64),
            "CustomerId": 15_600_000 + rng.choice(max(rows, 100_000), rows, replace=False),
            "Surname": rng.choice(np.array(SURNAMES), rows).tolist(),
            "CreditScore": np.clip(rng.normal(650, 97, rows), 350, 850).round().astype(np.int64),
            "Geography": geography.tolist(),
            "Gender": np.where(rng.random(rows) < 0.55, "Male", "Female").tolist(),
            "Age": np.clip(14 + rng.lognormal(np.log(23), 0.38, rows), 18, 92).round(),
            "Tenure": rng.choice(11, rows, p=tenure_p).astype(np.int64),
            "Balance": balance.round(2),
            "NumOfProducts": (products + 1).astype(np.int64),
            "HasCrCard": (rng.random(rows) < 0.70).astype(np.int64),
            "IsActiveMember": (rng.random(rows) < 0.515).astype(np.int64),
            "EstimatedSalary": rng.uniform(11.0, 200_000.0, rows).round(2),
        }
    )
    frame["Age"] = frame["Age"].astype(np.int64)
    frame["CustomerId"] = frame["CustomerId"].astype(np.int64)
    return _with_label(frame, "Exited", churn_probability(frame), rng)


def _generate_digits(rows: int, rng: np.random.Generator) -> Sample:
    """scikit-learn's bundled digits; a smaller request takes a class-balanced seeded subset."""
    if rows > DIGITS_ROWS:
        raise ValueError(f"digits: only {DIGITS_ROWS} rows exist, {rows} were requested")
    digits = load_digits()
    pixels = digits.data.astype(np.int64)
    columns = [f"pixel_{r}_{c}" for r in range(8) for c in range(8)]
    frame = pd.DataFrame(pixels, columns=columns)
    frame["digit"] = digits.target.astype(np.int64)
    if rows < DIGITS_ROWS:
        frame = frame.iloc[_balanced_subset(frame["digit"].to_numpy(), rows, rng)]
        frame = frame.reset_index(drop=True)
    return Sample(frame=frame, probability=None)


def _balanced_subset(
    labels: npt.NDArray[np.int64], rows: int, rng: np.random.Generator
) -> npt.NDArray[np.int64]:
    """Shuffle, then take each class's k-th member before any class's (k+1)-th, in file order."""
    order = rng.permutation(len(labels))
    rank = pd.Series(labels[order]).groupby(labels[order]).cumcount().to_numpy()
    picked = order[np.argsort(rank, kind="stable")[:rows]]
    return np.sort(picked)


def _with_label(
    frame: pd.DataFrame, target: str, probability: FloatArray, rng: np.random.Generator
) -> Sample:
    """Draw each label from its true probability and append it as the last column."""
    labelled = frame.assign(**{target: (rng.random(len(frame)) < probability).astype(np.int64)})
    return Sample(frame=labelled, probability=probability)


def _sigmoid(x: FloatArray) -> FloatArray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)), dtype=np.float64)


_GENERATORS: dict[str, Callable[[int, np.random.Generator], Sample]] = {
    "draft_pick": _generate_draft_pick,
    "churn": _generate_churn,
    "digits": _generate_digits,
}
