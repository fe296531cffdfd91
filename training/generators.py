"""Deterministic synthetic data sets for the built-in tasks, with each label's true probability."""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.datasets import load_digits

DEFAULT_ROWS: dict[str, int] = {"draft_pick": 1100, "churn": 10000, "digits": 1797}
SOURCES: tuple[str, ...] = ("draft_pick", "churn", "digits")

HEIGHT_MEAN_CM = 198.0
HEIGHT_SD_CM = 9.0
TEAM_GAMES = (28, 38)  # a college season, conference and post-season games included
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
ZERO_BALANCE_SHARES = (0.47, 0.02, 0.47)  # in GEOGRAPHIES order
# Customers without a balance more often hold two products (a card and a savings plan).
PRODUCT_SHARES_ZERO_BALANCE = (0.30, 0.66, 0.03, 0.01)
PRODUCT_SHARES_WITH_BALANCE = (0.62, 0.345, 0.03, 0.005)
# Two products is the stickiest bundle; three or four usually mean a mis-sold package.
PRODUCT_EFFECT = np.array([np.nan, 0.0, -1.4, 2.6, 4.5])  # indexed by NumOfProducts
TENURE_WEIGHTS = (0.5, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0.5)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


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
    height_z = (frame["height_cm"].to_numpy(float) - HEIGHT_MEAN_CM) / HEIGHT_SD_CM
    points = frame["points_per_game"].to_numpy(float)
    blocks = frame["blocks_per_game"].to_numpy(float)
    assists = frame["assists_per_game"].to_numpy(float)
    free_throws = frame["free_throws_made_per_game"].to_numpy(float)
    wins = frame["wins"].to_numpy(float)
    team_games = wins + frame["losses"].to_numpy(float)
    availability = frame["games_played"].to_numpy(float) / team_games
    # Scaled so the Bayes-optimal accuracy is ~0.94 with ~35% positives, yet smooth enough
    # that an MLP fitted on 1,000 players lands within ~0.01 ROC AUC of the truth.
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
    # ~20% churners and a Bayes-optimal ROC AUC of ~0.875; small effects are kept simple
    # (a step for holding a balance, a line for credit) so 8,000 rows are enough to learn them.
    score = (
        -4.0
        + (3.6 + 1.0 * inactive) * age_bump  # older inactive customers leave most
        + 1.1 * inactive
        + 0.8 * germany
        + 0.45 * female
        + PRODUCT_EFFECT[products]
        + 0.5 * np.tanh(balance / 50_000.0)  # money parked here is money that can move
        - 0.2 * (credit - 650.0) / 100.0
    )
    return _sigmoid(score)


def _generate_draft_pick(rows: int, rng: np.random.Generator) -> Sample:
    """Players whose stats follow their height and a hidden talent, so the features correlate."""
    height = np.clip(rng.normal(HEIGHT_MEAN_CM, HEIGHT_SD_CM, rows), 150.0, 240.0)
    talent = rng.normal(0.0, 1.0, rows)
    weight = np.clip(95.0 + 1.1 * (height - HEIGHT_MEAN_CM) + rng.normal(0, 8, rows), 50, 180)
    frame = pd.DataFrame({"height_cm": height.round(1), "weight_kg": weight.round(1)})
    stats = _box_scores((height - HEIGHT_MEAN_CM) / HEIGHT_SD_CM, talent, rng)
    wins, losses, games_played = _season_record(talent, rng)
    frame = frame.assign(
        points_per_game=stats["points"],
        rebounds_per_game=stats["rebounds"],
        wins=wins,
        losses=losses,
        assists_per_game=stats["assists"],
        free_throws_made_per_game=stats["free_throws"],
        blocks_per_game=stats["blocks"],
        games_played=games_played,
    )
    return _with_label(frame, "good_pick", draft_pick_probability(frame), rng)


def _box_scores(
    height_z: FloatArray, talent: FloatArray, rng: np.random.Generator
) -> dict[str, FloatArray]:
    """Per-game averages: big men rebound and block, guards assist, scorers get to the line."""
    n = len(talent)
    points = np.clip(13.0 + 5.0 * talent + rng.normal(0.0, 3.0, n), 0.0, 50.0)
    rebounds = 5.5 + 2.0 * height_z + 0.8 * talent + rng.normal(0.0, 1.2, n)
    assists = np.exp(0.9 - 0.45 * height_z + 0.15 * talent + rng.normal(0.0, 0.3, n))
    blocks = np.exp(-0.45 + 0.5 * height_z + 0.15 * talent + rng.normal(0.0, 0.3, n))
    free_throws = 0.22 * points + rng.normal(0.0, 0.8, n)
    stats = {
        "points": points,
        "rebounds": np.clip(rebounds, 0.0, 25.0),
        "assists": np.clip(assists, 0.0, 15.0),
        "blocks": np.clip(blocks, 0.0, 8.0),
        "free_throws": np.clip(free_throws, 0.0, 15.0),
    }
    return {name: values.round(1) for name, values in stats.items()}


def _season_record(
    talent: FloatArray, rng: np.random.Generator
) -> tuple[IntArray, IntArray, IntArray]:
    """Wins, losses and games played; better players tend to be on better teams."""
    team_games = rng.integers(TEAM_GAMES[0], TEAM_GAMES[1] + 1, len(talent))
    wins = rng.binomial(team_games, _sigmoid(0.3 * talent + rng.normal(0.0, 0.7, len(talent))))
    missed = np.minimum(rng.geometric(0.4, len(talent)) - 1, team_games - 1)
    return wins.astype(np.int64), (team_games - wins).astype(np.int64), team_games - missed


def _generate_churn(rows: int, rng: np.random.Generator) -> Sample:
    """Bank customers laid out like the public churn CSV, with its marginal distributions."""
    country = rng.choice(len(GEOGRAPHIES), rows, p=GEOGRAPHY_SHARES)
    has_balance = rng.random(rows) >= np.array(ZERO_BALANCE_SHARES)[country]
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
            "CustomerId": _customer_ids(rows, rng),
            "Surname": rng.choice(np.array(SURNAMES), rows).tolist(),
            "CreditScore": np.clip(rng.normal(650, 97, rows), 350, 850).round().astype(np.int64),
            "Geography": np.array(GEOGRAPHIES)[country].tolist(),
            "Gender": np.where(rng.random(rows) < 0.55, "Male", "Female").tolist(),
            "Age": _ages(rows, rng),
            "Tenure": rng.choice(11, rows, p=tenure_p).astype(np.int64),
            "Balance": balance.round(2),
            "NumOfProducts": (products + 1).astype(np.int64),
            "HasCrCard": (rng.random(rows) < 0.70).astype(np.int64),
            "IsActiveMember": (rng.random(rows) < 0.515).astype(np.int64),
            "EstimatedSalary": rng.uniform(11.0, 200_000.0, rows).round(2),
        }
    )
    return _with_label(frame, "Exited", churn_probability(frame), rng)


def _customer_ids(rows: int, rng: np.random.Generator) -> IntArray:
    """Unique 8-digit ids in the public file's 156xxxxx block (spilling over only past 100,000)."""
    return 15_600_000 + rng.choice(max(rows, 100_000), rows, replace=False).astype(np.int64)


def _ages(rows: int, rng: np.random.Generator) -> IntArray:
    """Right-skewed adult ages with a median near 37, like the public churn file."""
    return np.clip(14.0 + rng.lognormal(np.log(23.0), 0.38, rows), 18, 92).round().astype(np.int64)


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


def _balanced_subset(labels: IntArray, rows: int, rng: np.random.Generator) -> IntArray:
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
