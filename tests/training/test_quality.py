"""The data-quality report: what it finds on a file with known flaws, that it only reads, that it
is deterministic, and that it reaches metrics.json and the model card."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from tests.training.conftest import TrainFn
from tests.training.sports import SPORTS_CONFLICTS, SPORTS_DUPLICATES, SPORTS_ROWS
from training.data import Dataset, from_frame, read_csv
from training.generators import generate
from training.model_card import render_model_card
from training.quality import DataQuality, assess
from training.report import METRICS_FILE, read_quality, write_model_card
from training.spec import load_spec, load_task


def _sports(sports: tuple[Path, Path]) -> tuple[DataQuality, Dataset]:
    spec_path, csv_path = sports
    spec = load_spec(spec_path)
    data = read_csv(spec, csv_path)
    return assess(spec, data), data


def test_the_flaws_of_a_real_looking_file_are_found(sports: tuple[Path, Path]) -> None:
    quality, _ = _sports(sports)
    assert quality.rows == SPORTS_ROWS
    assert quality.duplicate_rows == SPORTS_DUPLICATES
    # The flipped copies and the rows they copy: each has a twin with the other label.
    assert quality.conflicting_rows == 2 * SPORTS_CONFLICTS
    assert quality.constant_columns == ["season"]
    assert quality.whole_number_columns == ["height_cm"]  # games_played is declared int
    assert quality.fraction_columns == ["ft_rate"]
    assert quality.percent_columns == ["three_point"]  # its header is "3P%"
    assert set(quality.missing_rate.values()) == {0.0}
    assert sum(quality.class_counts.values()) == SPORTS_ROWS
    assert len(quality.warnings) == 6
    assert quality.warnings[0].startswith(f"{SPORTS_DUPLICATES} duplicate rows (2.5%)")


def test_a_clean_file_has_no_warnings() -> None:
    spec = load_task("churn")
    sample = generate("churn", 2000, 3)
    quality = assess(spec, from_frame(spec, sample.frame, source="t", where="t"))
    assert quality.warnings == []
    assert quality.duplicate_rows == 0 and quality.constant_columns == []
    assert quality.class_counts["stayed"] > quality.class_counts["churned"] > 0


def test_imbalance_missing_values_and_an_absent_class_are_warned() -> None:
    spec = load_task("digits")
    sample = generate("digits", None, 0)
    data = from_frame(spec, sample.frame, source="t", where="t")
    keep = np.flatnonzero(data.y != 9)
    data = data.take(keep)
    X = data.X.copy()
    X.loc[:99, "pixel_3_3"] = np.nan  # what imputation will allow; training refuses it today
    quality = assess(spec, Dataset(X, data.y, None, "t", "t"))
    assert quality.class_counts["9"] == 0
    assert quality.missing_rate["pixel_3_3"] == 100 / len(X)
    assert "no rows of class 9" in " ".join(quality.warnings)
    assert f"missing values: pixel_3_3 {100 / len(X):.1%}" in quality.warnings


def test_a_rare_class_is_called_imbalanced() -> None:
    spec = load_task("churn")
    sample = generate("churn", 3000, 1)
    data = from_frame(spec, sample.frame, source="t", where="t")
    positives = np.flatnonzero(data.y == 1)[:100]
    data = data.take(np.sort(np.concatenate([np.flatnonzero(data.y == 0), positives])))
    [warning] = assess(spec, data).warnings
    assert warning.startswith("imbalanced classes: 'churned' is ")


def test_assessing_only_reads_and_gives_the_same_report_in_any_row_order(
    sports: tuple[Path, Path],
) -> None:
    quality, data = _sports(sports)
    X, y = data.X.copy(), data.y.copy()
    again = assess(load_spec(sports[0]), data)
    pd.testing.assert_frame_equal(data.X, X)
    np.testing.assert_array_equal(data.y, y)
    assert again == quality
    shuffled = data.take(np.random.default_rng(0).permutation(len(data)))
    assert assess(load_spec(sports[0]), shuffled) == quality


def test_the_report_reaches_metrics_json_and_the_model_card(quick_train: TrainFn) -> None:
    result = quick_train("digits")
    report = result.path / "report"
    saved = json.loads((report / METRICS_FILE).read_text(encoding="utf-8"))["data_quality"]
    assert DataQuality.model_validate(saved) == result.quality == read_quality(report)
    assert result.quality.constant_columns  # the corners of the digit images are always blank
    card = (report / "model_card.md").read_text(encoding="utf-8")
    assert "## Data quality" in card
    assert f"- {result.quality.warnings[0]}" in card
    # Regenerating the card (the `report` command) keeps the section.
    (report / "model_card.md").unlink()
    assert "## Data quality" in write_model_card(report, result.manifest).read_text()


def test_a_version_without_a_quality_report_gets_a_card_without_the_section(
    quick_train: TrainFn,
) -> None:
    result = quick_train()
    report = result.path / "report"
    document = json.loads((report / METRICS_FILE).read_text(encoding="utf-8"))
    del document["data_quality"]
    (report / METRICS_FILE).write_text(json.dumps(document), encoding="utf-8")
    assert read_quality(report) is None
    card = write_model_card(report, result.manifest).read_text(encoding="utf-8")
    assert "## Data quality" not in card and "## Features" in card


def test_the_card_says_so_when_there_is_nothing_to_warn_about(quick_train: TrainFn) -> None:
    result = quick_train("churn")
    assert result.quality.warnings == []
    card = render_model_card(result.manifest, [], result.quality)
    section = card.split("## Data quality")[1].split("\n## ")[0]
    assert "No warnings." in section and "| Missing values | none |" in section
