"""v1 JSON, decode and encode: `{"records": [...]}` bodies to a checked Batch, predictions to bytes.

Decoding has one path for valid bodies and one that names problems. msgspec decodes a body
straight into typed records (each value's JSON type and each category checked while it parses;
a nullable feature may be null or absent, read as None); a body it cannot decode, or whose
values break a rule, answers None, and the body is read again through orjson record by record
(`batch_from_records`), which names every problem in the API's words. Where both read a body
they give the same batch (tests/service/test_v1_json_decoding.py).

Encoding writes the bytes orjson would write for one object per record (label, probability,
probabilities, out_of_range, imputed): a few records by one `%` format each, thousands as rows of
one numpy byte matrix (tests/service/test_v1_json_encoding.py). With `explain=true` each record
also gets `explanation`, its features' contributions largest first (`explained_json`,
`service.explanations`).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from functools import lru_cache
from types import GenericAlias
from typing import Any, Literal

import msgspec
import numpy as np
import numpy.typing as npt
import orjson

from service import explanations
from service.codecs import Answer, PerVersion, Result, parse_json
from service.codecs.probabilities import (
    SLICE_ROWS,
    padded_rows,
    probability_bytes,
    rounded,
    side_by_side,
)
from service.errors import BatchTooLarge, InvalidInput, Problem
from service.explanations import Explained
from service.manifest import MISSING_CATEGORY, Feature
from service.model import LoadedModel, Prediction
from service.validation import (
    MISSING_NUMBER,
    Batch,
    Validator,
    ValuesInvalid,
    batch_from_records,
)


def answer(
    model: LoadedModel,
    body: bytes,
    limit: int,
    request_id: str,
    count: Callable[[int], None],
    explain: bool = False,
) -> Answer:
    """Parse, check, predict and encode: the whole of a JSON request's work, in one call.

    `count` learns the number of records as soon as it is known, also when a record is bad.
    With `explain`, each prediction also gets its `explanation` (`explained_json`).
    """
    if explain:
        explanations.check_explainable(model)
    batch = records_decoder(model.validator).batch(body, limit)
    if batch is None:  # orjson reads the rest, and the Validator names what is wrong
        records = records_of(parse_json(body), limit)
        count(len(records))
        batch = batch_from_records(model.validator, records)
    else:
        count(batch.size)
    if explain:
        explanations.check(model, batch.size, limit)
        result = Result(batch, explanations.explain(model, batch))
    else:
        result = Result(batch, model.predict(batch))
    head = {"model": model.name, "version": model.version, "request_id": request_id}
    envelope = orjson.dumps({**head, "predictions": None})
    assert envelope.endswith(b"null}")  # "predictions" is the last key
    predictions = prediction_json(model, batch, result.prediction)
    if isinstance(result.prediction, Explained):
        predictions = explained_json(model, batch, result.prediction, predictions)
    return Answer(result, envelope[:-5] + predictions + b"}")


def records_of(payload: Any, limit: int) -> list[Any]:
    """The `records` list of a v1 JSON body: present, a list, 1 to `limit` long, nothing else."""
    if type(payload) is not dict:
        msg = "Input should be an object with 'records'"
        raise _envelope_error(None, msg, "model_attributes_type")
    extra = next((key for key in payload if key != "records"), None)
    if extra is not None:
        raise _envelope_error(extra, "Extra inputs are not permitted", "extra_forbidden")
    if "records" not in payload:
        raise _envelope_error("records", "Field required", "missing")
    records = payload["records"]
    if type(records) is not list:
        raise _envelope_error("records", "Input should be a valid list", "list_type")
    if not records:
        msg = "List should have at least 1 item after validation, not 0"
        raise _envelope_error("records", msg, "too_short")
    if len(records) > limit:
        raise BatchTooLarge(len(records), limit)
    return records


def _envelope_error(field: str | None, msg: str, kind: str) -> InvalidInput:
    return InvalidInput([Problem(None, field, msg, kind)], ("body",))


# Past 2**53 a JSON integer and its double differ, and the general path compares the integer
# itself with the bounds, so a body with such a number is the general path's. Checked on the
# columns (one numpy pass), not by msgspec per value: a `Meta` bound made decoding 10% slower.
EXACT = 2.0**53
# Up to this many records, plain Python checks (`Validator.quick`) beat numpy's per-call overhead.
QUICK_RECORDS = 16
# JSON types per feature type, as the general path allows them (`validation.NUMBER_TYPES` and
# co.): an integer feature takes any JSON number here too; whether it is whole is the validator's
# rule, checked on the values.
_TYPES: dict[str, Any] = {"float": float, "int": float, "bool": bool, "category": str}
Columns = tuple[list[Any], ...]


def _field(index: int, feature: Feature) -> tuple[str, Any] | tuple[str, Any, None]:
    """A record's field: required, or (nullable) `T | None` that may be left out (None)."""
    if feature.nullable:
        return f"f{index}", _field_type(feature) | None, None
    return f"f{index}", _field_type(feature)


def _field_type(feature: Feature) -> Any:
    """A category's values are checked against its allowed ones as msgspec decodes them (a
    `Literal`, one hash lookup each), so `assemble` need not check them again; a nullable
    category also allows MISSING_CATEGORY, as the Validator does."""
    if feature.type == "category" and feature.categories:
        allowed = [*feature.categories, *([MISSING_CATEGORY] * feature.nullable)]
        return Literal[tuple(allowed)]
    return _TYPES[feature.type]


def column_reader(count: int) -> Callable[[list[Any]], Columns]:
    """A function giving the columns of records whose fields are `f0`, `f1`, ...: one list
    comprehension per field, written out, as `collections.namedtuple` writes its methods.

    `[r.f0 for r in records]` reads a struct's field directly, where `map(attrgetter("f0"),
    records)` looks the name up on the type each time (about a third slower).
    """
    comprehensions = "".join(f"[r.f{i} for r in records], " for i in range(count))
    namespace: dict[str, Any] = {}
    exec(f"def read(records):\n    return ({comprehensions})\n", namespace)
    read: Callable[[list[Any]], Columns] = namespace["read"]
    return read


class RecordsDecoder:
    """Decodes `{"records": [...]}` for one model version's features."""

    def __init__(self, validator: Validator) -> None:
        # Fields are named f0, f1, ... in feature order (any JSON key is a field through
        # `rename`), so `column_reader` can write their names into code.
        # Nullable fields have a default (None), so every field is keyword-only: a field with a
        # default may then precede one without (the order stays the features').
        features = validator.features
        fields = [_field(i, f) for i, f in enumerate(features)]
        rename = {f"f{i}": f.name for i, f in enumerate(features)}
        record = msgspec.defstruct(
            "Record",
            fields,
            forbid_unknown_fields=True,
            gc=False,
            rename=rename,
            kw_only=bool(validator.nullable),
        )
        body = msgspec.defstruct(
            "Body", [("records", GenericAlias(list, (record,)))], forbid_unknown_fields=True
        )
        self._decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(body)
        self._validator = validator
        self._columns = column_reader(len(features))
        position = {f.name: i for i, f in enumerate(features)}
        self._numeric = [position[f.name] for f in validator.numeric]
        self._categorical = [(f.name, position[f.name]) for f in validator.categorical]
        self._known_categories = all(f.categories for f in validator.categorical)
        # Where a record may hold None (a nullable feature left out or null), and what the
        # model takes instead: NaN for a number, MISSING_CATEGORY for a category.
        self._nullable = [position[f.name] for f in validator.nullable]
        self._missing: list[tuple[int, Any]] = [
            (position[f.name], MISSING_CATEGORY if f.type == "category" else MISSING_NUMBER)
            for f in validator.nullable
        ]

    def batch(self, body: bytes, limit: int) -> Batch | None:
        """The checked batch of a valid body of 1 to `limit` records; None for anything else."""
        try:
            records: list[Any] = self._decoder.decode(body).records
        except (msgspec.DecodeError, UnicodeDecodeError):  # msgspec.ValidationError is the first
            return None  # a string of bad UTF-8 raises the second (msgspec issue #714)
        size = len(records)
        if not 0 < size <= limit:
            return None
        if size <= QUICK_RECORDS:  # plain Python rules, as `batch_from_records` takes them
            rows = list(map(msgspec.structs.astuple, records))
            if not self._nullable or not self._has_missing(rows):  # else numpy's path
                if any(not -EXACT < row[i] < EXACT for row in rows for i in self._numeric):
                    return None
                return self._validator.quick(rows)
        columns = self._columns(records)
        if self._missing:
            columns = self._filled(columns)
        numbers = np.empty((len(self._numeric), size), dtype=np.float64)
        column = struct.Struct(f"{size}d")  # packs floats straight into the matrix's memory,
        for row, i in enumerate(self._numeric):  # quicker than np.fromiter
            column.pack_into(numbers.data, row * column.size, *columns[i])
        if (np.abs(numbers) >= EXACT).any():  # NaN, a missing value, is not beyond it
            return None
        categories = {name: columns[i] for name, i in self._categorical}
        # On a broken rule that answer is dropped here (None, so no problem is listed: limit=0),
        # and the general path then names every problem with the caller's own values.
        raw: dict[str, Any] = {
            f.name: values for f, values in zip(self._validator.numeric, numbers, strict=True)
        }
        try:
            return self._validator.assemble(
                size, numbers, categories, raw, known_categories=self._known_categories, limit=0
            )
        except ValuesInvalid:
            return None

    def _has_missing(self, rows: list[tuple[Any, ...]]) -> bool:
        """Whether a nullable field is None in a row (`Validator.quick` takes no missing value)."""
        return any(row[i] is None for row in rows for i in self._nullable)

    def _filled(self, columns: Columns) -> Columns:
        """The columns with each None as the model's missing value."""
        filled = list(columns)
        for i, missing in self._missing:
            if None in filled[i]:
                filled[i] = [missing if value is None else value for value in filled[i]]
        return tuple(filled)


records_decoder = PerVersion(RecordsDecoder)  # one decoder per model version, kept while it serves


Bytes = npt.NDArray[np.uint8]
FLAGS_KEY = b'},"out_of_range":['
IMPUTED_KEY = b'],"imputed":['  # closes out_of_range, opens imputed
NO_FLAGS = b"[]"
# From this many records the byte matrix beats formatting them one by one (its fixed cost is
# some 40 numpy calls; bench/RESULTS.md).
MATRIX_ROWS = 4096
RECORD_END = b"]},"  # closes imputed and the record; the last record's comma is dropped
RECORD_TAIL = FLAGS_KEY + IMPUTED_KEY + RECORD_END


def prediction_json(model: LoadedModel, batch: Batch, prediction: Prediction) -> bytes:
    """The records' JSON array, `[{"label":...,"out_of_range":[...],"imputed":[...]},...]`."""
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
    # Missing values may be common, so the imputed lists are gathered like the labels (one
    # padded row per distinct list); out-of-range values are rare, and spliced in afterwards.
    imputed_sizes: npt.NDArray[np.int64] | int = 0
    if batch.imputed:
        index, texts = _imputed_lists(batch)
        imputed_sizes = np.array([len(text) for text in texts], dtype=np.int64)[index]
        parts += [_constant(FLAGS_KEY + IMPUTED_KEY, rows), padded_rows(texts)[index]]
        parts += [_constant(RECORD_END, rows)]
    else:
        parts += [_constant(RECORD_TAIL, rows)]
    # Where each record (with its comma) ends in the joined bytes, for splicing flags in.
    ends = np.cumsum(
        np.count_nonzero(heads, axis=1)[prediction.classes]
        + cell_sizes[picked]
        + cell_sizes @ np.ones(width, dtype=np.int64)
        + sum(map(len, keys))
        + len(RECORD_TAIL)
        + imputed_sizes
    )
    # ... and where each record's out_of_range list goes: before its imputed list.
    backs = len(IMPUTED_KEY + RECORD_END) + imputed_sizes
    flagged = batch.flagged()
    pieces = [b"["]
    at = 0  # the next flagged record
    for first in range(0, rows, SLICE_ROWS):
        joined = _joined([part[first : first + SLICE_ROWS] for part in parts])
        written = int(ends[first - 1]) if first else 0  # bytes of the records before
        previous = 0
        while at < len(flagged) and flagged[at][0] < first + SLICE_ROWS:
            row, names = flagged[at]
            back = backs if isinstance(backs, int) else int(backs[row])
            cut = int(ends[row]) - written - back
            pieces += [joined[previous:cut], orjson.dumps(names)[1:-1]]
            previous = cut
            at += 1
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
    imputed = [NO_FLAGS] * batch.size
    if batch.imputed:
        index, texts = _imputed_lists(batch)
        arrays = [b"[" + text + b"]" for text in texts]
        imputed = [arrays[i] for i in index.tolist()]
    columns = [tokens[j::width] for j in range(width)]
    records = [
        template % values
        for values in zip(
            [label_values[index] for index in classes],
            chosen,
            *columns,
            flags,
            imputed,
            strict=True,
        )
    ]
    return b"[" + b",".join(records) + b"]"


def _imputed_lists(batch: Batch) -> tuple[npt.NDArray[np.intp], list[bytes]]:
    """`Batch.imputed_patterns`, each list as the inside of its JSON array (`"income","region"`)."""
    lists, index = batch.imputed_patterns()
    return index, [orjson.dumps(names)[1:-1] for names in lists]


@lru_cache(maxsize=64)
def _record_template(labels: tuple[str, ...]) -> tuple[bytes, list[bytes]]:
    """The bytes template of one record, and each label's JSON string."""
    quoted = [orjson.dumps(label) for label in labels]
    probabilities = b",".join(label + b":%s" for label in quoted)
    template = (
        b'{"label":%s,"probability":%s,"probabilities":{'
        + probabilities
        + b'},"out_of_range":%s,"imputed":%s}'
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


def explained_json(
    model: LoadedModel, batch: Batch, explained: Explained, predictions: bytes
) -> bytes:
    """The records' JSON array (`prediction_json`) with each record's `explanation` added last:
    per record, one entry per feature, largest |contribution| first, `{"feature": name, "label":
    display label, "value": as sent (null when missing), "reference": ..., "contribution": ...}`
    (rounded as probabilities are).

    Each entry is written from bytes made once per feature (its name, label and reference) and
    once per value (one orjson call per column), not as a dict per entry (a 1,000-record digits
    answer has 64,000 entries).
    """
    features = model.manifest.features
    heads = [
        b'{"feature":' + orjson.dumps(f.name) + b',"label":' + orjson.dumps(f.label) + b',"value":'
        for f in features
    ]
    middles = [
        b',"reference":' + orjson.dumps(_reference(f)) + b',"contribution":' for f in features
    ]
    values = _value_tokens(features, batch)
    contributions = rounded(explained.contributions) + 0.0  # + 0.0: no -0.0
    tokens = orjson.dumps(contributions.ravel(), option=orjson.OPT_SERIALIZE_NUMPY)[1:-1]
    cells = tokens.split(b",")
    width = len(features)
    order = np.argsort(-np.abs(contributions), axis=1, kind="stable").tolist()
    records = orjson.loads(predictions)
    for i, (record, ranked) in enumerate(zip(records, order, strict=True)):
        at = i * width
        entries = [heads[j] + values[j][i] + middles[j] + cells[at + j] + b"}" for j in ranked]
        record["explanation"] = orjson.Fragment(b"[" + b",".join(entries) + b"]")
    return orjson.dumps(records)


def _reference(feature: Feature) -> Any:
    """A feature's reference value typed as its values are sent (38, not 38.0, for an int)."""
    reference = feature.reference
    if feature.type == "int" and isinstance(reference, float) and reference.is_integer():
        return int(reference)
    if feature.type == "bool" and reference is not None:
        return bool(reference)
    return reference


def _value_tokens(features: list[Feature], batch: Batch) -> list[list[bytes]]:
    """Each feature's values as sent, as JSON bytes per record: a category's text, an integer as
    an int, a bool as a bool, a float as the shortest decimal with its float32 value (`_shortest`,
    once for every float feature); null where missing."""
    tokens: dict[str, list[bytes]] = {}
    floats = [f for f in features if f.type == "float"]
    if floats:
        matrix = np.vstack([batch.inputs[f.name].reshape(1, -1) for f in floats])
        for feature, row in zip(floats, _shortest(matrix), strict=True):
            tokens[feature.name] = _split(orjson.dumps(row, option=orjson.OPT_SERIALIZE_NUMPY))
    for feature in features:
        column = batch.inputs[feature.name][:, 0]
        if feature.type == "category":  # a few distinct texts, each encoded once
            texts = [None if value == MISSING_CATEGORY else value for value in column.tolist()]
            encoded = {text: orjson.dumps(text) for text in set(texts)}
            tokens[feature.name] = [encoded[text] for text in texts]
        elif feature.type != "float":
            missing = np.isnan(column)
            kind = np.bool_ if feature.type == "bool" else np.int64
            whole: npt.NDArray[Any] = np.where(missing, 0, column).astype(kind)
            cells = _split(orjson.dumps(whole, option=orjson.OPT_SERIALIZE_NUMPY))
            for i in np.flatnonzero(missing).tolist():
                cells[i] = b"null"
            tokens[feature.name] = cells
    return [tokens[feature.name] for feature in features]


def _split(array: bytes) -> list[bytes]:
    """The elements of a JSON array of numbers, booleans or nulls (no commas inside)."""
    return array[1:-1].split(b",")


def _shortest(values: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """Each float32 as the decimal with the fewest places (up to 8) that reads back as it."""
    wide = values.astype(np.float64)
    shortest = wide.copy()
    todo = np.isfinite(wide)
    for places in range(9):
        if not todo.any():
            break
        near = np.round(wide, places)
        found = todo & (near.astype(np.float32) == values)
        shortest[found] = near[found]
        todo &= ~found
    return shortest
