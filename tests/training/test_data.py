"""CSV loading and splitting: aliases, identifier columns, and every kind of bad CSV."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.codecs.csv import layout
from service.manifest import (
    DEFAULT_NA_VALUES,
    MISSING_CATEGORY,
    Manifest,
    header_keys,
    normalize_header,
    read_pointer,
)
from tests.missing_values import NULLABLE, REQUIRED, load_loans_spec, write_files
from training.data import DataError, from_frame, missing_mask, read_csv, split
from training.generators import generate
from training.spec import TaskSpec, load_spec, load_task

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

MODELS = Path(__file__).resolve().parents[2] / "models"


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
        (
            1,
            ",Female,41,",
            ",Female,,",
            r"column 'Age', line 3: empty \(missing\); a required feature: to allow missing "
            r"values set features\.age\.impute \(or \[defaults\] impute\)",
        ),
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


# Headers a real file may have; each is matched through an alias naming it as it is written.
ODD_HEADERS = ["score [usd]", "Größe (cm)", "年龄", "%", "  Ärger Wert ", "[/x]", "a:smile:b"]


def _tiny_spec(tmp_path: Path, target: str, aliases: list[str]) -> TaskSpec:
    features = "".join(
        f'[[features]]\nname = "f{i}"\ntype = "float"\nmin = 0\nmax = 9\n'
        f"aliases = {json.dumps([alias])}\n"
        for i, alias in enumerate(aliases)
    )
    text = (
        f'name = "tiny"\n[target]\nname = "{target}"\nlabels = ["no", "yes"]\nvalues = [0, 1]\n'
        f'positive = "yes"\n{features}'
    )
    path = tmp_path / "tiny.toml"
    path.write_text(text, encoding="utf-8")
    return load_spec(path)


def _csv(tmp_path: Path, header: list[str], rows: list[list[str]]) -> Path:
    path = tmp_path / "data.csv"
    lines = [",".join(f'"{h}"' for h in header), *(",".join(r) for r in rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_any_header_is_accepted_through_an_alias(tmp_path: Path) -> None:
    spec = _tiny_spec(tmp_path, "label", ODD_HEADERS)
    header = ["id", *ODD_HEADERS, "label"]
    cells = [[str((r + i) % 9) for i in range(len(ODD_HEADERS))] for r in range(6)]
    rows = [[str(r), *row, str(r % 2)] for r, row in enumerate(cells)]
    data = read_csv(spec, _csv(tmp_path, header, rows))
    assert dict(data.headers) == {
        **{f"f{i}": header for i, header in enumerate(ODD_HEADERS)},
        "label": "label",
    }
    # Each feature took its own column (the two non-ASCII-only headers are not confused).
    for i in range(len(ODD_HEADERS)):
        assert data.X[f"f{i}"].tolist() == [float((r + i) % 9) for r in range(6)]
    assert data.y.tolist() == [0, 1, 0, 1, 0, 1]


def test_target_matches_like_a_feature_without_an_alias(tmp_path: Path) -> None:
    spec = _tiny_spec(tmp_path, "target_5yrs", ["GP"])
    data = read_csv(spec, _csv(tmp_path, ["GP", "TARGET_5Yrs"], [["1", "0"], ["2", "1"]]))
    assert data.headers["target_5yrs"] == "TARGET_5Yrs" and data.y.tolist() == [0, 1]


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("TARGET_5Yrs", "target_5yrs"),
        ("NumOfProducts", "num_of_products"),
        ("num of products", "num_of_products"),
        (" Height (cm) ", "height_cm"),
        ("GOOD-PICK", "good_pick"),
        ("Größe", "größe"),
    ],
)
def test_header_forms_ignore_case_punctuation_and_camel_case(header: str, name: str) -> None:
    assert set(header_keys(header)) & set(header_keys(name))


@pytest.mark.parametrize(
    ("header", "other"), [("pixel_1_0", "pixel10"), ("年龄", "收入"), ("%", "#")]
)
def test_word_breaks_and_scripts_still_tell_headers_apart(header: str, other: str) -> None:
    assert not set(header_keys(header)) & set(header_keys(other))


@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=30))
def test_for_ascii_the_first_form_is_the_one_served_before(header: str) -> None:
    """Every ASCII header the service matched before (its first and only form then) it still
    matches: the first key is that form."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", header.strip())
    before = re.sub(r"[^a-z0-9]+", "_", spaced.lower()).strip("_")
    if before:
        assert header_keys(header)[0] == before


def test_two_columns_meaning_the_target_is_a_clear_error(tmp_path: Path) -> None:
    spec = _tiny_spec(tmp_path, "target_5yrs", ["GP"])
    path = _csv(tmp_path, ["GP", "TARGET_5Yrs", "target 5yrs"], [["1", "0", "0"], ["2", "1", "1"]])
    with pytest.raises(
        DataError, match=r"columns 'TARGET_5Yrs', 'target 5yrs' all mean 'target_5yrs'"
    ):
        read_csv(spec, path)


def test_one_column_for_two_names_is_a_clear_error(tmp_path: Path) -> None:
    spec = _tiny_spec(tmp_path, "label", ["score", "Score"])
    path = _csv(tmp_path, ["Score", "label"], [["1", "0"], ["2", "1"]])
    with pytest.raises(DataError, match=r"column 'Score' matches both 'f0' and 'f1'"):
        read_csv(spec, path)


def test_every_header_problem_is_reported_at_once(tmp_path: Path) -> None:
    spec = _tiny_spec(tmp_path, "label", ["a", "b", "c"])
    path = _csv(tmp_path, ["a", "A", "label"], [["1", "1", "0"], ["2", "2", "1"]])
    with pytest.raises(DataError) as caught:
        read_csv(spec, path)
    message = str(caught.value)
    assert "3 problems with the header" in message
    assert "columns 'a', 'A' all mean 'f0'" in message
    assert (
        "missing column 'f1' (also accepted: b); add its header to features.f1.aliases" in message
    )
    assert "missing column 'f2'" in message


def test_the_service_matches_the_headers_training_matched(tmp_path: Path) -> None:
    """One rule on both sides (`service.manifest.header_keys`): headers the service once read
    otherwise (`FG3PA` split as fg3_pa, non-ASCII letters dropped) now match as in training."""
    spec = _tiny_spec(tmp_path, "label", ["GP", "年龄"])
    header = ["FG3PA", "年龄", "label"]
    spec = spec.model_copy(
        update={
            "features": (spec.features[0].model_copy(update={"name": "fg3pa"}), spec.features[1])
        }
    )
    data = read_csv(spec, _csv(tmp_path, header, [["1", "2", "0"], ["2", "3", "1"]]))
    assert set(data.headers.values()) == set(header)
    folder = MODELS / "churn"
    manifest = Manifest.load(folder / read_pointer(folder))
    first, second = manifest.features[:2]
    features = [
        first.model_copy(update={"name": "fg3pa", "aliases": []}),
        second.model_copy(update={"aliases": ["年龄"]}),
    ]
    served = manifest.model_copy(update={"features": features})
    assert layout(served, [*header, "extra"]).positions == {"fg3pa": 0, second.name: 1}
    assert header_keys("年龄") != header_keys("收入")


def test_a_header_written_twice_is_refused_not_half_read(tmp_path: Path) -> None:
    header = BANK_HEADER + ",Age"
    rows = [r + ",40" for r in GOOD_ROWS]
    with pytest.raises(DataError, match=r"columns 'Age', 'Age' all mean 'age'"):
        read_csv(load_task("churn"), bank_csv(tmp_path, rows, header))


def test_a_repeated_header_the_spec_does_not_use_is_dropped(tmp_path: Path) -> None:
    header = BANK_HEADER + ",Notes,Notes"
    data = read_csv(load_task("churn"), bank_csv(tmp_path, [r + ",a,b" for r in GOOD_ROWS], header))
    assert data.y.tolist() == [1, 0, 1, 0] and data.headers["age"] == "Age"


# Missing values: which cells are missing, where they are allowed, and what they become.

NULLABLE_SPEC = """
name = "tiny"
[target]
name = "y"
labels = ["no", "yes"]
values = [0, 1]
positive = "yes"
[[features]]
name = "amount"
type = "float"
min = 0
max = 100
impute = "median"
[[features]]
name = "count"
type = "int"
min = 0
max = 10
[[features]]
name = "flag"
type = "bool"
impute = "most_frequent"
[[features]]
name = "kind"
type = "category"
categories = ["car", "None", "home"]
impute = "constant"
fill_value = "car"
[[features]]
name = "colour"
type = "category"
categories = ["red", "blue"]
"""
NULLABLE_ROWS = [
    "amount,count,flag,kind,colour,y",
    "12.5,1,yes,car,red,0",
    ",2,no,None,blue,1",
    "NA,3,null,,red,0",
    "  ,4,?,home,blue,1",
    "None,5,true, N/A ,red,1",
]


def nullable_files(tmp_path: Path, rows: list[str], spec: str = NULLABLE_SPEC) -> tuple[Path, Path]:
    spec_path, csv_path = tmp_path / "tiny.toml", tmp_path / "tiny.csv"
    spec_path.write_text(spec, encoding="utf-8")
    csv_path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return spec_path, csv_path


def test_missing_cells_of_nullable_features_become_nan_or_the_empty_category(
    tmp_path: Path,
) -> None:
    spec_path, csv_path = nullable_files(tmp_path, NULLABLE_ROWS)
    X = read_csv(load_spec(spec_path), csv_path).X
    np.testing.assert_array_equal(X["amount"], [12.5, np.nan, np.nan, np.nan, np.nan])
    np.testing.assert_array_equal(X["flag"], [1.0, 0.0, np.nan, np.nan, 1.0])
    # "None" is one of kind's categories, so there it is that category, not a missing value.
    assert X["kind"].tolist() == ["car", "None", MISSING_CATEGORY, "home", MISSING_CATEGORY]
    assert X["count"].tolist() == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    ("column", "cell", "shown"),
    [
        ("count", "", "empty"),
        ("count", "   ", "empty"),
        ("count", "NA", "'NA'"),
        ("colour", "?", "'?'"),
    ],
)
def test_a_missing_value_in_a_required_feature_names_column_line_and_key(
    tmp_path: Path, column: str, cell: str, shown: str
) -> None:
    rows = list(NULLABLE_ROWS)
    cells = rows[3].split(",")
    cells[rows[0].split(",").index(column)] = cell
    rows[3] = ",".join(cells)
    spec_path, csv_path = nullable_files(tmp_path, rows)
    with pytest.raises(DataError) as caught:
        read_csv(load_spec(spec_path), csv_path)
    assert str(caught.value) == (
        f"{csv_path}: column {column!r}, line 4: {shown} (missing); a required feature: to allow "
        f"missing values set features.{column}.impute (or [defaults] impute)"
    )


def test_the_spec_na_values_replace_the_defaults(tmp_path: Path) -> None:
    spec = NULLABLE_SPEC.replace('name = "tiny"', 'name = "tiny"\nna_values = ["-1", "n/a"]', 1)
    rows = [NULLABLE_ROWS[0], "-1,1,n/a,car,red,0", " , 2, no, n/a ,blue,1", "7,3,yes,,red,1"]
    spec_path, csv_path = nullable_files(tmp_path, rows, spec)
    X = read_csv(load_spec(spec_path), csv_path).X
    np.testing.assert_array_equal(X["amount"], [np.nan, np.nan, 7.0])  # a blank is missing too
    np.testing.assert_array_equal(X["flag"], [np.nan, 0.0, 1.0])
    assert X["kind"].tolist() == ["car", MISSING_CATEGORY, MISSING_CATEGORY]
    rows.append("NA,3,yes,car,red,1")  # no longer a missing value: a bad number
    spec_path, csv_path = nullable_files(tmp_path, rows, spec)
    with pytest.raises(DataError, match=r"column 'amount', line 5: 'NA' is not a finite number"):
        read_csv(load_spec(spec_path), csv_path)


def test_a_missing_target_names_column_and_line(tmp_path: Path) -> None:
    rows = [*NULLABLE_ROWS[:3], "1,3,yes,car,red,NA", *NULLABLE_ROWS[4:]]
    spec_path, csv_path = nullable_files(tmp_path, rows)
    with pytest.raises(DataError, match=r"column 'y', line 4: 'NA' \(missing\); every row needs"):
        read_csv(load_spec(spec_path), csv_path)


def test_a_nullable_column_missing_in_every_row_is_refused(tmp_path: Path) -> None:
    rows = [NULLABLE_ROWS[0], *("NA," + row.split(",", 1)[1] for row in NULLABLE_ROWS[1:])]
    spec_path, csv_path = nullable_files(tmp_path, rows)
    with pytest.raises(DataError, match=r"column 'amount': every value is missing"):
        read_csv(load_spec(spec_path), csv_path)


def test_the_loans_file_reads_with_every_blank_in_place(tmp_path: Path) -> None:
    spec_path, csv_path = write_files(tmp_path)
    frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    data = read_csv(load_spec(spec_path), csv_path)
    headers = data.headers
    for name in NULLABLE:
        blanks = frame[headers[name]].str.strip().isin(["", *DEFAULT_NA_VALUES])
        assert blanks.sum() > 0
        assert (missing_mask(load_loans_spec(), data.X)[name] == blanks).all()
    assert not data.X[list(REQUIRED)].isna().to_numpy().any()
