"""`python -m service score` on Parquet: the CSV command's answers, rules and errors, from
typed columns, with the committed models. Each comparison scores the same rows written both ways.
"""

from __future__ import annotations

import csv
import datetime
import decimal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no type hints
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest

from service.batch import cli as score
from service.batch.job import ERRORS_HEADER
from service.manifest import Manifest
from tests.service.helpers import REPO, manifest_of

MODELS = REPO / "models"
PREDICTIONS = ["label", "probability", "p_stayed", "p_churned", "out_of_range"]
Columns = dict[str, list[Any]]
# The bank churn file's headers (aliases of the features) and the Arrow type of each column;
# RowNumber and Surname are not features and must come back untouched.
TYPES = {
    "RowNumber": pa.int64(),
    "Surname": pa.string(),
    "Age": pa.int64(),
    "CreditScore": pa.int32(),
    "Geography": pa.string(),
    "gender": pa.dictionary(pa.int32(), pa.string()),
    "Tenure": pa.int64(),
    "Balance": pa.float64(),
    "NumOfProducts": pa.int8(),
    "HasCrCard": pa.bool_(),
    "IsActiveMember": pa.bool_(),
    "EstimatedSalary": pa.float64(),
}
FEATURES = {
    "Age": "age", "CreditScore": "credit_score", "Geography": "geography", "gender": "gender",
    "Tenure": "tenure", "Balance": "balance", "NumOfProducts": "num_of_products",
    "HasCrCard": "has_cr_card", "IsActiveMember": "is_active_member",
    "EstimatedSalary": "estimated_salary",
}  # fmt: skip


@pytest.fixture(scope="module")
def churn() -> Manifest:
    return manifest_of(MODELS, "churn")


def columns(manifest: Manifest, count: int) -> Columns:
    """`count` rows cycling through the manifest's examples, as Python values by column."""
    records = [manifest.examples[i % len(manifest.examples)].record for i in range(count)]
    data: Columns = {"RowNumber": list(range(1, count + 1)), "Surname": ["Smith"] * count}
    for column, feature in FEATURES.items():
        data[column] = [record[feature] for record in records]
    return data


def write_parquet(path: Path, data: Columns, types: dict[str, Any] | None = None) -> Path:
    kinds = {**TYPES, **(types or {})}
    table = pa.table({name: pa.array(values, kinds[name]) for name, values in data.items()})
    pq.write_table(table, path)
    return path


def cell(value: Any) -> str:
    """A value as a CSV cell: a null is an empty cell, a bool 1 or 0, a float as `repr`."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


def write_csv(path: Path, data: Columns) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(list(data))
        writer.writerows([list(map(cell, row)) for row in zip(*data.values(), strict=True)])
    return path


def run(*args: str | Path, model: str = "churn") -> int:
    return score.main(["--models", str(MODELS), "--model", model, "--quiet", *map(str, args)])


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def same_predictions(parquet: Path, scored_csv: Path, names: list[str]) -> None:
    """The Parquet output's prediction columns are the CSV output's cells, read as numbers."""
    table = pq.read_table(parquet)
    rows = read_csv(scored_csv)
    assert table.num_rows == len(rows) > 0
    for name in names:
        got = table.column(name).to_pylist()
        if name in ("label", "out_of_range"):
            assert table.schema.field(name).type == pa.string()
            assert got == [row[name] for row in rows], name
        else:
            assert table.schema.field(name).type == pa.float64()
            assert got == [float(row[name]) for row in rows], name


def errors_of(path: Path) -> list[tuple[str, str, str, str]]:
    return [(e["row"], e["column"], e["value"], e["error"]) for e in read_csv(path)]


def test_parquet_scoring_gives_the_csv_scoring_of_the_same_rows(
    churn: Manifest, tmp_path: Path
) -> None:
    data = columns(churn, 40)
    data["Balance"][3] = 300_000.0  # outside the training range: flagged, not an error
    data["Age"][5] = 95  # likewise
    source = write_parquet(tmp_path / "in.parquet", data)
    out = tmp_path / "scored.parquet"

    assert run(source, "-o", out) == score.EXIT_OK
    assert run(write_csv(tmp_path / "in.csv", data), "-o", tmp_path / "scored.csv") == 0

    same_predictions(out, tmp_path / "scored.csv", PREDICTIONS)
    flags = pq.read_table(out).column("out_of_range").to_pylist()
    assert flags[3] == "balance"
    assert flags[5] == "age"
    assert flags.count("") == 38


def test_a_multiclass_model_gives_the_csv_probabilities_and_labels(tmp_path: Path) -> None:
    digits = manifest_of(MODELS, "digits")
    records = [example.record for example in digits.examples]
    data = {f.name: [record[f.name] for record in records] for f in digits.features}
    types = dict.fromkeys(data, pa.int16())
    source = write_parquet(tmp_path / "in.parquet", data, types)

    assert run(source, "-o", tmp_path / "out.pq", model="digits") == 0
    assert run(write_csv(tmp_path / "in.csv", data), "-o", tmp_path / "out.csv",
               model="digits") == 0  # fmt: skip

    names = ["label", "probability", *(f"p_{label}" for label in digits.labels), "out_of_range"]
    same_predictions(tmp_path / "out.pq", tmp_path / "out.csv", names)


def test_input_columns_come_back_unchanged_with_their_types_before_the_predictions(
    churn: Manifest, tmp_path: Path
) -> None:
    data = columns(churn, 6)
    data["Age"][2] = 150  # a bad row: the others keep their values and order
    extra: dict[str, tuple[list[Any], Any]] = {
        "seen": ([datetime.datetime(2026, 1, d, 12, 0) for d in range(1, 7)], pa.timestamp("ms")),
        "tags": ([[1, 2], [], None, [3], [4, 5, 6], [7]], pa.list_(pa.int32())),
        "note": (["a", None, "c", None, "e", "f"], pa.string()),
        "amount": ([decimal.Decimal(f"{i}.25") for i in range(6)], pa.decimal128(9, 2)),
    }
    types = {name: kind for name, (_, kind) in extra.items()}
    data.update({name: values for name, (values, _) in extra.items()})
    source = write_parquet(tmp_path / "in.parquet", data, types)
    out = tmp_path / "out.parquet"

    assert run(source, "-o", out) == score.EXIT_ROW_ERRORS

    given, scored = pq.read_table(source), pq.read_table(out)
    assert scored.schema.names == [*given.schema.names, *PREDICTIONS]
    for field in given.schema:
        assert scored.schema.field(field.name).type == field.type, field.name
    kept = given.take([0, 1, 3, 4, 5])
    assert scored.select(given.schema.names).equals(kept)
    assert [f.type for f in scored.schema][-5:] == [pa.string(), *[pa.float64()] * 3, pa.string()]


def test_bad_rows_are_set_aside_with_the_csv_rows_columns_and_messages(
    churn: Manifest, tmp_path: Path
) -> None:
    data = columns(churn, 12)
    data["Age"] = [str(age) for age in data["Age"]]  # numbers as text are parsed as CSV cells
    data["Age"][1] = "old"
    data["Geography"][2] = "Mars"
    data["Age"][3] = "150"
    data["CreditScore"][4] = None  # a null is missing, as an empty CSV cell is
    data["HasCrCard"][5] = None
    data["Geography"][6] = None
    data["Balance"][7] = -5.0
    data["Balance"][8] = 300_000.0  # outside the training range only: scored and flagged
    data["Age"][9] = None
    data["Tenure"][10] = None
    data["Age"][10] = "x"  # two problems in one row, reported together
    types = {"Age": pa.string()}
    parquet_errors, csv_errors = tmp_path / "pq-errors.csv", tmp_path / "csv-errors.csv"

    code = run(write_parquet(tmp_path / "in.parquet", data, types), "-o", tmp_path / "out.pq",
               "--errors", parquet_errors)  # fmt: skip
    assert code == score.EXIT_ROW_ERRORS
    code = run(write_csv(tmp_path / "in.csv", data), "-o", tmp_path / "out.csv",
               "--errors", csv_errors)  # fmt: skip
    assert code == score.EXIT_ROW_ERRORS

    assert errors_of(parquet_errors) == errors_of(csv_errors)
    assert [e["row"] for e in read_csv(parquet_errors)] == [
        "1", "2", "3", "4", "5", "6", "7", "9", "10", "10",
    ]  # fmt: skip
    assert {e["line"] for e in read_csv(parquet_errors)} == {""}  # a Parquet file has no lines
    found = {(e["row"], e["column"]): e["error"] for e in read_csv(parquet_errors)}
    assert found["1", "Age"].startswith("Input should be a valid number")
    assert found["2", "Geography"].startswith("Input should be 'France'")
    # A null in a required feature, typed or text, is a missing value, as a blank CSV cell.
    assert found["4", "CreditScore"] == found["5", "HasCrCard"] == "Field required"
    assert found["6", "Geography"] == found["9", "Age"] == "Field required"
    assert list(read_csv(parquet_errors)[0]) == ERRORS_HEADER
    same_predictions(tmp_path / "out.pq", tmp_path / "out.csv", PREDICTIONS)
    assert pq.read_table(tmp_path / "out.pq").column("RowNumber").to_pylist() == [1, 9, 12]


def test_typed_numbers_are_checked_by_the_same_rules(
    churn: Manifest, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = columns(churn, 4)
    data["CreditScore"] = [float(v) for v in data["CreditScore"]]
    data["CreditScore"][1] = 650.5
    data["HasCrCard"] = [int(v) for v in data["HasCrCard"]]
    data["HasCrCard"][2] = 2
    types = {"CreditScore": pa.float64(), "HasCrCard": pa.int64()}

    assert run(write_parquet(tmp_path / "in.parquet", data, types), "-o", tmp_path / "o.pq") == 1

    err = capsys.readouterr().err
    assert "in.parquet: row 1, column 'CreditScore': Input should be a valid integer, got a " \
           "number with a fractional part (got '650.5')" in err  # fmt: skip
    assert "row 2, column 'HasCrCard': Input should be 0 or 1 (got '2')" in err


def test_rows_are_counted_across_batches_and_threads_give_the_one_thread_answer(
    churn: Manifest, tmp_path: Path
) -> None:
    data = columns(churn, 100)
    for row in (0, 6, 7, 50, 99):
        data["Age"][row] = 10 + row % 3
    source = write_parquet(tmp_path / "in.parquet", data)
    one, three = tmp_path / "one.parquet", tmp_path / "three.parquet"

    common = ["--batch-rows", "7"]
    assert run(source, "-o", one, "--workers", "1", "--errors", tmp_path / "e1.csv", *common) == 1
    assert run(source, "-o", three, "--workers", "3", "--errors", tmp_path / "e3.csv",
               *common) == 1  # fmt: skip

    assert pq.read_table(one).equals(pq.read_table(three))
    assert pq.ParquetFile(one).metadata.num_rows == 95
    assert (tmp_path / "e1.csv").read_bytes() == (tmp_path / "e3.csv").read_bytes()
    assert [e[0] for e in errors_of(tmp_path / "e1.csv")] == ["0", "6", "7", "50", "99"]


def test_strict_stops_at_the_first_bad_row_and_writes_nothing(
    churn: Manifest, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = columns(churn, 30)
    data["Age"][13] = -1
    data["Age"][26] = -2
    source = write_parquet(tmp_path / "in.parquet", data)
    out = tmp_path / "scored.parquet"

    code = score.main(["--models", str(MODELS), "--model", "churn", str(source), "-o", str(out),
                       "--strict", "--batch-rows", "10"])  # fmt: skip

    assert code == score.EXIT_ROW_ERRORS
    assert list(tmp_path.iterdir()) == [source]  # no output, no partial file left behind
    err = capsys.readouterr().err
    assert "in.parquet: row 13, column 'Age': Input should be greater than or equal to 18" in err
    assert "row 26" not in err
    assert "stopped at the first bad row (--strict); " in err


def test_columns_match_by_alias_in_any_case_and_a_clash_prefixes_the_predictions(
    churn: Manifest, tmp_path: Path
) -> None:
    data = columns(churn, 8)
    renamed = {"Age": "AGE", "CreditScore": "credit score", "Geography": "country",
               "gender": "Sex", "NumOfProducts": "Num Of Products"}  # fmt: skip
    aliased = {renamed.get(name, name): values for name, values in data.items()}
    aliased["Label"] = ["mine"] * 8  # the caller's own column of that name
    types = {renamed[name]: TYPES[name] for name in renamed} | {"Label": pa.string()}

    assert run(write_parquet(tmp_path / "plain.parquet", data), "-o", tmp_path / "a.pq") == 0
    assert run(write_parquet(tmp_path / "aliased.parquet", aliased, types), "-o",
               tmp_path / "b.pq") == 0  # fmt: skip

    plain, prefixed = pq.read_table(tmp_path / "a.pq"), pq.read_table(tmp_path / "b.pq")
    assert prefixed.schema.names[-6:] == ["Label", *(f"predicted_{n}" for n in PREDICTIONS)]
    assert prefixed.column("Label").to_pylist() == ["mine"] * 8
    for name in PREDICTIONS:
        assert prefixed.column(f"predicted_{name}").equals(plain.column(name))


def test_category_columns_take_dictionaries_and_text_with_spaces_as_csv_does(
    churn: Manifest, tmp_path: Path
) -> None:
    data = columns(churn, 5)
    padded = dict(data, Geography=[f" {v} " for v in data["Geography"]])
    types = {"Geography": pa.dictionary(pa.int8(), pa.string()), "gender": pa.large_string()}

    assert run(write_parquet(tmp_path / "a.parquet", data), "-o", tmp_path / "a.pq") == 0
    assert run(write_parquet(tmp_path / "b.parquet", padded, types), "-o", tmp_path / "b.pq") == 0

    got = pq.read_table(tmp_path / "b.pq").select(PREDICTIONS)
    assert got.equals(pq.read_table(tmp_path / "a.pq").select(PREDICTIONS))


def test_a_column_of_a_type_the_feature_cannot_take_refuses_the_file(
    churn: Manifest, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = columns(churn, 3)
    data["Geography"] = [1, 2, 3]
    data["Age"] = [datetime.date(2000, 1, 1)] * 3
    source = write_parquet(tmp_path / "in.parquet", data, {"Geography": pa.int64(),
                                                            "Age": pa.date32()})  # fmt: skip

    assert run(source, "-o", tmp_path / "out.parquet") == score.EXIT_BAD_INPUT

    err = capsys.readouterr().err
    assert "field 'Geography': the column holds int64; feature 'geography' takes text" in err
    assert "field 'Age': the column holds date32[day]; feature 'age' takes numbers" in err
    assert not (tmp_path / "out.parquet").exists()


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (lambda data: b"PAR1 not really", "not a readable Parquet file"),
        (lambda data: data[: len(data) // 2], "not a readable Parquet file"),
        (lambda data: b"", "not a readable Parquet file"),
        (lambda data: data[:-300] + b"\x55" * 292 + data[-8:], "not a readable Parquet file"),
    ],
    ids=["not-parquet", "cut-short", "empty", "corrupt-footer"],
)
def test_a_corrupt_file_exits_2_in_one_line_and_writes_nothing(
    churn: Manifest, tmp_path: Path, spoil: Callable[[bytes], bytes], message: str
) -> None:
    good = write_parquet(tmp_path / "good.parquet", columns(churn, 50))
    source = tmp_path / "in.parquet"
    source.write_bytes(spoil(good.read_bytes()))
    out = tmp_path / "out.parquet"
    command = [sys.executable, "-m", "service", "score", "--models", str(MODELS), "--model",
               "churn", str(source), "-o", str(out)]  # fmt: skip

    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)

    assert done.returncode == score.EXIT_BAD_INPUT, done.stderr
    assert done.stderr.startswith(f"score: {source}: {message}"), done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.parquet", "in.parquet"]


def test_a_file_cut_after_its_first_row_groups_leaves_no_output(
    churn: Manifest, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rows already scored are not kept when a later part of the file cannot be read."""
    source = tmp_path / "in.parquet"
    table = pa.table({n: pa.array(v, TYPES[n]) for n, v in columns(churn, 300).items()})
    pq.write_table(table, source, row_group_size=100)
    column = pq.ParquetFile(source).metadata.row_group(2).column(0)
    data = bytearray(source.read_bytes())
    start = column.data_page_offset
    data[start : start + column.total_compressed_size] = b"\xff" * column.total_compressed_size
    source.write_bytes(bytes(data))

    code = run(source, "-o", tmp_path / "out.parquet", "--batch-rows", "100", "--workers", "1")

    assert code == score.EXIT_BAD_INPUT
    assert "in.parquet: cannot read the Parquet data" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [source]


def test_format_comes_from_the_extension_or_the_flag_and_mixed_formats_are_refused(
    churn: Manifest, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = columns(churn, 3)
    source = write_parquet(tmp_path / "customers.data", data)
    as_csv = write_csv(tmp_path / "in.csv", data)

    assert run("--format", "parquet", source, "-o", tmp_path / "out.bin") == 0
    assert pq.read_table(tmp_path / "out.bin").num_rows == 3  # the input's format
    assert run("--format", "parquet", source, "-o", tmp_path / "out.pq") == 0
    capsys.readouterr()

    cases: list[tuple[list[str | Path], str]] = [
        (["--format", "parquet", source], "Parquet output is not written to stdout"),
        (["--format", "parquet", source, "-o", tmp_path / "x.csv"],
         "Parquet input and CSV output: the output must have the input's format"),
        ([as_csv, "-o", tmp_path / "x.parquet"], "CSV input and Parquet output"),
        ([source, "-o", tmp_path / "x.csv"], "customers.data: a Parquet file; score it with "
                                              "--format parquet"),
        (["--format", "parquet", as_csv, "-o", tmp_path / "x.pq"], "not a readable Parquet file"),
    ]  # fmt: skip
    for args, message in cases:
        assert run(*args) == score.EXIT_BAD_INPUT, args
        assert message in capsys.readouterr().err, args
    assert not list(tmp_path.glob("x.*"))


def test_a_file_without_rows_exits_2(
    churn: Manifest, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_parquet(tmp_path / "in.parquet", {name: [] for name in TYPES})

    assert run(source, "-o", tmp_path / "out.parquet") == score.EXIT_BAD_INPUT

    assert "in.parquet: has no data rows" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [source]


def test_python_m_service_scores_parquet_end_to_end(churn: Manifest, tmp_path: Path) -> None:
    """The command leaves with `os._exit`: the Parquet file must be complete and renamed."""
    data = columns(churn, 2000)
    data["Age"][1500] = 5
    source = write_parquet(tmp_path / "in.parquet", data)
    out = tmp_path / "out.parquet"
    command = [sys.executable, "-m", "service", "score", "--models", str(MODELS), "--model",
               "churn", "--workers", "2", "--batch-rows", "300", str(source), "-o",
               str(out)]  # fmt: skip

    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)

    assert done.returncode == score.EXIT_ROW_ERRORS, done.stderr
    assert "in.parquet: row 1500, column 'Age'" in done.stderr
    assert "1,999 of 2,000 rows scored, 1 with errors" in done.stderr
    assert pq.read_table(out).num_rows == 1999


def test_the_batch_function_needs_no_file_and_gives_the_command_s_answer(
    churn: Manifest, tmp_path: Path
) -> None:
    """`ArrowScorer.score` is what other Arrow sources (Spark's mapInArrow) will call."""
    from service.batch.parquet import ArrowScorer
    from service.model import load_model

    data = columns(churn, 20)
    data["Age"][4] = 7
    source = write_parquet(tmp_path / "in.parquet", data)
    assert run(source, "-o", tmp_path / "out.parquet") == score.EXIT_ROW_ERRORS
    given = pq.read_table(source)
    views = given.set_column(4, "Geography", given.column("Geography").cast(pa.string_view()))
    batch = views.combine_chunks().to_batches()[0]
    folder = MODELS / "churn" / (MODELS / "churn" / "current").read_text().strip()

    result = ArrowScorer(load_model(folder, threads=1), batch.schema).score(batch)

    assert result.rows == 20
    assert [(e.row, e.column, e.value) for e in result.errors] == [(4, "Age", "7")]
    expected = pq.read_table(tmp_path / "out.parquet").select(PREDICTIONS)
    assert pa.Table.from_batches([result.output]).select(PREDICTIONS).equals(expected)
    assert result.output.schema.field("Geography").type == pa.string_view()
