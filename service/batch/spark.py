"""Batch scoring on Apache Spark: the `score` command's Arrow scorer run on the executors.

`score_dataframe` hands every partition of a DataFrame to `service.batch.parquet.ArrowScorer`
through `DataFrame.mapInArrow`, so Spark scores with the same header matching, checks, messages
and prediction columns as `score` does locally. The model's version folder is shipped with the
job (`SparkContext.addFile`); each executor's Python worker loads it once per task and version,
checking its sha256 and running its self-check as the service does, and the driver loads it
first, so a corrupt model is refused before any row is scored.

Bad rows are set aside as `score` sets them aside: each partition tells the driver, through an
accumulator, its row count and its errors (rows counted within the partition), and the driver
numbers the errors from the start of the input once every partition has reported. The report is
keyed by partition, so a retried task replaces its first report rather than adding to it.

`score_job` is `python -m service score --engine spark`: it reads Parquet or CSV (every column as
text, as the CSV command reads cells), writes a directory of part files beside the target and
renames it into place at the end, and reports errors as the local command does.
"""

from __future__ import annotations

import argparse
import atexit
import csv
import json
import os
import posixpath
import re
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no type hints

from service.batch.job import (
    CSV,
    PARQUET,
    ErrorReport,
    ScoreError,
    Summary,
    find_version,
    first_row,
    input_format,
    load_checked,
    load_manifest,
)
from service.batch.parquet import Arrow, ArrowScorer, arrow_layout, kept_rows
from service.batch.scoring import RowError, width_message
from service.codecs.probabilities import contribution_text, probability_text
from service.errors import InvalidInput
from service.model import LoadedModel, load_model

# PySpark warns on every mapInArrow that it does not "fully support" pandas 3; mapInArrow hands
# Arrow batches over and never uses pandas.
warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")

from pyspark import SparkFiles, TaskContext  # noqa: E402  (after the warning filter)
from pyspark.accumulators import Accumulator, AccumulatorParam  # noqa: E402
from pyspark.sql import DataFrame, SparkSession  # noqa: E402
from pyspark.sql.functions import spark_partition_id  # noqa: E402
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema  # noqa: E402
from pyspark.sql.types import StringType, StructField, StructType  # noqa: E402

MALFORMED = "__score_malformed_line"  # where Spark's CSV reader puts a line of the wrong width
SUBMITTED = "PYSPARK_GATEWAY_PORT"  # set in a driver that spark-submit started
STRICT_MARKER = "score --strict stopped at a bad row: "
# A partition's report: its row count and its errors as tuples (RowError's fields).
Report = dict[int, tuple[int, list[tuple[Any, ...]]]]


class NotAllScored(Exception):
    """The errors were asked for before every partition of the scored frame was scored."""


class _Reports(AccumulatorParam[Report]):
    """Partition number -> (rows, errors); a later report of a partition replaces the first."""

    def zero(self, value: Report) -> Report:
        return {}

    def addInPlace(self, value1: Report, value2: Report) -> Report:  # pyspark's name
        value1.update(value2)
        return value1


@dataclass(frozen=True)
class _Job:
    """What an executor needs to score a partition (pickled into the task)."""

    files: str  # the SparkFiles name of the shipped folder, which holds task/version
    task: str
    version: str
    explain: bool
    strict: bool
    text: bool  # prediction numbers as the CSV command's text (for CSV output)
    malformed: str | None  # the column holding lines Spark's CSV reader found malformed
    width: int  # the input's columns, for the malformed lines' message


@dataclass
class SparkScoring:
    """A scored DataFrame (lazy: nothing runs until an action) and, once an action has scored
    every partition, the rows set aside."""

    frame: DataFrame
    _reports: Accumulator[Report]
    _partitions: int

    def partition_rows(self) -> list[int]:
        """The rows each partition has read so far (0 for one not scored yet): how Spark split
        the input."""
        reports: Report = self._reports.value
        return [reports.get(n, (0, []))[0] for n in range(self._partitions)]

    def report(self) -> tuple[int, list[RowError]]:
        """The rows read and the errors, rows numbered from the start of the input in Spark's
        partition order (a single file's own order); NotAllScored before an action has run."""
        reports: Report = self._reports.value
        missing = self._partitions - len(reports)
        if missing:
            raise NotAllScored(
                f"{missing} of {self._partitions} partitions not scored yet: the errors are "
                "known once an action (a write, say) has read the whole frame"
            )
        errors: list[RowError] = []
        offset = 0
        for partition in sorted(reports):
            rows, found = reports[partition]
            errors += [RowError(*error).shifted(0, offset) for error in found]
            offset += rows
        return offset, errors


def score_dataframe(
    df: DataFrame,
    models_dir: Path | str,
    task: str,
    *,
    explain: bool = False,
    strict: bool = False,
    text: bool = False,
) -> SparkScoring:
    """Score `df` with the current version of `task` in the registry `models_dir`.

    The columns are matched to the features as a CSV header is; InvalidInput names a missing
    or unusable column, ScoreError an unknown or unloadable model (both before any row is
    scored). The frame holds the good rows: the input's columns, then label, probability,
    p_<label>..., out_of_range (and imputed, and with `explain` contribution_<feature>); with
    `text` the numbers are the CSV command's text. With `strict`, a bad row fails the job.
    """
    return score_version(
        df, find_version(Path(models_dir), task), explain=explain, strict=strict, text=text
    )


def score_version(
    df: DataFrame, folder: Path, *, explain: bool = False, strict: bool = False, text: bool = False
) -> SparkScoring:
    """`score_dataframe` with the registry's version folder `folder` (`task/version`) itself."""
    schema = to_arrow_schema(df.schema)
    malformed = MALFORMED if MALFORMED in df.columns else None
    features = schema.remove(schema.get_field_index(malformed)) if malformed else schema
    arrow_layout(load_manifest(folder), features)  # columns checked before the model loads
    model = load_checked(folder)
    scorer = ArrowScorer(model, features, explain)
    job = _Job(
        _ship(df.sparkSession, folder),
        folder.parent.name,
        folder.name,
        explain,
        strict,
        text,
        malformed,
        len(features.names),
    )
    reports = df.sparkSession.sparkContext.accumulator({}, _Reports())
    output = from_arrow_schema(_output_schema(scorer, features, text))
    frame = df.mapInArrow(partial(_score_partition, job, reports), output)
    return SparkScoring(frame, reports, frame.rdd.getNumPartitions())


def _output_schema(scorer: ArrowScorer, features: Arrow, text: bool) -> Arrow:
    """The scorer's output schema; with `text`, its appended numbers as text."""
    schema = scorer.schema
    if not text:
        return schema
    for index in range(len(features.names), len(schema.names)):
        field = schema.field(index)
        if pa.types.is_floating(field.type):
            schema = schema.set(index, field.with_type(pa.string()))
    return schema


# ---- on the executors ---------------------------------------------------------------------------

_SCORERS: dict[tuple[_Job, Arrow], ArrowScorer] = {}
_MODELS: dict[str, LoadedModel] = {}


def _score_partition(
    job: _Job, reports: Accumulator[Report], batches: Iterator[Arrow]
) -> Iterator[Arrow]:
    """mapInArrow's function: every batch of one partition scored; its report sent at the end."""
    context = TaskContext.get()
    partition = context.partitionId() if context is not None else 0
    rows = 0
    errors: list[RowError] = []
    for batch in batches:
        output, found = _score_batch(job, batch)
        found = [error.shifted(0, rows) for error in found]
        if found and job.strict:
            raise StrictStop(partition, first_row(found))
        errors += found
        rows += batch.num_rows
        yield output
    reports.add({partition: (rows, [_fields(error) for error in errors])})


def _fields(error: RowError) -> tuple[Any, ...]:
    return (error.line, error.row, error.column, error.value, error.message)


def _score_batch(job: _Job, batch: Arrow) -> tuple[Arrow, list[RowError]]:
    """One batch through the ArrowScorer; lines Spark found malformed are set aside first."""
    malformed: list[RowError] = []
    kept: list[int] | None = None
    if job.malformed is not None:
        index = batch.schema.get_field_index(job.malformed)
        lines = batch.column(index)
        batch = batch.remove_column(index)
        if lines.null_count < len(lines):
            bad = np.asarray(lines.is_valid())
            kept = np.flatnonzero(~bad).tolist()
            malformed = [
                RowError(None, row, None, None, _malformed_message(line, job.width))
                for row, line in zip(
                    np.flatnonzero(bad).tolist(), lines.filter(bad).to_pylist(), strict=True
                )
            ]
            batch = kept_rows(batch, kept)
    scorer = _scorer(job, batch.schema)
    result = scorer.score(batch)
    errors = result.errors
    if kept is not None:
        errors = [replace(error, row=kept[error.row]) for error in errors]
    errors = sorted(errors + malformed, key=lambda error: error.row)
    if job.text:
        probabilities = 1 + len(scorer.model.manifest.labels)
        return _as_text(result.output, batch.num_columns, probabilities), errors
    return result.output, errors


def _malformed_message(line: str, width: int) -> str:
    """The CSV command's message for a line Spark found of the wrong number of cells."""
    cells = next(csv.reader([line]), [])
    return width_message(len(cells), width)


def _as_text(batch: Arrow, first: int, probabilities: int) -> Arrow:
    """The appended number columns as the CSV command writes them: after the input's `first`
    columns, the first `probabilities` float columns are probabilities, the rest contributions."""
    columns = list(batch.columns)
    fields = list(batch.schema)
    floats = [i for i in range(first, len(columns)) if pa.types.is_floating(fields[i].type)]
    for order, index in enumerate(floats):
        values = columns[index].to_numpy(zero_copy_only=False)
        write = probability_text if order < probabilities else contribution_text
        columns[index] = pa.array(write(values), pa.string())
        fields[index] = fields[index].with_type(pa.string())
    return pa.RecordBatch.from_arrays(columns, schema=pa.schema(fields))


def _scorer(job: _Job, schema: Arrow) -> ArrowScorer:
    """This worker's scorer for the job's model and the batch's schema, built once."""
    key = (job, schema)
    scorer = _SCORERS.get(key)
    if scorer is None:
        model = _MODELS.get(job.files)
        if model is None:
            folder = Path(SparkFiles.get(job.files)) / job.task / job.version
            model = _MODELS[job.files] = load_model(folder, threads=1)
        scorer = _SCORERS[key] = ArrowScorer(model, schema, job.explain)
    return scorer


class StrictStop(Exception):
    """With `strict`, the first bad row a task meets fails the job; the message carries the
    row's errors (as JSON after STRICT_MARKER) so the driver can report them."""

    def __init__(self, partition: int, errors: list[RowError]) -> None:
        payload = {"partition": partition, "errors": [_fields(e) for e in errors]}
        super().__init__(STRICT_MARKER + json.dumps(payload))


def strict_errors(exc: BaseException) -> tuple[int, list[RowError]] | None:
    """The partition and errors of a StrictStop, found in the text of the job's failure."""
    match = re.search(re.escape(STRICT_MARKER) + r"(\{.*\})", str(exc))
    if match is None:
        return None
    payload = json.loads(match.group(1))
    return payload["partition"], [RowError(*error) for error in payload["errors"]]


# ---- temporary folders: the shipped model's copy, the logging configuration ----

_TEMPORARY: list[Path] = []


def _temporary(prefix: str) -> Path:
    """A new folder removed by `remove_temporary` (the command calls it once Spark has stopped;
    it also runs at exit, for a session of the Python API)."""
    if not _TEMPORARY:
        atexit.register(remove_temporary)
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    _TEMPORARY.append(folder)
    return folder


def remove_temporary() -> None:
    while _TEMPORARY:
        shutil.rmtree(_TEMPORARY.pop(), ignore_errors=True)


# ---- shipping the model -------------------------------------------------------------------------


def _ship(spark: SparkSession, folder: Path) -> str:
    """Add the version folder to the job's files, as `<task>-<version>/<task>/<version>` (the
    loader names a model by its two last folders); returns the name executors ask SparkFiles for.
    """
    name = f"predict-{folder.parent.name}-{folder.name}"
    shipped: set[str] = getattr(spark, "_predict_shipped", set())
    if name not in shipped:
        root = _temporary("predict-ship-")
        shutil.copytree(folder, root / name / folder.parent.name / folder.name)
        spark.sparkContext.addFile(str(root / name), recursive=True)
        shipped.add(name)
        spark._predict_shipped = shipped  # type: ignore[attr-defined]
    return name


# ---- the command --------------------------------------------------------------------------------


# Spark's own logging, off: the command reports a failure itself, in one line (a failed task
# would otherwise print its traceback three times).
LOG4J2 = """rootLogger.level = off
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex
"""


def session(master: str | None, workers: int, quiet: bool) -> SparkSession:
    """A session for the command. Under `spark-submit` it is the one spark-submit configured
    (its master, its logging); else one on `master` (default local[workers]) with Spark's log
    off. On a local master the executors run this interpreter
    (where this package is installed) and bind to the loopback interface."""
    # Arrow batches of Spark's default 10,000 rows: 65,536 (the local scorer's) was slower here
    # (bench/RESULTS.md, "Spark batch scoring").
    builder = SparkSession.builder.appName("python -m service score")
    if SUBMITTED in os.environ and master is None:
        return builder.getOrCreate()
    master = master or f"local[{workers}]"
    log = _temporary("predict-spark-") / "log4j2.properties"
    log.write_text(LOG4J2)
    if master.startswith("local"):
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    return (
        builder.master(master)
        .config("spark.ui.showConsoleProgress", str(not quiet and sys.stderr.isatty()).lower())
        .config("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile={log}")
        .getOrCreate()
    )


def read(spark: SparkSession, path: str, form: str) -> DataFrame:
    """The input as a DataFrame: Parquet as typed; CSV with every column as text (the CSV
    command's cells), quotes doubled as in RFC 4180, malformed lines kept aside in MALFORMED."""
    if form == PARQUET:
        return spark.read.parquet(path)
    options = {"header": "true", "escape": '"', "mode": "PERMISSIVE"}
    header = spark.read.options(**options).csv(path).schema
    fields = [StructField(f.name, StringType()) for f in header.fields]
    schema = StructType([*fields, StructField(MALFORMED, StringType())])
    reader = spark.read.options(**options, columnNameOfCorruptRecord=MALFORMED)
    return reader.schema(schema).csv(path)


def write(frame: DataFrame, path: str, form: str) -> None:
    """Part files in a new directory `path`; CSV cells as the CSV command writes them (no spaces
    trimmed, an empty cell unquoted)."""
    writer = frame.write.mode("errorifexists")
    if form == PARQUET:
        writer.parquet(path)
        return
    writer.options(
        header="true",
        escape='"',
        emptyValue="",
        ignoreLeadingWhiteSpace="false",
        ignoreTrailingWhiteSpace="false",
    ).csv(path)


def score_job(folder: Path, args: argparse.Namespace) -> Summary:
    """`score --engine spark`: the input path (a file, a folder of part files or any URL Spark
    reads) scored into a directory at `-o`, replaced only when the job succeeds."""
    if args.output is None:
        raise ScoreError("--engine spark writes a directory of part files: give -o PATH")
    form = input_format(args)
    source, target = str(args.input), str(args.output)
    try:
        spark = session(args.master, args.workers, args.quiet)
    except Exception as exc:  # no Java, a master that does not answer, ...
        raise ScoreError(f"cannot start Spark ({_first_line(exc)})") from exc
    try:
        return _run(spark, folder, args, form, (source, target))
    finally:
        spark.stop()
        remove_temporary()


def _run(
    spark: SparkSession,
    folder: Path,
    args: argparse.Namespace,
    form: str,
    paths: tuple[str, str],
) -> Summary:
    source, target = paths
    try:
        df = read(spark, source, form)
    except Exception as exc:  # Spark's AnalysisException: a missing path, not Parquet, ...
        raise ScoreError(f"{source}: cannot read ({_first_line(exc)})") from exc
    try:  # the version the command resolved, not `current` read again
        scoring = score_version(
            df, folder, explain=args.explain, strict=args.strict, text=form == CSV
        )
    except InvalidInput as exc:
        raise ScoreError(f"{source}: {exc}") from exc
    partial_path = _partial(target)
    summary = Summary()
    with ErrorReport(args.errors) as report:
        try:
            write(scoring.frame, partial_path, form)
        except Exception as exc:
            _delete(spark, partial_path)
            stopped = strict_errors(exc)
            if stopped is None:
                raise ScoreError(f"{source}: the Spark job failed ({_first_line(exc)})") from exc
            partition, errors = stopped
            offset = df.where(spark_partition_id() < partition).count() if partition else 0
            report.add([error.shifted(0, offset) for error in errors], Path(source))
            summary.stopped = True
            summary.bad_rows = 1
            return summary
        rows, errors = scoring.report()
        summary.rows = rows
        summary.bad_rows = len({error.row for error in errors})
        report.add(errors, Path(source))
    if rows == 0:
        _delete(spark, partial_path)
        raise ScoreError(f"{source}: has no data rows")
    _replace(spark, partial_path, target)
    return summary


def _partial(target: str) -> str:
    """A hidden sibling of the target (Spark and Hadoop skip names starting with a dot)."""
    head, name = posixpath.split(target.rstrip("/"))
    return posixpath.join(head, f".{name}.partial-{os.getpid()}")


def _filesystem(spark: SparkSession, path: str) -> tuple[Any, Any]:
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    hadoop_path = jvm.org.apache.hadoop.fs.Path(path)
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    return hadoop_path.getFileSystem(conf), hadoop_path


def _delete(spark: SparkSession, path: str) -> None:
    fs, hadoop_path = _filesystem(spark, path)
    fs.delete(hadoop_path, True)


def _replace(spark: SparkSession, partial_path: str, target: str) -> None:
    """The finished directory renamed to the target, which is replaced if it exists."""
    fs, old = _filesystem(spark, target)
    _, new = _filesystem(spark, partial_path)
    if fs.exists(old):
        fs.delete(old, True)
    if not fs.rename(new, old):
        raise ScoreError(f"{target}: cannot move the finished output into place")


def _first_line(exc: BaseException) -> str:
    """What went wrong, in one line: a Python worker's own exception when there is one (the
    last line of its traceback), else the first line of Spark's message."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    raised = [line for line in lines if re.match(r"^[\w.]+(Error|Exception): ", line)]
    chosen = raised[-1] if raised else (lines[0] if lines else type(exc).__name__)
    return chosen[:300]
