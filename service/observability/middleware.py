"""Request id, access log line and request metrics, as plain ASGI middleware (no buffering)."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.observability.logs import access_line
from service.observability.metrics import Metrics

REQUEST_ID_HEADER = b"x-request-id"
# A caller's id is echoed only if it is short and plain, so it cannot inject into logs or headers.
SANE_REQUEST_ID = re.compile(rb"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")

access_logger = logging.getLogger("service.access")


class RequestContext:
    """Gives every request an id (X-Request-ID) and records its route, model, status and latency.

    Handlers put `model`, `version` and `records` in `request.state`; this reads them afterwards.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope)
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (REQUEST_ID_HEADER, request_id.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except asyncio.CancelledError:
            # Cut off at the end of the drain: the server answered it 503 (`service.server`).
            status = 503 if status == 500 else status
            raise
        finally:
            self._record(scope, state, status, time.perf_counter() - started)

    def _record(self, scope: Scope, state: dict[str, Any], status: int, seconds: float) -> None:
        route = state.get("route") or getattr(scope.get("route"), "path", None)
        if route is None:
            # Never the raw path, which a caller controls: label values must stay a bounded set.
            endpoint = scope.get("endpoint")
            route = getattr(endpoint, "__name__", "unmatched") if endpoint else "unmatched"
        model = state.get("model", "")
        self.metrics.observe_request(route, model, status, seconds)
        if not access_logger.isEnabledFor(logging.INFO):
            return
        access_line(
            access_logger,
            "request",
            {
                "request_id": state["request_id"],
                "method": scope["method"],
                "route": route,
                "model": model or None,
                "version": state.get("version"),
                "status": status,
                "records": state.get("records"),
                "latency_ms": round(seconds * 1000, 3),
            },
        )


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER and SANE_REQUEST_ID.match(value):
            return str(value.decode("ascii"))
    # 128 random bits as 32 hex digits, like uuid4().hex, at a fifth of its cost.
    return os.urandom(16).hex()
