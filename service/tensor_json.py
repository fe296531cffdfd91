"""Open Inference Protocol (v2) JSON bodies read straight into a batch: the fast path for big ones.

On the general path orjson makes a Python object of every value in the body, `batch_from_tensors`
checks each one's type and numpy copies the numbers into arrays: for the 10,000-row bench body
(8 FP64 and 2 BYTES tensors) about 12 ms of `_infer`'s 24 (the model run is 5 to 8). Here
msgspec checks the body's JSON grammar in one pass and hands each tensor's data over as bytes. A
numeric tensor whose bytes are only digits, points, minus signs and commas holds nothing but
numbers, so orjson reads it with no per-value type check and struct writes the doubles into the
matrix; categories are checked against the allowed values by msgspec as it decodes them (a
`Literal` type). That body's parse and checks take about 8 ms, and `_infer` about 18 (measured
in one process, the two paths interleaved; the machine is noisy, so these are best-of-runs).

The numbers are read by orjson, as on the general path, so each one is the general path's double
by construction. Reading them from the bytes with whole-array numpy steps, as `service.bytecells`
does for CSV cells, measured slower here (5.4 ms for the 80,000 numbers against 3.8): orjson
reads them in C already, where the CSV path replaced Python code.

This is a fast path, never the definition of what is valid. A body it cannot read exactly
answers None and the caller takes the general path (`parse_json`, `batch_from_tensors`), which
reads every other form and names every problem; where both read a body they give the same batch
and the same answer (tests/service/test_tensor_json.py). So it declines: fields the protocol does
not define (msgspec would skip their values without the UTF-8 and range checks orjson makes);
tensors that are not exactly the model's inputs, once each, all shaped [n] or [n, 1] with flat
data; BOOL or binary data; up to `QUICK_ROWS` rows (the general path's plain-Python rules are
quicker there) or more than the limit; and values that break a rule, so that the general path
quotes the caller's own values in its message.
"""

from __future__ import annotations

import struct
import weakref
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
import numpy as np
import numpy.typing as npt
import orjson

from service.batch import Batch
from service.tensors import FLOAT_TYPES, INTEGER_TYPES, QUICK_ROWS
from service.validation import Validator, ValuesInvalid

NULL = msgspec.Raw(b"null")  # a field the body leaves out reads as JSON null, as with .get()
PLAIN_NUMBERS = b"0123456789.-,"  # the bytes of a flat array of plain decimals, with "[]"
NUMBER: frozenset[type] = frozenset({int, float})  # what orjson makes of JSON numbers
INTEGER: frozenset[type] = frozenset({int})
DOUBLE = 8  # bytes
SMALL_BODY = 1024  # bytes: a few rows at most (churn's 17 rows are 1.6 KB), as quick either way
Floats = npt.NDArray[np.float64]


class _Tensor(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    name: str
    datatype: str
    shape: list[int]
    data: msgspec.Raw
    parameters: msgspec.Raw = NULL


class _Body(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    inputs: list[_Tensor]
    id: msgspec.Raw = NULL
    outputs: msgspec.Raw = NULL
    parameters: msgspec.Raw = NULL


@dataclass(frozen=True)
class Decoded:
    """The checked batch, and the body's `id` and `outputs` as orjson reads them (None if absent),
    for the caller to check as it checks the general path's.
    """

    batch: Batch
    id: Any
    outputs: Any


def tensors_decoder(validator: Validator) -> TensorsDecoder:
    """The decoder of one model version's tensors, built on first use and kept while it serves."""
    decoder = _TENSORS_DECODERS.get(validator)
    if decoder is None:  # two threads may both build it; either copy is right
        decoder = _TENSORS_DECODERS[validator] = TensorsDecoder(validator)
    return decoder


class TensorsDecoder:
    """Decodes `{"inputs": [...]}` for one model version's features."""

    def __init__(self, validator: Validator) -> None:
        self._float_types, self._integer_types = FLOAT_TYPES, INTEGER_TYPES
        self._quick_rows = QUICK_ROWS
        self._decoder = msgspec.json.Decoder(_Body)
        self._validator = validator
        # Decoding a category's values checks each is one of the allowed strings.
        self._categories = {
            f.name: msgspec.json.Decoder(list[Literal[tuple(f.categories)]])  # type: ignore[misc]
            for f in validator.categorical
            if f.categories
        }

    def decode(self, body: bytes, limit: int) -> Decoded | None:
        """A valid body of `QUICK_ROWS` + 1 to `limit` rows, checked; None for anything else."""
        if len(body) < SMALL_BODY:
            return None  # a few rows at most: not worth a second parse when declined (9 µs)
        try:
            parsed = self._decoder.decode(body)
            request_id, outputs = _json(parsed.id, 1), _json(parsed.outputs, 1)
            _json(parsed.parameters, 1)  # ignored, as by the general path, but must be JSON
            binary = any(map(_binary, parsed.inputs))
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError, orjson.JSONDecodeError):
            return None  # msgspec.ValidationError is a DecodeError
        tensors = {tensor.name: tensor for tensor in parsed.inputs}
        if (
            binary
            or len(tensors) != len(parsed.inputs)
            or tensors.keys() != self._validator.name_set
        ):
            return None
        sizes = {_rows(tensor) for tensor in parsed.inputs}
        size = sizes.pop()
        if sizes or not self._quick_rows < size <= limit:
            return None
        batch = self._batch(tensors, size)
        return None if batch is None else Decoded(batch, request_id, outputs)

    def _batch(self, tensors: dict[str, _Tensor], size: int) -> Batch | None:
        numeric = [tensors[f.name] for f in self._validator.numeric]
        whole = [t.datatype in self._integer_types for t in numeric]
        if not all(
            w or t.datatype in self._float_types for w, t in zip(whole, numeric, strict=True)
        ):
            return None  # BOOL (or an unknown type) is the general path's
        numbers = read_numbers([bytes(t.data) for t in numeric], size, whole)
        if numbers is None:
            return None
        categories: dict[str, list[str]] = {}
        for feature in self._validator.categorical:
            tensor, decoder = tensors[feature.name], self._categories.get(feature.name)
            if tensor.datatype != "BYTES" or decoder is None:
                return None
            try:
                categories[feature.name] = decoder.decode(tensor.data)
            except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
                return None  # not a flat list of allowed strings
            if len(categories[feature.name]) != size:
                return None
        # `assemble` quotes these values if a rule is broken; that answer is dropped here (None),
        # and the general path then quotes the caller's own values.
        raw = {f.name: values for f, values in zip(self._validator.numeric, numbers, strict=True)}
        try:
            return self._validator.assemble(size, numbers, categories, raw, known_categories=True)
        except ValuesInvalid:
            return None


def read_numbers(arrays: list[bytes], size: int, whole: list[bool]) -> Floats | None:
    """JSON arrays of `size` numbers each as a [len(arrays), size] float64 matrix, or None when
    one is not a flat array of numbers (or, where `whole[i]`, of integers only).

    orjson reads the numbers, as on the general path, so each value is exactly the general
    path's. What is saved is its check of each value's type: an array whose bytes are only
    digits, points, minus signs and commas holds nothing but numbers. Any other array (spaces,
    exponents, strings, nested lists...), and an integer tensor's (a JSON float there is refused,
    and orjson reads an integer past 64 bits as a float), has its values' types checked. struct
    then writes the doubles straight into the matrix, about three times quicker than numpy
    converting the list (both take a float's own value, and an int's nearest double).
    """
    matrix = np.empty((len(arrays), size), dtype=np.float64)
    for row, (array, integers) in enumerate(zip(arrays, whole, strict=True)):
        try:
            values = orjson.loads(array)
        except orjson.JSONDecodeError:
            return None  # a number that overflows a double, a string of bad UTF-8...
        if type(values) is not list or len(values) != size:
            return None
        checked = not integers and array.translate(None, PLAIN_NUMBERS) == b"[]"
        if not checked and not set(map(type, values)) <= (INTEGER if integers else NUMBER):
            return None
        struct.pack_into(f"{size}d", matrix.data, row * size * DOUBLE, *values)
    return matrix


def _rows(tensor: _Tensor) -> int:
    """n for a shape [n] or [n, 1]; 0 (never a size taken here) for any other shape."""
    shape = tensor.shape
    return shape[0] if len(shape) == 1 or (len(shape) == 2 and shape[1] == 1) else 0


def _binary(tensor: _Tensor) -> bool:
    """Binary data is declared in the parameters, otherwise ignored (as by the general path)."""
    parameters = _json(tensor.parameters, 3)
    return type(parameters) is dict and "binary_data_size" in parameters


def _json(raw: msgspec.Raw, depth: int) -> Any:
    """A value as orjson reads it, nested as deep as it is in the body (orjson has a depth limit,
    so a value it refuses there it also refuses here).
    """
    if raw is NULL:
        return None
    value = orjson.loads(b"[" * depth + bytes(raw) + b"]" * depth)
    for _ in range(depth):
        value = value[0]
    return value


# Keyed by the validator (one per loaded version), as `service.typed_json` keeps its decoders.
_TENSORS_DECODERS: weakref.WeakKeyDictionary[Validator, TensorsDecoder] = (
    weakref.WeakKeyDictionary()
)
