"""OpenAPI with one documented predict path per served model, its record schema and examples;
the HTTP envelopes (pydantic, for the docs) and the JSON views of served models it documents."""

from __future__ import annotations

import csv
import io
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field

from service.codecs.probabilities import FLAG_SEPARATOR
from service.manifest import MISSING_CATEGORY, Feature, Manifest
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
    "na_values",
    "library_versions",
}


class PredictRequest(BaseModel):
    """A batch of records; each record maps every feature name of the model to its value (a
    nullable feature's may be null or left out)."""

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
    imputed: list[str] = Field(
        description="Nullable features the record left missing (null or absent): the model used "
        "the value it learned in training instead (see the model's features)."
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
    data: list[Any] = Field(
        description="Row-major elements. A null element is a missing value, allowed where the "
        "model's metadata gives the input `parameters.nullable: true` (BYTES inputs also take an "
        "empty string); the model then uses `parameters.impute_value`."
    )
    parameters: dict[str, Any] | None = None


class RequestedOutput(BaseModel):
    name: str = Field(description="label, probabilities, or (a model with nullable inputs) imputed")
    parameters: dict[str, Any] | None = None


class InferRequest(BaseModel):
    """One input tensor per feature ([n] or [n, 1]); outputs default to all the model's."""

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
        "nullable": [f.name for f in manifest.features if f.nullable] if manifest else None,
        "created_at": manifest.created_at.isoformat() if manifest else None,
        "predict": f"/v1/models/{status.name}/predict",
        "last_error": status.error,
    }


def model_details(model: LoadedModel) -> dict[str, Any]:
    """GET /v1/models/{task}: the manifest's public contract (not the training data's source)."""
    details: dict[str, Any] = model.manifest.model_dump(mode="json", include=PUBLIC_MANIFEST_FIELDS)
    details["loaded_at"] = model.loaded_at.isoformat()
    return details


REF = "#/components/schemas/{model}"
JSON_TYPES = {"float": "number", "int": "integer", "bool": "boolean", "category": "string"}
ERROR_RESPONSES: dict[str, Any] = {
    "400": {"description": "Malformed JSON or CSV"},
    "404": {"description": "Unknown model"},
    "413": {"description": "Body or batch over the limit"},
    "415": {"description": "Neither application/json nor text/csv"},
    "422": {
        "description": "Records break the contract: every problem of every record, by record, "
        'in `{"detail": [{"loc": [body, records, i, field], "msg", "type", "input"}]}` (CSV: '
        "[body, rows, i, column]); at most 100 listed, the others counted in `not_listed`"
    },
    "503": {"description": "The model is not loaded"},
}
# Answers every prediction route may give besides its own: keys and the body deadline.
GUARD_RESPONSES: dict[str, Any] = {
    "401": {"description": "No API key (only when PREDICT_API_KEYS is set)"},
    "403": {"description": "Wrong API key (only when PREDICT_API_KEYS is set)"},
    "408": {"description": "The body did not arrive within PREDICT_BODY_TIMEOUT_SECONDS"},
}
MODEL_LOOKUP: dict[str, Any] = {
    "404": {"description": "Unknown model (or version)"},
    "503": {"description": "The model is not loaded"},
}
# The routes declared by decorators return plain Responses, so FastAPI documents only their 200;
# these are the other answers they give (schemathesis checks that every status is documented).
ROUTE_RESPONSES: dict[tuple[str, str], dict[str, Any]] = {
    ("/readyz", "get"): {"503": {"description": "Some task serves no verified version"}},
    ("/v2/health/ready", "get"): {"503": {"description": "Not ready"}},
    ("/v1/models/{task}", "get"): MODEL_LOOKUP,
    ("/v1/models/{task}/drift", "get"): {
        **MODEL_LOOKUP,
        "409": {"description": "The served version has no reference distributions (retrain it)"},
    },
    ("/v2/models/{task}", "get"): MODEL_LOOKUP,
    ("/v2/models/{task}/ready", "get"): MODEL_LOOKUP,
    ("/v2/models/{task}/versions/{model_version}", "get"): MODEL_LOOKUP,
    ("/v2/models/{task}/versions/{model_version}/ready", "get"): MODEL_LOOKUP,
    ("/admin/reload", "post"): {
        "401": {"description": "No bearer token"},
        "403": {"description": "Wrong token"},
        "404": {"description": "Admin routes are off (PREDICT_ADMIN_TOKEN unset)"},
    },
}
PLAIN_TEXT_ROUTES = {("/metrics", "get"): "text/plain"}


def build_openapi(app: FastAPI, models: list[LoadedModel], max_records: int) -> dict[str, Any]:
    """FastAPI's schema plus, per model, `POST /v1/models/<name>/predict` with its own schemas."""
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for envelope in (PredictRequest, PredictResponse, InferRequest, InferResponse):
        envelope_schema = envelope.model_json_schema(ref_template=REF)
        components.update(envelope_schema.pop("$defs", {}))
        components[envelope.__name__] = envelope_schema
    _document_answers(schema["paths"])
    schema["paths"]["/v1/models/{task}/predict"] = {"post": _generic_predict()}
    for path in ("/v2/models/{task}/infer", "/v2/models/{task}/versions/{model_version}/infer"):
        schema["paths"][path] = {"post": _infer(path)}
    for model in models:
        manifest = model.manifest
        prefix = "".join(part.capitalize() for part in manifest.name.split("_"))
        components[f"{prefix}Record"] = record_schema(manifest)
        components[f"{prefix}PredictRequest"] = {
            "title": f"{prefix}PredictRequest",
            "type": "object",
            "properties": {
                "records": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": max_records,
                    "items": {"$ref": REF.format(model=f"{prefix}Record")},
                }
            },
            "required": ["records"],
            "additionalProperties": False,
        }
        components[f"{prefix}PredictResponse"] = _response_schema(manifest)
        schema["paths"][f"/v1/models/{manifest.name}/predict"] = {
            "post": _operation(manifest, prefix)
        }
    return schema


def _document_answers(paths: dict[str, Any]) -> None:
    """Add the statuses and content types the decorated routes really answer with."""
    for (path, method), responses in ROUTE_RESPONSES.items():
        operation = paths.get(path, {}).get(method)
        if operation is not None:
            operation["responses"].update(responses)
    for (path, method), media_type in PLAIN_TEXT_ROUTES.items():
        operation = paths.get(path, {}).get(method)
        if operation is not None:
            ok = operation["responses"]["200"]
            ok["content"] = {media_type: {"schema": {"type": "string"}}}


def _generic_predict() -> dict[str, Any]:
    """The route every model shares; the per-model paths below carry schemas and examples."""
    return {
        "tags": ["v1"],
        "summary": "Predict with any served model",
        "description": 'JSON `{"records": [...]}` or a CSV with a header (feature names or '
        "aliases, any case; other columns are passed through). See the per-model paths for "
        "each model's record schema.",
        "operationId": "predict",
        "parameters": [_path_parameter("task"), EXPLAIN_PARAMETER],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": REF.format(model="PredictRequest")}},
                "text/csv": {"schema": {"type": "string"}},
            },
        },
        "responses": {
            "200": {
                "description": "One prediction per record, in order (CSV in, CSV out).",
                "content": {
                    "application/json": {"schema": {"$ref": REF.format(model="PredictResponse")}},
                    "text/csv": {"schema": {"type": "string"}},
                },
            },
            **ERROR_RESPONSES,
            **GUARD_RESPONSES,
        },
    }


INFER_NOTE = (
    "One tensor per input, as the model's metadata lists them (`GET /v2/models/{task}`). An "
    "input whose metadata `parameters` say `nullable: true` may hold `null` elements (a BYTES "
    "input also an empty string): the value is missing and the model uses "
    "`parameters.impute_value`, learned by `parameters.impute` from the training data. A null "
    "in any other input is a 400 naming the input and element. Such a model has a third output, "
    "`imputed` (BYTES [n]): per row the inputs that were missing, joined by "
    f"`{FLAG_SEPARATOR}` (an empty string when none); it is returned when `outputs` is absent or "
    'empty, or when requested by name. The request parameter `"parameters": {"explain": '
    "true}` adds the output `explanation` (FP32 [n, m], inputs in the model's order): per row "
    "and input, the change in P(positive label) (multi-class: P(predicted label)) when that "
    "input is set to its training reference value (occlusion, not SHAP)."
)


def _infer(path: str) -> dict[str, Any]:
    parameters = [_path_parameter("task")]
    if "{model_version}" in path:
        parameters.append(_path_parameter("model_version"))
    return {
        "tags": ["v2 (Open Inference Protocol)"],
        "summary": "Infer (Open Inference Protocol)",
        "operationId": "infer_version" if "{model_version}" in path else "infer",
        "parameters": parameters,
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": REF.format(model="InferRequest")}}},
        },
        "description": INFER_NOTE,
        "responses": {
            "200": {
                "description": "label (BYTES [n]), probabilities (FP32 [n, k]) and, for a model "
                "with nullable inputs, imputed (BYTES [n])",
                "content": {
                    "application/json": {"schema": {"$ref": REF.format(model="InferResponse")}}
                },
            },
            "400": {
                "description": 'Bad tensors: {"error": "..."}; problems with the inputs (unknown, '
                "missing or malformed tensors, elements of the wrong type, values breaking a rule)"
                ' also as `"details": [{"input", "element", "type", "msg", "value"}]`, at most '
                "100, the others counted in `not_listed`"
            },
            "404": {"description": "Unknown model or version"},
            "413": {"description": "Body or batch over the limit"},
            "415": {"description": "Not application/json"},
            "503": {"description": "Model not ready"},
            **GUARD_RESPONSES,
        },
    }


EXPLAIN_PARAMETER: dict[str, Any] = {
    "name": "explain",
    "in": "query",
    "required": False,
    "schema": {"type": "boolean", "default": False},
    "description": "Explain each prediction by occlusion: for each feature, the change in "
    "P(positive label) (multi-class: P(predicted label)) when that feature is replaced by its "
    "training reference value (median, 0/1 for a bool, most frequent category); positive means "
    "the value raised the probability. Not SHAP: contributions need not sum to anything. JSON "
    "answers get `explanation` per prediction, largest first; CSV answers get one "
    "`contribution_<feature>` column per feature. Each record runs once per feature more, so "
    "fewer records are taken per request (a 413 names the limit); a version trained before "
    "explanations has no reference values (422). `true` or `false` (or 1/0).",
}
EXPLANATION_ITEM: dict[str, Any] = {
    "type": "object",
    "properties": {
        "feature": {"type": "string", "description": "The feature's name"},
        "label": {"type": "string", "description": "Its display label"},
        "value": {"description": "The value sent (null when missing, then imputed)"},
        "reference": {"description": "The training reference value it is compared with"},
        "contribution": {
            "type": "number",
            "description": "P(record) - P(record with this feature at its reference)",
        },
    },
}


def _path_parameter(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def record_schema(manifest: Manifest) -> dict[str, Any]:
    """JSON Schema of one record: labels, types, domains, units and descriptions, from the
    manifest."""
    schema: dict[str, Any] = {
        "title": f"{manifest.title or manifest.name} record",
        "type": "object",
        "properties": {feature.name: _property(feature) for feature in manifest.features},
        "required": [feature.name for feature in manifest.features if not feature.nullable],
        "additionalProperties": False,
    }
    if manifest.examples:
        schema["example"] = manifest.examples[0].record
    return schema


def _property(feature: Feature) -> dict[str, Any]:
    """One feature's JSON Schema: its display label as the title, its rules, a description."""
    prop: dict[str, Any] = {"type": JSON_TYPES[feature.type], "title": feature.label}
    if feature.min is not None:
        prop["minimum"] = feature.min
    if feature.max is not None:
        prop["maximum"] = feature.max
    if feature.categories:
        prop["enum"] = feature.categories
    notes = [feature.description]
    if feature.unit:
        notes.append(f"Unit: {feature.unit}.")
        prop["x-unit"] = feature.unit
    if feature.train_min is not None and feature.train_max is not None:
        notes.append(f"Seen in training: {feature.train_min:g} to {feature.train_max:g}.")
    if feature.aliases:
        notes.append(f"CSV aliases: {', '.join(feature.aliases)}.")
    if feature.nullable:
        prop["type"] = [prop["type"], "null"]
        if feature.categories:  # an empty string is a missing category too
            prop["enum"] = [*feature.categories, MISSING_CATEGORY, None]
        prop["x-impute"] = feature.impute
        prop["x-impute-value"] = feature.impute_value
        notes.append(f"{_missing_rule(feature)}.")
    prop["description"] = " ".join(note for note in notes if note)
    return prop


IMPUTE_WORDS = {
    "median": "the median of the training data",
    "mean": "the mean of the training data",
    "most_frequent": "the most frequent value in training",
    "constant": "a constant",
}


def _missing_rule(feature: Feature) -> str:
    """What a nullable feature's missing value becomes, in words."""
    words = IMPUTE_WORDS.get(feature.impute or "", feature.impute or "")
    rate = f"; missing in {feature.train_missing_rate:.1%} of the training rows"
    return f"May be null or left out: the model then uses {_impute_value(feature)} ({words}){rate}"


def _impute_value(feature: Feature) -> str:
    """The value a missing one becomes, as JSON writes it (a bool's 0 or 1 as false or true)."""
    value = feature.impute_value
    if feature.type == "bool" and isinstance(value, float | int):
        return "true" if value else "false"
    return f"{value:g}" if isinstance(value, float | int) else repr(value)


def _response_schema(manifest: Manifest) -> dict[str, Any]:
    nullable = [f.name for f in manifest.features if f.nullable]
    probabilities = {
        label: {"type": "number", "minimum": 0, "maximum": 1} for label in manifest.labels
    }
    prediction = {
        "type": "object",
        "properties": {
            "label": {"type": "string", "enum": manifest.labels},
            "probability": {"type": "number", "description": _probability_note(manifest)},
            "probabilities": {"type": "object", "properties": probabilities},
            "out_of_range": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Features outside the range seen in training.",
            },
            "imputed": {
                "type": "array",
                "items": {"type": "string", "enum": nullable} if nullable else {"type": "string"},
                "maxItems": len(nullable),
                "description": "Nullable features the record left missing (null or absent); "
                "the model used each one's impute value instead.",
            },
            "explanation": {
                "type": "array",
                "items": EXPLANATION_ITEM,
                "description": "Only with `explain=true`: one entry per feature, largest "
                "|contribution| first.",
            },
        },
    }
    return {
        "type": "object",
        "properties": {
            "model": {"type": "string"},
            "version": {"type": "string"},
            "request_id": {"type": "string"},
            "predictions": {"type": "array", "items": prediction},
        },
    }


def _operation(manifest: Manifest, prefix: str) -> dict[str, Any]:
    examples = [example.record for example in manifest.examples[:2]]
    return {
        "tags": [f"model: {manifest.name}"],
        "summary": f"Predict: {manifest.title or manifest.name} (version {manifest.version})",
        "description": _description(manifest),
        "operationId": f"predict_{manifest.name}",
        "parameters": [EXPLAIN_PARAMETER],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"$ref": REF.format(model=f"{prefix}PredictRequest")},
                    "example": {"records": examples},
                },
                "text/csv": {"schema": {"type": "string"}, "example": _csv_example(manifest)},
            },
        },
        "responses": {
            "200": {
                "description": "One prediction per record, in order (CSV in, CSV out).",
                "content": {
                    "application/json": {
                        "schema": {"$ref": REF.format(model=f"{prefix}PredictResponse")}
                    },
                    "text/csv": {"schema": {"type": "string"}},
                },
            },
            **ERROR_RESPONSES,
            **GUARD_RESPONSES,
        },
    }


def _description(manifest: Manifest) -> str:
    lines = [
        manifest.description,
        "",
        f"Labels: {', '.join(manifest.labels)}. {_probability_note(manifest)}",
        "",
    ]
    nullable = any(f.nullable for f in manifest.features)  # then a column says what a
    missing = ["if missing"] * nullable  # missing value becomes
    header = ["feature", "label", "type", "unit", "allowed", *missing, "description"]
    lines += [f"| {' | '.join(header)} |", "|" + " --- |" * len(header)]
    for f in manifest.features:
        allowed = ", ".join(f.categories) if f.categories else _domain(f)
        rule = [_if_missing(f)] * nullable
        cells = [f"`{f.name}`", f.label, f.type, f.unit, allowed, *rule, f.description]
        # A pipe or newline in free text (a label, a description) would break the table.
        cells = [cell.replace("|", "\\|").replace("\n", " ") for cell in cells]
        lines.append(f"| {' | '.join(cells)} |")
    if nullable:
        lines += [
            "",
            "A nullable feature may be `null` or left out of a record (in CSV: an empty cell or "
            f"one of {', '.join(repr(v) for v in manifest.na_values)}); the model then uses the "
            "value shown, and the prediction lists the feature in `imputed`.",
        ]
    return "\n".join(lines)


def _if_missing(feature: Feature) -> str:
    if not feature.nullable:
        return "required"
    return f"{feature.impute}: {_impute_value(feature)}"


def _domain(feature: Feature) -> str:
    if feature.type == "bool":
        return "true / false"
    low = "-inf" if feature.min is None else f"{feature.min:g}"
    high = "inf" if feature.max is None else f"{feature.max:g}"
    return f"{low} to {high}"


def _probability_note(manifest: Manifest) -> str:
    if manifest.kind == "binary":
        return (
            f"`probability` is P({manifest.positive_label}); the label is "
            f"{manifest.positive_label!r} when it is at least {manifest.threshold:.4g}."
        )
    return "`probability` is the probability of the predicted (most probable) label."


def _csv_example(manifest: Manifest) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([f.name for f in manifest.features])
    for example in manifest.examples[:2]:
        writer.writerow([_cell(example.record.get(f.name, "")) for f in manifest.features])
    return out.getvalue()


def _cell(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
