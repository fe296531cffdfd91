"""Open Inference Protocol (KServe V2) JSON, decode and encode: tensors to a checked Batch, the
model's outputs to tensors.

A body is decoded by msgspec straight into typed tensors (`tensors_decoder`); a body it cannot
read answers None and is read again through orjson (`batch_from_tensors`), which names every
problem. Both give the same batch (tests/service/test_v2_decoding.py).

A `null` element is a missing value: a nullable feature's, which the model imputes (an empty
string in a BYTES input too), or a required feature's problem. A model with nullable features
has a third output, `imputed` (BYTES [n]): per row the features imputed, joined by
FLAG_SEPARATOR ("" for none), returned unless the request names other outputs only.

The request parameter `"parameters": {"explain": true}` adds the output `explanation` (FP32
[n, m], inputs in the model's order): each input's contribution (`service.explanations`).

A refused request gets the protocol's `error` string, naming the first few problems, and the
problems themselves (`BadTensor.problems`: input, element, rule, value), up to MAX_PROBLEMS."""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from types import GenericAlias
from typing import Any, Literal

import msgspec
import numpy as np
import numpy.typing as npt
import orjson

from service import explanations
from service.codecs import Answer, PerVersion, Result, parse_json
from service.codecs.probabilities import FLAG_SEPARATOR
from service.errors import SUMMARY_PROBLEMS, BadTensor, Problem, TooManyRows, summary
from service.explanations import Explained
from service.manifest import MISSING_CATEGORY, Feature, Manifest
from service.model import LoadedModel, Prediction
from service.validation import (
    BOOL_TYPES,
    MAX_PROBLEMS,
    MISSING_NUMBER,
    NUMBER_TYPES,
    Batch,
    Mask,
    Problems,
    Validator,
    ValuesInvalid,
    required,
)

INTEGER_TYPES = frozenset(
    {"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}
)
FLOAT_TYPES = frozenset({"FP32", "FP64"})
INTEGER: frozenset[type] = frozenset({int})  # what orjson makes of a JSON integer
OUTPUTS = ("label", "probabilities")
IMPUTED = "imputed"  # the third output of a model with nullable features
EXPLANATION = "explanation"  # with the request parameter explain: true (service.explanations)
EXPLANATION_PARAMETER = explanations.PARAMETER
EXPLAIN_WORD = b'"explain"'
EXPLANATION_NOTE = (
    "only with the request parameter explain: true; per row and input (in the model's input "
    "order) the change in P(positive label) (multi-class: P(predicted label)) when that input "
    "is set to its training reference value (occlusion, not SHAP)"
)
WITH_IMPUTED = (*OUTPUTS, IMPUTED)
NULL_TYPE = type(None)
# Up to this many rows, `Validator.quick` (plain Python) beats the numpy path (measured).
QUICK_ROWS = 16
BOOLS = {0: False, 1: True}
STRING: frozenset[type] = frozenset({str})


def answer(model: LoadedModel, body: bytes, limit: int) -> Answer:
    """Parse, check, run and encode: the whole of an inference request's work, in one call.

    A large valid body is read by msgspec (`tensors_decoder`); anything it declines is read by
    orjson (`_read`), which names every problem.
    """
    decoded = tensors_decoder(model.validator).decode(body, limit)
    if decoded is not None:
        request_id = _request_id(decoded.id)
        explain = explain_parameter(decoded.parameters)
        offered = model_outputs(model.validator, explain)
        outputs = requested_outputs(decoded.outputs, offered)
        batch = decoded.batch
    else:
        request_id, outputs, batch, explain = _read(model, body, limit)
    if explain:
        explanations.check(model, batch.size, limit)
        prediction: Prediction = explanations.explain(model, batch)
    else:
        prediction = model.predict(batch)
    body_out: dict[str, Any] = {"model_name": model.name, "model_version": model.version}
    if request_id is not None:
        body_out["id"] = request_id
    body_out["outputs"] = encode_outputs(model, prediction, outputs, batch)
    encoded = orjson.dumps(body_out, option=orjson.OPT_SERIALIZE_NUMPY)
    return Answer(Result(batch, prediction), encoded)


def work_size(body: bytes, model: LoadedModel, inline: int) -> int:
    """How big a body's work is, for the lane: its size, times m + 1 when it may ask for
    explanations (each record then runs once per feature more). Only a body of at most `inline`
    bytes (which would run on the event loop) is looked at for the word; a bigger one takes the
    lane anyway."""
    if len(body) <= inline and EXPLAIN_WORD in body:
        return len(body) * (len(model.manifest.features) + 1)
    return len(body)


def _read(model: LoadedModel, body: bytes, limit: int) -> tuple[str | None, list[str], Batch, bool]:
    """The general path: any JSON body, each problem raised in this order."""
    payload = parse_json(body)
    if type(payload) is not dict:
        raise BadTensor("the request body must be a JSON object with 'inputs'")
    request_id = _request_id(payload.get("id"))
    explain = explain_parameter(payload.get("parameters"))
    outputs = requested_outputs(payload.get("outputs"), model_outputs(model.validator, explain))
    batch = batch_from_tensors(model.validator, payload.get("inputs"), limit)
    return request_id, outputs, batch, explain


def explain_parameter(parameters: Any) -> bool:
    """The request parameter `explain` (a JSON boolean; absent: false). Other parameters are
    ignored, as the protocol allows."""
    if type(parameters) is not dict or EXPLANATION_PARAMETER not in parameters:
        return False
    value = parameters[EXPLANATION_PARAMETER]
    if type(value) is not bool:
        raise explanations.ExplainInvalid(value, ("parameters",))
    return value


def _request_id(request_id: Any) -> str | None:
    if request_id is not None and type(request_id) is not str:
        raise BadTensor("'id' must be a string")
    return request_id


def input_metadata(feature: Feature) -> dict[str, Any]:
    """How a feature is declared in model metadata: BYTES for categories, FP32 for numbers, and
    in `parameters` whether its elements may be null, and what the model then uses instead."""
    datatype = "BYTES" if feature.type == "category" else "FP32"
    parameters: dict[str, Any] = {"nullable": feature.nullable}
    if feature.nullable:
        parameters["impute"] = feature.impute
        parameters["impute_value"] = feature.impute_value
    return {"name": feature.name, "datatype": datatype, "shape": [-1, 1], "parameters": parameters}


def output_metadata(manifest: Manifest) -> list[dict[str, Any]]:
    outputs: list[dict[str, Any]] = [
        {"name": "label", "datatype": "BYTES", "shape": [-1]},
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(manifest.labels)]},
    ]
    if any(feature.nullable for feature in manifest.features):
        outputs.append({"name": IMPUTED, "datatype": "BYTES", "shape": [-1]})
    if all(feature.reference is not None for feature in manifest.features):
        width = len(manifest.features)
        outputs.append(
            {
                "name": EXPLANATION,
                "datatype": "FP32",
                "shape": [-1, width],
                "parameters": {"note": EXPLANATION_NOTE},
            }
        )
    return outputs


def model_outputs(validator: Validator, explain: bool = False) -> tuple[str, ...]:
    """The outputs a model offers: `imputed` only where a feature may be missing,
    `explanation` only when the request asks for it (`explain`)."""
    offered = WITH_IMPUTED if validator.nullable else OUTPUTS
    return (*offered, EXPLANATION) if explain else offered


class _Refused(Exception):
    """One input's tensor cannot be read: its rule and message (the input is named by the
    caller)."""

    def __init__(self, kind: str, msg: str) -> None:
        super().__init__(msg)
        self.kind = kind
        self.msg = msg


def batch_from_tensors(validator: Validator, inputs: Any, limit: int) -> Batch:
    """One tensor per feature, any order; every tensor must have the same number of rows.

    Inputs unknown, missing or unreadable, elements of the wrong type and values that break a
    rule are all reported together (see `refusal`); only inputs that cannot be told apart
    (`_by_name`) stop at the first problem, and an input over `limit` rows at once (413).
    """
    tensors = _by_name(inputs)
    expected = [f.name for f in validator.features]
    found = Problems(MAX_PROBLEMS)
    unknown = sorted(set(tensors) - set(expected))
    if unknown:
        msg = f"the model's inputs are {expected}"
        found.add([Problem(None, name, msg, "extra_forbidden") for name in unknown])
    data: dict[str, list[Any]] = {}
    for feature in validator.features:
        if feature.name not in tensors:
            found.add([Problem(None, feature.name, "the input is required", "missing")])
            continue
        try:
            data[feature.name] = _data(feature.name, tensors[feature.name], limit)
        except _Refused as exc:
            found.add([Problem(None, feature.name, exc.msg, exc.kind)])
    sizes = sorted({len(values) for values in data.values()})
    if len(sizes) > 1:
        msg = f"inputs have different numbers of rows: {sizes}"
        found.add([Problem(None, None, msg, "shape")])
    unread: dict[str, Mask] = {}
    columns: dict[str, list[Any]] = {}
    for feature in validator.features:
        if feature.name not in data:
            continue
        try:
            columns[feature.name], bad = _typed(feature, tensors[feature.name], data, found)
        except _Refused as exc:
            found.add([Problem(None, feature.name, exc.msg, exc.kind)])
            continue
        if bad is not None:
            unread[feature.name] = bad
    if len(columns) < len(expected) or len(sizes) > 1:  # no one batch: each input on its own
        for feature in validator.features:
            if feature.name in columns:
                name = feature.name
                validator.check(feature, columns[name], data[name], found, unread.get(name))
        raise refusal(validator, found)
    size = sizes[0]
    if not found and size <= QUICK_ROWS:
        values = [_quick_values(f, columns[f.name]) for f in validator.features]
        batch = validator.quick(list(zip(*values, strict=True)))
        if batch is not None:
            return batch
    numbers = [np.asarray(columns[f.name], dtype=np.float64) for f in validator.numeric]
    matrix = np.vstack(numbers) if numbers else np.empty((0, size))
    categories = {f.name: columns[f.name] for f in validator.categorical}
    try:
        return validator.assemble(size, matrix, categories, data, found=found, unread=unread)
    except ValuesInvalid:
        raise refusal(validator, found) from None


def refusal(validator: Validator, found: Problems) -> BadTensor:
    """The protocol's `error` string naming the first few problems, and the problems listed
    (input first, then by element; at most MAX_PROBLEMS, the others counted)."""
    problems, not_listed = validator.listed(found)
    texts = [_text(problem) for problem in problems[:SUMMARY_PROBLEMS]]
    return BadTensor(summary(texts, found.total), problems, not_listed)


def _text(problem: Problem) -> str:
    """A problem in the words of the protocol's `error` string."""
    name = problem.field
    if name is None:
        return problem.msg
    if problem.type == "extra_forbidden":
        return f"unexpected input {name[:80]!r}; {problem.msg}"
    if problem.type == "missing" and problem.index is None:
        return f"missing input {name!r}"
    if problem.index is None:
        return f"input {name!r}: {problem.msg}"
    where = f"input {name!r}, element {problem.index}"
    if problem.type == "missing":  # a null element of a required feature
        return f"{where}: {problem.msg} (got null; the input is not nullable)"
    if problem.type == "datatype":  # the message quotes the element already
        return f"{where}: {problem.msg}"
    return f"{where}: {problem.msg} (got {str(problem.input)[:80]!r})"


def requested_outputs(outputs: Any, offered: tuple[str, ...] = OUTPUTS) -> list[str]:
    """The outputs the caller asked for among those the model `offered`, each once; binary
    tensor data is not offered.

    Absent or empty means all of them, as in Triton (an empty list requests nothing, so every
    output is returned) and in the protocol's gRPC form, where an empty repeated field cannot be
    told from an absent one. A name given twice is refused, as a repeated input is.
    """
    if outputs is None:
        return list(offered)
    if type(outputs) is not list:
        raise BadTensor("'outputs' must be a list")
    if not outputs:
        return list(offered)
    names: list[str] = []
    for output in outputs:
        name = output.get("name") if type(output) is dict else None
        if name not in offered:
            raise BadTensor(
                f"unknown output {str(name)[:80]!r}; the model's outputs are {list(offered)}"
            )
        if name in names:
            raise BadTensor(f"output {name!r} is requested twice")
        parameters = output.get("parameters") or {}
        if type(parameters) is dict and parameters.get("binary_data") is True:
            raise BadTensor(f"output {name!r}: binary_data is not supported, request JSON data")
        names.append(name)
    return names


def encode_outputs(
    model: LoadedModel, prediction: Prediction, names: list[str], batch: Batch
) -> list[dict[str, Any]]:
    """`label` as BYTES (the label strings), `probabilities` as FP32 [n, k], row-major,
    `imputed` as BYTES (per row the features imputed, joined by FLAG_SEPARATOR), `explanation`
    as FP32 [n, m] (an explained prediction's contributions, row-major)."""
    n, k = prediction.probabilities.shape
    encoded: list[dict[str, Any]] = []
    for name in names:
        if name == "label":
            labels = np.asarray(model.manifest.labels, dtype=object)[prediction.classes]
            encoded.append(
                {"name": name, "datatype": "BYTES", "shape": [n], "data": labels.tolist()}
            )
        elif name == IMPUTED:
            texts, index = imputed_texts(batch)
            imputed = [texts[i] for i in index]
            encoded.append({"name": name, "datatype": "BYTES", "shape": [n], "data": imputed})
        elif name == EXPLANATION:
            assert isinstance(prediction, Explained)
            contributions = prediction.contributions.astype(np.float32)
            shape = list(contributions.shape)
            data = contributions.ravel()
            encoded.append({"name": name, "datatype": "FP32", "shape": shape, "data": data})
        else:
            data = np.ascontiguousarray(prediction.probabilities).ravel()
            encoded.append({"name": name, "datatype": "FP32", "shape": [n, k], "data": data})
    return encoded


def imputed_texts(batch: Batch) -> tuple[list[str], list[int]]:
    """The `imputed` output's distinct values (the features imputed, joined by FLAG_SEPARATOR;
    "" for none) and per row the index of its own (REST and gRPC encode them alike)."""
    if not batch.imputed:
        return [""], [0] * batch.size
    lists, index = batch.imputed_patterns()
    return [FLAG_SEPARATOR.join(features) for features in lists], index.tolist()


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
        raise _Refused("binary_data", "binary tensor data is not supported; send JSON data")
    shape: Any = tensor.get("shape")
    if not _is_shape(shape) or len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
        raise _Refused("shape", f"shape {str(shape)[:80]} is not [n] or [n, 1]")
    if shape[0] < 1:
        raise _Refused("shape", f"shape {shape} has no rows")
    if shape[0] > limit:
        raise TooManyRows(name, shape[0], limit)
    data = _flatten(tensor.get("data"), shape)
    if len(data) != math.prod(shape):
        raise _Refused(
            "shape", f"{len(data)} data elements for shape {shape} ({math.prod(shape)} expected)"
        )
    return data


def _typed(
    feature: Feature, tensor: dict[str, Any], data: dict[str, list[Any]], found: Problems
) -> tuple[list[Any], Mask | None]:
    """The input's elements as the rules take them: a null is a nullable feature's missing value
    (NaN, or MISSING_CATEGORY); a null of a required feature and each element not of the
    tensor's datatype are reported to `found` and stand as NaN (None for a category), marked in
    the mask."""
    datatype, values = tensor.get("datatype"), data[feature.name]
    missing: str | float
    if feature.type == "category":
        if datatype != "BYTES":
            raise _Refused("datatype", f"datatype {str(datatype)[:20]} should be BYTES")
        allowed, instead, words, missing = STRING, None, "a string", MISSING_CATEGORY
    else:
        allowed, instead = _number_types(feature, datatype), math.nan
        words, missing = str(datatype), MISSING_NUMBER
    types = set(map(type, values))
    if types <= allowed:
        return values, None
    nullable = feature.nullable and NULL_TYPE in types
    if nullable and types - {NULL_TYPE} <= allowed:
        return [missing if value is None else value for value in values], None
    bad = [type(value) not in allowed and not (nullable and value is None) for value in values]
    nulls = [i for i, wrong in enumerate(bad) if wrong and values[i] is None]
    found.add([required(feature, i) for i in nulls[:MAX_PROBLEMS]], len(nulls))
    indices = [i for i, wrong in enumerate(bad) if wrong and values[i] is not None]
    problems = [
        Problem(i, feature.name, f"{str(values[i])[:40]!r} is not {words}", "datatype", values[i])
        for i in indices[:MAX_PROBLEMS]
    ]
    found.add(problems, len(indices))
    read = [
        instead if wrong else missing if value is None else value
        for value, wrong in zip(values, bad, strict=True)
    ]
    return read, np.array(bad, dtype=np.bool_)


def _number_types(feature: Feature, datatype: Any) -> frozenset[type]:
    """The element types of a numeric datatype (or BOOL for a bool feature)."""
    if datatype == "BOOL" and feature.type == "bool":
        return BOOL_TYPES
    if type(datatype) is str and datatype in INTEGER_TYPES:
        return INTEGER
    if type(datatype) is str and datatype in FLOAT_TYPES:
        return NUMBER_TYPES
    accepted = "FP32, FP64 or an INT type" + (" (or BOOL)" if feature.type == "bool" else "")
    raise _Refused("datatype", f"datatype {str(datatype)[:20]} should be {accepted}")


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


def _flatten(data: Any, shape: list[int]) -> list[Any]:
    """Flat row-major data, or nested lists that follow the shape exactly."""
    if type(data) is not list:
        raise _Refused("list_type", "'data' must be a list")
    if not data or type(data[0]) is not list:
        return data
    width = shape[1] if len(shape) == 2 else 0
    if len(data) != shape[0] or not all(type(row) is list and len(row) == width for row in data):
        raise _Refused("shape", f"nested data does not follow shape {shape}")
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
    parameters: Any = None


class TensorsDecoder:
    """Decodes `{"inputs": [...]}` for one model version's features."""

    def __init__(self, validator: Validator) -> None:
        self._float_types, self._integer_types = FLOAT_TYPES, INTEGER_TYPES
        self._quick_rows = QUICK_ROWS
        self._decoder = msgspec.json.Decoder(_Body)
        self._validator = validator
        # Decoding a category's values checks each is one of the allowed strings (or, nullable,
        # null or MISSING_CATEGORY, both its missing value).
        self._categories = {
            f.name: msgspec.json.Decoder(GenericAlias(list, (_element_type(f),)))
            for f in validator.categorical
            if f.categories
        }
        self._nullable = [f.nullable for f in validator.numeric]

    def decode(self, body: bytes, limit: int) -> Decoded | None:
        """A valid body of `QUICK_ROWS` + 1 to `limit` rows, checked; None for anything else."""
        if len(body) < SMALL_BODY:
            return None  # a few rows at most: not worth a second parse when declined
        try:
            parsed = self._decoder.decode(body)
            request_id, outputs = _json(parsed.id, 1), _json(parsed.outputs, 1)
            parameters = _json(parsed.parameters, 1)  # must be JSON, as for the general path
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
        return None if batch is None else Decoded(batch, request_id, outputs, parameters)

    def _batch(self, tensors: dict[str, _Tensor], size: int) -> Batch | None:
        numeric = [tensors[f.name] for f in self._validator.numeric]
        whole = [t.datatype in self._integer_types for t in numeric]
        if not all(
            w or t.datatype in self._float_types for w, t in zip(whole, numeric, strict=True)
        ):
            return None  # BOOL (or an unknown type) is the general path's
        numbers = read_numbers([bytes(t.data) for t in numeric], size, whole, self._nullable)
        if numbers is None:
            return None
        categories: dict[str, list[str]] = {}
        for feature in self._validator.categorical:
            tensor, decoder = tensors[feature.name], self._categories.get(feature.name)
            if tensor.datatype != "BYTES" or decoder is None:
                return None
            try:
                values = decoder.decode(tensor.data)
            except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
                return None  # not a flat list of allowed strings
            if len(values) != size:
                return None
            if feature.nullable and None in values:
                values = [MISSING_CATEGORY if value is None else value for value in values]
            categories[feature.name] = values
        # `assemble` quotes these values if a rule is broken; that answer is dropped here (None),
        # and the general path then quotes the caller's own values.
        raw = {f.name: values for f, values in zip(self._validator.numeric, numbers, strict=True)}
        try:
            return self._validator.assemble(
                size, numbers, categories, raw, known_categories=True, limit=0
            )
        except ValuesInvalid:
            return None


def read_numbers(
    arrays: list[bytes], size: int, whole: list[bool], nullable: list[bool] | None = None
) -> Floats | None:
    """JSON arrays of `size` numbers each as a [len(arrays), size] float64 matrix, or None when
    one is not a flat array of numbers (or, where `whole[i]`, of integers only); where
    `nullable[i]`, a null is a missing value, NaN in the matrix.

    orjson reads the numbers, as on the general path, so each value is exactly the general
    path's. What is saved is its check of each value's type: an array whose bytes are only
    digits, points, minus signs and commas holds nothing but numbers. Any other array (spaces,
    exponents, strings, nested lists...), and an integer tensor's (a JSON float there is refused,
    and orjson reads an integer past 64 bits as a float), has its values' types checked. struct
    then writes the doubles straight into the matrix, about three times quicker than numpy
    converting the list (both take a float's own value, and an int's nearest double).
    """
    matrix = np.empty((len(arrays), size), dtype=np.float64)
    nulls = nullable or [False] * len(arrays)
    for row, (array, integers, may_be_null) in enumerate(zip(arrays, whole, nulls, strict=True)):
        try:
            values = orjson.loads(array)
        except orjson.JSONDecodeError:
            return None  # a number that overflows a double, a string of bad UTF-8...
        if type(values) is not list or len(values) != size:
            return None
        checked = not integers and array.translate(None, PLAIN_NUMBERS) == b"[]"
        if not checked:
            types = set(map(type, values))
            if may_be_null and NULL_TYPE in types:
                types.discard(NULL_TYPE)
                values = [MISSING_NUMBER if value is None else value for value in values]
            if not types <= (INTEGER if integers else NUMBER):
                return None
        struct.pack_into(f"{size}d", matrix.data, row * size * DOUBLE, *values)
    return matrix


def _element_type(feature: Feature) -> Any:
    """A category's elements as msgspec checks them: one of the allowed strings, or (nullable)
    its missing value, null or MISSING_CATEGORY."""
    categories = tuple(feature.categories or ())
    if feature.nullable:
        return Literal[(*categories, MISSING_CATEGORY)] | None
    return Literal[categories]


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
