"""Parquet for the `score` command: Arrow record batches scored with the CSV path's rules.

`ArrowScorer.score` is the whole of the scoring: a record batch of the caller's columns in, a
record batch of the good rows with the prediction columns appended out, and the bad rows named as
CSV scoring names them (the same header matching, checks, messages and retry in groups). It does
no file I/O, so any source of Arrow batches (Spark's `mapInArrow`, say) can reuse it; the rest
of the module reads Parquet files a batch at a time and writes them.

Typed columns give their numbers straight to the checks, with no round trip through text; text
columns are parsed by the CSV rules. A null (and a NaN in a float column) is a missing value, as
a blank CSV cell is: a nullable feature's is imputed by the graph and named in the `imputed`
column, a required feature's sets its row aside ("Field required"). In a text column a null is
read as an empty cell.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import sys
from collections import deque
from collections.abc import Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no type hints
import pyarrow.compute as pc  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from service.batch.scoring import RowError, checked_parts
from service.codecs.csv import (
    HEADER_LOCATION,
    ROW_LOCATION,
    Layout,
    Reading,
    imputes,
    layout,
    prediction_header,
    read_categories,
    read_numbers,
)
from service.codecs.csv_blocks import joined_flags
from service.codecs.probabilities import FLAG_SEPARATOR, rounded
from service.errors import InvalidInput, Problem
from service.explanations import Explained, check_explainable, explain
from service.manifest import Feature, Manifest
from service.model import LoadedModel, Prediction
from service.validation import Batch, Mask, ValuesInvalid

BATCH_ROWS = 65_536  # rows per record batch read: about a CSV block's worth of churn rows
Arrow = Any  # a pyarrow array, batch, schema or file (pyarrow ships no type hints)


class _NoPandas(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, *args: object) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError(name)


def _pyarrow_without_pandas() -> None:
    """pyarrow imports pandas the first time it builds an array, when pandas is installed (it is
    where training is installed): a quarter of a second and tens of MiB the service never uses.
    So pyarrow's one try is shown no pandas; a later `to_pandas` would still import it."""
    if "pandas" in sys.modules:
        return
    finder = _NoPandas()
    sys.meta_path.insert(0, finder)
    try:
        pa.array([0])  # its first array is when it looks for pandas
    finally:
        sys.meta_path.remove(finder)


_pyarrow_without_pandas()


class ParquetUnreadable(Exception):
    """The file is not Parquet, or a part of it cannot be read."""


@dataclass(frozen=True)
class ArrowResult:
    """The scored good rows, the number of rows read, and the bad rows (`row` within the batch)."""

    output: Arrow
    rows: int
    errors: list[RowError]


@dataclass(frozen=True)
class _Column:
    """One feature's column of a batch as the checks take it: numbers (NaN where missing: null,
    or NaN in a float column; with the mask of those) from a typed column, or cells from a text
    column (a null as an empty cell). `raw` is what messages quote; `known` the allowed
    categories by index, when all matched."""

    raw: Arrow
    numbers: npt.NDArray[np.float64] | None = None
    missing: npt.NDArray[np.bool_] | None = None
    texts: list[str] | None = None
    known: npt.NDArray[np.object_] | None = None


def arrow_layout(manifest: Manifest, schema: Arrow) -> Layout:
    """Each feature's column, matched by name or alias as a CSV header is (`codecs.csv.layout`);
    a column of a type the feature cannot take refuses the file (InvalidInput on the header)."""
    table = layout(manifest, list(schema.names))
    problems: list[Problem] = []
    for feature in manifest.features:
        field = schema.field(table.positions[feature.name])
        kind = _value_type(field.type)
        if feature.type == "category" and not _is_text(kind):
            msg = f"the column holds {field.type}; feature {feature.name!r} takes text (strings)"
            problems.append(Problem(None, field.name, msg, "column_type"))
        elif feature.type != "category" and not (_is_text(kind) or _is_number(kind)):
            msg = (
                f"the column holds {field.type}; feature {feature.name!r} takes numbers "
                "(integer, float, decimal, boolean or string columns)"
            )
            problems.append(Problem(None, field.name, msg, "column_type"))
    if problems:
        raise InvalidInput(problems, HEADER_LOCATION)
    return table


class ArrowScorer:
    """Scores record batches of one schema with one model; immutable, so threads can share it."""

    def __init__(self, model: LoadedModel, schema: Arrow, explain: bool = False) -> None:
        self.model = model
        self.explain = explain
        if explain:
            check_explainable(model)
        self.table = arrow_layout(model.manifest, schema)
        names = prediction_header(model, {name.strip().lower() for name in schema.names}, explain)
        flags = [pa.string()] * (2 if imputes(model) else 1)  # out_of_range (and imputed)
        kinds = [pa.string(), *[pa.float64()] * (1 + len(model.manifest.labels)), *flags]
        kinds += [pa.float64()] * (len(model.manifest.features) if explain else 0)
        self.schema: Arrow = schema
        for name, kind in zip(names, kinds, strict=True):
            self.schema = self.schema.append(pa.field(name, kind))
        self._labels = pa.array(model.manifest.labels, pa.string())
        validator = model.validator
        self._allowed = {
            f.name: (pa.array(f.categories, pa.string()), np.asarray(f.categories, dtype=object))
            for f in validator.categorical
        }

    def score(self, batch: Arrow) -> ArrowResult:
        """Check and predict every row of `batch`; bad rows are reported, not written."""
        size = batch.num_rows
        columns = {
            f.name: self._column(f, batch.column(self.table.positions[f.name]))
            for f in self.model.validator.features
        }
        parts, problems = checked_parts(size, partial(self._check, columns, size))
        if problems:
            batch = kept_rows(batch, [i for indices, _ in parts for i in indices])
        columns_out = [*batch.columns, *self._appended([part for _, part in parts])]
        output = pa.RecordBatch.from_arrays(columns_out, schema=self.schema)
        problems.sort(key=lambda p: p.index or 0)
        errors = [
            RowError(None, p.index or 0, p.field, None if p.input is None else str(p.input), p.msg)
            for p in problems
        ]
        return ArrowResult(output, size, errors)

    def _column(self, feature: Feature, column: Arrow) -> _Column:
        if pa.types.is_dictionary(column.type):
            column = column.dictionary_decode()
        if pa.types.is_null(column.type) or pa.types.is_string_view(column.type):
            column = column.cast(pa.large_string())  # what the text kernels below all take
        if feature.type == "category":
            allowed, objects = self._allowed[feature.name]
            index = pc.index_in(column, value_set=allowed)
            if not index.null_count:  # every cell is an allowed value exactly (the usual case)
                return _Column(column, known=objects[index.to_numpy()])
        if _is_text(column.type):
            texts = pc.fill_null(column, "").to_pylist()
            if feature.type == "category":  # as CSV cells: spaces around a category are dropped
                texts = [text.strip() for text in texts]
            return _Column(texts, texts=texts)
        numbers = pc.cast(column, pa.float64(), safe=False).to_numpy(zero_copy_only=False)
        missing = np.isnan(numbers)  # a null is NaN here too
        return _Column(column, numbers=numbers, missing=missing if missing.any() else None)

    def _check(self, columns: dict[str, _Column], size: int, indices: list[int] | None) -> Batch:
        """Check rows `indices` (None: all) as `codecs.csv.batch_from_columns` checks text cells:
        unreadable numbers and missing values of required features (a null quoted as nothing)
        are reported and every other value is checked by the Validator's rules; every problem is
        listed (none for all rows, see `checked_parts`), each naming the caller's column."""
        validator = self.model.validator
        count = size if indices is None else len(indices)
        limit = 0 if indices is None else None  # all rows: only whether they are clean matters
        reading = Reading(limit)
        numbers = [
            self._numbers(feature, columns[feature.name], indices, reading)
            for feature in validator.numeric
        ]
        categories = {
            f.name: _picked(columns[f.name].known, indices)
            if columns[f.name].known is not None
            else read_categories(
                f, _picked(columns[f.name].texts, indices), self.table.na_values, reading
            )
            for f in validator.categorical
        }
        known = all(columns[f.name].known is not None for f in validator.categorical)
        raw = {f.name: _picked(columns[f.name].raw, indices) for f in validator.numeric}
        matrix = np.vstack(numbers) if numbers else np.empty((0, count))
        try:
            return validator.assemble(
                count,
                matrix,
                categories,
                raw,
                known_categories=known,
                found=reading.found,
                unread=reading.unread,
                limit=limit,
            )
        except ValuesInvalid as exc:
            problems = [self._named(p) for p in exc.problems]
            raise InvalidInput(problems, ROW_LOCATION, exc.not_listed) from exc

    def _numbers(
        self, feature: Feature, column: _Column, indices: list[int] | None, reading: Reading
    ) -> npt.NDArray[np.float64]:
        """The values, NaN where missing or unreadable; what is wrong is told to `reading`."""
        if column.texts is not None:
            texts = _picked(column.texts, indices)
            return read_numbers(feature, texts, self.table.na_values, reading)
        assert column.numbers is not None
        values: npt.NDArray[np.float64] = _picked(column.numbers, indices)
        if column.missing is not None and not feature.nullable:
            missing: Mask = _picked(column.missing, indices)
            if missing.any():
                reading.required(feature, missing, [None] * len(values))
        return values

    def _named(self, problem: Problem) -> Problem:
        """The problem with the caller's column name for the feature's (as `codecs.csv` does)."""
        if problem.field is None:
            return problem
        header = self.table.header[self.table.positions[problem.field]]
        return Problem(problem.index, header, problem.msg, problem.type, problem.input)

    def _appended(self, parts: list[Batch]) -> list[Arrow]:
        """label, probability, p_<label>..., out_of_range (and imputed, and with `explain` the
        contributions) for the good rows, in order; the probabilities and contributions rounded
        as the CSV cells are, kept as numbers."""
        predict = partial(explain, self.model) if self.explain else self.model.predict
        predictions = [predict(part) for part in parts]
        labels = len(self.model.manifest.labels)
        probabilities = np.concatenate(
            [p.probabilities for p in predictions] or [np.empty((0, labels), np.float32)]
        )
        classes = np.concatenate([p.classes for p in predictions] or [np.empty(0, np.intp)])
        values = rounded(probabilities)
        columns = [pa.array(np.ascontiguousarray(column)) for column in values.T]
        if self.model.manifest.kind == "binary":
            chosen = columns[self.model.manifest.positive_index]
        else:
            chosen = pa.array(values[np.arange(len(values)), classes])
        flags = [_flags(parts), *([_imputed(parts)] if imputes(self.model) else [])]
        appended = [pc.take(self._labels, pa.array(classes)), chosen, *columns, *flags]
        if self.explain:
            appended += _contributions(predictions, len(self.model.manifest.features))
        return appended


def _contributions(predictions: list[Prediction], width: int) -> list[Arrow]:
    """One float64 column per feature: the contributions, rounded as the CSV cells are."""
    values = [p.contributions for p in predictions if isinstance(p, Explained)]
    matrix = rounded(np.concatenate(values or [np.empty((0, width))])) + 0.0  # no -0.0
    return [pa.array(np.ascontiguousarray(column)) for column in matrix.T]


def kept_rows(batch: Arrow, rows: list[int]) -> Arrow:
    """The batch's rows `rows` (ascending): runs of them sliced and joined, which works for any
    column type (`take` has no kernel for some, string views among them)."""
    if not rows:
        return batch.slice(0, 0)
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    starts = [0, *breaks.tolist()]
    ends = [*breaks.tolist(), len(rows)]
    runs = [batch.slice(rows[a], b - a) for a, b in zip(starts, ends, strict=True)]
    return pa.concat_batches(runs)


def _picked(values: Any, indices: list[int] | None) -> Any:
    """`values` at `indices` (None: all of them), for a list, a numpy array or an Arrow array."""
    if indices is None:
        return values
    if isinstance(values, list):
        return [values[i] for i in indices]
    if isinstance(values, np.ndarray):
        return values[indices]
    return values.take(pa.array(indices, pa.int64()))


def _flags(parts: list[Batch]) -> Arrow:
    """out_of_range: the features outside the training range, joined as in CSV; mostly empty."""
    size = sum(part.size for part in parts)
    cells = np.full(size, None, dtype=object)
    offset = 0
    for part in parts:
        for row, names in part.flagged():
            cells[offset + row] = FLAG_SEPARATOR.join(names)
        offset += part.size
    return pc.fill_null(pa.array(cells, pa.string()), "")


def _imputed(parts: list[Batch]) -> Arrow:
    """imputed: the features missing and imputed, joined as in CSV; empty for a full row."""
    pieces = [pa.array([], pa.string())]
    for part in parts:
        texts, index = joined_flags(part.imputed, part.size)
        pieces.append(pc.take(pa.array(texts, pa.string()), pa.array(index)))
    return pa.concat_arrays(pieces)


def _value_type(kind: Arrow) -> Arrow:
    return kind.value_type if pa.types.is_dictionary(kind) else kind


def _is_text(kind: Arrow) -> bool:
    return bool(
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_string_view(kind)
        or pa.types.is_null(kind)  # a column of nulls only: every row is reported
    )


def _is_number(kind: Arrow) -> bool:
    return bool(
        pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_decimal(kind)
    )


# ---- files ------------------------------------------------------------------------------------


def open_parquet(path: Path) -> Arrow:
    """The file's reader (footer and schema read); ParquetUnreadable if it is not Parquet."""
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise ParquetUnreadable(f"not a readable Parquet file ({_line(exc)})") from exc


def record_batches(file: Arrow, rows: int = BATCH_ROWS) -> Iterator[Arrow]:
    """The file's rows, `rows` at a time (memory holds a batch and its row group's pages)."""
    try:
        yield from file.iter_batches(batch_size=rows)
    except (pa.ArrowException, OSError) as exc:
        raise ParquetUnreadable(f"cannot read the Parquet data ({_line(exc)})") from exc


def scored(
    scorer: ArrowScorer, batches: Iterable[Arrow], threads: int
) -> Generator[ArrowResult, None, None]:
    """Each batch's result, in input order. With threads, `threads` batches are scored at once
    (Arrow, numpy and onnxruntime release the GIL) and one more is read: bounded memory."""
    if threads <= 1:
        yield from map(scorer.score, batches)
        return
    pending: deque[Future[ArrowResult]] = deque()
    with ThreadPoolExecutor(threads) as pool:
        try:
            for batch in batches:
                pending.append(pool.submit(scorer.score, batch))
                if len(pending) > threads:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


@contextlib.contextmanager
def writing(sink: IO[bytes], schema: Arrow) -> Iterator[Arrow]:
    """A Parquet writer on an open file; closed (footer written) when the block ends. On a
    failure the file is half written and about to be removed, so closing errors are ignored.

    Only text columns are dictionary-encoded: for numbers (the probabilities above all) the
    encoder's attempt was most of the writing time, and the file came out larger.
    """
    text = [f.name for f in schema if _is_text(_value_type(f.type))]
    writer = pq.ParquetWriter(sink, schema, use_dictionary=text)
    try:
        yield writer
    except BaseException:
        with contextlib.suppress(Exception):
            writer.close()
        raise
    writer.close()


def _line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__
