"""Reading request bodies within the byte limit, and telling JSON from CSV."""

from __future__ import annotations

from typing import Any, Literal

import orjson
from starlette.requests import Request

from service.errors import BodyTooLarge, MalformedBody, UnsupportedMediaType

MediaKind = Literal["json", "csv"]
CSV_TYPES = frozenset({"text/csv", "application/csv"})


def media_kind(
    request: Request,
    accepted: tuple[MediaKind, ...] = ("json", "csv"),
    default: MediaKind | None = None,
) -> MediaKind:
    """JSON (application/json, any +json) or CSV, from the Content-Type; anything else is a 415.

    `default` is for clients that send no Content-Type at all (tritonclient does not).
    """
    raw = request.headers.get("content-type", "")
    essence = raw.split(";", 1)[0].strip().lower()
    kind: MediaKind | None = None
    if not essence and default is not None:
        kind = default
    elif essence == "application/json" or essence.endswith("+json"):
        kind = "json"
    elif essence in CSV_TYPES:
        kind = "csv"
    if kind is None or kind not in accepted:
        names = {"json": "application/json", "csv": "text/csv"}
        raise UnsupportedMediaType(raw or "(none)", tuple(names[k] for k in accepted))
    return kind


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it is known to exceed `limit` bytes.

    Content-Length is checked first; a chunked (or lying) body is counted while it streams, so
    an oversized upload is never held in memory.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise MalformedBody(f"invalid Content-Length {declared[:40]!r}", "content_length")
        if int(declared) > limit:
            raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


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
