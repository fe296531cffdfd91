"""Open Inference Protocol (KServe V2) REST: health, server and model metadata, infer.

Errors use the protocol's `{"error": "..."}` body (see `service.app`): 400 bad input, 404 unknown
model or version, 413 a body or an input over its limit, 503 not ready.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from fastapi import APIRouter, Request
from starlette.responses import Response

from service.api.context import INLINE_BYTES, context, json_response, media_kind, read_body
from service.codecs import v2
from service.errors import BadTensor, VersionNotFound
from service.model import LoadedModel

SERVER_NAME = "draftpick-serving"
PLATFORM = "onnxruntime_onnx"
INFER_ROUTE = "/v2/models/{task}/infer"
INFER_ROUTES = (INFER_ROUTE, "/v2/models/{task}/versions/{model_version}/infer")

router = APIRouter(prefix="/v2", tags=["v2 (Open Inference Protocol)"])


@router.get("")
@router.get("/")
async def server_metadata() -> Response:
    return json_response({"name": SERVER_NAME, "version": package_version(), "extensions": []})


@router.get("/health/live")
async def live() -> Response:
    return json_response({"live": True})


@router.get("/health/ready")
async def ready(request: Request) -> Response:
    is_ready = context(request).registry.is_ready()
    return json_response({"ready": is_ready}, 200 if is_ready else 503)


@router.get("/models/{task}")
@router.get("/models/{task}/versions/{model_version}")
async def model_metadata(task: str, request: Request, model_version: str | None = None) -> Response:
    model = _model(request, task, model_version)
    manifest = model.manifest
    return json_response(
        {
            "name": model.name,
            "versions": [model.version],
            "platform": PLATFORM,
            "inputs": [v2.input_metadata(feature) for feature in manifest.features],
            "outputs": v2.output_metadata(manifest),
        }
    )


@router.get("/models/{task}/ready")
@router.get("/models/{task}/versions/{model_version}/ready")
async def model_ready(task: str, request: Request, model_version: str | None = None) -> Response:
    model = _model(request, task, model_version)
    return json_response({"name": model.name, "ready": True})


async def infer(request: Request) -> Response:
    """One tensor per feature in, `label` (BYTES) and `probabilities` (FP32 [n, k]) out.

    A plain Starlette route like v1's predict (documented in `service.openapi`), for speed.
    """
    request.state.route = INFER_ROUTE
    task: str = request.path_params["task"]
    model_version: str | None = request.path_params.get("model_version")
    ctx = context(request)
    model = _model(request, task, model_version)
    if "inference-header-content-length" in request.headers:
        raise BadTensor("binary tensor data is not supported; send JSON tensors")
    media_kind(request, ("json",), default="json")
    body = await read_body(request, ctx.settings.json_body_limit)
    limit = ctx.settings.max_batch_records
    size = v2.work_size(body, model, INLINE_BYTES)
    answer = await ctx.lane.run_sized(size, v2.answer, model, body, limit)
    request.state.records = answer.result.batch.size
    ctx.metrics.observe_records(INFER_ROUTE, model.name, answer.result.batch.size)
    prediction, batch = answer.result.prediction, answer.result.batch
    ctx.metrics.observe_predictions(model, batch, prediction)
    return Response(answer.body, media_type="application/json")


# Plain routes do not get the router's prefix, so full paths are given.
for _path in INFER_ROUTES:
    router.add_route(_path, infer, methods=["POST"], include_in_schema=False)


def _model(request: Request, task: str, model_version: str | None) -> LoadedModel:
    model = context(request).registry.get(task)
    request.state.model, request.state.version = model.name, model.version
    if model_version is not None and model_version != model.version:
        raise VersionNotFound(task, model_version, model.version)
    return model


def package_version() -> str:
    try:
        return version(SERVER_NAME)
    except PackageNotFoundError:
        return "0+unknown"
