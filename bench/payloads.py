"""Request bodies for every case, written once per run from the churn generator's records.

The records come from the same seeded generator training uses, so every server sees the same,
valid, realistic values; the bodies are files because wrk's Lua script reads its body from disk.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from service.manifest import Manifest
from training.export import json_scalar
from training.spec import load_task
from training.train import TrainOptions, load_data

TASK = "churn"
RECORDS_SEED = 7
JSON = "application/json"
CSV = "text/csv"
GRPC = "application/grpc"


@dataclass(frozen=True)
class Body:
    """One request body on disk, how many records it holds, and its content type."""

    path: Path
    records: int
    content_type: str


def churn_records(manifest: Manifest, count: int) -> list[dict[str, Any]]:
    """`count` generated customers as v1 records (ints as ints, bools as true/false)."""
    spec = load_task(TASK)
    data = load_data(spec, TrainOptions(rows=count, seed=RECORDS_SEED))
    frame = data.X
    records: list[dict[str, Any]] = []
    for row in frame.itertuples(index=False):
        values = dict(zip(frame.columns, row, strict=True))
        records.append({f.name: json_scalar(f.type, values[f.name]) for f in manifest.features})
    return records


def v1_json(records: list[dict[str, Any]]) -> bytes:
    return orjson.dumps({"records": records})


def v1_csv(records: list[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    names = list(records[0])
    writer.writerow(names)
    writer.writerows([_csv_cell(record[name]) for name in names] for record in records)
    return out.getvalue().encode()


def v2_tensors(
    manifest: Manifest, records: list[dict[str, Any]], for_sklearn: bool = False
) -> bytes:
    """Columnar V2: one tensor per feature, shape [n]; numbers as FP64, categories as BYTES.

    MLServer's scikit-learn runtime needs the pandas codec (`content_type: pd`) to hand the
    named columns to the pipeline, and `predict_proba` to return what the others return.
    """
    inputs = []
    for feature in manifest.features:
        column = [record[feature.name] for record in records]
        if feature.type == "category":
            tensor: dict[str, Any] = {"name": feature.name, "datatype": "BYTES", "data": column}
            if for_sklearn:
                tensor["parameters"] = {"content_type": "str"}
        else:
            data = [float(value) for value in column]
            tensor = {"name": feature.name, "datatype": "FP64", "data": data}
        tensor["shape"] = [len(records)]
        inputs.append(tensor)
    payload: dict[str, Any] = {"inputs": inputs}
    if for_sklearn:
        payload["parameters"] = {"content_type": "pd"}
        payload["outputs"] = [{"name": "predict_proba"}]
    return orjson.dumps(payload)


def grpc_request(manifest: Manifest, records: list[dict[str, Any]], model_name: str) -> bytes:
    """A serialized `ModelInferRequest` as tritonclient.grpc sends one by default: raw contents,
    one [n, 1] tensor per feature with the datatype the model's metadata declares (FP32 for
    numbers and bools, BYTES for categories), all outputs.

    tritonclient's messages are imported here only: they register the `inference.*` protobuf
    names that `service.protocol` registers too, and a process can hold only one of the two.
    """
    from tritonclient.grpc import InferInput
    from tritonclient.grpc._utils import _get_inference_request  # what client.infer sends

    inputs = []
    for feature in manifest.features:
        column = [record[feature.name] for record in records]
        if feature.type == "category":
            array = np.array([str(value).encode() for value in column], dtype=np.object_)
            datatype = "BYTES"
        else:
            array, datatype = np.array(column, dtype=np.float32), "FP32"
        tensor = InferInput(feature.name, [len(records), 1], datatype)
        tensor.set_data_from_numpy(array.reshape(-1, 1))
        inputs.append(tensor)
    request = _get_inference_request(
        model_name, inputs, "", "", None, 0, False, False, 0, None, None
    )
    serialized: bytes = request.SerializeToString()
    return serialized


def write_bodies(
    manifest: Manifest,
    folder: Path,
    sizes: list[int],
    grpc_models: dict[str, str] | None = None,
) -> dict[str, Body]:
    """Every body the cases use, keyed `<kind>-<records>` (kinds: v1, csv, v2, v2sk, and one
    serialized gRPC request per kind of `grpc_models`, which maps a kind to a model name)."""
    folder.mkdir(parents=True, exist_ok=True)
    pool = churn_records(manifest, max(sizes))
    bodies: dict[str, Body] = {}
    for size in sizes:
        records = pool[:size]
        made = {
            "v1": (v1_json(records), JSON),
            "csv": (v1_csv(records), CSV),
            "v2": (v2_tensors(manifest, records), JSON),
            "v2sk": (v2_tensors(manifest, records, for_sklearn=True), JSON),
        }
        for kind, (content, content_type) in made.items():
            path = folder / f"{kind}-{size}.body"
            path.write_bytes(content)
            bodies[f"{kind}-{size}"] = Body(path, size, content_type)
        for kind, model_name in (grpc_models or {}).items():
            path = folder / f"{kind}-{size}.body"
            path.write_bytes(grpc_request(manifest, records, model_name))
            bodies[f"{kind}-{size}"] = Body(path, size, GRPC)
    return bodies


def _csv_cell(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)
