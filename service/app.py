"""The FastAPI application: wiring of settings, registry, metrics, routers and error handlers.

Only this module turns domain errors into HTTP: v1 gets FastAPI's `{"detail": ...}`, the Open
Inference Protocol routes (/v2) get `{"error": "..."}` (plus `"details"`, a list, for problems
with the inputs' tensors or values). A list cut at `validation.MAX_PROBLEMS` entries comes with
`"not_listed"`, the number of problems left out.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Callable
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.telemetry import TelemetryConfig
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp

from service.api import admin, docs, drift, health, v1, v2, web
from service.api.context import AppContext, DirectRoutes, json_response
from service.errors import (
    BadTensor,
    BatchTooLarge,
    BodyTimeout,
    InvalidInput,
    MissingApiKey,
    RegistryUnreadable,
    ServiceError,
    Unauthenticated,
)
from service.model import SERVICE_TRIM_THRESHOLD, keep_freed_memory
from service.observability.logs import configure_logging
from service.observability.metrics import Metrics
from service.observability.middleware import RequestContext
from service.openapi import build_openapi
from service.registry import LoadLimits, ModelRegistry
from service.security import protect
from service.settings import Settings

logger = logging.getLogger(__name__)

TITLE = "draftpick prediction service"
DESCRIPTION = (
    "Serves every model of the registry folder with onnxruntime. Request schemas, validation and "
    "examples come from each model's manifest. v1 is the friendly JSON/CSV API; /v2 speaks the "
    "Open Inference Protocol (KServe V2)."
)
MAX_ERROR_INPUT = 100
# The service observes itself through /metrics (Prometheus) and its access log. FastAPI's native
# OpenTelemetry bridge asks the global providers whether it is configured on every request, a
# measurable share of a one-record request (bench/RESULTS.md), to find no SDK; it is off.
NO_OPENTELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


def create_app(settings: Settings) -> FastAPI:
    """Build the app for these settings; models load in the lifespan, before the first request."""
    metrics = Metrics()
    limits = LoadLimits(
        settings.ort_threads, settings.max_model_bytes, settings.load_timeout_seconds
    )
    registry = ModelRegistry(settings.models_dir, listener=metrics, limits=limits)
    ctx = AppContext(settings, registry, metrics)
    app = FastAPI(
        title=TITLE,
        description=DESCRIPTION,
        version=v2.package_version(),
        lifespan=_lifespan(ctx),
        telemetry=NO_OPENTELEMETRY,
        # A redirect would build its absolute Location from the client's Host header.
        redirect_slashes=False,
        # FastAPI's pages load Swagger UI and ReDoc from CDNs: `service.api.docs` serves its own.
        docs_url=None,
        redoc_url=None,
    )
    app.state.context = ctx
    routers = (v1.router, drift.router, v2.router, health.router, admin.router, web.router)
    for router in (*routers, docs.router):
        app.include_router(router)
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
    _wrap_stack(app, ctx)
    app.openapi = _openapi(app, ctx)  # type: ignore[method-assign]  # schema depends on the models
    return app


def _wrap_stack(app: FastAPI, ctx: AppContext) -> None:
    """Request context (id, metrics, log) and CORS outside FastAPI's stack; predictions direct.

    Outside, so every response, the direct ones and FastAPI's 500s included, gets its id, its
    metrics and its CORS headers; see `service.api.context` for why predictions skip the stack.
    """
    build = app.build_middleware_stack
    direct = {v1.PREDICT_ROUTE: v1.predict, **dict.fromkeys(v2.INFER_ROUTES, v2.infer)}

    def build_stack() -> ASGIApp:
        stack: ASGIApp = DirectRoutes(build(), direct, _service_error, _unexpected_error)
        stack = protect(stack, ctx.settings, _service_error)  # keys, body deadline, docs headers
        if ctx.settings.cors_origins:
            stack = CORSMiddleware(
                stack,
                allow_origins=ctx.settings.cors_origins,
                allow_methods=["GET", "POST"],
                allow_headers=["*"],
                expose_headers=["X-Request-ID"],
            )
        return RequestContext(stack, ctx.metrics)

    app.build_middleware_stack = build_stack  # type: ignore[method-assign]  # wraps FastAPI's


def app_from_env() -> FastAPI:
    """The factory uvicorn imports (also in each worker process): settings from PREDICT_* env."""
    settings = Settings()
    configure_logging(settings.log_level)
    return create_app(settings)


def _lifespan(ctx: AppContext) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await run_in_threadpool(ctx.registry.refresh)
        except RegistryUnreadable as exc:  # start not ready; the poller loads it once readable
            logger.warning("registry unreadable at start-up", extra={"fields": {"error": str(exc)}})
        # Everything alive now (framework, models) lives as long as the process: frozen, the
        # collector's full passes skip it, which took the p99 latency from 100s of ms to ms.
        gc.freeze()
        keep_freed_memory(SERVICE_TRIM_THRESHOLD)  # big requests reuse pages (`service.model`)
        logger.info(
            "service started",
            extra={
                "fields": {
                    "models_dir": str(ctx.settings.models_dir),
                    "ready": ctx.registry.is_ready(),
                    "models": {m.name: m.version for m in ctx.registry.models()},
                }
            },
        )
        interval = ctx.settings.poll_interval_seconds
        poller = asyncio.create_task(_poll(ctx.registry, interval)) if interval > 0 else None
        try:
            async with _grpc(ctx), drift.pushing(ctx):
                yield
        finally:
            if poller is not None:
                poller.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await poller

    return lifespan


def _grpc(ctx: AppContext) -> contextlib.AbstractAsyncContextManager[None]:
    """The gRPC server for the lifespan, unless PREDICT_GRPC_PORT is 0; imported only when on
    (see `service.api.grpc_v2` on protobuf's message names)."""
    if not ctx.settings.grpc_port:
        return contextlib.nullcontext()
    from service.api import grpc_v2

    return grpc_v2.serve(ctx)


async def _poll(registry: ModelRegistry, interval: float) -> None:
    """Watch every task's `current` pointer (and new tasks); loading happens in a worker thread."""
    while True:
        await asyncio.sleep(interval)
        try:
            await run_in_threadpool(registry.poll)
        except RegistryUnreadable as exc:
            logger.warning("registry poll failed", extra={"fields": {"error": str(exc)}})
        except Exception:
            # Known artefact problems are handled per task inside refresh; anything reaching here
            # (an unreadable registry folder, a bug) must not end hot reloading for good.
            logger.exception("registry poll failed")


def _openapi(app: FastAPI, ctx: AppContext) -> Callable[[], dict[str, Any]]:
    """The schema is rebuilt only when the set of served versions changes."""
    cache: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}

    def openapi() -> dict[str, Any]:
        models = ctx.registry.models()
        key = tuple((m.name, m.version) for m in models)
        if key not in cache:
            cache.clear()
            cache[key] = build_openapi(app, models, ctx.settings.max_batch_records)
        return cache[key]

    return openapi


def _is_v2(request: Request) -> bool:
    path: str = request.scope["path"]
    return path == "/v2" or path.startswith("/v2/")


async def _service_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)  # registered for ServiceError only
    status = exc.status_code
    if _is_v2(request):
        if isinstance(exc, InvalidInput) and not isinstance(exc, BatchTooLarge):
            status = HTTPStatus.BAD_REQUEST
        body: dict[str, Any] = {"error": str(exc)}
        if isinstance(exc, BadTensor) and exc.problems:
            body["details"] = [
                {
                    "input": _short(p.field),
                    "element": p.index,
                    "type": p.type,
                    "msg": p.msg,
                    "value": _short(p.input),
                }
                for p in exc.problems
            ]
            _count_rest(body, exc.not_listed)
        return json_response(body, status, _headers(exc))
    if isinstance(exc, InvalidInput):
        detail = [
            {"type": p.type, "loc": list(loc), "msg": p.msg, "input": _short(p.input)}
            for p, loc in zip(exc.problems, exc.locations(), strict=True)
        ]
        body = {"detail": detail}
        _count_rest(body, exc.not_listed)
        return json_response(body, status)
    return json_response({"detail": str(exc)}, status, _headers(exc))


def _count_rest(body: dict[str, Any], not_listed: int) -> None:
    """Problems past the listed ones (`validation.MAX_PROBLEMS`) are counted, only when any."""
    if not_listed:
        body["not_listed"] = not_listed


def _headers(exc: ServiceError) -> dict[str, str] | None:
    if isinstance(exc, (Unauthenticated, MissingApiKey)):
        return {"WWW-Authenticate": "Bearer"}
    if isinstance(exc, BodyTimeout):
        # The rest of the body may still be on its way: end the connection rather than read it.
        return {"Connection": "close"}
    return None


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if _is_v2(request):
        # exc.headers carries Allow on a 405, which RFC 9110 requires.
        headers = dict(exc.headers) if exc.headers else None
        return json_response({"error": str(exc.detail)}, exc.status_code, headers)
    return await http_exception_handler(request, exc)


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    """A bug: log it with the request id, answer 500 without internals."""
    logger.error(
        "unhandled error",
        exc_info=exc,
        extra={"fields": {"request_id": request.scope.get("state", {}).get("request_id")}},
    )
    if _is_v2(request):
        return json_response({"error": "internal server error"}, 500)
    return json_response({"detail": "internal server error"}, 500)


def _short(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_ERROR_INPUT:
        return value[:MAX_ERROR_INPUT] + "…"
    if isinstance(value, (list, dict)):
        return None
    return value
