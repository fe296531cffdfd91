"""Open Inference Protocol (KServe V2) over gRPC, decode and encode: a `ModelInferRequest` to a
checked Batch, the model's outputs to a `ModelInferResponse`.

The request's tensors, typed (`contents`) or raw (`raw_input_contents`, what tritonclient.grpc
sends), are read into the REST form of a tensor (name, datatype, shape, data) and checked by
the REST path's own rules (`service.codecs.v2.batch_from_tensors`), so a refused request gets
the same `error` string as over REST. What protobuf cannot say, it is told in the protocol's
other terms: a nullable feature's missing value is NaN in a number tensor, "" in a BYTES one.

The outputs go back raw when the request came raw (Triton's habit, and much cheaper for big
batches), typed otherwise; tritonclient and KServe's clients read either.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
import numpy.typing as npt

from service import explanations
from service.codecs import Result
from service.codecs.v2 import (
    BOOLS,
    EXPLANATION,
    EXPLANATION_PARAMETER,
    batch_from_tensors,
    imputed_texts,
    model_outputs,
    requested_outputs,
)
from service.errors import BadTensor
from service.explanations import Explained
from service.model import LoadedModel, Prediction
from service.protocol import grpc_predict_v2_pb2 as pb
from service.validation import Batch, Validator

# Each datatype's elements: their little-endian numpy type in raw contents (the struct format of
# one element, the same), and the field of typed contents.
ELEMENTS: dict[str, tuple[str, str, str]] = {
    "BOOL": ("?", "<?", "bool_contents"),
    "UINT8": ("<u1", "<B", "uint_contents"),
    "UINT16": ("<u2", "<H", "uint_contents"),
    "UINT32": ("<u4", "<I", "uint_contents"),
    "UINT64": ("<u8", "<Q", "uint64_contents"),
    "INT8": ("<i1", "<b", "int_contents"),
    "INT16": ("<i2", "<h", "int_contents"),
    "INT32": ("<i4", "<i", "int_contents"),
    "INT64": ("<i8", "<q", "int64_contents"),
    "FP16": ("<f2", "<e", ""),  # raw only: protobuf has no 16-bit float
    "FP32": ("<f4", "<f", "fp32_contents"),
    "FP64": ("<f8", "<d", "fp64_contents"),
}
BYTES = "BYTES"
LENGTH = struct.Struct("<I")  # the length before each BYTES element in raw contents
DISTINCT = 1024  # BYTES values decoded once each, up to this many distinct ones per tensor
# One element of each datatype read on its own (`_one_record`), as numpy reads it in bulk.
SCALARS = {name: struct.Struct(code) for name, (_, code, _) in ELEMENTS.items()}


def answer(
    model: LoadedModel, request: pb.ModelInferRequest, limit: int
) -> tuple[Result, pb.ModelInferResponse]:
    """Read, check, run and encode one request; the request parameter `explain` (bool_param)
    adds the `explanation` output, as over REST."""
    explain = _explain(request) if request.parameters else False
    offered = model_outputs(model.validator, explain)
    outputs = requested_outputs([_requested(output) for output in request.outputs] or None, offered)
    if explain:
        explanations.check_explainable(model)
    batch = _one_record(model.validator, request)
    if batch is None:
        batch = batch_from_tensors(model.validator, tensors(request), limit)
    if explain:
        explanations.check(model, batch.size, limit)
        prediction: Prediction = explanations.explain(model, batch)
    else:
        prediction = model.predict(batch)
    response = encode(model, request.id, prediction, outputs, batch, raw=_is_raw(request))
    return Result(batch, prediction), response


def _explain(request: pb.ModelInferRequest) -> bool:
    """The request parameter `explain`: a bool_param (absent: false)."""
    if EXPLANATION_PARAMETER not in request.parameters:
        return False
    parameter = request.parameters[EXPLANATION_PARAMETER]
    if parameter.WhichOneof("parameter_choice") != "bool_param":
        raise explanations.ExplainInvalid(_parameter(parameter), ("parameters",))
    return bool(parameter.bool_param)


def _one_record(validator: Validator, request: pb.ModelInferRequest) -> Batch | None:
    """One valid record in raw contents (tritonclient's usual one-record call), read element by
    element and checked by `Validator.quick`; None for anything else, which the general path
    reads (and, if bad, refuses with every problem named).

    Each value is what the general path reads (the same little-endian element, the same Python
    type), and a bool feature's 0 or 1 is made the bool `quick` takes, as over REST
    (`v2._quick_values`), so both paths give one answer (tests/service/test_grpc.py).
    """
    raw = request.raw_input_contents
    if len(raw) != validator.width or len(request.inputs) != validator.width:
        return None
    values: dict[str, Any] = {}
    for tensor, content in zip(request.inputs, raw, strict=True):
        shape = tensor.shape
        if shape[0:1] != [1] or len(shape) > 2 or shape[1:] not in ([], [1]) or tensor.parameters:
            return None
        if tensor.datatype == BYTES:
            if len(content) < LENGTH.size or LENGTH.unpack_from(content)[0] != len(content) - 4:
                return None
            values[tensor.name] = _text(content[LENGTH.size :])
            continue
        scalar = SCALARS.get(tensor.datatype)
        if scalar is None or len(content) != scalar.size:
            return None
        values[tensor.name] = scalar.unpack(content)[0]
    if values.keys() != validator.name_set:
        return None  # a name twice, or not the model's inputs
    row = []
    for feature in validator.features:
        value = values[feature.name]
        if feature.type == "bool" and type(value) is not bool:
            value = BOOLS.get(value, value) if value or math.copysign(1.0, value) > 0 else value
        row.append(value)
    return validator.quick([row])


def rows(request: pb.ModelInferRequest) -> int:
    """The rows the request says it holds (the first input's first dimension), to size the work."""
    for tensor in request.inputs:
        return int(tensor.shape[0]) if tensor.shape else 0
    return 0


def work_rows(request: pb.ModelInferRequest, model: LoadedModel) -> int:
    """The model rows the request will run: its rows, times m + 1 when it asks for explanations."""
    if request.parameters and EXPLANATION_PARAMETER in request.parameters:
        return rows(request) * (len(model.manifest.features) + 1)
    return rows(request)


def tensors(request: pb.ModelInferRequest) -> list[dict[str, Any]]:
    """The inputs in the REST form `batch_from_tensors` reads: name, datatype, shape, data."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise BadTensor(
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs"
        )
    read: list[dict[str, Any]] = []
    for i, tensor in enumerate(request.inputs):
        if raw and tensor.HasField("contents"):
            raise BadTensor(
                f"input {tensor.name!r}: give its elements in contents or in raw_input_contents, "
                "not both"
            )
        data = _raw(tensor, raw[i]) if raw else _typed(tensor)
        entry: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": list(tensor.shape),
            "data": data,
        }
        if tensor.parameters:
            entry["parameters"] = _parameters(tensor.parameters)
        read.append(entry)
    return read


def _raw(tensor: pb.ModelInferRequest.InferInputTensor, content: bytes) -> list[Any]:
    if tensor.datatype == BYTES:
        return _strings(tensor.name, content)
    element = ELEMENTS.get(tensor.datatype)
    if element is None:
        raise BadTensor(f"input {tensor.name!r}: {_unknown(tensor.datatype)}")
    dtype = np.dtype(element[0])
    if len(content) % dtype.itemsize:
        raise BadTensor(
            f"input {tensor.name!r}: {len(content)} bytes of raw contents are not whole "
            f"{tensor.datatype} elements ({dtype.itemsize} bytes each)"
        )
    values: list[Any] = np.frombuffer(content, dtype=dtype).tolist()
    return values


def _typed(tensor: pb.ModelInferRequest.InferInputTensor) -> list[Any]:
    contents = tensor.contents
    if tensor.datatype == BYTES:
        return _texts(list(contents.bytes_contents))
    element = ELEMENTS.get(tensor.datatype)
    if element is None:
        raise BadTensor(f"input {tensor.name!r}: {_unknown(tensor.datatype)}")
    if not element[2]:
        raise BadTensor(
            f"input {tensor.name!r}: {tensor.datatype} elements can only be sent in "
            "raw_input_contents"
        )
    values: list[Any] = list(getattr(contents, element[2]))
    return values


def _strings(name: str, content: bytes) -> list[Any]:
    """BYTES raw contents: each element a 4-byte little-endian length, then that many bytes."""
    elements: list[bytes] = []
    append, unpack = elements.append, LENGTH.unpack_from
    at, end = 0, len(content)
    try:
        while at < end:
            start = at + 4
            at = start + unpack(content, at)[0]
            append(content[start:at])
    except struct.error:
        raise BadTensor(
            f"input {name!r}: raw BYTES contents end inside an element's length"
        ) from None
    if at > end:
        raise BadTensor(f"input {name!r}: raw BYTES contents end inside an element")
    return _texts(elements)


def _texts(elements: list[bytes]) -> list[Any]:
    """The elements as text; a few distinct values (a category's) are decoded once each."""
    distinct = set(elements)
    if len(distinct) > DISTINCT:
        return [_text(element) for element in elements]
    texts = {element: _text(element) for element in distinct}
    return list(map(texts.__getitem__, elements))


def _text(value: bytes) -> str | bytes:
    """UTF-8 text; other bytes stay bytes, which the rules then refuse as "not a string"."""
    try:
        return value.decode()
    except UnicodeDecodeError:
        return value


def _unknown(datatype: str) -> str:
    known = [BYTES, *ELEMENTS]
    return f"datatype {datatype[:20]!r} is not one of the protocol's {known}"


def _parameters(parameters: Any) -> dict[str, Any]:
    return {key: _parameter(value) for key, value in parameters.items()}


def _parameter(value: pb.InferParameter) -> Any:
    choice = value.WhichOneof("parameter_choice")
    return None if choice is None else getattr(value, choice)


def _requested(output: pb.ModelInferRequest.InferRequestedOutputTensor) -> dict[str, Any]:
    return {"name": output.name, "parameters": _parameters(output.parameters)}


def _is_raw(request: pb.ModelInferRequest) -> bool:
    return len(request.raw_input_contents) > 0


def encode(
    model: LoadedModel,
    request_id: str,
    prediction: Prediction,
    names: list[str],
    batch: Batch,
    raw: bool,
) -> pb.ModelInferResponse:
    """`label` BYTES [n], `probabilities` FP32 [n, k], `imputed` BYTES [n] and `explanation`
    FP32 [n, m], as over REST."""
    n = len(prediction.probabilities)
    response = pb.ModelInferResponse(
        model_name=model.name, model_version=model.version, id=request_id
    )
    for name in names:
        output = response.outputs.add(name=name)
        if name in ("probabilities", EXPLANATION):
            values: npt.NDArray[Any] = prediction.probabilities
            if name == EXPLANATION:
                assert isinstance(prediction, Explained)
                values = prediction.contributions
            floats = np.ascontiguousarray(values, dtype="<f4")
            output.datatype, output.shape[:] = "FP32", list(floats.shape)
            if raw:
                response.raw_output_contents.append(floats.tobytes())
            else:
                output.contents.fp32_contents.extend(floats.ravel().tolist())
            continue
        output.datatype, output.shape[:] = BYTES, [n]
        if name == "label":
            codes, index = list(model.manifest.labels), prediction.classes.tolist()
        else:
            codes, index = imputed_texts(batch)
        encoded = [text.encode() for text in codes]
        if raw:
            prefixed = [LENGTH.pack(len(value)) + value for value in encoded]
            response.raw_output_contents.append(b"".join([prefixed[i] for i in index]))
        else:
            output.contents.bytes_contents.extend([encoded[i] for i in index])
    return response
