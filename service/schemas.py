"""HTTP envelopes (pydantic, for the docs) and JSON views of served models, from manifests."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from service.model import LoadedModel
from service.registry import TaskStatus

PUBLIC_MANIFEST_FIELDS = {
    "name",
    "version",
    "created_at",
    "title",
    "description",
    "kind",
    "target",
    "labels",
    "positive_label",
    "threshold",
    "features",
    "metrics",
    "holdout_metrics",
    "onnx",
    "parity_max_abs_diff",
    "examples",
    "library_versions",
}


class PredictRequest(BaseModel):
    """A batch of records; each record maps every feature name of the model to its value."""

    records: list[dict[str, Any]] = Field(
        min_length=1, description="1 to PREDICT_MAX_BATCH_RECORDS records."
    )


class PredictionOut(BaseModel):
    label: str = Field(description="Predicted class label.")
    probability: float = Field(
        description="Binary: probability of the positive class (whatever the label); "
        "multi-class: probability of the predicted label (the largest)."
    )
    probabilities: dict[str, float] = Field(description="Probability of every class label.")
    out_of_range: list[str] = Field(
        description="Features whose value lies outside the range seen in training (extrapolation)."
    )


class PredictResponse(BaseModel):
    model: str
    version: str
    request_id: str
    predictions: list[PredictionOut]


class Tensor(BaseModel):
    """An Open Inference Protocol tensor: row-major `data` (flat or nested) of the given shape."""

    name: str
    shape: list[int]
    datatype: str = Field(description="FP32, FP64, INT8-64, UINT8-64, BOOL or BYTES.")
    data: list[Any]
    parameters: dict[str, Any] | None = None


class RequestedOutput(BaseModel):
    name: str = Field(description="label or probabilities")
    parameters: dict[str, Any] | None = None


class InferRequest(BaseModel):
    """One input tensor per feature ([n] or [n, 1]); outputs default to both."""

    id: str | None = None
    inputs: list[Tensor]
    outputs: list[RequestedOutput] | None = None
    parameters: dict[str, Any] | None = None


class InferResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[Tensor]


def model_summary(status: TaskStatus, model: LoadedModel | None) -> dict[str, Any]:
    """One line of GET /v1/models: what is served and whether it is ready."""
    manifest = model.manifest if model else None
    return {
        "name": status.name,
        "state": status.state,
        "version": status.version,
        "title": manifest.title if manifest else None,
        "kind": manifest.kind if manifest else None,
        "labels": manifest.labels if manifest else None,
        "created_at": manifest.created_at.isoformat() if manifest else None,
        "predict": f"/v1/models/{status.name}/predict",
        "last_error": status.error,
    }


def model_details(model: LoadedModel) -> dict[str, Any]:
    """GET /v1/models/{task}: the manifest's public contract (not the training data's source)."""
    details: dict[str, Any] = model.manifest.model_dump(mode="json", include=PUBLIC_MANIFEST_FIELDS)
    details["loaded_at"] = model.loaded_at.isoformat()
    return details
