"""Scored CSV lines built as bytes with numpy: each input line plus its prediction cells.

As Python strings (a `str` per cell, a join per line, then an encode) the appended cells cost
about 0.65 µs a row, a quarter of a scoring worker's CPU. Here every row's appended cells are one
row of a byte matrix, NUL-padded to a fixed width: probability digits come from multiplies and
shifts on whole arrays, labels from one byte row per class. Each line is put right-aligned in a
window beside its row, so one boolean mask over [line window | appended cells] reads, row-major,
the whole output; out-of-range flags (rare) are spliced in after. The bytes are those of
`render.prediction_columns` joined with commas (tests/service/test_bytelines.py checks it).
"""

from __future__ import annotations

import math
from typing import TypeVar

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import as_strided

from service.batch.cells import WIDTH, Block
from service.codecs.probabilities import (
    FLAG_SEPARATOR,
    SLICE_ROWS,
    Bytes,
    Sizes,
    padded_rows,
    probability_bytes,
    rounded,
    side_by_side,
)
from service.model import LoadedModel, Prediction
from service.validation import Batch

LINE_END = np.frombuffer(b",\r\n", dtype=np.uint8)  # the out_of_range cell's comma, then CRLF
Item = TypeVar("Item", bound=np.generic)


def writable(model: LoadedModel) -> bool:
    """True when no label holds a NUL, the byte that pads cells here."""
    return not any("\0" in label for label in model.manifest.labels)


def scored_lines(block: Block, model: LoadedModel, batch: Batch, prediction: Prediction) -> bytes:
    """The block's lines with `,label,probability,p_<label>...,out_of_range` appended to each,
    and CRLF line ends (the model must be `writable`).
    """
    columns, sizes = prediction_bytes(model, prediction)
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
                cut = int(row_ends[row]) - written - 2  # before the row's CRLF
                pieces += [joined[previous:cut], FLAG_SEPARATOR.join(names).encode("utf-8")]
                previous = cut
        pieces.append(joined[previous:])
    return b"".join(pieces)


def prediction_bytes(model: LoadedModel, prediction: Prediction) -> tuple[list[Bytes], Sizes]:
    """Each row's `,label,probability,p_<label>...,` and CRLF as columns of NUL-padded cells,
    and its size.
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
    parts = [
        table[prediction.classes],
        chosen,
        flat.reshape(rows, -1),
        np.broadcast_to(LINE_END, (rows, len(LINE_END))),
    ]
    sizes = label_sizes[prediction.classes] + chosen_sizes + len(LINE_END)
    sizes += cell_sizes @ np.ones(columns, dtype=np.int64)  # (a sum along rows is slower)
    return parts, sizes


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
