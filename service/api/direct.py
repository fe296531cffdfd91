"""The prediction routes, dispatched straight from the ASGI entry, past FastAPI's stack and router.

For a one-record prediction FastAPI's middleware layers and router matching cost more than
validation and inference together (measured in bench/RESULTS.md), so POST requests to these
few templates are matched here with one regex each and given to the same plain Starlette
endpoints, with the app's own error handlers. Everything else goes on to FastAPI unchanged, and
the routes stay registered there too (OpenAPI, 405 for other methods).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import ServiceError

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
