"""v1 JSON prediction records written as bytes: formatted one by one, or for thousands of
records as rows of one numpy byte matrix, with no Python object per record.

One `%` format of a bytes template per record costs about 0.6 µs, and joining them as much
again: for 10,000 records, a fifth of a whole request's CPU (12.6 ms; the matrix: 8.4). The
matrix has a fixed cost of about 0.36 ms, so fewer records are formatted. In the matrix each
record is one row, NUL-padded: the constant parts (keys, braces) are broadcast rows, the label
is a row of a per-class table, and the probabilities' digits come from
`bytelines.probability_bytes`. One mask over the matrix then reads, row-major, every record and
its trailing comma. Out-of-range flags (rare) are spliced in after. Both ways write the bytes
orjson writes for `render.prediction_records` (tests/service/test_byterecords.py checks it).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import numpy.typing as npt
import orjson

from service.batch import Batch
from service.bytelines import SLICE_ROWS, padded_rows, probability_bytes, side_by_side
from service.model import LoadedModel, Prediction
from service.render import rounded

Bytes = npt.NDArray[np.uint8]
FLAGS_KEY = b'},"out_of_range":['
NO_FLAGS = b"[]"
# From this many records the byte matrix beats formatting them one by one (measured: equal at
# about 4,000; its fixed cost is some 40 numpy calls, 0.36 ms).
MATRIX_ROWS = 4096
RECORD_END = b"]},"  # closes out_of_range and the record; the last record's comma is dropped


def prediction_json(model: LoadedModel, batch: Batch, prediction: Prediction) -> bytes:
    """The records' JSON array, `[{"label":...,"out_of_range":[...]},...]`."""
    rows = len(prediction.probabilities)
    if not rows:
        return b"[]"
    if rows < MATRIX_ROWS:
        return formatted(model, batch, prediction)
    return matrix(model, batch, prediction)


def matrix(model: LoadedModel, batch: Batch, prediction: Prediction) -> bytes:
    """The records built as rows of a byte matrix (see the module's docstring); 1 row or more."""
    rows, width = prediction.probabilities.shape
    flat, flat_sizes = probability_bytes(rounded(prediction.probabilities).ravel(), json=True)
    cells, cell_sizes = flat.reshape(rows, width, -1), flat_sizes.reshape(rows, width)
    picked = np.arange(rows), prediction.classes
    if model.manifest.kind == "binary":  # the probability is the positive label's
        picked = np.arange(rows), np.full(rows, model.manifest.positive_index)
    labels = [orjson.dumps(label) for label in model.manifest.labels]
    heads = padded_rows([b'{"label":' + label + b',"probability":' for label in labels])
    keys = [b"," + label + b":" for label in labels]
    keys[0] = b',"probabilities":{' + labels[0] + b":"
    parts = [heads[prediction.classes], cells[picked]]
    for j, key in enumerate(keys):
        parts += [_constant(key, rows), cells[:, j]]
    parts += [_constant(FLAGS_KEY + RECORD_END, rows)]
    # Where each record (with its comma) ends in the joined bytes, for splicing flags in.
    ends = np.cumsum(
        np.count_nonzero(heads, axis=1)[prediction.classes]
        + cell_sizes[picked]
        + cell_sizes @ np.ones(width, dtype=np.int64)
        + sum(map(len, keys))
        + len(FLAGS_KEY + RECORD_END)
    )
    flagged = batch.flagged()
    pieces = [b"["]
    for first in range(0, rows, SLICE_ROWS):
        joined = _joined([part[first : first + SLICE_ROWS] for part in parts])
        written = int(ends[first - 1]) if first else 0  # bytes of the records before
        previous = 0
        for row, names in flagged:
            if first <= row < first + SLICE_ROWS:
                cut = int(ends[row]) - written - len(RECORD_END)
                pieces += [joined[previous:cut], orjson.dumps(names)[1:-1]]
                previous = cut
        pieces.append(joined[previous:])
    pieces[-1] = pieces[-1][:-1]  # the last record's comma
    return b"".join(pieces) + b"]"


def formatted(model: LoadedModel, batch: Batch, prediction: Prediction) -> bytes:
    """The same bytes, a record at a time: orjson formats every rounded probability in one
    call, then each record is one `%` format of a per-model template. For a few records this
    beats the matrix's fixed cost of some forty numpy calls.
    """
    labels = model.manifest.labels
    width = len(labels)
    classes = prediction.classes.tolist()
    values = rounded(prediction.probabilities)
    tokens = orjson.dumps(values.ravel(), option=orjson.OPT_SERIALIZE_NUMPY)[1:-1].split(b",")
    if model.manifest.kind == "binary":
        chosen = tokens[model.manifest.positive_index :: width]
    else:
        chosen = [tokens[row * width + index] for row, index in enumerate(classes)]
    template, label_values = _record_template(tuple(labels))
    flags = [NO_FLAGS] * batch.size  # then only the records with flags are encoded
    for row, names in batch.flagged():
        flags[row] = orjson.dumps(names)
    columns = [tokens[j::width] for j in range(width)]
    records = [
        template % values
        for values in zip(
            [label_values[index] for index in classes], chosen, *columns, flags, strict=True
        )
    ]
    return b"[" + b",".join(records) + b"]"


@lru_cache(maxsize=64)
def _record_template(labels: tuple[str, ...]) -> tuple[bytes, list[bytes]]:
    """The bytes template of one record, and each label's JSON string."""
    quoted = [orjson.dumps(label) for label in labels]
    probabilities = b",".join(label + b":%s" for label in quoted)
    template = (
        b'{"label":%s,"probability":%s,"probabilities":{' + probabilities + b'},"out_of_range":%s}'
    )
    return template, quoted


def _constant(text: bytes, rows: int) -> Bytes:
    """The same bytes on every row (a broadcast view, no copy)."""
    return np.broadcast_to(np.frombuffer(text, dtype=np.uint8), (rows, len(text)))


def _joined(parts: list[Bytes]) -> bytes:
    """The rows of the parts side by side, NULs dropped, row after row."""
    whole = side_by_side(parts)
    joined: bytes = whole[whole != 0].tobytes()
    return joined
