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
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.responses import json_response
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


def protect(app: ASGIApp, settings: Settings) -> ASGIApp:
    """Wrap `app` in the guards these settings ask for (API keys only when some are configured)."""
    app = DocsHeaders(app)
    if settings.api_keys:
        app = ApiKeys(app, settings.api_keys)
    return BodyDeadline(app, settings.body_timeout_seconds)


class ApiKeys:
    """Prediction routes need one of the keys: `Authorization: Bearer <key>` or `X-API-Key`.

    401 without a key, 403 with a wrong one. Keys are kept as sha256 digests and every digest is
    compared in constant time, so neither the time taken nor the key's length tells a caller
    how close a guess came.
    """

    def __init__(self, app: ASGIApp, keys: Sequence[SecretStr]) -> None:
        self.app = app
        self.digests = [_digest(key.get_secret_value().encode()) for key in keys]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and PREDICTION_PATH.match(scope["path"]):
            error = self._refusal(scope)
            if error is not None:
                await _error_response(scope, error)(scope, receive, send)
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
    a connection (and, on SIGTERM, the shutdown) for as long as it likes. Once the body is
    complete, later `receive` calls (Starlette's disconnect watch) pass through untimed.
    """

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in BODYLESS_METHODS:
            await self.app(scope, receive, send)
            return
        deadline = asyncio.get_running_loop().time() + self.seconds
        complete = False

        async def receive_by_deadline() -> Message:
            nonlocal complete
            if complete:
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise BodyTimeout(self.seconds) from None
            complete = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        await self.app(scope, receive_by_deadline, send)


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


def _error_response(scope: Scope, error: ServiceError) -> ASGIApp:
    """The app's own error shapes: `{"error": ...}` under /v2, `{"detail": ...}` elsewhere."""
    path: str = scope["path"]
    key = "error" if path.startswith("/v2/") else "detail"
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(error, MissingApiKey) else None
    return json_response({key: str(error)}, error.status_code, headers)
