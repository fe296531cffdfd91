"""The loans data set with blanks, trained end to end by the real training code: the manifest says
what may be missing and what is used instead, and ONNX equals scikit-learn on missing values."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest

from service.manifest import DEFAULT_NA_VALUES, MISSING_CATEGORY, Manifest, read_pointer
from tests.missing_values import (
    NULLABLE,
    REQUIRED,
    TASK,
    load_loans_spec,
    model_frame,
    train_missing_model,
    write_files,
)
from training.baselines import learning_rows
from training.data import Dataset, missing_mask, read_csv, split
from training.export import PARITY_TOLERANCE, onnx_probabilities, open_session
from training.train import TrainResult


@pytest.fixture(scope="module")
def loans(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    return train_missing_model(tmp_path_factory.mktemp("loans") / "models")


@pytest.fixture(scope="module")
def train_rows(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """The rows the run's kept pipeline was fitted on (training and validation split), read
    again from the same file."""
    _, csv_path = write_files(tmp_path_factory.mktemp("loans-files"))
    spec = load_loans_spec()
    return learning_rows(split(read_csv(spec, csv_path), spec.split, 0))


def records(result: TrainResult, count: int, seed: int) -> list[dict[str, object]]:
    """Test-like records with a random pattern of left-out nullable features."""
    rng = np.random.default_rng(seed)
    spec = load_loans_spec()
    first = result.manifest.examples[0].record
    rows = []
    for _ in range(count):
        record: dict[str, object] = dict(first)
        record["age"] = int(rng.integers(18, 80))
        record["income"] = float(rng.uniform(5, 200))
        record["region"] = str(rng.choice(spec.feature("region").categories or ()))
        for name in NULLABLE:
            if rng.uniform() < 0.5:
                record.pop(name, None)
        rows.append(record)
    return rows


def test_the_version_is_published_and_current(loans: TrainResult) -> None:
    task_dir = loans.path.parent
    assert loans.promoted and read_pointer(task_dir) == loans.version
    assert Manifest.load(loans.path) == loans.manifest


def test_the_manifest_says_which_features_may_be_missing_and_how(loans: TrainResult) -> None:
    manifest = loans.manifest
    rules = {f.name: f.impute for f in manifest.features if f.nullable}
    assert rules == dict(NULLABLE)
    assert [f.name for f in manifest.features if not f.nullable] == list(REQUIRED)
    assert {f.name for f in manifest.features if f.missing_indicator} == {
        "debt_to_income",
        "purpose",
    }
    assert manifest.feature("years_employed").impute_value == 0.0
    assert manifest.feature("purpose").impute_value == "other"
    assert manifest.na_values == list(DEFAULT_NA_VALUES)


def test_learned_values_and_missing_rates_come_from_the_training_rows(
    loans: TrainResult, train_rows: Dataset
) -> None:
    manifest, X = loans.manifest, train_rows.X
    assert manifest.feature("income").impute_value == np.nanmedian(X["income"])
    assert manifest.feature("debt_to_income").impute_value == pytest.approx(
        np.nanmean(X["debt_to_income"]), rel=1e-12
    )
    assert manifest.feature("has_guarantor").impute_value == X["has_guarantor"].mode().iloc[0]
    regions = X["region"][X["region"] != MISSING_CATEGORY]
    assert manifest.feature("region").impute_value == regions.mode().iloc[0]
    # ... and they are what the fitted imputers hold.
    pre = loans.pipeline.named_steps["pre"]
    income = pre.named_transformers_["num_median"].named_steps["impute"]
    assert manifest.feature("income").impute_value == float(income.statistics_[0])
    rates = missing_mask(load_loans_spec(), X).mean()
    for feature in manifest.features:
        assert feature.train_missing_rate == pytest.approx(rates[feature.name], abs=1e-12)
        assert (feature.train_missing_rate > 0) == feature.nullable


def test_the_quality_report_counts_the_blanks_of_every_kind(loans: TrainResult) -> None:
    rates = loans.quality.missing_rate
    assert rates["age"] == 0.0
    assert all(rates[name] > 0.03 for name in NULLABLE)  # categories ("") as well as numbers
    assert any(w.startswith("missing values: income ") for w in loans.quality.warnings)


def test_onnx_equals_scikit_learn_whatever_is_missing(loans: TrainResult) -> None:
    manifest = loans.manifest
    assert 0 < manifest.parity_max_abs_diff <= PARITY_TOLERANCE
    session = open_session((loans.path / manifest.onnx.file).read_bytes())
    frame = model_frame(manifest, records(loans, 300, seed=1))
    assert missing_mask(load_loans_spec(), frame).to_numpy().any(axis=1).mean() > 0.9
    expected = loans.pipeline.predict_proba(frame)
    got = onnx_probabilities(session, load_loans_spec(), frame)
    np.testing.assert_allclose(got, expected, atol=PARITY_TOLERANCE)
    everything_missing = model_frame(manifest, [{"age": 40}])
    np.testing.assert_allclose(
        onnx_probabilities(session, load_loans_spec(), everything_missing),
        loans.pipeline.predict_proba(everything_missing),
        atol=PARITY_TOLERANCE,
    )


def test_examples_are_json_records_and_cover_a_missing_value(loans: TrainResult) -> None:
    examples = loans.manifest.examples
    left_out = [set(NULLABLE) - set(example.record) for example in examples]
    assert any(left_out)
    for example in examples:
        assert json.loads(json.dumps(example.record, allow_nan=False)) == example.record
        assert set(REQUIRED) <= set(example.record)
        expected = loans.pipeline.predict_proba(model_frame(loans.manifest, [example.record]))
        np.testing.assert_allclose(example.probabilities, expected[0], atol=PARITY_TOLERANCE)


def test_an_indicator_tells_the_model_that_a_value_was_missing(loans: TrainResult) -> None:
    """Without an indicator, missing equals the imputed value; with one, the model sees more."""
    manifest = loans.manifest
    record = dict(manifest.examples[0].record)

    def probability(**changes: object) -> float:
        row = {key: value for key, value in {**record, **changes}.items() if value is not None}
        frame = model_frame(manifest, [row])
        return float(loans.pipeline.predict_proba(frame)[0, 1])

    for name in ("income", "years_employed", "has_guarantor", "region"):
        learned = manifest.feature(name).impute_value
        assert probability(**{name: None}) == probability(**{name: learned})
    for name in ("debt_to_income", "purpose"):
        learned = manifest.feature(name).impute_value
        assert probability(**{name: None}) != probability(**{name: learned})
    graph = onnx.load(loans.path / manifest.onnx.file).graph
    assert "IsNaN" in {node.op_type for node in graph.node}


def test_the_model_card_lists_what_may_be_missing(loans: TrainResult) -> None:
    card = (loans.path / "report" / "model_card.md").read_text(encoding="utf-8")
    section = card.split("## Missing values", 1)[1].split("\n## ", 1)[0]
    assert "| `purpose` | Purpose | `constant` | `other` | yes |" in section
    assert "| `years_employed` | Years employed | `constant` | `0` | no |" in section
    rate = loans.manifest.feature("income").train_missing_rate
    income = loans.manifest.feature("income").impute_value
    assert f"| `income` | Income | `median` | `{income:.4g}` " in section
    assert f"| {rate:.1%} |" in section
    assert "The other features are required: `age`." in section


def test_a_second_version_is_compared_with_the_first_on_rows_with_blanks(tmp_path: Path) -> None:
    models = tmp_path / "models"
    first = train_missing_model(models, seed=0)
    second = train_missing_model(models, seed=3)
    assert first.version != second.version
    assert "ROC AUC" in second.message and "cannot be evaluated" not in second.message
    assert (models / TASK / second.version / "model.onnx").is_file()


def test_the_pipeline_reads_frames_built_like_the_services_input(loans: TrainResult) -> None:
    frame = model_frame(loans.manifest, [{"age": 30, "region": "east"}, {"age": 50}])
    assert frame["region"].tolist() == ["east", MISSING_CATEGORY]
    assert frame["income"].isna().all() and frame.columns.tolist() == [
        f.name for f in loans.manifest.features
    ]
    assert pd.api.types.is_object_dtype(frame["purpose"])
    assert loans.pipeline.predict_proba(frame).shape == (2, 2)
