"""Open Inference Protocol (KServe V2) JSON, decode and encode: tensors to a checked Batch, the
model's outputs to tensors.

A body is decoded by msgspec straight into typed tensors (`tensors_decoder`); a body it cannot
read answers None and is read again through orjson (`batch_from_inputs`), which names every
problem. Both give the same batch (tests/service/test_v2_decoding.py)."""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
import numpy as np
import numpy.typing as npt
import orjson

from service.codecs import Answer, PerVersion, Result, parse_json
from service.errors import BadTensor, TooManyRows
from service.manifest import Feature, Manifest
from service.model import LoadedModel, Prediction
from service.validation import BOOL_TYPES, NUMBER_TYPES, Batch, Validator, ValuesInvalid

INTEGER_TYPES = frozenset(
    {"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}
)
FLOAT_TYPES = frozenset({"FP32", "FP64"})
INTEGER: frozenset[type] = frozenset({int})  # what orjson makes of a JSON integer
OUTPUTS = ("label", "probabilities")
# Up to this many rows, `Validator.quick` (plain Python) beats the numpy path (measured).
QUICK_ROWS = 16
BOOLS = {0: False, 1: True}


def answer(model: LoadedModel, body: bytes, limit: int) -> Answer:
    """Parse, check, run and encode: the whole of an inference request's work, in one call.

    A large valid body is read by msgspec (`tensors_decoder`); anything it declines is read by
    orjson (`_read`), which names every problem.
    """
    decoded = tensors_decoder(model.validator).decode(body, limit)
    if decoded is not None:
        request_id = _request_id(decoded.id)
        outputs = requested_outputs(decoded.outputs)
        batch = decoded.batch
    else:
        request_id, outputs, batch = _read(model, body, limit)
    prediction = model.predict(batch)
    body_out: dict[str, Any] = {"model_name": model.name, "model_version": model.version}
    if request_id is not None:
        body_out["id"] = request_id
    body_out["outputs"] = encode_outputs(model, prediction, outputs)
    encoded = orjson.dumps(body_out, option=orjson.OPT_SERIALIZE_NUMPY)
    return Answer(Result(batch, prediction), encoded)


def _read(model: LoadedModel, body: bytes, limit: int) -> tuple[str | None, list[str], Batch]:
    """The general path: any JSON body, each problem raised in this order."""
    payload = parse_json(body)
    if type(payload) is not dict:
        raise BadTensor("the request body must be a JSON object with 'inputs'")
    request_id = _request_id(payload.get("id"))
    outputs = requested_outputs(payload.get("outputs"))
    return request_id, outputs, batch_from_tensors(model.validator, payload.get("inputs"), limit)


def _request_id(request_id: Any) -> str | None:
    if request_id is not None and type(request_id) is not str:
        raise BadTensor("'id' must be a string")
    return request_id


def input_metadata(feature: Feature) -> dict[str, Any]:
    """How a feature is declared in model metadata: BYTES for categories, FP32 for numbers."""
    datatype = "BYTES" if feature.type == "category" else "FP32"
    return {"name": feature.name, "datatype": datatype, "shape": [-1, 1]}


def output_metadata(manifest: Manifest) -> list[dict[str, Any]]:
    return [
        {"name": "label", "datatype": "BYTES", "shape": [-1]},
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(manifest.labels)]},
    ]


def batch_from_tensors(validator: Validator, inputs: Any, limit: int) -> Batch:
    """One tensor per feature, any order; every tensor must have the same number of rows."""
    tensors = _by_name(inputs)
    expected = [f.name for f in validator.features]
    unknown = sorted(set(tensors) - set(expected))
    if unknown:
        raise BadTensor(f"unexpected input {unknown[0][:80]!r}; the model's inputs are {expected}")
    missing = [name for name in expected if name not in tensors]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise BadTensor(f"missing input {missing[0]!r}{more}")
    data = {f.name: _data(f.name, tensors[f.name], limit) for f in validator.features}
    sizes = sorted({len(values) for values in data.values()})
    if len(sizes) > 1:
        raise BadTensor(f"inputs have different numbers of rows: {sizes}")
    for f in validator.numeric:
        _check_numbers(f, tensors[f.name]["datatype"], data[f.name])
    categories = {
        f.name: _strings(f, tensors[f.name]["datatype"], data[f.name])
        for f in validator.categorical
    }
    if sizes[0] <= QUICK_ROWS:
        columns = [_quick_values(f, data[f.name]) for f in validator.features]
        batch = validator.quick(list(zip(*columns, strict=True)))
        if batch is not None:
            return batch
    numbers = [np.asarray(data[f.name], dtype=np.float64) for f in validator.numeric]
    matrix = np.vstack(numbers) if numbers else np.empty((0, sizes[0]))
    try:
        return validator.assemble(sizes[0], matrix, categories, data)
    except ValuesInvalid as exc:
        p = exc.problems[0]
        raise BadTensor(
            f"input {p.field!r}, element {p.index}: {p.msg} (got {str(p.input)[:80]!r})"
        ) from exc


def requested_outputs(outputs: Any) -> list[str]:
    """The outputs the caller asked for, each once; binary tensor data is not offered.

    Absent or empty means all of them, as in Triton (an empty list requests nothing, so every
    output is returned) and in the protocol's gRPC form, where an empty repeated field cannot be
    told from an absent one. A name given twice is refused, as a repeated input is.
    """
    if outputs is None:
        return list(OUTPUTS)
    if type(outputs) is not list:
        raise BadTensor("'outputs' must be a list")
    if not outputs:
        return list(OUTPUTS)
    names: list[str] = []
    for output in outputs:
        name = output.get("name") if type(output) is dict else None
        if name not in OUTPUTS:
            raise BadTensor(
                f"unknown output {str(name)[:80]!r}; the model's outputs are {list(OUTPUTS)}"
            )
        if name in names:
            raise BadTensor(f"output {name!r} is requested twice")
        parameters = output.get("parameters") or {}
        if type(parameters) is dict and parameters.get("binary_data") is True:
            raise BadTensor(f"output {name!r}: binary_data is not supported, request JSON data")
        names.append(name)
    return names


def encode_outputs(
    model: LoadedModel, prediction: Prediction, names: list[str]
) -> list[dict[str, Any]]:
    """`label` as BYTES (the label strings), `probabilities` as FP32 [n, k], row-major."""
    n, k = prediction.probabilities.shape
    encoded: list[dict[str, Any]] = []
    for name in names:
        if name == "label":
            labels = np.asarray(model.manifest.labels, dtype=object)[prediction.classes]
            encoded.append(
                {"name": name, "datatype": "BYTES", "shape": [n], "data": labels.tolist()}
            )
        else:
            data = np.ascontiguousarray(prediction.probabilities).ravel()
            encoded.append({"name": name, "datatype": "FP32", "shape": [n, k], "data": data})
    return encoded


def _by_name(inputs: Any) -> dict[str, dict[str, Any]]:
    if type(inputs) is not list or not inputs:
        raise BadTensor("'inputs' must be a non-empty list of tensors")
    tensors: dict[str, dict[str, Any]] = {}
    for tensor in inputs:
        name = tensor.get("name") if type(tensor) is dict else None
        if type(name) is not str:
            raise BadTensor("each input must be an object with a string 'name'")
        if name in tensors:
            raise BadTensor(f"input {name!r} is given twice")
        tensors[name] = tensor
    return tensors


def _data(name: str, tensor: dict[str, Any], limit: int) -> list[Any]:
    """The tensor's values, flat, after checking the shape ([n] or [n, 1]) against the data."""
    parameters = tensor.get("parameters")
    if type(parameters) is dict and "binary_data_size" in parameters:
        raise BadTensor(f"input {name!r}: binary tensor data is not supported; send JSON data")
    shape: Any = tensor.get("shape")
    if not _is_shape(shape) or len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
        raise BadTensor(f"input {name!r}: shape {str(shape)[:80]} is not [n] or [n, 1]")
    if shape[0] < 1:
        raise BadTensor(f"input {name!r}: shape {shape} has no rows")
    if shape[0] > limit:
        raise TooManyRows(name, shape[0], limit)
    data = _flatten(name, tensor.get("data"), shape)
    if len(data) != math.prod(shape):
        raise BadTensor(
            f"input {name!r}: {len(data)} data elements for shape {shape} "
            f"({math.prod(shape)} expected)"
        )
    return data


def _check_numbers(feature: Feature, datatype: Any, data: list[Any]) -> None:
    """Numbers of a numeric datatype (or BOOL for a bool feature); the rules come later."""
    name = feature.name
    if datatype == "BOOL" and feature.type == "bool":
        allowed = BOOL_TYPES
    elif type(datatype) is str and datatype in INTEGER_TYPES:
        allowed = INTEGER
    elif type(datatype) is str and datatype in FLOAT_TYPES:
        allowed = NUMBER_TYPES
    else:
        accepted = "FP32, FP64 or an INT type" + (" (or BOOL)" if feature.type == "bool" else "")
        raise BadTensor(f"input {name!r}: datatype {str(datatype)[:20]} should be {accepted}")
    if not set(map(type, data)) <= allowed:
        index, value = next((i, v) for i, v in enumerate(data) if type(v) not in allowed)
        raise BadTensor(f"input {name!r}, element {index}: {str(value)[:40]!r} is not {datatype}")


def _quick_values(feature: Feature, data: list[Any]) -> list[Any]:
    """A bool feature's 0 and 1 as JSON's false and true, the form `Validator.quick` takes.

    V2 clients send bools as numbers (the metadata declares them FP32), which `quick` would
    decline, sending even one record down the vectorised path. Any other value stays as sent,
    and -0.0 too (its sign reaches the model), so `quick` declines it and that path checks it.
    """
    if feature.type != "bool":
        return data
    return [
        BOOLS.get(value, value) if value or math.copysign(1.0, value) > 0 else value
        for value in data
    ]


def _strings(feature: Feature, datatype: Any, data: list[Any]) -> list[str]:
    if datatype != "BYTES":
        raise BadTensor(f"input {feature.name!r}: datatype {str(datatype)[:20]} should be BYTES")
    if not set(map(type, data)) <= {str}:
        index, value = next((i, v) for i, v in enumerate(data) if type(v) is not str)
        raise BadTensor(
            f"input {feature.name!r}, element {index}: {str(value)[:40]!r} is not a string"
        )
    return data


def _flatten(name: str, data: Any, shape: list[int]) -> list[Any]:
    """Flat row-major data, or nested lists that follow the shape exactly."""
    if type(data) is not list:
        raise BadTensor(f"input {name!r}: 'data' must be a list")
    if not data or type(data[0]) is not list:
        return data
    width = shape[1] if len(shape) == 2 else 0
    if len(data) != shape[0] or not all(type(row) is list and len(row) == width for row in data):
        raise BadTensor(f"input {name!r}: nested data does not follow shape {shape}")
    return [value for row in data for value in row]


def _is_shape(shape: Any) -> bool:
    return type(shape) is list and all(type(dim) is int for dim in shape)


NULL = msgspec.Raw(b"null")  # a field the body leaves out reads as JSON null, as with .get()
PLAIN_NUMBERS = b"0123456789.-,"  # the bytes of a flat array of plain decimals, with "[]"
NUMBER: frozenset[type] = frozenset({int, float})  # what orjson makes of JSON numbers
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
            return None  # a few rows at most: not worth a second parse when declined
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


tensors_decoder = PerVersion(TensorsDecoder)  # one decoder per model version, kept while it serves
