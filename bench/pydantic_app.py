"""The pydantic-per-record approach: what a minimal FastAPI endpoint looks like when each record
is a pydantic model (issue 5's reference for the 10,000-record target: "5x" this).

The record model is built from the churn manifest (types, bounds, categories), the body is
`{"records": list[Record]}` validated by FastAPI, the columns are built record by record, then
one `session.run`. No metrics, no logging, no out-of-range flags: less work than the service.
Run by uvicorn like the service; `BENCH_MODEL_DIR` names the model version folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field, StrictBool, create_model

from service.manifest import Feature, Manifest

FOLDER = Path(os.environ.get("BENCH_MODEL_DIR", "models/churn"))
MANIFEST = Manifest.load(FOLDER)
options = ort.SessionOptions()
options.intra_op_num_threads = 1
options.inter_op_num_threads = 1
SESSION = ort.InferenceSession(str(FOLDER / MANIFEST.onnx.file), options)


def _field(feature: Feature) -> Any:
    if feature.type == "category":
        return Literal[tuple(feature.categories or [])]
    if feature.type == "bool":
        return StrictBool
    kind = int if feature.type == "int" else float
    return Annotated[kind, Field(ge=feature.min, le=feature.max, allow_inf_nan=False)]


Record = create_model(  # type: ignore[call-overload]
    "Record",
    __config__=ConfigDict(extra="forbid"),
    **{f.name: (_field(f), ...) for f in MANIFEST.features},
)


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    records: Annotated[list[Record], Field(min_length=1, max_length=10_000)]


app = FastAPI()


@app.post("/v1/models/{task}/predict")
def predict(task: str, body: Body) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    for feature in MANIFEST.features:
        values = [getattr(record, feature.name) for record in body.records]
        if feature.type == "category":
            inputs[feature.name] = np.array(values, dtype=object).reshape(-1, 1)
        else:
            inputs[feature.name] = np.array(values, dtype=np.float32).reshape(-1, 1)
    labels, probabilities = SESSION.run(None, inputs)[:2]
    return {
        "predictions": [
            {"label": MANIFEST.labels[int(label)], "probability": float(row.max())}
            for label, row in zip(labels.tolist(), probabilities, strict=True)
        ]
    }


@app.get("/health")
async def health() -> dict[str, bool]:
    return {"ok": True}
