"""A generated loans data set with blanks, shared by the training and the service tests.

Seven features: numbers (float, int, bool) and categories, five of them nullable with each
imputation rule (median, mean, most_frequent, constant for a number and for a category), two
with a missing-value indicator (one number, one category), and one required feature. The CSV
writes a missing cell in several ways (`""`, `"NA"`, `"?"`, `"  "`, `"N/A"`, `"null"`), as real
exports do. `train_missing_model` trains it with the real training code, quickly, and returns
the TrainResult, whose `pipeline` is the fitted scikit-learn reference for its probabilities.

Stable API: TASK, SPEC_TEXT, ROWS, NULLABLE, REQUIRED, MISSING_TOKENS, loans_frame,
write_files, load_loans_spec, train_missing_model, model_frame.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from service.manifest import MISSING_CATEGORY, Manifest
from training.spec import TaskSpec, load_spec
from training.train import TrainOptions, TrainResult, train

TASK = "loans"
ROWS = 600
SPEC_TEXT = """
name = "loans"
title = "Loan default"
description = "Predicts whether a personal loan will default; several inputs may be missing."
threshold_criterion = "max_f1"

[target]
name = "defaulted"
aliases = ["Defaulted"]
labels = ["repaid", "defaulted"]
values = [0, 1]
positive = "defaulted"

[mlp]
hidden_layer_sizes = [16]
learning_rate_init = 0.01
max_iter = 40
n_iter_no_change = 5

[[features]]
name = "income"
type = "float"
unit = "k$/year"
description = "Yearly income, if the applicant gave it."
min = 0
max = 500
aliases = ["Annual Income (k$)"]
impute = "median"

[[features]]
name = "debt_to_income"
type = "float"
description = "Monthly debt payments over monthly income."
min = 0
max = 3
impute = "mean"
missing_indicator = true

[[features]]
name = "age"
type = "int"
unit = "years"
description = "Age of the applicant (required)."
min = 18
max = 100

[[features]]
name = "years_employed"
type = "int"
unit = "years"
description = "Years with the current employer; blank means none."
min = 0
max = 60
impute = "constant"
fill_value = 0

[[features]]
name = "has_guarantor"
type = "bool"
description = "Whether someone guarantees the loan."
impute = "most_frequent"

[[features]]
name = "region"
type = "category"
description = "Region of the branch."
categories = ["north", "south", "east", "west"]
impute = "most_frequent"

[[features]]
name = "purpose"
type = "category"
description = "What the loan is for."
categories = ["car", "home", "study", "other"]
impute = "constant"
fill_value = "other"
missing_indicator = true
"""
# Feature name -> the spec's imputation rule; REQUIRED features have none.
NULLABLE: Mapping[str, str] = {
    "income": "median",
    "debt_to_income": "mean",
    "years_employed": "constant",
    "has_guarantor": "most_frequent",
    "region": "most_frequent",
    "purpose": "constant",
}
REQUIRED: tuple[str, ...] = ("age",)
# How the CSV writes a missing cell (all in the default na_values once stripped).
MISSING_TOKENS: tuple[str, ...] = ("", "NA", "?", "  ", "N/A", "null")
# Share of rows left blank per feature (debt_to_income is missing more often for defaulters).
_MISSING_RATES = {
    "income": 0.15,
    "debt_to_income": 0.10,
    "years_employed": 0.12,
    "has_guarantor": 0.08,
    "region": 0.10,
    "purpose": 0.12,
}
_HEADERS = {  # feature name -> the CSV header it is written under (matched by the spec)
    "income": "Annual Income (k$)",
    "debt_to_income": "DebtToIncome",
    "age": "Age",
    "years_employed": "Years Employed",
    "has_guarantor": "has_guarantor",
    "region": "Region",
    "purpose": "Purpose",
}
_REGIONS = ("north", "south", "east", "west")
_PURPOSES = ("car", "home", "study", "other")
_FAST_MLP = {"max_iter": 40, "n_iter_no_change": 5}


def loans_frame(rows: int = ROWS, seed: int = 0) -> pd.DataFrame:
    """The loans CSV as a frame of text cells under its CSV headers, deterministic per seed."""
    rng = np.random.default_rng(seed)
    income = np.clip(rng.lognormal(3.8, 0.5, rows), 5, 500).round(1)
    debt = np.clip(rng.gamma(2.0, 0.2, rows), 0, 3).round(3)
    age = rng.integers(18, 80, rows)
    employed = np.minimum(rng.poisson(4, rows), age - 18)
    guarantor = rng.uniform(size=rows) < 0.3
    region = rng.choice(_REGIONS, rows)
    purpose = rng.choice(_PURPOSES, rows, p=[0.35, 0.3, 0.2, 0.15])
    logit = (
        -0.4
        + 2.5 * (debt - 0.4)
        - 0.02 * (income - 45)
        - 0.03 * (age - 45)
        - 0.15 * employed
        - 0.8 * guarantor
        + 0.6 * (region == "east")
        + 0.5 * (purpose == "study")
    )
    defaulted = rng.uniform(size=rows) < 1 / (1 + np.exp(-logit))
    cells = {
        "income": [f"{v:g}" for v in income],
        "debt_to_income": [f"{v:g}" for v in debt],
        "age": [str(v) for v in age],
        "years_employed": [str(v) for v in employed],
        "has_guarantor": ["yes" if v else "no" for v in guarantor],
        "region": list(region),
        "purpose": list(purpose),
    }
    for name, rate in _MISSING_RATES.items():
        chance = np.full(rows, rate)
        if name == "debt_to_income":  # informative: the indicator has something to learn
            chance = np.where(defaulted, 2 * rate, rate / 2)
        blank = rng.uniform(size=rows) < chance
        tokens = rng.choice(len(MISSING_TOKENS), rows)
        cells[name] = [
            MISSING_TOKENS[t] if b else v
            for v, b, t in zip(cells[name], blank, tokens, strict=True)
        ]
    frame = pd.DataFrame({_HEADERS[name]: values for name, values in cells.items()})
    frame["Defaulted"] = [str(int(v)) for v in defaulted]
    return frame


def write_files(folder: Path, rows: int = ROWS, seed: int = 0) -> tuple[Path, Path]:
    """Write the spec (`loans.toml`) and the CSV (`loans.csv`) into `folder`; returns both."""
    folder.mkdir(parents=True, exist_ok=True)
    spec_path, csv_path = folder / f"{TASK}.toml", folder / f"{TASK}.csv"
    spec_path.write_text(SPEC_TEXT, encoding="utf-8")
    loans_frame(rows, seed).to_csv(csv_path, index=False)
    return spec_path, csv_path


def load_loans_spec() -> TaskSpec:
    """The loans spec, parsed by the real spec loader."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{TASK}.toml"
        path.write_text(SPEC_TEXT, encoding="utf-8")
        return load_spec(path)


def train_missing_model(models_dir: Path, seed: int = 0, rows: int = ROWS) -> TrainResult:
    """Train, export and promote the loans model into `models_dir` (a few seconds).

    The result's `manifest` describes the version now current in `models_dir/loans`, and its
    `pipeline` is the fitted scikit-learn pipeline that model.onnx was converted from.
    """
    with tempfile.TemporaryDirectory() as folder:
        spec_path, csv_path = write_files(Path(folder), rows, seed)
        options = TrainOptions(out=models_dir, seed=seed, data=csv_path, mlp_overrides=_FAST_MLP)
        return train(load_spec(spec_path), options)


def model_frame(manifest: Manifest, records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """JSON-like records as the fitted pipeline takes them (feature order of the manifest): a
    missing value (absent key or None) becomes NaN for a number and MISSING_CATEGORY for a
    category, which is what the service feeds the ONNX graph."""
    columns: dict[str, list[Any]] = {}
    for feature in manifest.features:
        values = [record.get(feature.name) for record in records]
        if feature.type == "category":
            columns[feature.name] = [MISSING_CATEGORY if v is None else str(v) for v in values]
        else:
            columns[feature.name] = [np.nan if v is None else float(v) for v in values]
    frame = pd.DataFrame(columns)
    for feature in manifest.features:
        if feature.type == "category":
            frame[feature.name] = frame[feature.name].astype(object)
    return frame
