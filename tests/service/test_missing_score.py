"""`python -m service score` with missing values: blank and NA cells of CSV files, nulls (and NaN
in float columns) of Parquet files. A nullable feature's missing value is imputed by the graph
and named in the output's `imputed` column; a required feature's sets its row aside with the
API's rule ("Field required"), or stops a --strict run with nothing written. The loans model is
trained by the real training code (tests/missing_values.py).
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no type hints
import pyarrow.compute as pc  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest

from service.batch import cli as score
from service.batch.parquet import ArrowScorer
from service.model import LoadedModel
from tests.missing_values import REQUIRED, TASK, loans_frame
from tests.service.helpers import REPO
from tests.service.test_missing_csv import (
    CSV,
    PREDICT,
    Registry,
    body_of,
    check_answer,
    expected_imputed,
    header_of,
    is_missing,
    loans,
    loans_http,
    loans_model,
    plain,
)

__all__ = ["loans", "loans_http", "loans_model"]  # the fixtures, shared with the CSV tests
REQUIRED_MESSAGE = "Field required"


def run(registry: Registry, *args: str | Path) -> int:
    return score.main(
        ["--models", str(registry.models_dir), "--model", TASK, "--quiet", *map(str, args)]
    )


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def write(path: Path, frame: pd.DataFrame) -> Path:
    path.write_bytes(body_of(frame))
    return path


def test_a_csv_file_with_blanks_is_scored_as_the_api_answers_it(
    loans: Registry, loans_http: httpx.Client, tmp_path: Path
) -> None:
    frame = loans_frame(300, seed=11)
    source, out = write(tmp_path / "in.csv", frame), tmp_path / "out.csv"

    assert run(loans, source, "-o", out) == score.EXIT_OK

    api = loans_http.post(PREDICT, content=source.read_bytes(), headers=CSV)
    assert api.status_code == 200, api.text
    assert out.read_bytes() == api.content
    check_answer(loans, frame, out.read_text(encoding="utf-8"))


@pytest.mark.parametrize("as_written", [True, False])
def test_blocks_in_worker_processes_give_the_single_process_answer(
    loans: Registry, tmp_path: Path, as_written: bool
) -> None:
    """Many blocks, read by the block reader (`plain`) or by the csv module (as written)."""
    frame = loans_frame(3000, seed=12)
    frame = frame if as_written else plain(frame, loans.manifest)
    source = write(tmp_path / "in.csv", frame)
    one, many = tmp_path / "one.csv", tmp_path / "many.csv"

    assert run(loans, source, "-o", one, "--workers", "1") == score.EXIT_OK
    assert run(loans, source, "-o", many, "--workers", "3", "--block-bytes", "8192") == 0

    assert one.read_bytes() == many.read_bytes()
    check_answer(loans, frame, one.read_text(encoding="utf-8"))


def test_rows_missing_a_required_value_are_set_aside_with_the_api_rule(
    loans: Registry, tmp_path: Path
) -> None:
    age = loans.column(REQUIRED[0])
    frame = loans_frame(40, seed=13)
    bad = {3: "", 10: "NA", 11: "   ", 30: "null"}
    for row, cell in bad.items():
        frame.loc[row, age] = cell
    source, out, errors = write(tmp_path / "in.csv", frame), tmp_path / "out.csv", tmp_path / "e"

    assert run(loans, source, "-o", out, "--errors", errors) == score.EXIT_ROW_ERRORS

    found = [(e["line"], e["row"], e["column"], e["value"], e["error"]) for e in read_rows(errors)]
    assert found == [
        (str(row + 2), str(row), age, cell, REQUIRED_MESSAGE) for row, cell in bad.items()
    ]
    kept = frame.drop(index=list(bad)).reset_index(drop=True)
    check_answer(loans, kept, out.read_text(encoding="utf-8"))


def test_strict_stops_at_a_required_blank_and_writes_nothing(
    loans: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = loans_frame(40, seed=14)
    frame.loc[7, loans.column(REQUIRED[0])] = ""
    source, out = write(tmp_path / "in.csv", frame), tmp_path / "out.csv"

    assert run(loans, source, "-o", out, "--strict") == score.EXIT_ROW_ERRORS

    assert list(tmp_path.iterdir()) == [source]  # no output, no partial file
    err = capsys.readouterr().err
    assert f"line 9 (row 7), column {loans.column(REQUIRED[0])!r}: {REQUIRED_MESSAGE}" in err


def test_python_m_service_scores_a_file_with_blanks(loans: Registry, tmp_path: Path) -> None:
    frame = loans_frame(50, seed=15)
    source = write(tmp_path / "in.csv", frame)
    done = subprocess.run(
        [sys.executable, "-m", "service", "score", str(source), "--model", TASK,
         "--models", str(loans.models_dir)],
        cwd=REPO, capture_output=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    check_answer(loans, frame, done.stdout.decode("utf-8"))


# ---- Parquet ---------------------------------------------------------------------------------


def typed(registry: Registry, frame: pd.DataFrame) -> pa.Table:
    """The frame's cells as typed Arrow columns, a missing cell as a null, except in the first
    nullable float column, where every other one is NaN instead; the first category column is
    dictionary-encoded; other columns stay text."""
    manifest = registry.manifest
    headers = header_of(manifest, frame)
    nan_column = registry.column(registry.nullable("float"))
    first_category = registry.column(registry.nullable("category"))
    columns: dict[str, Any] = {}
    for feature in manifest.features:
        column = headers[feature.name]
        cells = [None if is_missing(feature, c, manifest) else c.strip() for c in frame[column]]
        if feature.type == "category":
            array = pa.array(cells, pa.string())
            columns[column] = array.dictionary_encode() if column == first_category else array
        elif feature.type == "bool":
            columns[column] = pa.array([None if c is None else c == "yes" for c in cells])
        elif feature.type == "int":
            columns[column] = pa.array([None if c is None else int(c) for c in cells], pa.int64())
        else:
            values = [None if c is None else float(c) for c in cells]
            if column == nan_column:
                nulls = [i for i, value in enumerate(values) if value is None]
                for i in nulls[::2]:
                    values[i] = float("nan")
            columns[column] = pa.array(values, pa.float64(), from_pandas=False)
    others = [c for c in frame.columns if c not in columns]
    return pa.table({**columns, **{c: pa.array(frame[c].tolist()) for c in others}})


def predictions(path: Path, names: list[str]) -> list[tuple[Any, ...]]:
    table = pq.read_table(path) if path.suffix == ".parquet" else None
    if table is not None:
        return list(zip(*(table.column(name).to_pylist() for name in names), strict=True))
    rows = read_rows(path)
    return [tuple(row[name] for name in names) for row in rows]


def test_parquet_nulls_and_nans_are_scored_as_csv_blanks(loans: Registry, tmp_path: Path) -> None:
    frame = loans_frame(400, seed=16)
    table = typed(loans, frame)
    nan_column = table.column(loans.column(loans.nullable("float")))
    assert pc.sum(pc.is_nan(nan_column)).as_py() > 5
    assert nan_column.null_count > 5
    source, out = tmp_path / "in.parquet", tmp_path / "out.parquet"
    pq.write_table(table, source)
    csv_source, csv_out = write(tmp_path / "in.csv", frame), tmp_path / "out.csv"

    assert run(loans, source, "-o", out) == score.EXIT_OK
    assert run(loans, csv_source, "-o", csv_out) == score.EXIT_OK

    scored = pq.read_table(out)
    appended = loans.appended()
    assert scored.schema.names == [*table.schema.names, *appended]
    assert scored.schema.field("imputed").type == pa.string()
    assert scored.column("imputed").to_pylist() == expected_imputed(loans.manifest, frame)
    from_csv = predictions(csv_out, appended)
    from_parquet = predictions(out, appended)
    assert [row[0] for row in from_parquet] == [row[0] for row in from_csv]  # labels
    assert [row[-2:] for row in from_parquet] == [row[-2:] for row in from_csv]  # the flags
    np.testing.assert_array_equal(
        np.array([row[1:-2] for row in from_parquet], dtype=np.float64),
        np.array([row[1:-2] for row in from_csv], dtype=np.float64),
    )


def test_parquet_rows_missing_a_required_value_are_set_aside_or_stop_a_strict_run(
    loans: Registry, tmp_path: Path
) -> None:
    """A null, or NaN in a float column, is missing there too."""
    frame = loans_frame(30, seed=17)
    table = typed(loans, frame)
    age = loans.column(REQUIRED[0])
    ages: list[float | None] = [float(value) for value in table.column(age).to_pylist()]
    ages[4], ages[20] = float("nan"), None
    column = pa.array(ages, pa.float64(), from_pandas=False)
    table = table.set_column(table.schema.get_field_index(age), age, column)
    source, out, errors = tmp_path / "in.parquet", tmp_path / "out.parquet", tmp_path / "e.csv"
    pq.write_table(table, source)

    assert run(loans, source, "-o", out, "--errors", errors) == score.EXIT_ROW_ERRORS
    found = [(e["line"], e["row"], e["column"], e["value"], e["error"]) for e in read_rows(errors)]
    assert found == [("", "4", age, "", REQUIRED_MESSAGE), ("", "20", age, "", REQUIRED_MESSAGE)]
    assert pq.read_table(out).num_rows == 28

    strict = tmp_path / "strict.parquet"
    assert run(loans, source, "-o", strict, "--strict") == score.EXIT_ROW_ERRORS
    assert not strict.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.csv", "in.parquet", "out.parquet"]


def test_the_arrow_batch_function_names_imputed_features_and_sets_required_ones_aside(
    loans: Registry, loans_model: LoadedModel
) -> None:
    """`ArrowScorer.score`, record batch in and out, as Spark's `mapInArrow` would call it."""
    frame = loans_frame(20, seed=18)
    table = typed(loans, frame)
    age = loans.column(REQUIRED[0])
    ages = table.column(age).to_pylist()
    ages[2] = None
    table = table.set_column(table.schema.get_field_index(age), age, pa.array(ages, pa.int64()))
    (batch,) = table.to_batches()

    result = ArrowScorer(loans_model, table.schema).score(batch)

    assert result.rows == 20
    assert [(e.row, e.column, e.message) for e in result.errors] == [(2, age, REQUIRED_MESSAGE)]
    assert result.output.schema.names[-1] == "imputed"
    expected = expected_imputed(loans.manifest, frame)
    assert result.output.column("imputed").to_pylist() == expected[:2] + expected[3:]
