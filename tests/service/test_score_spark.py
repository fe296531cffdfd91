"""`python -m service score --engine spark` and `service.batch.spark.score_dataframe`: the local
command's answers, row for row and error for error, from a real Spark (local[2]), nothing mocked.

The local `score` is the reference: each test scores the same rows both ways. The command runs in
subprocesses (each starts its own JVM, so they are few); the API tests share one in-process
session. Small files are split into several Spark partitions (a small
`spark.sql.files.maxPartitionBytes`), so the numbering of rows across partitions is exercised.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no type hints
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest
from pyspark.sql import SparkSession
from pyspark.sql.functions import spark_partition_id

from service.batch import cli as score
from service.batch import spark as spark_engine
from service.batch.cli import find_model
from service.batch.job import ERRORS_HEADER, ScoreError
from service.batch.parquet import ArrowScorer
from service.batch.spark import NotAllScored, score_dataframe
from service.errors import InvalidInput
from service.manifest import Manifest
from tests.service.helpers import REPO, manifest_of
from tests.service.test_score_parquet import MODELS, TYPES, columns
from training.generators import generate

# pytest turns warnings into errors; PySpark warns about pandas 3 on every mapInArrow (spark.py
# ignores that warning itself, but pytest's own filters take precedence during a test).
pytestmark = pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas")

MASTER = "local[2]"
SPLIT_BYTES = 64 * 1024  # spark.sql.files.maxPartitionBytes: a 300 KB file in several partitions
ROWS = 3000
Errors = list[tuple[str, str, str, str]]

# Rows of the generated file (header: RowNumber, CustomerId, Surname, CreditScore, Geography,
# Gender, Age, Tenure, Balance, NumOfProducts, HasCrCard, IsActiveMember, EstimatedSalary,
# Exited) made bad, or awkward but good, by position: spread over the file and its partitions.
SHORT, EXTRA, NOT_A_NUMBER, OLD, MARS, BLANK, COMMA, SPACES = (
    7, 450, 1100, 1650, 2000, 2400, 2600, 2999
)  # fmt: skip


# ---- helpers -----------------------------------------------------------------------------------


def generated_rows(count: int = ROWS, seed: int = 3) -> tuple[list[str], list[list[str]]]:
    """`python -m training generate churn` rows (header, rows), as text cells."""
    text = generate("churn", count, seed).frame.to_csv(index=False)
    header, *rows = csv.reader(io.StringIO(text))
    return header, rows


def bad_rows() -> tuple[list[str], list[list[str]]]:
    """Generated churn rows with the bad (and the awkward good) rows the issue lists."""
    header, rows = generated_rows()
    at = {name: header.index(name) for name in header}
    rows[SHORT] = rows[SHORT][:5]
    rows[EXTRA] = [*rows[EXTRA], "surplus"]
    rows[NOT_A_NUMBER][at["CreditScore"]] = "abc"
    rows[OLD][at["Age"]] = "150"
    rows[MARS][at["Geography"]] = "Mars"
    rows[BLANK][at["Tenure"]] = ""
    rows[COMMA][at["Surname"]] = "Smith, Jr."
    rows[SPACES][at["Surname"]] = "  Lee  "
    # More cells both commands must read alike (all good rows).
    rows[300][at["Age"]] = " 42 "
    rows[301][at["Geography"]] = " Spain "
    rows[302][at["Surname"]] = ""
    rows[303][at["Surname"]] = 'O"Neil'
    rows[304][at["Surname"]] = "NaN"
    return header, rows


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows([header, *rows])
    return path


def read_cells(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle))


def spark_cells(directory: Path) -> list[list[str]]:
    """Spark's part files in name order, each one's header checked and dropped; the header first."""
    parts = sorted(directory.glob("part-*.csv"))
    assert parts, sorted(p.name for p in directory.iterdir())
    header: list[str] | None = None
    rows: list[list[str]] = []
    for part in parts:
        cells = read_cells(part)
        if not cells:
            continue  # a partition whose rows were all set aside may write no header
        assert header is None or cells[0] == header, part
        header = cells[0]
        rows += cells[1:]
    assert header is not None
    return [header, *rows]


def errors_of(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == ERRORS_HEADER
        return list(reader)


def without_line(errors: list[dict[str, str]]) -> Errors:
    return [(e["row"], e["column"], e["value"], e["error"]) for e in errors]


def local(*args: str | Path, models: Path = MODELS) -> int:
    """The local command, in this process (one worker: no fork beside the JVM's gateway)."""
    argv = ["--models", str(models), "--model", "churn", "--quiet", "--workers", "1"]
    return score.main([*argv, *map(str, args)])


def spark_conf_dir(tmp_path: Path) -> Path:
    """A SPARK_CONF_DIR whose spark-defaults.conf splits small files into several partitions."""
    conf = tmp_path / "spark-conf"
    conf.mkdir()
    (conf / "spark-defaults.conf").write_text(
        f"spark.sql.files.maxPartitionBytes {SPLIT_BYTES}\nspark.sql.files.openCostInBytes 0\n"
    )
    return conf


def spark_command(
    folder: Path, *args: str | Path, models: Path = MODELS
) -> tuple[list[str], dict[str, str]]:
    """`python -m service score --engine spark --master local[2]` and its environment (a Spark
    configuration folder made in `folder`)."""
    command = [sys.executable, "-m", "service", "score", "--models", str(models), "--model",
               "churn", "--engine", "spark", "--master", MASTER, "--quiet",
               *map(str, args)]  # fmt: skip
    return command, {**os.environ, "SPARK_CONF_DIR": str(spark_conf_dir(folder))}


def on_spark(
    tmp_path: Path, *args: str | Path, models: Path = MODELS
) -> subprocess.CompletedProcess[str]:
    """The command with --engine spark in a subprocess, run to its end."""
    command, env = spark_command(tmp_path, *args, models=models)
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def score_lines(stderr: str) -> list[str]:
    """The command's own lines on stderr (the JVM may print its start-up notes there)."""
    return [line for line in stderr.splitlines() if line.startswith("score:")]


def corrupt_registry(tmp_path: Path) -> Path:
    """A copy of the committed registry whose current churn model.onnx has bytes flipped."""
    models = shutil.copytree(MODELS, tmp_path / "models")
    version = (models / "churn" / "current").read_text().strip()
    onnx = models / "churn" / version / "model.onnx"
    data = bytearray(onnx.read_bytes())
    for index in range(len(data) // 2, len(data) // 2 + 16):
        data[index] ^= 0xFF
    onnx.write_bytes(bytes(data))
    return models


# ---- the command -------------------------------------------------------------------------------


def test_csv_through_spark_gives_the_local_output_and_errors_cell_for_cell(
    tmp_path: Path,
) -> None:
    header, rows = bad_rows()
    source = write_csv(tmp_path / "in.csv", header, rows)
    text = source.read_text(encoding="utf-8").split("\n")
    text.insert(1500, "")  # a blank line: not a row for either command
    source.write_text("\n".join(text), encoding="utf-8")
    assert source.stat().st_size > 3 * SPLIT_BYTES  # several partitions
    local_out, local_errors = tmp_path / "local.csv", tmp_path / "local-errors.csv"
    spark_out, spark_errors = tmp_path / "spark.csv", tmp_path / "spark-errors.csv"

    assert local(source, "-o", local_out, "--errors", local_errors) == score.EXIT_ROW_ERRORS
    done = on_spark(tmp_path, source, "-o", spark_out, "--errors", spark_errors)

    assert done.returncode == score.EXIT_ROW_ERRORS, done.stderr
    assert spark_out.is_dir() and (spark_out / "_SUCCESS").exists()
    assert len(list(spark_out.glob("part-*.csv"))) > 1  # several partitions were scored
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]
    expected, got = read_cells(local_out), spark_cells(spark_out)
    assert got[0] == expected[0]
    assert len(got) == len(expected) == 1 + ROWS - 6  # six bad rows set aside
    for number, (want, have) in enumerate(zip(expected, got, strict=True)):
        assert have == want, number
    surnames = {row[header.index("Surname")] for row in got}
    assert {"Smith, Jr.", "  Lee  "} <= surnames  # the awkward good rows came back untouched

    want_errors, got_errors = errors_of(local_errors), errors_of(spark_errors)
    assert {e["line"] for e in got_errors} == {""}
    assert without_line(got_errors) == without_line(want_errors)
    assert sorted({int(e["row"]) for e in got_errors}) == sorted(
        [SHORT, EXTRA, NOT_A_NUMBER, OLD, MARS, BLANK]
    )
    messages = {int(e["row"]): e["error"] for e in got_errors}
    assert messages[SHORT] == f"the row has 5 cells, the header has {len(header)}"
    assert messages[EXTRA] == f"the row has {len(header) + 1} cells, the header has {len(header)}"


def test_parquet_through_spark_gives_the_local_table_and_errors(
    churn: Manifest, tmp_path: Path
) -> None:
    data = columns(churn, ROWS)
    data["Age"][10] = None  # a null in a required column
    data["Age"][2100] = 150  # out of range
    data["CreditScore"][2100] = 9999  # the same row, a second error
    data["Balance"][1500] = float("nan")  # NaN is missing too
    data["Geography"][2800] = "Mars"
    data["Geography"][2900] = None
    source = tmp_path / "in.parquet"
    table = pa.table({name: pa.array(values, TYPES[name]) for name, values in data.items()})
    pq.write_table(table, source, row_group_size=250)  # row groups for several partitions
    local_out, local_errors = tmp_path / "local.parquet", tmp_path / "local-errors.csv"
    spark_out, spark_errors = tmp_path / "spark.parquet", tmp_path / "spark-errors.csv"

    assert local(source, "-o", local_out, "--errors", local_errors) == score.EXIT_ROW_ERRORS
    done = on_spark(tmp_path, source, "-o", spark_out, "--errors", spark_errors)

    assert done.returncode == score.EXIT_ROW_ERRORS, done.stderr
    assert len(list(spark_out.glob("part-*.parquet"))) > 1  # several partitions were written
    expected = pq.read_table(local_out)
    got = pq.read_table(spark_out)
    assert got.column_names == expected.column_names
    assert got.num_rows == expected.num_rows == ROWS - 5
    for number, (want, have) in enumerate(zip(expected.to_pylist(), got.to_pylist(), strict=True)):
        assert have == want, number
    assert without_line(errors_of(spark_errors)) == without_line(errors_of(local_errors))
    assert [e["row"] for e in errors_of(spark_errors)] == [
        "10", "1500", "2100", "2100", "2800", "2900"
    ]  # fmt: skip


def test_strict_stops_the_job_writes_nothing_and_names_the_bad_row(tmp_path: Path) -> None:
    header, rows = generated_rows()
    bad = 2700  # far into the file: not in its first partition
    rows[bad][header.index("Age")] = "-3"
    source = write_csv(tmp_path / "in.csv", header, rows)
    out, errors = tmp_path / "out.csv", tmp_path / "errors.csv"
    local_errors = tmp_path / "local-errors.csv"

    local_code = local(source, "-o", tmp_path / "local.csv", "--errors", local_errors, "--strict")
    done = on_spark(tmp_path, source, "-o", out, "--errors", errors, "--strict")

    assert local_code == done.returncode == score.EXIT_ROW_ERRORS, done.stderr
    assert not out.exists()
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    assert leftovers == ["errors.csv", "in.csv", "local-errors.csv", "spark-conf"]
    found = errors_of(errors)
    assert [(e["row"], e["column"], e["value"]) for e in found] == [(str(bad), "Age", "-3")]
    assert without_line(found) == without_line(errors_of(local_errors))
    assert "Traceback" not in done.stderr


def test_a_corrupt_model_exits_2_in_one_line_before_any_row_is_scored(tmp_path: Path) -> None:
    header, rows = generated_rows(50)
    source = write_csv(tmp_path / "in.csv", header, rows)
    models = corrupt_registry(tmp_path)

    done = on_spark(tmp_path, source, "-o", tmp_path / "out.csv", models=models)

    assert done.returncode == score.EXIT_BAD_INPUT, done.stderr
    lines = score_lines(done.stderr)
    assert len(lines) == 1 and "sha256" in lines[0], done.stderr
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "models", "spark-conf"]


def test_a_missing_feature_column_exits_2_naming_it(tmp_path: Path) -> None:
    header, rows = generated_rows(50)
    age = header.index("Age")
    source = write_csv(
        tmp_path / "in.csv",
        header[:age] + header[age + 1 :],
        [row[:age] + row[age + 1 :] for row in rows],
    )

    done = on_spark(tmp_path, source, "-o", tmp_path / "out.csv")

    assert done.returncode == score.EXIT_BAD_INPUT, done.stderr
    lines = score_lines(done.stderr)
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"score: {source}: ") and "Missing column 'age'" in lines[0]
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "spark-conf"]


@pytest.fixture(scope="module")
def churn() -> Manifest:
    return manifest_of(MODELS, "churn")


# ---- the API, in one session --------------------------------------------------------------------


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    session = spark_engine.session(MASTER, 2, True)
    session.conf.set("spark.sql.files.maxPartitionBytes", str(SPLIT_BYTES))
    session.conf.set("spark.sql.files.openCostInBytes", "0")
    yield session
    session.stop()


def arrow_rows(churn: Manifest, count: int) -> Any:
    """Typed churn rows with a few bad ones, as one Arrow table (no dictionary columns: an
    in-memory DataFrame is built from it)."""
    data = columns(churn, count)
    data["Age"][3] = 7
    data["Geography"][count - 5] = "Atlantis"
    data["CreditScore"][count - 2] = None
    types = {**TYPES, "gender": pa.string()}
    return pa.table({name: pa.array(values, types[name]) for name, values in data.items()})


def job_ids(spark: SparkSession, group: str) -> list[int]:
    return list(spark.sparkContext.statusTracker().getJobIdsForGroup(group))


def test_score_dataframe_gives_the_arrow_scorer_s_predictions_and_errors(
    spark: SparkSession, churn: Manifest
) -> None:
    table = arrow_rows(churn, 1000)
    df = spark.createDataFrame(table)
    assert df.rdd.getNumPartitions() >= 2  # errors of later partitions are shifted
    batch = table.combine_chunks().to_batches()[0]
    expected = ArrowScorer(find_model(MODELS, "churn"), batch.schema).score(batch)

    scoring = score_dataframe(df, MODELS, "churn")
    with pytest.raises(NotAllScored):
        scoring.report()
    scoring.frame.write.format("noop").mode("overwrite").save()
    rows, errors = scoring.report()

    assert rows == 1000
    assert errors == expected.errors
    assert [(e.row, e.column) for e in errors] == [(3, "Age"), (995, "Geography"),
                                                   (998, "CreditScore")]  # fmt: skip
    got = scoring.frame.toArrow()  # a second action: the report is not doubled
    assert scoring.report() == (1000, errors)
    want = pa.Table.from_batches([expected.output])
    assert got.column_names == want.column_names
    assert got.num_rows == want.num_rows == 997
    for number, (have, wanted) in enumerate(zip(got.to_pylist(), want.to_pylist(), strict=True)):
        assert have == wanted, number


def spark_csv(spark: SparkSession, source: Path, out: Path, **options: bool) -> tuple[int, Errors]:
    """`source` read, scored and written as `score --engine spark` does (its read, score_dataframe
    with text numbers, write); the rows read and the errors (row, column, value, error)."""
    df = spark_engine.read(spark, str(source), "csv")
    scoring = score_dataframe(df, MODELS, "churn", text=True, **options)
    spark_engine.write(scoring.frame, str(out), "csv")
    rows, errors = scoring.report()
    return rows, [(str(e.row), e.column or "", e.value or "", e.message) for e in errors]


def local_csv(source: Path, out: Path, *args: str) -> tuple[int, Errors]:
    errors = out.with_suffix(".errors.csv")
    code = local(source, "-o", out, "--errors", errors, *args)
    return code, without_line(errors_of(errors))


def test_explain_through_spark_gives_the_local_contributions(
    spark: SparkSession, tmp_path: Path
) -> None:
    header, rows = generated_rows(300)
    rows[40][header.index("Age")] = "9"
    rows[250][header.index("Gender")] = "Other"
    source = write_csv(tmp_path / "in.csv", header, rows)

    code, want_errors = local_csv(source, tmp_path / "local.csv", "--explain")
    _, got_errors = spark_csv(spark, source, tmp_path / "spark", explain=True)

    assert code == score.EXIT_ROW_ERRORS
    expected, got = read_cells(tmp_path / "local.csv"), spark_cells(tmp_path / "spark")
    assert [n for n in got[0] if n.startswith("contribution_")] == [
        f"contribution_{f.name}" for f in manifest_of(MODELS, "churn").features
    ]
    assert got == expected
    assert got_errors == want_errors
    assert [e[:2] for e in got_errors] == [("40", "Age"), ("250", "Gender")]


def test_a_quoted_line_break_splits_the_record_and_both_halves_are_set_aside(
    spark: SparkSession, tmp_path: Path
) -> None:
    """Spark reads CSV a line at a time (so a file splits into partitions): a line break inside a
    quoted cell, which the local command reads as one record, gives two rows of the wrong width,
    both reported, neither scored (the README says so); every other row is scored as locally."""
    header, rows = generated_rows(40)
    rows[3][header.index("Surname")] = 'multi\nline "quoted"'
    source = write_csv(tmp_path / "in.csv", header, rows)

    code, want_errors = local_csv(source, tmp_path / "local.csv")
    read, got_errors = spark_csv(spark, source, tmp_path / "spark")

    assert code == score.EXIT_OK and want_errors == []
    assert read == 41
    assert [(row, message.split(",")[0]) for row, _, _, message in got_errors] == [
        ("3", f"the row has {header.index('Surname') + 1} cells"),
        ("4", f"the row has {len(header) - header.index('Surname')} cells"),
    ]
    local = read_cells(tmp_path / "local.csv")
    assert spark_cells(tmp_path / "spark") == local[:4] + local[5:]


def test_repeated_column_names_get_spark_s_suffix_and_their_cells_untouched(
    spark: SparkSession, tmp_path: Path
) -> None:
    """Columns the model does not use pass through untouched; Spark's CSV reader renames
    repeated names by appending their position (the README says so)."""
    header, rows = generated_rows(20)
    header = ["Exited" if name == "Surname" else name for name in header]  # two `Exited`
    source = write_csv(tmp_path / "in.csv", header, rows)

    code, _ = local_csv(source, tmp_path / "local.csv")
    spark_csv(spark, source, tmp_path / "spark")

    assert code == score.EXIT_OK
    local = read_cells(tmp_path / "local.csv")
    assert local[0][: len(header)] == header
    renamed = [f"{name}{i}" if name == "Exited" else name for i, name in enumerate(header)]
    got = spark_cells(tmp_path / "spark")
    assert got[0] == renamed + local[0][len(header) :]
    assert got[1:] == local[1:]


def test_a_corrupt_model_is_refused_before_any_job_or_file_is_shipped(
    spark: SparkSession, churn: Manifest, tmp_path: Path
) -> None:
    models = corrupt_registry(tmp_path)
    df = spark.createDataFrame(arrow_rows(churn, 50))
    context = spark.sparkContext
    files_before = set(context.listFiles)

    context.setJobGroup("corrupt-model", "score_dataframe with a corrupt model")
    try:
        with pytest.raises(ScoreError, match="sha256"):
            score_dataframe(df, models, "churn")
        assert job_ids(spark, "corrupt-model") == []
        assert set(context.listFiles) == files_before  # the model was not shipped
        df.count()  # the signal works: a job in the group is seen
        assert len(job_ids(spark, "corrupt-model")) >= 1
    finally:
        context.setLocalProperty("spark.jobGroup.id", None)  # type: ignore[arg-type]


def test_a_missing_feature_column_is_named_before_any_job(
    spark: SparkSession, churn: Manifest
) -> None:
    df = spark.createDataFrame(arrow_rows(churn, 50)).drop("Age")
    context = spark.sparkContext

    context.setJobGroup("missing-column", "score_dataframe without the age column")
    try:
        with pytest.raises(InvalidInput, match="Missing column 'age'"):
            score_dataframe(df, MODELS, "churn")
        assert job_ids(spark, "missing-column") == []
    finally:
        context.setLocalProperty("spark.jobGroup.id", None)  # type: ignore[arg-type]


def test_strict_names_a_bad_row_a_task_met_counted_from_the_start_of_the_input(
    spark: SparkSession, tmp_path: Path
) -> None:
    """`score --strict` reports the row `strict_errors` names, counted from the start of the input
    (the rows of the partitions before its own added). Partitions run at once, so it is the first
    bad row a task meets, not necessarily the input's first (the README says so): here partition 0
    is long, with its bad row near its end, and partition 1 is short and bad at once."""
    header, rows = generated_rows(20_000)
    age = header.index("Age")
    rows[19_900][age] = "5"  # the first bad row
    rows[19_990][age] = "6"  # in the last, short partition
    source = write_csv(tmp_path / "in.csv", header, rows)
    tail = len("".join(f"{','.join(row)}\n" for row in rows[19_950:]))
    code, want = local_csv(source, tmp_path / "local.csv")
    assert code == score.EXIT_ROW_ERRORS
    assert [e[:3] for e in want] == [("19900", "Age", "5"), ("19990", "Age", "6")]
    settings = {
        "spark.sql.files.maxPartitionBytes": str(source.stat().st_size - tail),
        "spark.sql.files.minPartitionNum": "1",  # else the file is split in two halves at most
        "spark.sql.execution.arrow.maxRecordsPerBatch": "100",
    }
    before = {name: spark.conf.get(name) for name in settings}
    for name, value in settings.items():
        spark.conf.set(name, value)
    try:
        df = spark_engine.read(spark, str(source), "csv")
        assert df.rdd.getNumPartitions() == 2
        scoring = score_dataframe(df, MODELS, "churn", text=True, strict=True)
        with pytest.raises(Exception) as failed:
            scoring.frame.write.format("noop").mode("overwrite").save()
        stopped = spark_engine.strict_errors(failed.value)
        assert stopped is not None, str(failed.value)[:2000]
        partition, errors = stopped
        offset = df.where(spark_partition_id() < partition).count() if partition else 0
    finally:
        for name, old in before.items():
            if old is None:
                spark.conf.unset(name)
            else:
                spark.conf.set(name, old)

    got = [(str(e.row + offset), e.column or "", e.value or "", e.message) for e in errors]
    assert len(got) == 1 and got[0] in want
