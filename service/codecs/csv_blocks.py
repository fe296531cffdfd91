"""Plain CSV blocks as bytes, read and written with numpy: no Python object per cell or line.

Reading (`split`, `numbers`, `categories`): cell boundaries come from the positions of commas
and newlines, and numbers are read 16 bytes at a time as integers (eight digits in one 64-bit
multiply). Writing (`scored_lines`): every row's appended prediction cells are one row of a
NUL-padded byte matrix, each input line is put right-aligned in a window beside its row, and one
mask over the matrix reads the whole output; out-of-range flags (rare) are spliced in after.

This is a fast path for big bodies and files, never the definition of what is valid: it accepts
only what it can read exactly (no quotes, NULs or lone CRs, no blank lines, every line as wide as
the header; numbers written as `-?digits[.digits]` of at most 15 characters; categories of at
most 16 bytes; in the columns of nullable features, missing cells written exactly as an NA
word, the empty cell among them) and answers None for anything else, so the caller takes the csv
module's path, which reads every other form and names every problem. Where both read a cell they
give the same float (a mantissa below 2**53 divided by an exact power of ten is correctly
rounded), and both write the same bytes (tests/service/test_csv_blocks_reading.py,
test_csv_blocks_writing.py)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import as_strided

from service.codecs.probabilities import (
    FLAG_SEPARATOR,
    SLICE_ROWS,
    Bytes,
    Sizes,
    contribution_bytes,
    padded_rows,
    probability_bytes,
    rounded,
    side_by_side,
)
from service.explanations import Explained
from service.model import LoadedModel, Prediction
from service.validation import Batch, Mask, flag_patterns

WIDTH = 16  # bytes read per cell: two 64-bit words
WORD = 8  # bytes of one 64-bit word: whole numbers of up to 8 digits are read from one
SLICE_CELLS = 1 << 14  # cells decoded per numpy pass, so temporaries stay in the CPU cache
MAX_NUMBER_BYTES = 15  # with the sign and point, so a mantissa stays below 10**15 < 2**53
COMMA, NEWLINE, ZERO, POINT, MINUS = (ord(c) for c in ",\n0.-")
QUOTE, NUL, CR = (ord(c) for c in '"\0\r')
POWERS = 10.0 ** np.arange(WIDTH)
Positions = npt.NDArray[np.int64]
Indices = npt.NDArray[np.intp]


@dataclass(frozen=True)
class Block:
    """A plain block: its bytes (padded before and after), each line's end and its commas.

    Offsets are into `data`. Cell positions are computed per column when asked for, so a wide
    block costs one offset per comma, not two per cell. When every line ends with CRLF the CRs
    stay in `data` (`crlf`): the last cell of a line ends one byte before its newline.
    """

    data: Bytes
    newlines: Positions  # [rows]: the newline ending each row
    commas: Positions  # [rows, width - 1]
    crlf: bool = False

    @property
    def rows(self) -> int:
        return len(self.newlines)

    @property
    def line_ends(self) -> Positions:
        """[rows]: where each line's text ends (its CR, or its newline)."""
        return self.newlines - 1 if self.crlf else self.newlines

    def start(self, column: int) -> Positions:
        """[rows]: where each cell of one column begins."""
        if column == 0:
            return np.concatenate(([WIDTH], self.newlines[:-1] + 1))
        return self.commas[:, column - 1] + 1

    def end(self, column: int) -> Positions:
        """[rows]: where each cell of one column ends (exclusive), as a contiguous array."""
        last = self.commas.shape[1]
        return self.line_ends if column == last else np.ascontiguousarray(self.commas[:, column])


def split(block: bytes, width: int) -> Block | None:
    """The cells of `block` (whole lines, no header), or None when it is not a plain block.

    One pass finds every byte up to "," in the table: the commas and line ends, and the quotes,
    NULs and CRs that make a block not plain (with spaces and a few signs, dropped after).
    """
    if not block or block.endswith(b"\r"):
        return None  # a CR at the very end is a lone one
    if not block.endswith(b"\n"):
        block += b"\n"
    data = np.empty(WIDTH + len(block) + WIDTH, dtype=np.uint8)
    data[:WIDTH] = ZERO
    data[WIDTH:-WIDTH] = np.frombuffer(block, dtype=np.uint8)
    data[-WIDTH:] = ZERO
    text = data[WIDTH:-WIDTH]
    found = np.flatnonzero(text <= COMMA)
    marks = text[found]
    if (marks == QUOTE).any() or (marks == NUL).any():
        return None
    is_cr = marks == CR
    crlf = False
    if is_cr.any():
        crs = found[is_cr]
        if not (text[crs + 1] == NEWLINE).all():  # the block ends with "\n", so crs + 1 is in it
            return None  # a lone CR ends a record for the csv module
        if len(crs) == int((marks == NEWLINE).sum()):  # every line ends with CRLF: CRs stay
            crlf = True
            found, marks = found[~is_cr], marks[~is_cr]
        else:
            data, found, marks = _without(data, crs, found, marks, is_cr)
    is_newline = marks == NEWLINE
    separators = found[is_newline | (marks == COMMA)] + WIDTH
    if len(separators) % width:
        return None
    separators = separators.reshape(-1, width)
    newlines = np.ascontiguousarray(separators[:, -1])
    if int(is_newline.sum()) != len(newlines) or not (data[newlines] == NEWLINE).all():
        return None  # a line with too many or too few cells
    terminator = 2 if crlf else 1
    if newlines[0] == WIDTH + terminator - 1 or (np.diff(newlines) == terminator).any():
        return None  # blank lines: row numbers would need the general path's counting
    return Block(data, newlines, separators[:, :-1], crlf)


def _without(
    data: Bytes, crs: Positions, found: Positions, marks: Bytes, is_cr: npt.NDArray[np.bool_]
) -> tuple[Bytes, Positions, Bytes]:
    """The padded block with the CRs of its CRLFs taken out (some lines end with LF only), and
    the other marks moved to match:
    each mark moves left by the CRs before it (in one pass, where replacing and splitting again
    would scan the block three more times).
    """
    keep = np.ones(len(data), dtype=np.bool_)
    keep[crs + WIDTH] = False
    moved = (found - np.cumsum(is_cr))[~is_cr]
    return data[keep], moved, marks[~is_cr]


def numbers(
    block: Block,
    columns: list[int],
    flags: list[int],
    nullable: Sequence[int] = (),
    missing: Sequence[str] = (),
) -> npt.NDArray[np.float64] | None:
    """A [len(columns), rows] matrix of the columns' values, or None if any cell is not a plain
    decimal. The columns at positions `flags` (of `columns`) must hold exactly "0" or "1": the
    general path reads true/yes/... there too, and does not take "-0" or "01" for 0 or 1. The
    columns at positions `nullable` may also hold missing cells, exactly one of the `missing`
    words (the empty cell among them): NaN in the matrix.

    Column by column: one of whole numbers of at most eight digits (counts, ages, flags) is read
    from one word per cell, about a third of the steps of the general decimal reading. In a
    nullable column the missing cells are found first (a look at each cell's length and first
    byte), so the others are read once.
    """
    result = np.empty((len(columns), block.rows), dtype=np.float64)
    for j, column in enumerate(columns):
        starts, ends = block.start(column), block.end(column)
        lengths = ends - starts
        if j in nullable:
            values = _with_missing(block.data, (starts, ends, lengths), j in flags, missing)
        else:
            values = _plain(block.data, ends, lengths, j in flags)
        if values is None:
            return None
        result[j] = values
    return result


def _plain(
    data: Bytes, ends: Positions, lengths: Positions, flag: bool
) -> npt.NDArray[np.float64] | None:
    """One column's cells, given by where they end and their lengths, as numbers (0 or 1 for a
    `flag` column), a slice of SLICE_CELLS at a time; None if any is not a plain decimal."""
    if flag and (lengths != 1).any():
        return None
    values = np.empty(len(ends), dtype=np.float64)
    for first in range(0, len(ends), SLICE_CELLS):
        rows = slice(first, first + SLICE_CELLS)
        read = _column(data, ends[rows], lengths[rows])
        if read is None:
            return None
        values[rows] = read
    if flag and (values > 1).any():
        return None  # "2" to "9" in a 0/1 column: the general path names the problem
    return values


def _with_missing(
    data: Bytes, cells: tuple[Positions, Positions, Positions], flag: bool, missing: Sequence[str]
) -> npt.NDArray[np.float64] | None:
    """A nullable column: its `missing` cells as NaN and the others as numbers, or None if one
    of those is not plain."""
    starts, ends, lengths = cells
    absent = _equal_to_any(data, starts, lengths, missing)
    if not absent.any():
        return _plain(data, ends, lengths, flag)
    values = np.full(len(ends), np.nan)
    given = ~absent
    if given.any():
        read = _plain(data, ends[given], lengths[given], flag)
        if read is None:
            return None
        values[given] = read
    return values


def _column(data: Bytes, ends: Positions, lengths: Positions) -> npt.NDArray[np.float64] | None:
    """One column's cells (given by where they end and their lengths) to floats, or None."""
    if lengths.min() < 1 or lengths.max() > MAX_NUMBER_BYTES:
        return None
    if lengths.max() <= WORD:
        values = _integers(_word_at(data)[ends - WORD], lengths)
        if values is not None:
            return values
    return _decimals(_words(data)[ends - WIDTH], lengths)


def categories(
    block: Block, column: int, allowed: Sequence[str], missing: Sequence[str] = ()
) -> Indices | None:
    """Each row's index into `allowed`, or None if a cell is not exactly one of them (spaces
    around a category, or an unknown one, are the general path's to read or to name). With
    `missing` (a nullable feature's NA words), a cell equal to one of them and to none of the
    categories is a missing value, index `len(allowed)`.
    """
    encoded = [name.encode("utf-8") for name in allowed]
    if not encoded or max(map(len, encoded)) > WIDTH:
        return None
    if any(name != name.strip() for name in allowed):
        return None  # the general path strips cells, so such a category is never matched there
    starts = block.start(column)
    lengths = block.end(column) - starts
    if lengths.max() > WIDTH:
        return None
    high, low = _prefixes(block.data, starts, lengths)
    index = np.full(block.rows, -1, dtype=np.intp)
    for i, name in enumerate(encoded):
        index[_same_text(high, low, lengths, name)] = i
    if missing and (index < 0).any():  # a category is that category, even if an NA word too
        rows = np.flatnonzero(index < 0)
        words = [word for word in missing if word not in allowed]
        absent = _equal_to_any(block.data, starts[rows], lengths[rows], words)
        index[rows[absent]] = len(allowed)
    return None if (index < 0).any() else index


def _prefixes(
    data: Bytes, starts: Positions, lengths: Positions
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    """Each cell's first 16 bytes as two words, the bytes past its end cleared (so "Spain"
    matches "Spain\0..."); a longer cell keeps 16, and its length tells it apart."""
    high, low = np.ascontiguousarray(_words(data)[starts].T)
    kept = np.minimum(lengths, WIDTH)
    high &= KEEP_HIGH[kept]
    low &= KEEP_LOW[kept]
    return high, low


def _same_text(
    high: npt.NDArray[np.uint64], low: npt.NDArray[np.uint64], lengths: Positions, text: bytes
) -> Mask:
    """The cells (as `_prefixes` gives them) equal to `text`, of at most 16 bytes."""
    text_high, text_low = (np.uint64(w) for w in _words_of(text))
    same: Mask = (high == text_high) & (low == text_low) & (lengths == len(text))
    return same


def _equal_to_any(data: Bytes, starts: Positions, lengths: Positions, words: Sequence[str]) -> Mask:
    """The cells equal to one of `words` (those over 16 bytes are never matched here). Only the
    cells that begin with the first byte of a word are compared: in a column of numbers with a
    few "NA" cells, those few."""
    encoded = [word.encode("utf-8") for word in words]
    texts = [word for word in encoded if 0 < len(word) <= WIDTH]
    found: Mask = lengths == 0 if b"" in encoded else np.zeros(len(starts), dtype=np.bool_)
    firsts = np.zeros(256, dtype=np.bool_)
    firsts[[text[0] for text in texts]] = True
    maybe = np.flatnonzero(firsts[data[starts]] & (lengths > 0))
    if len(maybe):
        high, low = _prefixes(data, starts[maybe], lengths[maybe])
        same = np.zeros(len(maybe), dtype=np.bool_)
        for text in texts:
            same |= _same_text(high, low, lengths[maybe], text)
        found[maybe[same]] = True
    return found


def _words(data: Bytes) -> npt.NDArray[np.uint64]:
    """Every 16-byte window of `data` as two little-endian 64-bit words (a strided view)."""
    return np.ndarray((len(data) - WIDTH + 1, 2), dtype="<u8", buffer=data, strides=(1, 8))


def _word_at(data: Bytes) -> npt.NDArray[np.uint64]:
    """Every 8-byte window of `data` as one little-endian 64-bit word (a strided view)."""
    return np.ndarray((len(data) - WORD + 1,), dtype="<u8", buffer=data, strides=(1,))


def _integers(words: npt.NDArray[np.uint64], lengths: Positions) -> npt.NDArray[np.float64] | None:
    """Cells of 1 to 8 bytes, given as the word ending at their last byte, read as whole numbers;
    None unless every cell is all digits (a sign or a point is `_decimals`'s to read).
    """
    pad = PAD_HIGH[WORD - lengths]  # the bytes before the cell become "0"
    words = (words & ~pad) | (pad & ZEROS)
    if not _digits(words):
        return None
    return _eight_digits(words).astype(np.float64)


def _decimals(words: npt.NDArray[np.uint64], lengths: Positions) -> npt.NDArray[np.float64] | None:
    """Cells given as the 16 bytes ending at their last byte (two words per cell) to floats.

    Each step works on whole 64-bit words, eight bytes at a time: pad the bytes before the cell
    with "0", find the point and the minus (exact zero-byte tests), check every other byte is a
    digit, then read the digits as one integer.
    """
    pad = WIDTH - lengths
    high, low = np.ascontiguousarray(words.T)  # bytes 0-7 and 8-15 of each cell
    high = (high & ~PAD_HIGH[pad]) | (PAD_HIGH[pad] & ZEROS)
    low = (low & ~PAD_LOW[pad]) | (PAD_LOW[pad] & ZEROS)
    point_high, point_low = _equal(high, POINTS), _equal(low, POINTS)
    minus_high, minus_low = _equal(high, MINUSES), _equal(low, MINUSES)
    points = _count(point_high) + _count(point_low)
    signs = _count(minus_high) + _count(minus_low)
    if points.max() > 1 or signs.max() > 1 or ((lengths - points - signs) < 1).any():
        return None  # two points or minuses, or no digit at all: "-", ".", "-."
    negative = signs == 1
    first_high, first_low = FIRST_HIGH[pad[negative]], FIRST_LOW[pad[negative]]
    if not ((minus_high[negative] == first_high) & (minus_low[negative] == first_low)).all():
        return None  # a minus anywhere but first (each word compared on its own)
    high += (point_high >> 7) * 2 + (minus_high >> 7) * 3  # "." and "-" become "0"
    low += (point_low >> 7) * 2 + (minus_low >> 7) * 3
    if not (_digits(high) and _digits(low)):
        return None
    value = (_eight_digits(high) * 100_000_000 + _eight_digits(low)).astype(np.float64)
    # Digits after the point: the bytes after its mark, plus the low word's 8 if it is high.
    decimals = _after(point_low) + (point_high != 0) * (8 + _after(point_high))
    # With the point read as a 0 digit, value = left * 10**(d+1) + right and right < 10**d; the
    # float floor is exact, as every number here is an integer below 2**53.
    left = np.floor(value / POWERS[decimals + 1]) * points
    result: npt.NDArray[np.float64] = (value - 9 * left * POWERS[decimals]) / POWERS[decimals]
    np.negative(result, out=result, where=negative)
    return result


def _equal(words: npt.NDArray[np.uint64], pattern: np.uint64) -> npt.NDArray[np.uint64]:
    """0x80 in each byte equal to the pattern's byte, 0 elsewhere (no false positives)."""
    t = words ^ pattern
    return ~(((t & LOW7) + LOW7) | t | LOW7)


def _count(marks: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
    """How many bytes of each word are marked (0x80)."""
    return (((marks >> 7) * ONES) >> 56).astype(np.int64)


def _after(marks: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
    """How many bytes of each word come after its one marked byte (0 when none is marked)."""
    return _count(~((marks << np.uint64(1)) - np.uint64(1)) & HIGHS)


def _digits(words: npt.NDArray[np.uint64]) -> bool:
    """Every byte is an ASCII digit: high nibble 3, and adding 6 keeps it there (so <= "9")."""
    return bool(((words & NIBBLES) == ZEROS).all() and (((words + SIXES) & NIBBLES) == ZEROS).all())


def _eight_digits(words: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
    """Words of 8 ASCII digits as integers, by the SWAR steps (pairs, then quads, then the
    eight) rather than 8 multiplies each. Bytes are little-endian: the first digit is lowest.
    """
    words = words - ZEROS
    words = (words * np.uint64(10)) + (words >> np.uint64(8))
    words = (
        ((words & PAIRS) * np.uint64(100 + (1000000 << 32)))
        + (((words >> np.uint64(16)) & PAIRS) * np.uint64(1 + (10000 << 32)))
    ) >> np.uint64(32)
    return words.astype(np.int64)


def _words_of(name: bytes) -> list[int]:
    """Up to 16 bytes, NUL-padded, as the two little-endian words `_words` reads."""
    value = int.from_bytes(name.ljust(WIDTH, b"\0"), "little")
    return [value & 0xFFFFFFFFFFFFFFFF, value >> 64]


def _byte_masks(first: int, stop: int) -> list[int]:
    """Bytes first..stop-1 of 16 set to 0xFF, as two little-endian words."""
    mask = sum(0xFF << (8 * i) for i in range(first, stop))
    return [mask & 0xFFFFFFFFFFFFFFFF, mask >> 64]


ONES = np.uint64(0x0101010101010101)
LOW7 = np.uint64(0x7F7F7F7F7F7F7F7F)
HIGHS = np.uint64(0x8080808080808080)
NIBBLES = np.uint64(0xF0F0F0F0F0F0F0F0)
PAIRS = np.uint64(0x000000FF000000FF)
ZEROS = np.uint64(0x3030303030303030)
SIXES = np.uint64(0x0606060606060606)
POINTS = np.uint64(0x2E2E2E2E2E2E2E2E)
MINUSES = np.uint64(0x2D2D2D2D2D2D2D2D)
# For a cell of 16 - k bytes: PAD_HIGH/LOW[k] cover the k bytes before it, FIRST_HIGH/LOW[k]
# mark its first byte.
PAD_HIGH, PAD_LOW = (
    np.array(masks, dtype=np.uint64)
    for masks in zip(*(_byte_masks(0, k) for k in range(WIDTH + 1)), strict=True)
)
# KEEP_HIGH/LOW[n]: the first n bytes.
KEEP_HIGH, KEEP_LOW = PAD_HIGH, PAD_LOW
FIRST_HIGH, FIRST_LOW = (
    np.array([m & 0x8080808080808080 for m in masks], dtype=np.uint64)
    for masks in zip(*(_byte_masks(k, k + 1) for k in range(WIDTH + 1)), strict=True)
)


LINE_END = np.frombuffer(b",\r\n", dtype=np.uint8)  # the out_of_range cell's comma, then CRLF
COMMA_CELL = np.frombuffer(b",", dtype=np.uint8)
CRLF = np.frombuffer(b"\r\n", dtype=np.uint8)
Item = TypeVar("Item", bound=np.generic)


def writable(model: LoadedModel) -> bool:
    """True when no label holds a NUL, the byte that pads cells here."""
    return not any("\0" in label for label in model.manifest.labels)


def scored_lines(block: Block, model: LoadedModel, batch: Batch, prediction: Prediction) -> bytes:
    """The block's lines with `,label,probability,p_<label>...,out_of_range` (then `,imputed` for
    a model with nullable features, and `,contribution`s for an explained prediction) appended
    to each, and CRLF line ends (the model must be `writable`).
    """
    columns, sizes, tails = prediction_bytes(model, prediction, batch)
    ends = block.line_ends
    lines = ends - np.concatenate(([WIDTH], block.newlines[:-1] + 1))  # each line's text
    width = max(1, int(min(lines.max(), 2 * math.ceil(lines.mean()))))
    row_ends = np.cumsum(lines + sizes)  # in the output
    flagged = batch.flagged()
    pieces: list[memoryview | bytes] = []
    for first in range(0, block.rows, SLICE_ROWS):
        part = slice(first, first + SLICE_ROWS)
        cells = [column[part] for column in columns]
        joined = _joined(block.data, ends[part], lines[part], width, cells).data
        written = int(row_ends[first - 1]) if first else 0
        previous = 0
        for row, names in flagged:
            if part.start <= row < part.stop:
                cut = int(row_ends[row]) - written - int(tails[row])  # the out_of_range cell
                pieces += [joined[previous:cut], FLAG_SEPARATOR.join(names).encode("utf-8")]
                previous = cut
        pieces.append(joined[previous:])
    return b"".join(pieces)


def prediction_bytes(
    model: LoadedModel, prediction: Prediction, batch: Batch
) -> tuple[list[Bytes], Sizes, Sizes]:
    """Each row's `,label,probability,p_<label>...,` (then `,imputed` for a model with nullable
    features, and `,contribution` per feature for an explained prediction) and CRLF as columns of
    NUL-padded cells, its size, and the size of what follows its (empty) out_of_range cell,
    where the flags of `batch.flagged()` go.
    """
    rows, columns = prediction.probabilities.shape
    flat, flat_sizes = probability_bytes(rounded(prediction.probabilities).ravel(), b",")
    cells, cell_sizes = flat.reshape(rows, columns, -1), flat_sizes.reshape(rows, columns)
    if model.manifest.kind == "binary":  # the probability is the positive label's
        positive = model.manifest.positive_index
        chosen, chosen_sizes = cells[:, positive], cell_sizes[:, positive]
    else:
        picked = np.arange(rows), prediction.classes
        chosen, chosen_sizes = cells[picked], cell_sizes[picked]
    labels = [b"," + label.encode("utf-8") for label in model.manifest.labels]
    table = padded_rows(labels)
    label_sizes = np.array(list(map(len, labels)))
    parts = [table[prediction.classes], chosen, flat.reshape(rows, -1)]
    sizes = label_sizes[prediction.classes] + chosen_sizes
    sizes += cell_sizes @ np.ones(columns, dtype=np.int64)  # (a sum along rows is slower)
    if isinstance(prediction, Explained):
        return _explained_parts(model, prediction, batch, parts, sizes)
    if not model.validator.nullable:  # no imputed column
        parts.append(np.broadcast_to(LINE_END, (rows, len(LINE_END))))
        return parts, sizes + len(LINE_END), np.full(rows, len(CRLF), dtype=np.int64)
    texts, index = joined_flags(batch.imputed, rows)
    imputed = [b"," + text.encode("utf-8") for text in texts]
    tails = np.array(list(map(len, imputed)), dtype=np.int64)[index] + len(CRLF)
    parts += [
        np.broadcast_to(COMMA_CELL, (rows, 1)),
        padded_rows(imputed)[index],
        np.broadcast_to(CRLF, (rows, len(CRLF))),
    ]
    return parts, sizes + len(COMMA_CELL) + tails, tails


def _explained_parts(
    model: LoadedModel, explained: Explained, batch: Batch, parts: list[Bytes], sizes: Sizes
) -> tuple[list[Bytes], Sizes, Sizes]:
    """`prediction_bytes` of an explained prediction: after the out_of_range cell, the imputed
    cell (a model with nullable features) and one contribution cell per feature, then CRLF."""
    rows, width = explained.contributions.shape
    tails = np.full(rows, len(CRLF), dtype=np.int64)
    parts.append(np.broadcast_to(COMMA_CELL, (rows, 1)))  # the out_of_range cell (flags after)
    if model.validator.nullable:
        texts, index = joined_flags(batch.imputed, rows)
        imputed = [b"," + text.encode("utf-8") for text in texts]
        tails += np.array(list(map(len, imputed)), dtype=np.int64)[index]
        parts.append(padded_rows(imputed)[index])
    flat, flat_sizes = contribution_bytes(explained.contributions.ravel(), b",")
    parts += [flat.reshape(rows, -1), np.broadcast_to(CRLF, (rows, len(CRLF)))]
    tails += flat_sizes.reshape(rows, width) @ np.ones(width, dtype=np.int64)
    return parts, sizes + len(COMMA_CELL) + tails, tails


def joined_flags(masks: Mapping[str, Mask], size: int) -> tuple[list[str], Indices]:
    """A flags column (`Batch.imputed`, say) as its distinct cells, the features of a row joined
    by FLAG_SEPARATOR ("" for none), and each row's index into them (`flag_patterns`)."""
    lists, index = flag_patterns(masks, size)
    return [FLAG_SEPARATOR.join(names) for names in lists], index


def _joined(data: Bytes, ends: Sizes, lines: Sizes, width: int, cells: list[Bytes]) -> Bytes:
    """Each line of `data` (`lines` bytes before the newline at `ends`) then its appended row.

    A row of [window | appended] holds the line right-aligned in a window `width` wide, then the
    appended bytes; one mask keeps the line and the appended bytes but NULs, row after row. A
    line wider than the window is cut into pieces, each a row of its own with nothing appended
    but the last, so one long line does not widen every row.
    """
    counts = np.maximum(-(-lines // width), 1)  # pieces per line
    if counts.max() > 1:
        line = np.repeat(np.arange(len(ends)), counts)
        after = np.repeat(np.cumsum(counts) - 1, counts) - np.arange(len(line))  # pieces after
        starts = ends[line] - lines[line]
        ends = ends[line] - after * width
        lines = np.minimum(ends - starts, width)
        cells = [_spread(column, after == 0) for column in cells]
    whole = side_by_side([_windows(data, width)[np.maximum(ends - width, 0)], *cells])
    for row in np.flatnonzero(ends < width).tolist():  # the data starts inside the window
        whole[row, width - lines[row] : width] = data[ends[row] - lines[row] : ends[row]]
    keep = np.empty(whole.shape, dtype=np.bool_)
    steps = np.repeat(np.array([False, True]), width)  # steps[n : n + width]: n trailing Trues
    keep[:, :width] = _windows(steps, width)[lines]
    np.not_equal(whole[:, width:], 0, out=keep[:, width:])
    return whole[keep]


def _spread(values: npt.NDArray[Item], last: npt.NDArray[np.bool_]) -> npt.NDArray[Item]:
    """Rows of `values` at the rows marked `last`, zeros elsewhere."""
    spread = np.zeros((len(last), values.shape[1]), dtype=values.dtype)
    spread[last] = values
    return spread


def _windows(data: npt.NDArray[Item], width: int) -> npt.NDArray[Item]:
    """Every `width` run of `data`, one a row (a read-only strided view)."""
    return as_strided(data, (len(data) - width + 1, width), (data.strides[0],) * 2, writeable=False)
