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
from collections.abc import Iterable, Sequence

from pydantic import SecretStr
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api import docs
from service.api.context import ErrorHandler
from service.errors import BodyTimeout, InvalidApiKey, MissingApiKey, ServiceError
from service.settings import Settings

# The routes that run a model; health, metrics, model metadata, docs and the page stay open.
PREDICTION_PATH = re.compile(
    r"^/(?:v1/models/[^/]+/predict|v2/models/[^/]+(?:/versions/[^/]+)?/infer)$"
)
BODYLESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})
# Everything `service.api.docs` serves: the page, its OAuth2 redirect page and its assets.
DOCS_PREFIX = docs.DOCS_URL
# The docs page talks only to us: Swagger UI's files are ours (`service.api.docs`), its one inline
# script is allowed by its hash and no other inline script runs. Its stylesheet draws icons from
# data: URLs; `style-src` stays 'self' (Swagger UI sets styles through the DOM, which CSP allows).
DOCS_POLICY = "; ".join(
    [
        "default-src 'self'",
        f"script-src 'self' {' '.join(docs.BOOTSTRAP_HASHES)}",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
DOCS_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", DOCS_POLICY.encode()),
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


class KeyCheck:
    """Whether a request's headers (HTTP, or gRPC metadata) carry one of the keys.

    `Authorization: Bearer <key>` or `X-API-Key`. Keys are kept as sha256 digests and every
    digest is compared in constant time, so neither the time taken nor the key's length tells a
    caller how close a guess came.
    """

    def __init__(self, keys: Sequence[SecretStr]) -> None:
        self.digests = [_digest(key.get_secret_value().encode()) for key in keys]

    def refusal(self, headers: Iterable[tuple[bytes, bytes]]) -> ServiceError | None:
        """None when a key matches; MissingApiKey (401) without one, InvalidApiKey (403) else.

        `headers`: (lowercase name, value) pairs as raw bytes, compared as bytes: no decoding a
        caller could play with.
        """
        given = _presented_keys(headers)
        if not given:
            return MissingApiKey()
        matched = False
        for key in given:
            digest = _digest(key)
            for known in self.digests:
                matched |= hmac.compare_digest(digest, known)
        return None if matched else InvalidApiKey()


class ApiKeys:
    """Prediction routes need one of the keys (`KeyCheck`): 401 without a key, 403 with a wrong
    one."""

    def __init__(self, app: ASGIApp, keys: Sequence[SecretStr], answer: ErrorHandler) -> None:
        self.app = app
        self.check = KeyCheck(keys)
        self.answer = answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and PREDICTION_PATH.match(scope["path"]):
            error = self.check.refusal(scope["headers"])
            if error is not None:
                response = await self.answer(Request(scope, receive, send), error)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


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
    """`/docs` and its files: the policy above, no sniffing, no framing, no referrer.

    (`/` and `/web/*` set their own, in `service.api.web`.)
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(DOCS_PREFIX):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *DOCS_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _presented_keys(headers: Iterable[tuple[bytes, bytes]]) -> list[bytes]:
    keys: list[bytes] = []
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                keys.append(token.strip())
        elif name == b"x-api-key" and value.strip():
            keys.append(value.strip())
    return keys


def _digest(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()
