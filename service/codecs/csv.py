"""CSV, decode and encode: match the header to the features, check rows a chunk at a time, answer
each row with the prediction columns appended."""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from itertools import islice, pairwise, repeat
from operator import itemgetter

import numpy as np
import numpy.typing as npt

from service.batch import cells as bytecells
from service.batch.lines import scored_lines, writable
from service.codecs.probabilities import (
    FLAG_SEPARATOR,
    probability_text,
    rounded,
)
from service.errors import InvalidInput, MalformedBody, Problem
from service.manifest import Feature, Manifest, normalize_header
from service.model import LoadedModel, Prediction
from service.validation import BOOL_WORDS, MAX_PROBLEMS_PER_RULE, Batch, Validator, ValuesInvalid

NEEDS_QUOTES = frozenset(',"\r\n')


def prediction_header(model: LoadedModel, taken: set[str]) -> list[str]:
    """CSV columns appended to the caller's: label, probability, p_<label>..., out_of_range.

    If the caller's header already uses one of those names (case-insensitively), every appended
    column is prefixed with `predicted_` so no column is ever ambiguous.
    """
    names = [
        "label",
        "probability",
        *(f"p_{label}" for label in model.manifest.labels),
        "out_of_range",
    ]
    if taken & {name.lower() for name in names}:
        names = [f"predicted_{name}" for name in names]
    return names


def prediction_columns(model: LoadedModel, batch: Batch, prediction: Prediction) -> list[list[str]]:
    """The appended CSV cells by column (label, probability, p_<label>..., out_of_range), each
    formatted in one call; a binary model's probability is its positive column's text, reused.
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
    return [labels, chosen, *columns, flags]


def prediction_cells(model: LoadedModel, batch: Batch, prediction: Prediction) -> list[list[str]]:
    """The appended CSV cells by row (see `prediction_columns`)."""
    return list(map(list, zip(*prediction_columns(model, batch, prediction), strict=True)))


def plain_labels(model: LoadedModel) -> bool:
    """True when no label needs CSV quoting, so rows can be joined with commas directly."""
    return not any(set(label) & NEEDS_QUOTES for label in model.manifest.labels)


ROW_LOCATION = ("body", "rows")
HEADER_LOCATION = ("body", "header")
# Bounds a hostile CSV hits before any per-cell work: a million-column header or a 10 MB line
# would otherwise cost hundreds of MB of Python strings before the first check.
MAX_COLUMNS = 4096
MAX_LINE_BYTES = 1 << 20
NEWLINE = 10
SCAN_BYTES = 1 << 20


@dataclass(frozen=True)
class Layout:
    """The caller's header and, per feature (manifest order), the index of its column."""

    header: list[str]
    positions: dict[str, int]


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
        by_key.setdefault(normalize_header(name), []).append(index)
    positions: dict[str, int] = {}
    problems: list[Problem] = []
    for feature in manifest.features:
        keys = dict.fromkeys(map(normalize_header, (feature.name, *feature.aliases)))
        found = [i for key in keys for i in by_key.get(key, [])]
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
    return Layout(header, positions)


def check_widths(chunk: list[list[str]], width: int, offset: int) -> None:
    """Every row must have as many cells as the header (a ragged row is a malformed CSV)."""
    if set(map(len, chunk)) <= {width}:
        return
    index = next(i for i, row in enumerate(chunk) if len(row) != width)
    msg = f"row {offset + index} has {len(chunk[index])} cells, the header has {width}"
    raise MalformedBody(msg, "csv_invalid", ROW_LOCATION, offset + index)


def plain_lines(text: str) -> list[str] | None:
    """The non-blank lines of CSV text with no quotes, lone carriage returns or NULs, else None.

    Such a record is one line split at commas: exactly what the csv module returns for it.
    """
    if "\r" in text:
        if text.count("\r") != text.count("\r\n"):
            return None  # a lone CR also ends a record for the csv module
        text = text.replace("\r\n", "\n")
    if '"' in text or "\0" in text:
        return None
    return [line for line in text.split("\n") if line]


def plain_cells(lines: list[str], width: int) -> list[str] | None:
    """All cells of plain lines, row-major, in one flat list; None if any line is not `width` wide.

    Column j is then `cells[j::width]`: no list per row, no per-cell Python work.
    """
    if set(map(str.count, lines, repeat(","))) != {width - 1}:
        return None
    return ",".join(lines).split(",")


def batch_from_rows(
    validator: Validator, table: Layout, chunk: list[list[str]], offset: int
) -> Batch:
    """Check one chunk of parsed rows (see `batch_from_columns`)."""
    check_widths(chunk, len(table.header), offset)
    cells = {
        f.name: list(map(itemgetter(table.positions[f.name]), chunk)) for f in validator.features
    }
    return batch_from_columns(validator, table, cells, len(chunk), offset)


def batch_from_flat(
    validator: Validator, table: Layout, flat: list[str], size: int, offset: int
) -> Batch:
    """Check `size` rows given as one row-major list of cells (`plain_cells`)."""
    width = len(table.header)
    cells = {f.name: flat[table.positions[f.name] :: width] for f in validator.features}
    return batch_from_columns(validator, table, cells, size, offset)


def batch_from_block(validator: Validator, table: Layout, split: bytecells.Block) -> Batch | None:
    """A block of plain, valid rows read straight from its bytes (`bytecells.split`), or None
    when any cell needs the general path: that path reads it, or names what is wrong with it.
    The caller keeps the split to write the answer with (`service.batch.lines`).
    """
    columns = [table.positions[f.name] for f in validator.numeric]
    flags = [i for i, f in enumerate(validator.numeric) if f.type == "bool"]
    numbers = bytecells.numbers(split, columns, flags)
    if numbers is None:
        return None
    categories: dict[str, npt.NDArray[np.object_]] = {}
    for feature in validator.categorical:
        allowed = feature.categories or []
        index = bytecells.categories(split, table.positions[feature.name], allowed)
        if index is None:
            return None
        categories[feature.name] = np.asarray(allowed, dtype=object)[index]
    # The values stand in for the text: on a problem the general path is taken, which quotes
    # the caller's text in its messages.
    raw = {f.name: values for f, values in zip(validator.numeric, numbers, strict=True)}
    try:
        return validator.assemble(split.rows, numbers, categories, raw, known_categories=True)
    except ValuesInvalid:
        return None


def batch_from_columns(
    validator: Validator, table: Layout, cells: Mapping[str, list[str]], size: int, offset: int
) -> Batch:
    """Check one chunk given as a column of text cells per feature; problems name the row (from
    0, across chunks) and the caller's header.
    """
    problems: list[Problem] = []
    numbers: list[npt.NDArray[np.float64]] = []
    for feature in validator.numeric:
        try:
            numbers.append(parse_numbers(feature, cells[feature.name]))
        except ValuesInvalid as exc:
            problems.extend(exc.problems)
    categories = {f.name: _stripped(cells[f.name]) for f in validator.categorical}
    try:
        if problems:
            raise ValuesInvalid(validator.ordered(problems))
        matrix = np.vstack(numbers) if numbers else np.empty((0, size))
        return validator.assemble(size, matrix, categories, cells)
    except ValuesInvalid as exc:
        raise InvalidInput(
            [_in_file(p, table, offset) for p in exc.problems], ROW_LOCATION
        ) from exc


def parse_numbers(feature: Feature, cells: list[str]) -> npt.NDArray[np.float64]:
    """Text to float64 in one numpy call; bools take 0/1, true/false, yes/no (any case).

    Bool words are looked up once per distinct cell text (a column has a handful).
    """
    if feature.type == "bool":
        words = {cell: BOOL_WORDS.get(cell.strip().lower(), np.nan) for cell in set(cells)}
        flags = np.fromiter(map(words.__getitem__, cells), dtype=np.float64, count=len(cells))
        if np.isnan(flags).any():
            msg = "Input should be a boolean: 0/1, true/false or yes/no"
            bad = np.flatnonzero(np.isnan(flags))[:MAX_PROBLEMS_PER_RULE].tolist()
            raise ValuesInvalid(
                [Problem(i, feature.name, msg, "bool_parsing", cells[i]) for i in bad]
            )
        return flags
    try:
        return np.asarray(cells, dtype=np.float64)
    except ValueError:
        msg = "Input should be a valid number, unable to parse string as a number"
        bad = [i for i, cell in enumerate(cells) if not _parses(cell)][:MAX_PROBLEMS_PER_RULE]
        raise ValuesInvalid(
            [Problem(i, feature.name, msg, "float_parsing", cells[i]) for i in bad]
        ) from None


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


def _parses(cell: str) -> bool:
    """The column conversion's parser, one cell at a time (on the error path only)."""
    try:
        np.asarray([cell], dtype=np.float64)
    except ValueError:
        return False
    return True


def encode_rows(table: list[list[str]]) -> bytes:
    """Rows as CSV bytes (RFC 4180 quoting, CRLF line ends)."""
    out = io.StringIO()
    csv.writer(out).writerows(table)
    return codecs.encode(out.getvalue(), "utf-8")


# Plain CSV is split a piece of about this many bytes at a time, so memory holds the body plus
# one piece and one chunk of lines, never the whole file as Python strings.
PIECE_BYTES = 1 << 20
# From this body size the bytes path beats the text path (measured: equal near 40 KB, about
# 900 churn rows; for one row the bytes path's some 100 numpy calls cost 3 ms, the text 0.9).
CELLS_FROM = 32 * 1024


@dataclass(frozen=True)
class Result:
    """A checked batch and the model's answer for it."""

    batch: Batch
    prediction: Prediction


@dataclass(frozen=True)
class Answer:
    """A result and the response body encoded from it (both made off the event loop)."""

    result: Result
    body: bytes


@dataclass(frozen=True)
class TableResult:
    """A checked and predicted CSV: the parts (one per chunk) and how to write the answer."""

    model: LoadedModel
    body: bytes
    table: Layout
    parts: list[Result]
    chunk_rows: int
    first_rows: list[list[str]] | None
    plain: bool = False
    # Read from bytes (`_cells_table`): each part's byte range in the body, and the split of a
    # lone part (a larger body is split again part by part as it is written, to bound memory).
    ranges: list[tuple[int, int]] | None = None
    split: bytecells.Block | None = None

    @property
    def size(self) -> int:
        return sum(part.batch.size for part in self.parts)

    def output(self) -> Iterator[bytes]:
        """The caller's rows with the prediction columns appended, one encoded chunk at a time."""
        taken = {name.strip().lower() for name in self.table.header}
        yield encode_rows([self.table.header + prediction_header(self.model, taken)])
        if self.ranges is not None:
            yield from self._scored_bytes(self.ranges)
            return
        if self.plain:
            lines = _plain_chunks(self.body, self.chunk_rows)
            next(lines)  # the header
            for part, block in zip(self.parts, lines, strict=True):
                extras = prediction_columns(self.model, part.batch, part.prediction)
                joined = zip(block, *extras, strict=True)
                yield ("\r\n".join(map(",".join, joined)) + "\r\n").encode("utf-8")
            return
        if self.first_rows is not None:
            source: Iterator[list[str]] = iter(self.first_rows)
        else:
            source = rows(self.body)
            next(source)  # the header, written above
        for part, chunk in zip(self.parts, chunks(source, self.chunk_rows), strict=True):
            cells = prediction_cells(self.model, part.batch, part.prediction)
            yield encode_rows([row + extra for row, extra in zip(chunk, cells, strict=True)])

    def _scored_bytes(self, ranges: list[tuple[int, int]]) -> Iterator[bytes]:
        """Each part's lines with its prediction cells, built as bytes (`service.batch.lines`)."""
        width = len(self.table.header)
        for part, (first, stop) in zip(self.parts, ranges, strict=True):
            split = self.split or bytecells.split(self.body[first:stop], width)
            assert split is not None, "these bytes were split when they were checked"
            yield scored_lines(split, self.model, part.batch, part.prediction)


def predict_table(model: LoadedModel, body: bytes, chunk_rows: int) -> TableResult:
    """Check and predict a CSV a chunk at a time; keep only results (and the rows if one chunk)."""
    check_bounds(body)
    plain = _cells_table(model, body, chunk_rows) or _plain_table(model, body, chunk_rows)
    if plain is not None:
        return plain
    source = rows(body)
    header = next(source, None)
    if header is None:
        raise MalformedBody("CSV body is empty: a header row is required", "csv_invalid")
    table = layout(model.manifest, header)
    parts: list[Result] = []
    first_rows: list[list[str]] | None = None
    for chunk in chunks(source, chunk_rows):
        batch = batch_from_rows(model.validator, table, chunk, offset=len(parts) * chunk_rows)
        prediction = model.predict(batch)
        parts.append(Result(batch.without_inputs(), prediction))
        first_rows = chunk if len(parts) == 1 else None
    if not parts:
        msg = "CSV has a header but no data rows"
        raise InvalidInput([Problem(None, None, msg, "too_short")], ("body", "rows"))
    return TableResult(model, body, table, parts, chunk_rows, first_rows)


def _cells_table(model: LoadedModel, body: bytes, chunk_rows: int) -> TableResult | None:
    """The usual CSV with nothing wrong in it, every chunk read from its bytes (`service.batch.cells`)
    without splitting the text first. None at the first doubt; `_plain_table` then reads it.
    """
    if len(body) < CELLS_FROM:
        return None  # the text path is quicker for a few hundred rows
    if not (plain_labels(model) and writable(model)) or b"\n\n" in body or b"\n\r\n" in body:
        return None  # blank lines: chunks of lines would not be chunks of rows
    start = len(codecs.BOM_UTF8) if body.startswith(codecs.BOM_UTF8) else 0
    end = body.find(b"\n", start)
    if end < 0:
        return None
    try:
        header = plain_lines(body[start : end + 1].decode("utf-8"))
    except UnicodeDecodeError:
        return None
    if not header or len(header) != 1:
        return None
    try:
        table = layout(model.manifest, header[0].split(","))
    except InvalidInput:
        return None  # the text path reports it
    cuts = [end + 1, *_chunk_ends(body, end + 1, chunk_rows), len(body)]
    parts: list[Result] = []
    ranges = [(first, stop) for first, stop in pairwise(cuts) if first < stop]
    split: bytecells.Block | None = None
    for first, stop in ranges:
        chunk = body[first:stop]
        if not chunk.isascii():
            try:
                chunk.decode("utf-8")
            except UnicodeDecodeError:
                return None
        split = bytecells.split(chunk, len(table.header))
        batch = None if split is None else batch_from_block(model.validator, table, split)
        if batch is None:
            return None
        parts.append(Result(batch.without_inputs(), model.predict(batch)))
    if not parts:
        return None
    kept = split if len(parts) == 1 else None
    return TableResult(model, body, table, parts, chunk_rows, None, True, ranges, kept)


def _chunk_ends(body: bytes, start: int, rows: int) -> Iterator[int]:
    """Where each run of `rows` lines from `start` ends (just past its last newline)."""
    seen = 0  # newlines before the current piece
    for breaks in newlines(body, start):
        yield from (breaks[(rows - 1 - seen) % rows :: rows] + 1).tolist()
        seen += breaks.size


def _plain_table(model: LoadedModel, body: bytes, chunk_rows: int) -> TableResult | None:
    """`predict_table` for the usual CSV (no quotes, CRs or NULs; every row as wide as the
    header) that `_cells_table` did not take (a blank line, an odd number, a bad value):
    columns are slices of one flat list of text cells, and problems are named with their row.
    None when the file is anything else, and `predict_table`'s csv-module path then reads it.
    """
    if not plain_labels(model):
        return None
    try:
        source = _plain_chunks(body, chunk_rows)
        header = next(source)
    except (_NotPlain, StopIteration):
        return None
    if len(header) != 1:
        return None
    table = layout(model.manifest, header[0].split(","))
    width = len(table.header)
    parts: list[Result] = []
    try:
        for chunk in source:
            flat = plain_cells(chunk, width)
            if flat is None:
                return None
            offset = len(parts) * chunk_rows
            batch = batch_from_flat(model.validator, table, flat, len(chunk), offset)
            parts.append(Result(batch.without_inputs(), model.predict(batch)))
    except _NotPlain:
        return None
    if not parts:
        return None
    return TableResult(model, body, table, parts, chunk_rows, None, plain=True)


class _NotPlain(Exception):
    """The body needs the csv module: quotes, CRs, NULs or bytes that are not UTF-8."""


def _plain_chunks(body: bytes, size: int) -> Iterator[list[str]]:
    """The header line as a chunk of one, then chunks of `size` non-blank lines."""
    pending: list[str] = []
    start = 3 if body.startswith(codecs.BOM_UTF8) else 0
    header = True
    while start < len(body):
        end = body.find(b"\n", start + PIECE_BYTES)
        end = len(body) if end < 0 else end + 1
        try:
            text = body[start:end].decode("utf-8")
        except UnicodeDecodeError:
            raise _NotPlain from None
        lines = plain_lines(text)
        if lines is None:
            raise _NotPlain
        pending.extend(lines)
        start = end
        if header and pending:
            yield pending[:1]
            del pending[:1]
            header = False
        while len(pending) >= size:
            yield pending[:size]
            del pending[:size]
    if header and pending:
        yield pending[:1]
        del pending[:1]
    if pending:
        yield pending
