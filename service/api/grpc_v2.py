"""Open Inference Protocol (KServe V2) over gRPC, and the standard gRPC health service.

A grpc.aio server on `PREDICT_GRPC_PORT`, started by the app's lifespan in each worker process
on the same event loop as HTTP, so it shares the registry (and so hot reload), the validator,
the lane for big batches, API keys and metrics with the REST API. Its answers and refusals are
the REST V2 ones: the same `error` string, as the status message of INVALID_ARGUMENT (bad
input), NOT_FOUND (unknown model or version), UNAVAILABLE (model not ready), UNAUTHENTICATED /
PERMISSION_DENIED (API keys) or RESOURCE_EXHAUSTED (too many rows; a message over
`PREDICT_MAX_BODY_BYTES` is refused by gRPC itself with that code).

Several workers each bind the port with SO_REUSEPORT and the kernel spreads connections among
them; a gRPC channel is one long-lived connection, so one client's calls stay on one worker.
With one worker the port is bound exclusively: a port already taken fails the start (exit 3).

The messages are registered in protobuf's default pool under their protocol names
(`inference.ModelInferRequest`...), as tritonclient.grpc registers its own copies: one process
cannot import both, which is why `service.app` imports this module only when the port is on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from http import HTTPStatus
from typing import TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from service.api.context import AppContext
from service.api.v2 import PLATFORM, SERVER_NAME, package_version
from service.codecs import v2, v2_grpc
from service.errors import ServiceError, VersionNotFound
from service.model import LoadedModel
from service.observability.logs import access_line
from service.observability.middleware import SANE_REQUEST_ID, access_logger
from service.protocol import grpc_predict_v2_pb2 as pb
from service.protocol import grpc_predict_v2_pb2_grpc as pb_grpc
from service.security import KeyCheck
from service.server import DRAINS

logger = logging.getLogger(__name__)

SERVICE_NAME = "inference.GRPCInferenceService"
INFER_ROUTE = f"/{SERVICE_NAME}/ModelInfer"  # the records histogram's route label
# Above this many rows the work runs in the lane (off the event loop), as big REST bodies do.
INLINE_ROWS = 500
HEALTH_EVERY_SECONDS = 1.0
STATUS_CODES = {
    HTTPStatus.UNAUTHORIZED: grpc.StatusCode.UNAUTHENTICATED,
    HTTPStatus.FORBIDDEN: grpc.StatusCode.PERMISSION_DENIED,
    HTTPStatus.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    HTTPStatus.TOO_MANY_REQUESTS: grpc.StatusCode.RESOURCE_EXHAUSTED,
    HTTPStatus.SERVICE_UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    HTTPStatus.REQUEST_TIMEOUT: grpc.StatusCode.DEADLINE_EXCEEDED,
}

Reply = TypeVar("Reply")


def status_code(error: ServiceError) -> grpc.StatusCode:
    """The gRPC code of a refusal: another 4xx is bad input, a 5xx our fault."""
    code = STATUS_CODES.get(error.status_code)
    if code is not None:
        return code
    if error.status_code < 500:
        return grpc.StatusCode.INVALID_ARGUMENT
    return grpc.StatusCode.INTERNAL


class InferenceService(pb_grpc.GRPCInferenceServiceServicer):
    """The protocol's six methods over the app's context."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.keys = KeyCheck(ctx.settings.api_keys) if ctx.settings.api_keys else None

    async def ServerLive(  # the protocol names its methods
        self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.ctx.registry.is_ready())

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=package_version())

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelReadyResponse:
        """Ready when the task serves that version (any, when none is named); NOT_FOUND for an
        unknown task, as over REST, and not ready while its first version loads."""

        async def ready() -> pb.ModelReadyResponse:
            try:
                self._model(request.name, request.version)
            except ServiceError as exc:
                if exc.status_code == HTTPStatus.SERVICE_UNAVAILABLE:
                    return pb.ModelReadyResponse(ready=False)
                raise
            return pb.ModelReadyResponse(ready=True)

        return await self._serve("ModelReady", request.name, context, ready)

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelMetadataResponse:
        async def metadata() -> pb.ModelMetadataResponse:
            model = self._model(request.name, request.version)
            manifest = model.manifest
            tensor = pb.ModelMetadataResponse.TensorMetadata
            return pb.ModelMetadataResponse(
                name=model.name,
                versions=[model.version],
                platform=PLATFORM,
                inputs=[
                    tensor(name=m["name"], datatype=m["datatype"], shape=m["shape"])
                    for m in map(v2.input_metadata, manifest.features)
                ],
                outputs=[
                    tensor(name=m["name"], datatype=m["datatype"], shape=m["shape"])
                    for m in v2.output_metadata(manifest)
                ],
            )

        return await self._serve("ModelMetadata", request.name, context, metadata)

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse:
        """The REST route's work (`service.api.v2.infer`), on the protobuf message."""

        async def infer() -> pb.ModelInferResponse:
            ctx = self.ctx
            if self.keys is not None:
                self._check_key(context)
            model = self._model(request.model_name, request.model_version)
            limit = ctx.settings.max_batch_records
            if v2_grpc.work_rows(request, model) <= INLINE_ROWS:
                result, response = v2_grpc.answer(model, request, limit)
            else:
                result, response = await ctx.lane.run(v2_grpc.answer, model, request, limit)
            batch, prediction = result.batch, result.prediction
            ctx.metrics.observe_records(INFER_ROUTE, model.name, batch.size)
            ctx.metrics.observe_predictions(model, batch, prediction)
            return response

        return await self._serve("ModelInfer", request.model_name, context, infer)

    async def _serve(
        self,
        method: str,
        name: str,
        context: grpc.aio.ServicerContext,
        work: Callable[[], Awaitable[Reply]],
    ) -> Reply:
        """Run one call: refusals as gRPC codes with the REST message, then its metrics and its
        access line (as `service.observability.middleware` writes for HTTP)."""
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            return await work()
        except ServiceError as exc:
            code = status_code(exc)
            await context.abort(code, str(exc))
            raise  # abort raises; this line is for the type checker
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception:
            code = grpc.StatusCode.INTERNAL
            logger.exception("unhandled error", extra={"fields": {"method": method}})
            await context.abort(code, "internal server error")
            raise
        finally:
            seconds = time.perf_counter() - started
            model = self._known(name)
            self.ctx.metrics.observe_grpc(method, model, code.name, seconds)
            if access_logger.isEnabledFor(logging.INFO):
                fields = {
                    "request_id": _request_id(context),
                    "method": "gRPC",
                    "route": f"/{SERVICE_NAME}/{method}",
                    "model": model or None,
                    "status": code.name,
                    "latency_ms": round(seconds * 1000, 3),
                }
                access_line(access_logger, "request", fields)

    def _model(self, name: str, version: str) -> LoadedModel:
        model = self.ctx.registry.get(name)
        if version and version != model.version:
            raise VersionNotFound(name, version, model.version)
        return model

    def _known(self, name: str) -> str:
        """A model label only for served tasks: a caller's typo must not make a new series."""
        try:
            return self.ctx.registry.get(name).name
        except ServiceError:
            return ""

    def _check_key(self, context: grpc.aio.ServicerContext) -> None:
        assert self.keys is not None
        metadata = context.invocation_metadata() or ()
        headers = [
            (key.encode(), value if isinstance(value, bytes) else value.encode())
            for key, value in metadata
        ]
        error = self.keys.refusal(headers)
        if error is not None:
            raise error


def _request_id(context: grpc.aio.ServicerContext) -> str:
    """The caller's `x-request-id` when short and plain (as over HTTP), else a new one."""
    for key, value in context.invocation_metadata() or ():
        if (
            key == "x-request-id"
            and isinstance(value, str)
            and SANE_REQUEST_ID.match(value.encode())
        ):
            return value
    return os.urandom(16).hex()


class Health(HealthServicer):  # type: ignore[misc]  # grpc_health is untyped
    """`grpc.health.v1.Health`: SERVING for "" and the inference service while the registry is
    ready (`/readyz`), NOT_SERVING otherwise and once the server stops."""

    def __init__(self, ctx: AppContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.ready: bool | None = None

    async def update(self) -> None:
        ready = self.ctx.registry.is_ready()
        if ready == self.ready:
            return
        self.ready = ready
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if ready
            else (health_pb2.HealthCheckResponse.NOT_SERVING)
        )
        for service in ("", SERVICE_NAME):
            await self.set(service, status)

    async def watch_registry(self) -> None:
        while True:
            await self.update()
            await asyncio.sleep(HEALTH_EVERY_SECONDS)


def address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@contextlib.asynccontextmanager
async def serve(ctx: AppContext) -> AsyncIterator[None]:
    """Run the gRPC server for as long as the caller's `async with` (the app's lifespan).

    Stopping gives calls in flight the HTTP side's grace period, then cancels them.
    """
    settings = ctx.settings
    options = [
        ("grpc.max_receive_message_length", settings.max_body_bytes),
        ("grpc.max_send_message_length", -1),
        ("grpc.so_reuseport", 1 if settings.workers > 1 else 0),
    ]
    server = grpc.aio.server(options=options)
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceService(ctx), server)  # type: ignore[no-untyped-call]
    health = Health(ctx)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    where = address(settings.host, settings.grpc_port)
    try:
        server.add_insecure_port(where)
    except RuntimeError as exc:
        raise RuntimeError(f"cannot serve gRPC on {where} (PREDICT_GRPC_PORT): {exc}") from exc
    await health.update()
    await server.start()
    watcher = asyncio.create_task(health.watch_registry())
    logger.info("gRPC serving", extra={"fields": {"address": where}})
    stopping: asyncio.Future[None] | None = None

    def drain() -> asyncio.Future[None]:
        """Stop taking calls (NOT_SERVING, then GOAWAY) and give those running the grace period;
        begun by the HTTP server's shutdown (`DRAINS`), at the latest when the lifespan ends."""
        nonlocal stopping
        if stopping is None:
            watcher.cancel()
            stopping = asyncio.ensure_future(
                _stop(server, health, settings.graceful_timeout_seconds)
            )
        return stopping

    DRAINS.append(drain)
    try:
        yield
    finally:
        DRAINS.remove(drain)
        await drain()


async def _stop(server: grpc.aio.Server, health: Health, grace: float) -> None:
    await health.enter_graceful_shutdown()
    await server.stop(grace)
