"""One module per wire format, decode and encode: v1 JSON, CSV, Open Inference Protocol (V2)
JSON; what each gives back for a request (`Answer`), and the JSON parsing they share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from service.errors import MalformedBody
from service.model import Prediction
from service.validation import Batch


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
