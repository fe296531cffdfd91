"""CSV in and out: match the header to the features, check rows a chunk at a time, append results.

The body is decoded and parsed lazily (stdlib csv over a text stream), so memory holds the raw
body plus one chunk of parsed rows, never the whole file as Python objects.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from itertools import islice, repeat
from operator import itemgetter

import numpy as np
import numpy.typing as npt

from service import bytecells
from service.batch import Batch
from service.errors import InvalidInput, MalformedBody, Problem
from service.manifest import Feature, Manifest, normalize_header
from service.validation import BOOL_WORDS, MAX_PROBLEMS_PER_RULE, Validator, ValuesInvalid

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
    The caller keeps the split to write the answer with (`service.bytelines`).
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
