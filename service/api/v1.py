"""v1, the friendly API: list models, describe one, predict JSON records or a CSV file."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Request
from starlette.concurrency import iterate_in_threadpool
from starlette.responses import Response, StreamingResponse

from service import explanations
from service.api.context import AppContext, context, json_response, media_kind, read_body
from service.codecs import Result, csv, v1_json
from service.model import LoadedModel
from service.openapi import model_details, model_summary

PREDICT_ROUTE = "/v1/models/{task}/predict"
router = APIRouter(prefix="/v1", tags=["v1"])


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


async def predict(request: Request) -> Response:
    """Predict JSON `{"records": [...]}` or a CSV (answered in kind), checked against the manifest;
    `?explain=true` adds each feature's contribution (`service.explanations`).

    `async def` on purpose: for small bodies the thread-pool hop of a `def` route costs more than
    the inference; big ones take the app's lane (`service.api.context`): a worker thread, one at a
    time, so the event loop stays responsive and memory holds one big batch, not several.
    Registered as a plain Starlette route (documented in `service.openapi`): FastAPI's parameter
    machinery cost a large share of a one-record request (bench/RESULTS.md).
    """
    request.state.route = PREDICT_ROUTE
    task: str = request.path_params["task"]
    ctx = context(request)
    model = ctx.registry.get(task)
    request.state.model, request.state.version = model.name, model.version
    kind = media_kind(request)
    query: bytes = request.scope["query_string"]
    explain = explanations.query_flag(query) if query else False
    limit = ctx.settings.max_body_bytes if kind == "csv" else ctx.settings.json_body_limit
    body = await read_body(request, limit)
    if kind == "csv":
        return await _predict_csv(ctx, request, model, body, explain)
    limit = ctx.settings.max_batch_records
    answer = await ctx.lane.run_sized(
        _explained_size(body, model) if explain else len(body),
        v1_json.answer,
        model,
        body,
        limit,
        request.state.request_id,
        _counter(request),
        explain,
    )
    _observe(ctx, model, answer.result)
    return Response(answer.body, media_type="application/json")


async def _predict_csv(
    ctx: AppContext, request: Request, model: LoadedModel, body: bytes, explain: bool
) -> Response:
    size = _explained_size(body, model) if explain else len(body)
    limit = ctx.settings.max_batch_records
    table, output = await ctx.lane.run_sized(size, csv.answer, model, body, limit, explain)
    request.state.records = table.size
    for part in table.parts:
        _observe(ctx, model, part, count_records=False)
    ctx.metrics.observe_records(PREDICT_ROUTE, model.name, table.size)
    headers = {"X-Model-Version": model.version}
    if output is not None:
        return Response(output, media_type="text/csv", headers=headers)
    stream = iterate_in_threadpool(table.output())
    return StreamingResponse(stream, media_type="text/csv", headers=headers)


# Plain routes do not get the router's prefix, so the full path is given.
router.add_route(PREDICT_ROUTE, predict, methods=["POST"], include_in_schema=False)


def _explained_size(body: bytes, model: LoadedModel) -> int:
    """The work of an explained body, for the lane: each record runs once per feature, and once."""
    return len(body) * (len(model.manifest.features) + 1)


def _counter(request: Request) -> Callable[[int], None]:
    """Tells the access log how many records the body holds, also when one of them is bad."""

    def count(records: int) -> None:
        request.state.records = records

    return count


def _observe(
    ctx: AppContext, model: LoadedModel, result: Result, count_records: bool = True
) -> None:
    if count_records:
        ctx.metrics.observe_records(PREDICT_ROUTE, model.name, result.batch.size)
    batch = result.batch
    ctx.metrics.observe_predictions(model, batch, result.prediction, result.drift)
