"""JSON responses encoded with orjson (numpy arrays included), faster than the stdlib encoder."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response


def json_bytes(content: Any) -> bytes:
    return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def json_response(
    content: Any, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        json_bytes(content),
        status_code=status_code,
        media_type="application/json",
        headers=headers,
    )
