"""One module per wire format, decode and encode: v1 JSON, CSV, Open Inference Protocol (V2)
JSON; what each gives back for a request (`Answer`), and what they share."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np
import numpy.typing as npt
import orjson

from service.errors import MalformedBody
from service.model import Prediction
from service.validation import Batch, Validator

Built = TypeVar("Built")
FEW_RECORDS = 64


@dataclass(frozen=True)
class Result:
    """A checked batch and the model's answer for it."""

    batch: Batch
    prediction: Prediction


@dataclass(frozen=True)
class Answer:
    """A result and the response body encoded from it (both made off the event loop)."""

    result: Result
    body: bytes


class PerVersion(Generic[Built]):
    """One `Built` (a decoder, say) per model version, keyed by its Validator: built on first use,
    dropped when the last request on an unloaded version ends."""

    def __init__(self, build: Callable[[Validator], Built]) -> None:
        self._build = build
        self._built: weakref.WeakKeyDictionary[Validator, Built] = weakref.WeakKeyDictionary()

    def __call__(self, validator: Validator) -> Built:
        built = self._built.get(validator)
        if built is None:  # two threads may both build it; either copy is right
            built = self._built[validator] = self._build(validator)
        return built


def imputed_lists(batch: Batch) -> tuple[npt.NDArray[np.intp], list[list[str]]]:
    """The distinct lists of features imputed in a record (in the batch's order), and each
    record's list as an index into them, for a batch with a missing value (`batch.imputed`
    not empty). Missing values may be common, so many records cost a few numpy calls (each
    record's pattern of hits as an integer, then one `np.unique`), not a Python loop."""
    names = list(batch.imputed)
    if batch.size <= FEW_RECORDS:  # plain Python beats numpy's fixed costs
        rows = zip(*(batch.imputed[name].tolist() for name in names), strict=True)
        distinct: dict[tuple[bool, ...], int] = {}
        index = [distinct.setdefault(row, len(distinct)) for row in rows]
        lists = [[n for n, hit in zip(names, row, strict=True) if hit] for row in distinct]
        return np.array(index, dtype=np.intp), lists
    hits = np.column_stack([batch.imputed[name] for name in names])  # [records, features]
    packed = np.packbits(hits, axis=1)  # a row's hits as bytes, compared as one value:
    width = packed.shape[1]
    keys: npt.NDArray[Any]
    if width <= 8:  # an integer, which sorts far quicker
        keys = np.pad(packed, ((0, 0), (0, 8 - width))).view(np.uint64).ravel()
    else:
        keys = np.ascontiguousarray(packed).view(np.dtype((np.void, width))).ravel()
    _, first, found = np.unique(keys, return_index=True, return_inverse=True)
    lists = [[n for n, hit in zip(names, hits[row].tolist(), strict=True) if hit] for row in first]
    return found.reshape(-1).astype(np.intp), lists


def parse_json(body: bytes) -> Any:
    """orjson rejects NaN, Infinity and numbers that overflow a double, so none reach a model."""
    if not body.strip():
        raise MalformedBody("JSON decode error: the body is empty")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        hint = ""
        if b"nan" in body.lower() or b"inf" in body.lower():
            hint = " (NaN and Infinity are not valid JSON numbers)"
        raise MalformedBody(f"JSON decode error: {exc}{hint}") from exc
