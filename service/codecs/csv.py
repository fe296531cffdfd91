"""CSV, decode and encode: match the header to the features, check rows a chunk at a time, answer
each row with the prediction columns appended (`predict_table`).

A blank cell, one of only spaces, or one of the manifest's `na_values` (compared after stripping)
is a missing value: a nullable feature's goes to the graph, which imputes it (NaN for a number,
MISSING_CATEGORY for a category), and is listed in the answer's `imputed` column; a required
feature's is a problem ("Field required"), as in every format. A category cell equal to one of
the feature's categories is that category, even if it is also an NA word.

The `score` command reads files with its own block reader (`service.batch`), built on the same
header matching, checks and columns as here.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import islice, pairwise
from operator import itemgetter
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from service.codecs import Result, csv_blocks
from service.codecs.probabilities import (
    FLAG_SEPARATOR,
    contribution_text,
    probability_text,
    rounded,
)
from service.drift import codes_for
from service.errors import InvalidInput, MalformedBody, Problem
from service.explanations import Explained, check, check_explainable
from service.explanations import explain as explain_batch
from service.manifest import MISSING_CATEGORY, Feature, Manifest, header_keys
from service.model import LoadedModel, Prediction
from service.validation import (
    BOOL_WORDS,
    MAX_PROBLEMS,
    Batch,
    Mask,
    Problems,
    Validator,
    ValuesInvalid,
    required,
)


def prediction_header(model: LoadedModel, taken: set[str], explain: bool = False) -> list[str]:
    """CSV columns appended to the caller's: label, probability, p_<label>..., out_of_range,
    imputed for a model with nullable features (one without cannot impute, so its answer keeps
    the columns it always had), then with `explain` contribution_<feature> for each feature.

    If the caller's header already uses one of those names (case-insensitively), every appended
    column is prefixed with `predicted_` so no column is ever ambiguous.
    """
    names = [
        "label",
        "probability",
        *(f"p_{label}" for label in model.manifest.labels),
        "out_of_range",
        *(["imputed"] if imputes(model) else []),
        *(contribution_names(model) if explain else []),
    ]
    if taken & {name.lower() for name in names}:
        names = [f"predicted_{name}" for name in names]
    return names


def contribution_names(model: LoadedModel) -> list[str]:
    """The explanation's columns: contribution_<feature>, in the model's input order."""
    return [f"contribution_{feature.name}" for feature in model.manifest.features]


def imputes(model: LoadedModel) -> bool:
    """True for a model with nullable features: its answers have an `imputed` column."""
    return bool(model.validator.nullable)


def prediction_columns(model: LoadedModel, batch: Batch, prediction: Prediction) -> list[list[str]]:
    """The appended CSV cells by column (label, probability, p_<label>..., out_of_range,
    perhaps imputed, and for an explained prediction the contributions), each formatted in one
    call; a binary model's probability is its positive column's text, reused.
    """
    values = rounded(prediction.probabilities)
    columns = [probability_text(column) for column in values.T]
    if model.manifest.kind == "binary":
        chosen = columns[model.manifest.positive_index]
    else:
        chosen = probability_text(values[np.arange(len(values)), prediction.classes])
    labels = np.asarray(model.manifest.labels, dtype=object)[prediction.classes].tolist()
    flags = [""] * len(labels)  # then only the records with flags are joined
    for row, names in batch.flagged():
        flags[row] = FLAG_SEPARATOR.join(names)
    appended = [labels, chosen, *columns, flags]
    if imputes(model):
        texts, index = csv_blocks.joined_flags(batch.imputed, batch.size)
        appended.append(np.asarray(texts, dtype=object)[index].tolist())
    if isinstance(prediction, Explained):
        appended += [contribution_text(column) for column in prediction.contributions.T]
    return appended


def prediction_cells(model: LoadedModel, batch: Batch, prediction: Prediction) -> list[list[str]]:
    """The appended CSV cells by row (see `prediction_columns`)."""
    return list(map(list, zip(*prediction_columns(model, batch, prediction), strict=True)))


ROW_LOCATION = ("body", "rows")
HEADER_LOCATION = ("body", "header")
# Bounds a hostile CSV hits before any per-cell work: a million-column header or a 10 MB line
# would otherwise cost hundreds of MB of Python strings before the first check.
MAX_COLUMNS = 4096
MAX_LINE_BYTES = 1 << 20
NEWLINE = 10
SCAN_BYTES = 1 << 20
# From this body size (about 250 churn rows) the block reader beats the csv module
# (bench/RESULTS.md).
BLOCKS_FROM_BYTES = 12 * 1024
NEEDS_QUOTES = frozenset(',"\r\n')


@dataclass(frozen=True)
class Layout:
    """The caller's header, per feature (manifest order) the index of its column, and the cells
    that mean "missing" once stripped: the manifest's `na_values` and the empty cell."""

    header: list[str]
    positions: dict[str, int]
    na_values: frozenset[str] = frozenset({""})


def check_bounds(body: bytes) -> None:
    """Refuse a header wider than MAX_COLUMNS or any line over MAX_LINE_BYTES (400), in O(n)."""
    end = body.find(b"\n")
    header = body if end < 0 else body[:end]
    if header.count(b",") >= MAX_COLUMNS:
        raise MalformedBody(f"CSV header has more than {MAX_COLUMNS} columns", "csv_invalid")
    if len(body) <= MAX_LINE_BYTES:
        return
    longest, previous = 0, -1  # bytes between two newlines; where the last one was
    for breaks in newlines(body):
        if breaks.size:
            gaps = np.diff(breaks, prepend=previous) - 1
            longest, previous = max(longest, int(gaps.max())), int(breaks[-1])
    longest = max(longest, len(body) - previous - 1)
    if longest > MAX_LINE_BYTES:
        raise MalformedBody(
            f"CSV has a line of {longest} bytes (limit {MAX_LINE_BYTES})", "csv_invalid"
        )


def newlines(body: bytes, start: int = 0) -> Iterator[npt.NDArray[np.intp]]:
    """Where the newlines of `body[start:]` are, one piece of SCAN_BYTES at a time.

    A piece at a time, so that a body of any shape (66 MB of blank lines is 66 million
    newlines) costs a few MB of positions, never eight bytes per newline of the whole body.
    """
    data = np.frombuffer(body, dtype=np.uint8)
    for first in range(start, len(body), SCAN_BYTES):
        yield np.flatnonzero(data[first : first + SCAN_BYTES] == NEWLINE) + first


def rows(body: bytes) -> Iterator[list[str]]:
    """Parsed rows (header first), blank lines skipped; bad encoding or quoting is a 400."""
    text = io.TextIOWrapper(io.BytesIO(body), encoding="utf-8-sig", newline="")
    reader = csv.reader(text, strict=True)
    try:
        for row in reader:
            if row:
                yield row
    except UnicodeDecodeError as exc:
        raise MalformedBody(f"CSV is not valid UTF-8 ({exc.reason})", "csv_invalid") from exc
    except csv.Error as exc:
        raise MalformedBody(f"CSV line {reader.line_num}: {exc}", "csv_invalid") from exc


def layout(manifest: Manifest, header: list[str]) -> Layout:
    """Find each feature's column by name or alias; other columns are passed through untouched."""
    by_key: dict[str, list[int]] = {}
    for index, name in enumerate(header):
        for key in header_keys(name):
            by_key.setdefault(key, []).append(index)
    positions: dict[str, int] = {}
    problems: list[Problem] = []
    for feature in manifest.features:
        keys = {key for name in (feature.name, *feature.aliases) for key in header_keys(name)}
        found = sorted({i for key in keys for i in by_key.get(key, [])})
        if len(found) == 1:
            positions[feature.name] = found[0]
        elif not found:
            accepted = ", ".join(feature.aliases) or "no aliases"
            msg = f"Missing column {feature.name!r} (also accepted: {accepted})"
            problems.append(Problem(None, feature.name, msg, "missing"))
        else:
            names = ", ".join(repr(header[i]) for i in found)
            msg = f"Columns {names} all mean {feature.name!r}; keep one"
            problems.append(Problem(None, feature.name, msg, "duplicate_column"))
    if problems:
        raise InvalidInput(problems, HEADER_LOCATION)
    return Layout(header, positions, _na_cells(tuple(manifest.na_values)))


@lru_cache(maxsize=64)
def _na_cells(na_values: tuple[str, ...]) -> frozenset[str]:
    """The manifest's NA words, stripped, and the empty cell (cached: one set per request)."""
    return frozenset({"", *(value.strip() for value in na_values)})


def check_widths(chunk: list[list[str]], width: int, offset: int) -> None:
    """Every row must have as many cells as the header (a ragged row is a malformed CSV)."""
    if set(map(len, chunk)) <= {width}:
        return
    index = next(i for i, row in enumerate(chunk) if len(row) != width)
    msg = f"row {offset + index} has {len(chunk[index])} cells, the header has {width}"
    raise MalformedBody(msg, "csv_invalid", ROW_LOCATION, offset + index)


def batch_from_rows(
    validator: Validator,
    table: Layout,
    chunk: list[list[str]],
    offset: int,
    limit: int | None = MAX_PROBLEMS,
) -> Batch:
    """Check one chunk of parsed rows (see `batch_from_columns`)."""
    check_widths(chunk, len(table.header), offset)
    cells = {
        f.name: list(map(itemgetter(table.positions[f.name]), chunk)) for f in validator.features
    }
    return batch_from_columns(validator, table, cells, len(chunk), offset, limit)


def batch_from_columns(
    validator: Validator,
    table: Layout,
    cells: Mapping[str, list[str]],
    size: int,
    offset: int,
    limit: int | None = MAX_PROBLEMS,
) -> Batch:
    """Check one chunk given as a column of text cells per feature; problems name the row (from
    0, across chunks) and the caller's header. Every problem of every row is found: a cell that
    is not a number, or a required one left missing, is reported and the row's other cells are
    still checked. The first `limit` are listed (None: all), the others counted.
    """
    reading = Reading(limit)
    parsed = [parse_cells(f, cells[f.name]) for f in validator.numeric]
    matrix = np.vstack([values for values, _ in parsed]) if parsed else np.empty((0, size))
    # One look at the whole matrix: NaN (a missing cell, or text that is no number or not a
    # finite one) is rare, and only then is each feature's column looked at again.
    if any(bad is not None for _, bad in parsed) or np.isnan(matrix).any():
        for j, (feature, (values, bad)) in enumerate(zip(validator.numeric, parsed, strict=True)):
            column = cells[feature.name]
            matrix[j] = _sorted_out(feature, values, bad, column, table.na_values, reading)
    categories = {
        f.name: read_categories(f, cells[f.name], table.na_values, reading)
        for f in validator.categorical
    }
    try:
        return validator.assemble(
            size,
            matrix,
            categories,
            cells,
            found=reading.found,
            unread=reading.unread,
            limit=limit,
        )
    except ValuesInvalid as exc:
        problems = [_in_file(p, table, offset) for p in exc.problems]
        raise InvalidInput(problems, ROW_LOCATION, exc.not_listed) from exc


@dataclass
class Reading:
    """What reading one chunk's cells met: the problems, and per feature the values that could
    not be read (NaN in the numbers, None in a category column), which the checks then skip
    (`Validator.assemble`'s `found` and `unread`)."""

    limit: int | None
    found: Problems | None = None
    unread: dict[str, Mask] = field(default_factory=dict)

    def not_numbers(self, feature: Feature, bad: Mask, quoted: Sequence[Any]) -> None:
        """Cells that are not numbers of this feature."""
        msg, kind = unreadable(feature)
        self._problems().at(np.flatnonzero(bad), feature.name, msg, kind, quoted)
        self._skip(feature, bad)

    def required(self, feature: Feature, absent: Mask, quoted: Sequence[Any]) -> None:
        """Missing values of a required feature, each reported as "Field required"."""
        rows = np.flatnonzero(absent).tolist()
        picked = rows if self.limit is None else rows[: self.limit]
        self._problems().add([required(feature, i, quoted[i]) for i in picked], len(rows))
        self._skip(feature, absent)

    def _problems(self) -> Problems:
        if self.found is None:
            self.found = Problems(self.limit)
        return self.found

    def _skip(self, feature: Feature, mask: Mask) -> None:
        before = self.unread.get(feature.name)
        self.unread[feature.name] = mask if before is None else before | mask


def read_numbers(
    feature: Feature, cells: list[str], na_values: frozenset[str], reading: Reading
) -> npt.NDArray[np.float64]:
    """One numeric feature's cells as float64, missing cells NaN (`parse_cells`): cells that are
    not numbers, and missing ones of a required feature, are reported to `reading`.

    Only cells read as NaN are looked at again (usually none): each is a missing cell, text that
    is not a number, or text such as "nan" that is a number but not a finite one. That last kind
    is never a missing value: in a nullable feature (where the checks take NaN as missing) it is
    given to them as infinity, which they name as any number that is not finite.
    """
    values, bad = parse_cells(feature, cells)
    return _sorted_out(feature, values, bad, cells, na_values, reading)


def _sorted_out(
    feature: Feature,
    values: npt.NDArray[np.float64],
    bad: Mask | None,
    cells: list[str],
    na_values: frozenset[str],
    reading: Reading,
) -> npt.NDArray[np.float64]:
    """`read_numbers` once the cells are parsed: the NaN values told apart."""
    suspects = np.flatnonzero(np.isnan(values))
    if not len(suspects):
        return values
    absent = np.zeros(len(values), dtype=np.bool_)
    absent[suspects] = [cells[i].strip() in na_values for i in suspects.tolist()]
    not_finite = np.zeros(len(values), dtype=np.bool_)
    not_finite[suspects] = True
    not_finite &= ~absent
    if bad is not None:
        bad &= ~absent
        not_finite &= ~bad
        if bad.any():
            reading.not_numbers(feature, bad, cells)
    if not feature.nullable:
        if absent.any():
            reading.required(feature, absent, cells)
    elif not_finite.any():
        values[not_finite] = np.inf
    return values


def read_categories(
    feature: Feature, cells: list[str], na_values: frozenset[str], reading: Reading
) -> list[str] | npt.NDArray[np.object_]:
    """One category feature's cells, stripped; a missing cell (an NA word that is none of the
    feature's categories) becomes MISSING_CATEGORY in a nullable feature, and in a required one
    is reported to `reading` and left unread (None)."""
    column = _stripped(cells)
    words = set(column) & na_values
    if words:  # an NA word that is a category is that category
        words -= set(feature.categories or ())
    if not words:
        return column
    if feature.nullable:
        return [MISSING_CATEGORY if cell in words else cell for cell in column]
    absent = np.fromiter((cell in words for cell in column), dtype=np.bool_, count=len(column))
    reading.required(feature, absent, cells)
    return np.array([None if cell in words else cell for cell in column], dtype=object)


def parse_cells(feature: Feature, cells: list[str]) -> tuple[npt.NDArray[np.float64], Mask | None]:
    """Text to float64 in one numpy call; bools take 0/1, true/false, yes/no (any case). Also
    the mask of cells that are not numbers (NaN in the values, as for a missing cell: see
    `read_numbers`), None when every cell is one.

    Bool words are looked up once per distinct cell text (a column has a handful), as are the
    cells of a column that does not convert in one call.
    """
    if feature.type == "bool":
        words = {cell: BOOL_WORDS.get(cell.strip().lower(), np.nan) for cell in set(cells)}
        flags = np.fromiter(map(words.__getitem__, cells), dtype=np.float64, count=len(cells))
        unread = np.isnan(flags)
        return flags, unread if unread.any() else None
    try:
        return np.asarray(cells, dtype=np.float64), None
    except ValueError:
        parsed = {cell: _parsed(cell) for cell in set(cells)}
    unread = np.fromiter((parsed[cell] is None for cell in cells), np.bool_, count=len(cells))
    values = np.fromiter(
        (np.nan if parsed[cell] is None else parsed[cell] for cell in cells),
        np.float64,
        count=len(cells),
    )
    return values, unread


def unreadable(feature: Feature) -> tuple[str, str]:
    """The message and rule of a cell that is not a number of this feature (an empty one too)."""
    if feature.type == "bool":
        return "Input should be a boolean: 0/1, true/false or yes/no", "bool_parsing"
    return "Input should be a valid number, unable to parse string as a number", "float_parsing"


def _stripped(cells: list[str]) -> list[str]:
    """Category cells without surrounding spaces; the list itself when none has any (usual)."""
    if all(cell == cell.strip() for cell in set(cells)):
        return cells
    return [cell.strip() for cell in cells]


def chunks(source: Iterator[list[str]], size: int) -> Iterator[list[list[str]]]:
    while chunk := list(islice(source, size)):
        yield chunk


def _in_file(problem: Problem, table: Layout, offset: int) -> Problem:
    """Row index across the whole file, field as the caller's column header."""
    header = table.header[table.positions[problem.field]] if problem.field else None
    return Problem(offset + (problem.index or 0), header, problem.msg, problem.type, problem.input)


def _parsed(cell: str) -> float | None:
    """The column conversion's parser, one cell at a time (on the error path only)."""
    try:
        return float(np.asarray([cell], dtype=np.float64)[0])
    except ValueError:
        return None


def encode_rows(table: list[list[str]]) -> bytes:
    """Rows as CSV bytes (RFC 4180 quoting, CRLF line ends)."""
    out = io.StringIO()
    csv.writer(out).writerows(table)
    return codecs.encode(out.getvalue(), "utf-8")


def plain_labels(model: LoadedModel) -> bool:
    """True when no label needs CSV quoting, so rows can be joined with commas directly."""
    return not any(set(label) & NEEDS_QUOTES for label in model.manifest.labels)


@dataclass(frozen=True)
class TableResult:
    """A checked and predicted CSV: the parts (one per chunk) and how to write the answer."""

    model: LoadedModel
    body: bytes
    table: Layout
    parts: list[Result]
    chunk_rows: int
    reader: _Reader
    kept: list[Any] | None  # the chunk of a one-chunk table, so it is not read twice
    explain: bool = False  # the parts are explained: contribution columns follow

    @property
    def size(self) -> int:
        return sum(part.batch.size for part in self.parts)

    def output(self) -> Iterator[bytes]:
        """The caller's rows with the prediction columns appended, one encoded chunk at a time;
        the body is read again, so memory holds one chunk of rows, not the whole answer."""
        taken = {name.strip().lower() for name in self.table.header}
        header = prediction_header(self.model, taken, self.explain)
        yield encode_rows([self.table.header + header])
        chunks = self.kept or self.reader.chunks(self.body, self.table, self.chunk_rows)
        for part, chunk in zip(self.parts, chunks, strict=True):
            yield self.reader.scored(self.model, chunk, part)


def answer(
    model: LoadedModel, body: bytes, chunk_rows: int, explain: bool = False
) -> tuple[TableResult, bytes | None]:
    """The checked and predicted table, and its whole answer when it is one chunk (else it is
    streamed a chunk at a time, to keep memory bounded); with `explain`, the rows' explanations
    too (at most `explanations.explain_limit` rows)."""
    table = predict_table(model, body, chunk_rows, explain)
    return table, b"".join(table.output()) if len(table.parts) == 1 else None


def predict_table(
    model: LoadedModel, body: bytes, chunk_rows: int, explain: bool = False
) -> TableResult:
    """Check and predict a CSV a chunk at a time, keeping only the results.

    Two readers, one set of rules: the stdlib `csv` module reads small bodies and any body with
    quotes, blank lines or a bad value; big plain ones are read from their bytes
    (`service.codecs.csv_blocks`, also the `score` command's reader). Both feed the same
    `Validator`. The block reader answers only bodies with nothing wrong in them: on any doubt
    the body is read again by the csv module, which names every problem, so messages never
    depend on the reader.
    """
    check_bounds(body)
    if explain:
        check_explainable(model)
    if len(body) >= BLOCKS_FROM_BYTES:
        with contextlib.suppress(_Doubt):
            return _predicted(model, body, chunk_rows, _BLOCKS, explain)
    return _predicted(model, body, chunk_rows, _ROWS, explain)


def _predicted(
    model: LoadedModel, body: bytes, chunk_rows: int, reader: _Reader, explain: bool = False
) -> TableResult:
    """Chunk by chunk; once a row is bad nothing more is predicted, but every later chunk is
    still checked, so the answer lists the first MAX_PROBLEMS problems of the whole body and
    counts every other."""
    table = reader.layout(model, body)
    parts: list[Result] = []
    first: list[Any] = []
    problems: list[Problem] = []
    not_listed = 0
    for index, chunk in enumerate(reader.chunks(body, table, chunk_rows)):
        limit = MAX_PROBLEMS - len(problems)
        try:
            batch = reader.batch(model.validator, table, chunk, index * chunk_rows, limit)
        except InvalidInput as exc:
            if isinstance(exc, MalformedBody):
                raise
            problems += exc.problems
            not_listed += exc.not_listed
            continue
        if problems:
            continue
        if explain:
            check(model, index * chunk_rows + batch.size, chunk_rows)
        prediction = explain_batch(model, batch) if explain else model.predict(batch)
        drift = codes_for(model, batch, prediction)  # before the inputs go
        parts.append(Result(batch.without_inputs(), prediction, drift))
        first = [chunk] if len(parts) == 1 else []
    if problems or not_listed:
        raise InvalidInput(problems, ROW_LOCATION, not_listed)
    if not parts:
        msg = "CSV has a header but no data rows"
        raise InvalidInput([Problem(None, None, msg, "too_short")], ("body", "rows"))
    return TableResult(model, body, table, parts, chunk_rows, reader, first or None, explain)


class _Doubt(Exception):
    """The block reader cannot answer this body exactly: the csv module takes it."""


class _Reader(Protocol):
    def layout(self, model: LoadedModel, body: bytes) -> Layout: ...

    def chunks(self, body: bytes, table: Layout, size: int) -> Iterator[Any]: ...

    def batch(
        self, validator: Validator, table: Layout, chunk: Any, offset: int, limit: int
    ) -> Batch: ...

    def scored(self, model: LoadedModel, chunk: Any, part: Result) -> bytes: ...


class _RowsReader:
    """The stdlib `csv` module: rows as lists of text, problems named by row and column."""

    def layout(self, model: LoadedModel, body: bytes) -> Layout:
        header = next(rows(body), None)
        if header is None:
            raise MalformedBody("CSV body is empty: a header row is required", "csv_invalid")
        return layout(model.manifest, header)

    def chunks(self, body: bytes, table: Layout, size: int) -> Iterator[list[list[str]]]:
        source = rows(body)
        next(source)  # the header
        return chunks(source, size)

    def batch(
        self, validator: Validator, table: Layout, chunk: list[list[str]], offset: int, limit: int
    ) -> Batch:
        return batch_from_rows(validator, table, chunk, offset, limit)

    def scored(self, model: LoadedModel, chunk: list[list[str]], part: Result) -> bytes:
        cells = prediction_cells(model, part.batch, part.prediction)
        return encode_rows([row + extra for row, extra in zip(chunk, cells, strict=True)])


class _BlocksReader:
    """Chunks of whole lines read from their bytes (`csv_blocks`); raises `_Doubt` at anything
    it cannot read exactly: blank lines, quotes, a bad value, bytes that are not UTF-8 (a chunk
    with a blank line, even at its start or end, is refused by `csv_blocks.split`)."""

    def layout(self, model: LoadedModel, body: bytes) -> Layout:
        if not (plain_labels(model) and csv_blocks.writable(model)):
            raise _Doubt  # its answer could not be written as plain lines
        start = len(codecs.BOM_UTF8) if body.startswith(codecs.BOM_UTF8) else 0
        end = body.find(b"\n", start)
        line = body[start:end].removesuffix(b"\r")
        if end < 0 or not line or any(byte in line for byte in (b'"', b"\r", b"\0")):
            raise _Doubt
        try:
            return layout(model.manifest, line.decode("utf-8").split(","))
        except (UnicodeDecodeError, InvalidInput):
            raise _Doubt from None  # the csv module names what is wrong

    def chunks(self, body: bytes, table: Layout, size: int) -> Iterator[csv_blocks.Block]:
        start = body.find(b"\n") + 1
        cuts = [start, *_chunk_ends(body, start, size), len(body)]
        for first, stop in pairwise(cuts):
            if first == stop:
                continue
            chunk = body[first:stop]
            if not chunk.isascii():
                try:
                    chunk.decode("utf-8")
                except UnicodeDecodeError:
                    raise _Doubt from None
            split = csv_blocks.split(chunk, len(table.header))
            if split is None:
                raise _Doubt
            yield split

    def batch(
        self, validator: Validator, table: Layout, chunk: csv_blocks.Block, offset: int, limit: int
    ) -> Batch:
        batch = batch_from_block(validator, table, chunk)
        if batch is None:
            raise _Doubt
        return batch

    def scored(self, model: LoadedModel, chunk: csv_blocks.Block, part: Result) -> bytes:
        return csv_blocks.scored_lines(chunk, model, part.batch, part.prediction)


def batch_from_block(validator: Validator, table: Layout, split: csv_blocks.Block) -> Batch | None:
    """A block of plain, valid rows read straight from its bytes (`csv_blocks.split`), or None
    when any cell needs the general path: that path reads it, or names what is wrong with it.
    Missing cells of nullable features written exactly as an NA word (the empty cell among
    them) are read here; with spaces around, or in a required feature, they are the general
    path's. The caller keeps the split to write the answer with (`csv_blocks.scored_lines`).
    """
    columns = [table.positions[f.name] for f in validator.numeric]
    flags = [i for i, f in enumerate(validator.numeric) if f.type == "bool"]
    nullable = [i for i, f in enumerate(validator.numeric) if f.nullable]
    words = sorted(table.na_values)
    values = csv_blocks.numbers(split, columns, flags, nullable, words)
    if values is None:
        return None
    found: dict[str, npt.NDArray[np.object_]] = {}
    for feature in validator.categorical:
        allowed = feature.categories or []
        missing = words if feature.nullable else []
        index = csv_blocks.categories(split, table.positions[feature.name], allowed, missing)
        if index is None:
            return None
        found[feature.name] = np.asarray([*allowed, MISSING_CATEGORY], dtype=object)[index]
    # The values stand in for the text: on a problem the general path is taken, which quotes
    # the caller's text in its messages.
    raw = {f.name: column for f, column in zip(validator.numeric, values, strict=True)}
    try:
        return validator.assemble(split.rows, values, found, raw, known_categories=True, limit=0)
    except ValuesInvalid:
        return None


def _chunk_ends(body: bytes, start: int, rows: int) -> Iterator[int]:
    """Where each run of `rows` lines from `start` ends (just past its last newline)."""
    seen = 0  # newlines before the current piece
    for breaks in newlines(body, start):
        yield from (breaks[(rows - 1 - seen) % rows :: rows] + 1).tolist()
        seen += breaks.size


_ROWS = _RowsReader()
_BLOCKS = _BlocksReader()
