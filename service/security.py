"""What guards the service from its callers: API keys, a body deadline, headers on the docs pages.

Plain ASGI layers (no BaseHTTPMiddleware, whose per-request task and buffering the hot path cannot
afford). Each one is added only when it has something to do, and each lets any other request
through after one comparison.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
from collections.abc import Sequence

from pydantic import SecretStr
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.context import ErrorHandler
from service.errors import BodyTimeout, InvalidApiKey, MissingApiKey, ServiceError
from service.settings import Settings

# The routes that run a model; health, metrics, model metadata, docs and the page stay open.
PREDICTION_PATH = re.compile(
    r"^/(?:v1/models/[^/]+/predict|v2/models/[^/]+(?:/versions/[^/]+)?/infer)$"
)
BODYLESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})
# No Content-Security-Policy beyond framing: FastAPI's docs pages load Swagger UI and ReDoc from a
# CDN with an inline bootstrap script, which a script policy would have to allow anyway.
DOCS_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
    (b"referrer-policy", b"no-referrer"),
]


def protect(app: ASGIApp, settings: Settings, answer: ErrorHandler) -> ASGIApp:
    """Wrap `app` in the guards these settings ask for (API keys only when some are configured).

    A refusal is answered by `answer`, the app's own handler of service errors, so its shape is
    decided in one place (`service.app`).
    """
    app = DocsHeaders(app)
    if settings.api_keys:
        app = ApiKeys(app, settings.api_keys, answer)
    return BodyDeadline(app, settings.body_timeout_seconds)


class ApiKeys:
    """Prediction routes need one of the keys: `Authorization: Bearer <key>` or `X-API-Key`.

    401 without a key, 403 with a wrong one. Keys are kept as sha256 digests and every digest is
    compared in constant time, so neither the time taken nor the key's length tells a caller
    how close a guess came.
    """

    def __init__(self, app: ASGIApp, keys: Sequence[SecretStr], answer: ErrorHandler) -> None:
        self.app = app
        self.digests = [_digest(key.get_secret_value().encode()) for key in keys]
        self.answer = answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and PREDICTION_PATH.match(scope["path"]):
            error = self._refusal(scope)
            if error is not None:
                response = await self.answer(Request(scope, receive, send), error)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope) -> ServiceError | None:
        given = _presented_keys(scope)
        if not given:
            return MissingApiKey()
        matched = False
        for key in given:
            digest = _digest(key)
            for known in self.digests:
                matched |= hmac.compare_digest(digest, known)
        return None if matched else InvalidApiKey()


class BodyDeadline:
    """A request body must arrive within `seconds` of the request's start, else 408.

    uvicorn has no body read timeout, so without this a client that sends one byte a minute holds
    a connection (and, on SIGTERM, the shutdown) for as long as it likes. A `receive` that has to
    wait is registered, and one sweeper task per process, running only while some are waiting,
    cancels those past their deadline. Per request that is a set insert and removal, cheaper than
    a timer per request or a timeout around each call; the price is that the deadline is
    enforced to within a tenth of itself.
    """

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds
        self.tick = min(1.0, seconds / 10)
        self.waiting: set[_BodyRead] = set()
        self.sweeper: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in BODYLESS_METHODS:
            await self.app(scope, receive, send)
            return
        read = _BodyRead(self, receive)
        await self.app(scope, read.receive, send)

    def watch(self, read: _BodyRead) -> None:
        self.waiting.add(read)
        if self.sweeper is None:
            self.sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def _sweep(self) -> None:
        try:
            while self.waiting:
                await asyncio.sleep(self.tick)
                now = asyncio.get_running_loop().time()
                for read in [r for r in self.waiting if r.deadline <= now]:
                    read.expire()
        finally:
            self.sweeper = None


class _BodyRead:
    """One request's body: its deadline, and the task to cancel if it is still waiting then."""

    __slots__ = ("complete", "deadline", "expired", "guard", "task", "upstream")

    def __init__(self, guard: BodyDeadline, upstream: Receive) -> None:
        self.guard = guard
        self.upstream = upstream
        self.deadline = asyncio.get_running_loop().time() + guard.seconds
        self.task = asyncio.current_task()
        self.complete = False
        self.expired = False

    async def receive(self) -> Message:
        if self.complete:
            return await self.upstream()
        self.guard.watch(self)
        try:
            message = await self.upstream()
        except asyncio.CancelledError:
            if not self.expired or self.task is None or self.task.uncancel() > 0:
                raise  # cancelled by someone else (shutdown, disconnect): not ours to turn
            raise BodyTimeout(self.guard.seconds) from None
        finally:
            self.guard.waiting.discard(self)
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.complete = True
        return message

    def expire(self) -> None:
        self.guard.waiting.discard(self)
        if self.task is not None and not self.task.done():
            self.expired = True
            self.task.cancel()


class DocsHeaders:
    """`/docs` and `/redoc` are HTML: no sniffing, no framing, no referrer (`/` sets its own)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in DOCS_PATHS:
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *DOCS_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _presented_keys(scope: Scope) -> list[bytes]:
    """Raw header bytes, compared as bytes: no decoding a caller could play with."""
    keys: list[bytes] = []
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                keys.append(token.strip())
        elif name == b"x-api-key" and value.strip():
            keys.append(value.strip())
    return keys


def _digest(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()
