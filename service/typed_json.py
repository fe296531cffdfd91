"""v1 JSON bodies decoded straight into typed records by msgspec: the fast path for valid bodies.

Through orjson a body becomes a dict per record and a Python object per value, whose types the
validator then checks column by column; for 10,000 churn records that is about 57 ms. msgspec
checks each value's JSON type while it parses (and each category against its allowed values),
into one small struct per record (no dicts), and columns are read from the structs by list
comprehensions (`column_reader`): about 28 ms for the same records (in process, parse and checks
only; a whole 10,000-record request went from 74 to 41 ms, and to about 36 with the reader and
the numbers' range checked on the columns).

This is a fast path, never the definition of what is valid. A body it cannot decode (a wrong
type, a missing or unknown field, malformed JSON), or one whose values break a rule, answers None
and the caller takes the general path (`parse_json`, `records_of`, `batch_from_records`), which
names every problem in the API's words. Where both read a body they give the same batch: both
parsers round decimal text to the nearest double, a JSON integer becomes the nearest double, and
a repeated key keeps its last value in both (tests/service/test_typed_json.py).
"""

from __future__ import annotations

import struct
import weakref
from collections.abc import Callable
from types import GenericAlias
from typing import Any, Literal

import msgspec
import numpy as np

from service.batch import Batch
from service.manifest import Feature
from service.records import QUICK_RECORDS
from service.validation import Validator, ValuesInvalid

# Past 2**53 a JSON integer and its double differ, and the general path compares the integer
# itself with the bounds, so a body with such a number is the general path's. Checked on the
# columns (one numpy pass), not by msgspec per value: a `Meta` bound made decoding 10% slower.
EXACT = 2.0**53
# JSON types per feature type, as the general path allows them (`validation.NUMBER_TYPES` and
# co.): an integer feature takes any JSON number here too; whether it is whole is the validator's
# rule, checked on the values.
_TYPES: dict[str, Any] = {"float": float, "int": float, "bool": bool, "category": str}
Columns = tuple[list[Any], ...]


def _field_type(feature: Feature) -> Any:
    """A category's values are checked against its allowed ones as msgspec decodes them (a
    `Literal`, one hash lookup each), so `assemble` need not check them again."""
    if feature.type == "category" and feature.categories:
        return Literal[tuple(feature.categories)]
    return _TYPES[feature.type]


def column_reader(count: int) -> Callable[[list[Any]], Columns]:
    """A function giving the columns of records whose fields are `f0`, `f1`, ...: one list
    comprehension per field, written out, as `collections.namedtuple` writes its methods.

    `[r.f0 for r in records]` reads a struct's field directly, where `map(attrgetter("f0"),
    records)` looks the name up on the type each time: for 10,000 churn records the columns took
    7.0 ms against 10.5 (median of 40 interleaved runs).
    """
    comprehensions = "".join(f"[r.f{i} for r in records], " for i in range(count))
    namespace: dict[str, Any] = {}
    exec(f"def read(records):\n    return ({comprehensions})\n", namespace)
    read: Callable[[list[Any]], Columns] = namespace["read"]
    return read


def records_decoder(validator: Validator) -> RecordsDecoder:
    """The decoder of one model version's records, built on first use and kept while it serves."""
    decoder = _RECORDS_DECODERS.get(validator)
    if decoder is None:  # two threads may both build it; either copy is right
        decoder = _RECORDS_DECODERS[validator] = RecordsDecoder(validator)
    return decoder


class RecordsDecoder:
    """Decodes `{"records": [...]}` for one model version's features."""

    def __init__(self, validator: Validator) -> None:
        # Fields are named f0, f1, ... in feature order (any JSON key is a field through
        # `rename`), so `column_reader` can write their names into code.
        features = validator.features
        fields = [(f"f{i}", _field_type(f)) for i, f in enumerate(features)]
        rename = {f"f{i}": f.name for i, f in enumerate(features)}
        record = msgspec.defstruct(
            "Record", fields, forbid_unknown_fields=True, gc=False, rename=rename
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
            if any(not -EXACT < row[i] < EXACT for row in rows for i in self._numeric):
                return None
            return self._validator.quick(rows)
        columns = self._columns(records)
        numbers = np.empty((len(self._numeric), size), dtype=np.float64)
        column = struct.Struct(f"{size}d")  # packs floats straight into the matrix's memory,
        for row, i in enumerate(self._numeric):  # measured 10% quicker than np.fromiter
            column.pack_into(numbers.data, row * column.size, *columns[i])
        if not (np.abs(numbers) < EXACT).all():
            return None
        categories = {name: columns[i] for name, i in self._categorical}
        # `assemble` quotes these values if a rule is broken; that answer is dropped here (None),
        # and the general path then quotes the caller's own values.
        raw: dict[str, Any] = {
            f.name: values for f, values in zip(self._validator.numeric, numbers, strict=True)
        }
        try:
            return self._validator.assemble(
                size, numbers, categories, raw, known_categories=self._known_categories
            )
        except ValuesInvalid:
            return None


# Keyed by the validator (one per loaded version): a reloaded version gets its own decoder, and an
# old version's goes with it when the last request on it ends.
_RECORDS_DECODERS: weakref.WeakKeyDictionary[Validator, RecordsDecoder] = (
    weakref.WeakKeyDictionary()
)
