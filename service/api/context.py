"""What every route works with: the app's context, the request body within its limit, the lane
that runs big requests off the event loop, orjson answers, and the direct dispatch of the
prediction routes."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, ParamSpec, TypeVar, cast

import anyio
import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import BodyTooLarge, MalformedBody, ServiceError, UnsupportedMediaType
from service.observability.metrics import Metrics
from service.registry import ModelRegistry
from service.settings import Settings


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


# Below this body size the work takes less time than the thread hop, so it runs on the loop
# (about 500 JSON records or 2,000 CSV rows of the committed models).
INLINE_BYTES = 96 * 1024

P = ParamSpec("P")
T = TypeVar("T")


class Lane:
    """One big request at a time, in a worker thread."""

    def __init__(self) -> None:
        self._lock = anyio.Lock()

    async def run(self, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        async with self._lock:
            return await run_in_threadpool(work, *args, **kwargs)

    async def run_sized(
        self, size: int, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`work` inline when the body is small, else in the lane."""
        if size <= INLINE_BYTES:
            return work(*args, **kwargs)
        return await self.run(work, *args, **kwargs)


@dataclass(frozen=True)
class AppContext:
    settings: Settings
    registry: ModelRegistry
    metrics: Metrics
    lane: Lane = field(default_factory=Lane)  # big batches, one at a time (service.api.context)


def context(request: Request) -> AppContext:
    """The app's context; plain attribute access, cheaper than a dependency on the hot path."""
    return cast(AppContext, request.app.state.context)


Endpoint = Callable[[Request], Awaitable[Response]]
ErrorHandler = Callable[[Request, Exception], Awaitable[Response]]


class DirectRoutes:
    """POST to one of `routes` runs its endpoint here; any other request goes to `app`."""

    def __init__(
        self,
        app: ASGIApp,
        routes: Mapping[str, Endpoint],
        service_error: ErrorHandler,
        unexpected_error: ErrorHandler,
    ) -> None:
        self.app = app
        self.routes: list[tuple[re.Pattern[str], Endpoint]] = [
            (compile_path(template)[0], endpoint) for template, endpoint in routes.items()
        ]
        self.service_error = service_error
        self.unexpected_error = unexpected_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            for pattern, endpoint in self.routes:
                match = pattern.match(path)
                if match is not None:
                    scope["path_params"] = match.groupdict()
                    await self._serve(endpoint, scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _serve(self, endpoint: Endpoint, scope: Scope, receive: Receive, send: Send) -> None:
        """Like Starlette's ExceptionMiddleware and ServerErrorMiddleware, for these routes only."""
        request = Request(scope, receive, send)
        try:
            response = await endpoint(request)
        except ServiceError as exc:
            response = await self.service_error(request, exc)
        except Exception as exc:
            # Answer 500 with the app's body, then re-raise so the server logs it (as Starlette's
            # ServerErrorMiddleware does).
            response = await self.unexpected_error(request, exc)
            await response(scope, receive, send)
            raise
        await response(scope, receive, send)
