"""The web page: its static files, the model card data and the report plots of served versions.

Nothing from a URL is ever joined into a file path: static files and plot names are looked up in
fixed tables, and plots are read only from the folder of the version the registry has loaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import Response

from service.api.context import context, json_response
from service.model import LoadedModel

# The report plots training writes for every version, in the order the card shows them.
PLOTS: dict[str, str] = {
    "loss_curve.png": "Loss curve (training loss and validation score per epoch)",
    "roc.png": "ROC curve",
    "precision_recall.png": "Precision-recall curve",
    "confusion_matrix.png": "Confusion matrix",  # + the sample it counts (plot_title)
    "calibration.png": "Calibration: predicted probability against observed frequency",
}
REPORT_FOLDER = "report"
# What the card shows of every feature, and of each one that may be missing.
CARD_FEATURE_FIELDS = {"name", "label", "type", "unit", "min", "max", "categories"}
CARD_NULLABLE_FIELDS = {
    "name",
    "label",
    "type",
    "unit",
    "impute",
    "impute_value",
    "train_missing_rate",
}


def model_card(model: LoadedModel) -> dict[str, Any]:
    """Version, provenance, threshold, the features (display label beside the name), those that
    may be missing (how each is imputed, how often it was missing in training), metrics (and the
    Bayes-optimal ones) and the plots."""
    manifest = model.manifest
    return {
        "name": manifest.name,
        "title": manifest.title,
        "description": manifest.description,
        "version": manifest.version,
        "created_at": manifest.created_at.isoformat(),
        "loaded_at": model.loaded_at.isoformat(),
        "kind": manifest.kind,
        "target": manifest.target,
        "labels": manifest.labels,
        "positive_label": manifest.positive_label,
        "threshold": manifest.threshold,
        "threshold_criterion": manifest.params.get("threshold_criterion"),
        "data": manifest.data.model_dump(mode="json", exclude={"sha256"}),
        "metrics": manifest.metrics.model_dump(mode="json"),
        "holdout_metrics": (
            manifest.holdout_metrics.model_dump(mode="json") if manifest.holdout_metrics else None
        ),
        "parity_max_abs_diff": manifest.parity_max_abs_diff,
        "features": [
            f.model_dump(mode="json", include=CARD_FEATURE_FIELDS) for f in manifest.features
        ],
        "nullable": [
            f.model_dump(mode="json", include=CARD_NULLABLE_FIELDS)
            for f in manifest.features
            if f.nullable
        ],
        "plots": [
            {"file": name, "title": plot_title(model, name), "url": plot_url(model, name)}
            for name in PLOTS
            if (model.path / REPORT_FOLDER / name).is_file()
        ],
    }


def plot_title(model: LoadedModel, name: str) -> str:
    """The plot's caption; the confusion matrix names the rows it counts (the plots show the
    manifest's primary sample: the 20,000 fresh rows of a generated task, else the test split)."""
    if name != "confusion_matrix.png":
        return PLOTS[name]
    metrics = model.manifest.metrics
    return f"{PLOTS[name]} on the {metrics.rows:,} rows of the {metrics.sample}"


def plot_url(model: LoadedModel, name: str) -> str:
    """Versioned, so a browser may cache a plot for good: a version folder never changes."""
    return f"/web/models/{model.name}/versions/{model.version}/report/{name}"


WEB_DIR = Path(__file__).resolve().parent.parent / "web"
STATIC_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}
# No inline script or style anywhere, so the policy can forbid both; the page talks only to us.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
STATIC_PATHS = {name: WEB_DIR / name for name in STATIC_TYPES}
NO_CACHE = "no-cache"
FOREVER = "public, max-age=31536000, immutable"

router = APIRouter(include_in_schema=False)


@router.get("/")
async def index() -> Response:
    """The page itself; every model is chosen and described from the API at run time."""
    return _static("index.html")


@router.get("/web/{name}")
async def static_file(name: str) -> Response:
    if name not in STATIC_TYPES:
        raise HTTPException(404)
    return _static(name)


@router.get("/web/models/{task}/card")
async def card(task: str, request: Request) -> Response:
    """The model card data of the served version (404 unknown, 503 not loaded)."""
    model = context(request).registry.get(task)
    content = await run_in_threadpool(model_card, model)
    return json_response(content, headers={**SECURITY_HEADERS, "Cache-Control": NO_CACHE})


@router.get("/web/models/{task}/versions/{version}/report/{name}")
async def report_plot(task: str, version: str, name: str, request: Request) -> Response:
    """A report plot of the version being served; any other version or file name is a 404."""
    model = context(request).registry.get(task)
    file = next((plot for plot in PLOTS if plot == name), None)
    if file is None or version != model.version:
        raise HTTPException(404)
    path = model.path / REPORT_FOLDER / file
    try:
        content = await run_in_threadpool(path.read_bytes)
    except OSError as exc:
        raise HTTPException(404) from exc
    headers = {**SECURITY_HEADERS, "Cache-Control": FOREVER}
    return Response(content, media_type="image/png", headers=headers)


def _static(name: str) -> Response:
    """Small files read per request, so an edited page shows without a restart."""
    try:
        content = STATIC_PATHS[name].read_bytes()
    except OSError as exc:
        raise HTTPException(404) from exc
    headers = {**SECURITY_HEADERS, "Cache-Control": NO_CACHE}
    return Response(content, media_type=STATIC_TYPES[name], headers=headers)
