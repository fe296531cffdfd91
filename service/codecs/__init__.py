"""One module per wire format, decode and encode: v1 JSON, CSV, Open Inference Protocol (V2)
JSON; what each gives back for a request (`Answer`), and what they share."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson

from service.drift import Codes
from service.errors import MalformedBody
from service.model import Prediction
from service.validation import Batch, Validator

Built = TypeVar("Built")


@dataclass(frozen=True)
class Result:
    """A checked batch and the model's answer for it."""

    batch: Batch
    prediction: Prediction
    # The records' drift bins, kept when the batch's inputs are dropped (a CSV chunk).
    drift: Codes | None = None


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
