"""CSV loading and splitting: aliases, identifier columns, and every kind of bad CSV."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.manifest import normalize_header
from training.data import DataError, from_frame, read_csv, split
from training.generators import generate
from training.spec import load_task

BANK_HEADER = (
    "RowNumber,CustomerId,Surname,CreditScore,Geography,Gender,Age,Tenure,Balance,"
    "NumOfProducts,HasCrCard,IsActiveMember,EstimatedSalary,Exited"
)
GOOD_ROWS = [
    "1,15634602,Hargrave,619,France,Female,42,2,0.00,1,1,1,101348.88,1",
    "2,15647311,Hill,608,Spain,Female,41,1,83807.86,1,0,1,112542.58,0",
    "3,15619304,Onio,502,France,Female,42,8,159660.80,3,1,0,113931.57,1",
    "4,15701354,Boni,699,France,Female,39,1,0.00,2,0,0,93826.63,0",
]


def bank_csv(tmp_path: Path, rows: list[str], header: str = BANK_HEADER) -> Path:
    path = tmp_path / "Churn_Modelling.csv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def test_bank_layout_loads_through_aliases_and_drops_identifiers(tmp_path: Path) -> None:
    data = read_csv(load_task("churn"), bank_csv(tmp_path, GOOD_ROWS))
    assert list(data.X.columns) == load_task("churn").feature_names
    assert data.y.tolist() == [1, 0, 1, 0]
    assert data.X["geography"].tolist() == ["France", "Spain", "France", "France"]
    assert data.X["has_cr_card"].tolist() == [1.0, 0.0, 1.0, 0.0]
    assert data.source == "csv:Churn_Modelling.csv" and len(data.sha256) == 64


def test_headers_match_loosely() -> None:
    assert normalize_header("NumOfProducts") == "num_of_products"
    assert normalize_header(" Height (cm) ") == "height_cm"
    assert normalize_header("free throws made") == "free_throws_made"


def test_labels_may_be_written_as_label_names(tmp_path: Path) -> None:
    rows = [
        r.rsplit(",", 1)[0] + ("," + ("churned" if r.endswith("1") else "stayed"))
        for r in GOOD_ROWS
    ]
    assert read_csv(load_task("churn"), bank_csv(tmp_path, rows)).y.tolist() == [1, 0, 1, 0]


@pytest.mark.parametrize(
    ("row_index", "old", "new", "expected"),
    [
        (1, ",608,", ",abc,", r"column 'CreditScore', line 3: 'abc' is not a finite number"),
        (
            2,
            ",42,8,",
            ",142,8,",
            r"column 'Age', line 4: '142' is outside the allowed range 18 to 100",
        ),
        (0, ",France,", ",Italy,", r"column 'Geography', line 2: 'Italy' is not a known category"),
        (3, ",39,", ",39.5,", r"column 'Age', line 5: '39.5' is not a whole number"),
        (1, ",Female,41,", ",Female,,", r"column 'Age', line 3: '' is empty"),
        (0, ",1,1,1,", ",1,maybe,1,", r"column 'HasCrCard', line 2: 'maybe' is not a boolean"),
        (2, ",159660.80,", ",nan,", r"column 'Balance', line 4: 'nan' is not a finite number"),
        (2, ",159660.80,", ",inf,", r"column 'Balance', line 4: 'inf' is not a finite number"),
        (1, "112542.58,0", "112542.58,2", r"column 'Exited', line 3: '2' is not a known class"),
    ],
)
def test_bad_cell_names_column_line_and_value(
    tmp_path: Path, row_index: int, old: str, new: str, expected: str
) -> None:
    rows = list(GOOD_ROWS)
    rows[row_index] = rows[row_index].replace(old, new, 1)
    with pytest.raises(DataError, match=expected):
        read_csv(load_task("churn"), bank_csv(tmp_path, rows))


def test_missing_column_lists_what_was_found(tmp_path: Path) -> None:
    header = BANK_HEADER.replace("Tenure,", "")
    rows = [",".join(r.split(",")[:7] + r.split(",")[8:]) for r in GOOD_ROWS]
    with pytest.raises(DataError, match=r"missing column 'tenure' \(also accepted: Tenure\)"):
        read_csv(load_task("churn"), bank_csv(tmp_path, rows, header))


def test_two_columns_for_one_feature_is_an_error(tmp_path: Path) -> None:
    header = BANK_HEADER + ",age"
    rows = [r + ",40" for r in GOOD_ROWS]
    with pytest.raises(DataError, match=r"all mean 'age'"):
        read_csv(load_task("churn"), bank_csv(tmp_path, rows, header))


def test_empty_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("", encoding="utf-8")
    with pytest.raises(DataError, match="empty"):
        read_csv(load_task("churn"), path)


def test_header_only_file_has_no_rows(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no data rows"):
        read_csv(load_task("churn"), bank_csv(tmp_path, []))


def test_single_class_is_an_error(tmp_path: Path) -> None:
    rows = [r[:-1] + "0" for r in GOOD_ROWS]
    with pytest.raises(DataError, match=r"single class \('stayed'\)"):
        read_csv(load_task("churn"), bank_csv(tmp_path, rows))


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read"):
        read_csv(load_task("churn"), tmp_path / "nope.csv")


def test_generated_churn_csv_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "churn.csv"
    generate("churn", 300, 3).frame.to_csv(path, index=False)
    data = read_csv(load_task("churn"), path)
    assert len(data) == 300
    assert set(np.unique(data.y)) == {0, 1}


def test_split_is_stratified_and_reproducible() -> None:
    spec = load_task("churn")
    sample = generate("churn", 2000, 1)
    data = from_frame(spec, sample.frame, source="t", where="t", probability=sample.probability)
    first, second = split(data, spec.split, 5), split(data, spec.split, 5)
    assert first.test.X.equals(second.test.X)
    assert len(first.test) == 400
    assert len(first.train) + len(first.validation) + len(first.test) == 2000
    rates = [s.y.mean() for s in (first.train, first.validation, first.test)]
    assert max(rates) - min(rates) < 0.02
    assert first.test.probability is not None
    assert not split(data, spec.split, 6).test.X.equals(first.test.X)


def test_fixed_test_rows_follow_the_story() -> None:
    spec = load_task("draft_pick")
    sample = generate("draft_pick", 1100, 0)
    data = from_frame(spec, sample.frame, source="t", where="t")
    parts = split(data, spec.split, 0)
    assert len(parts.test) == 100
    assert len(parts.train) + len(parts.validation) == 1000
