"""v1, the friendly API: list models, describe one, predict JSON records or a CSV file."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.responses import Response, StreamingResponse

from service.api.body import media_kind, parse_json, read_body
from service.api.context import AppContext, context
from service.api.responses import json_response
from service.model import LoadedModel
from service.predict import Result, TableResult, predict_records, predict_table, records_of
from service.render import prediction_records
from service.schemas import PredictResponse, model_details, model_summary

PREDICT_ROUTE = "/v1/models/{task}/predict"
# Below these sizes the work takes less time than a thread-pool hop, so it runs on the event loop.
INLINE_RECORDS = 1_000
INLINE_CSV_BYTES = 64 * 1024

router = APIRouter(prefix="/v1", tags=["v1"])

PREDICT_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/PredictRequest"}},
            "text/csv": {
                "schema": {
                    "type": "string",
                    "description": "A header row (feature names "
                    "or aliases, any case) then one row per record.",
                }
            },
        },
    }
}


@router.get("/models")
async def list_models(request: Request) -> Response:
    """Every task found in the registry, its state and the version served."""
    registry = context(request).registry
    served = {model.name: model for model in registry.models()}
    summaries = [model_summary(status, served.get(status.name)) for status in registry.statuses()]
    return json_response({"models": summaries})


@router.get("/models/{task}")
async def describe_model(task: str, request: Request) -> Response:
    """The served version's contract: features with types, units and domains, labels, metrics."""
    model = context(request).registry.get(task)
    return json_response(model_details(model))


@router.post(
    "/models/{task}/predict",
    openapi_extra=PREDICT_OPENAPI,
    responses={
        200: {"model": PredictResponse, "content": {"text/csv": {}}},
        400: {"description": "Malformed JSON or CSV"},
        404: {"description": "Unknown model"},
        413: {"description": "Body or batch over the limit"},
        415: {"description": "Neither application/json nor text/csv"},
        422: {"description": "A record breaks the model's contract (loc names record and field)"},
        503: {"description": "The model is not loaded"},
    },
)
async def predict(task: str, request: Request) -> Response:
    """Predict JSON `{"records": [...]}` or a CSV (answered in kind), checked against the manifest.

    `async def` on purpose: for small batches the thread-pool hop of a `def` route costs more than
    the inference; big batches are moved to a worker thread so the event loop stays responsive.
    """
    ctx = context(request)
    model = ctx.registry.get(task)
    request.state.model, request.state.version = model.name, model.version
    kind = media_kind(request)
    body = await read_body(request, ctx.settings.max_body_bytes)
    if kind == "csv":
        return await _predict_csv(ctx, request, model, body)
    records = records_of(parse_json(body), ctx.settings.max_batch_records)
    request.state.records = len(records)
    if len(records) <= INLINE_RECORDS:
        result = predict_records(model, records)
    else:
        result = await run_in_threadpool(predict_records, model, records)
    _observe(ctx, model, result)
    content = {
        "model": model.name,
        "version": model.version,
        "request_id": request.state.request_id,
        "predictions": prediction_records(model, result.batch, result.prediction),
    }
    return json_response(content)


async def _predict_csv(
    ctx: AppContext, request: Request, model: LoadedModel, body: bytes
) -> Response:
    chunk = ctx.settings.max_batch_records
    if len(body) <= INLINE_CSV_BYTES:
        table = predict_table(model, body, chunk)
    else:
        table = await run_in_threadpool(predict_table, model, body, chunk)
    request.state.records = table.size
    for part in table.parts:
        _observe(ctx, model, part, count_records=False)
    ctx.metrics.observe_records(PREDICT_ROUTE, model.name, table.size)
    headers = {"X-Model-Version": model.version}
    if len(table.parts) == 1:
        return Response(b"".join(table.output()), media_type="text/csv", headers=headers)
    return StreamingResponse(_stream(table), media_type="text/csv", headers=headers)


def _stream(table: TableResult) -> Any:
    return iterate_in_threadpool(table.output())


def _observe(
    ctx: AppContext, model: LoadedModel, result: Result, count_records: bool = True
) -> None:
    if count_records:
        ctx.metrics.observe_records(PREDICT_ROUTE, model.name, result.batch.size)
    ctx.metrics.observe_predictions(model, result.prediction.classes, result.batch.out_of_range)
