"""The manifest.json contract between training (which writes it) and serving (which reads it).

This module must stay light (pydantic and the standard library only): the serving image imports it,
and so does the training package, so the two sides cannot drift apart.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from service.layout import UnsafeFile, is_file_name, open_artefact

MANIFEST_FILE = "manifest.json"
MANIFEST_MAX_BYTES = 16 * 1024 * 1024
SCHEMA_VERSION = 1

FeatureType = Literal["float", "int", "bool", "category"]
TaskKind = Literal["binary", "multiclass"]
Scalar = float | int | bool | str


class ManifestError(Exception):
    """A manifest file is missing, unreadable or does not follow the contract."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.reason = reason  # without the path, for messages that name the version instead


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Feature(_Frozen):
    """One input column: its name is also the ONNX input name and the JSON key."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    type: FeatureType
    unit: str = ""
    description: str = ""
    min: float | None = None
    max: float | None = None
    categories: list[str] | None = None
    aliases: list[str] = []
    train_min: float | None = None
    train_max: float | None = None

    @model_validator(mode="after")
    def _domain_fits_type(self) -> Feature:
        if self.type == "category":
            if not self.categories:
                raise ValueError(f"feature '{self.name}': a category feature needs categories")
        elif self.categories is not None:
            raise ValueError(f"feature '{self.name}': only category features have categories")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"feature '{self.name}': min {self.min} > max {self.max}")
        return self

    @property
    def onnx_type(self) -> Literal["float", "string"]:
        """Numbers (int and bool included) travel as float32; categories as strings."""
        return "string" if self.type == "category" else "float"


class OnnxInfo(_Frozen):
    """Where the graph is and what it takes and gives."""

    file: str = "model.onnx"
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    opset: int
    inputs: list[str]
    outputs: list[str]

    @field_validator("file")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        """The model must sit in the version folder: no path, so no way out of it."""
        if not is_file_name(value):
            raise ValueError("must be a plain file name in the version folder (no path)")
        return value


class Evaluation(_Frozen):
    """Metrics of one model on one sample, and the Bayes-optimal ones where the truth is known."""

    sample: str
    rows: int
    roc_auc: float
    accuracy: float
    precision: float
    recall: float
    f1: float
    log_loss: float
    brier: float
    ece: float
    confusion_matrix: list[list[int]]
    bayes_accuracy: float | None = None
    bayes_roc_auc: float | None = None


class Example(_Frozen):
    """A test record and the probabilities onnxruntime gave for it at export time."""

    record: dict[str, Scalar]
    probabilities: list[float]


class DataInfo(_Frozen):
    """Where the training data came from, so a version can be traced and reproduced."""

    source: str
    sha256: str
    rows: int
    train_rows: int
    validation_rows: int
    test_rows: int
    seed: int


class Manifest(_Frozen):
    """Everything the service, the docs and the web page need to know about one model version."""

    schema_version: int = SCHEMA_VERSION
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    version: str
    created_at: datetime
    title: str = ""
    description: str = ""
    kind: TaskKind
    target: str
    labels: list[str] = Field(min_length=2)
    positive_label: str | None = None
    threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    features: list[Feature] = Field(min_length=1)
    onnx: OnnxInfo
    metrics: Evaluation
    holdout_metrics: Evaluation | None = None
    data: DataInfo
    parity_max_abs_diff: float
    examples: list[Example] = []
    library_versions: dict[str, str] = {}
    params: dict[str, Any] = {}

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        if self.kind == "binary":
            if len(self.labels) != 2:
                raise ValueError(f"a binary task has 2 labels, got {self.labels}")
            if self.positive_label != self.labels[1]:
                raise ValueError(
                    f"positive_label {self.positive_label!r} must be the second label {self.labels}"
                )
        if len(set(self.labels)) != len(self.labels):  # each is a key of the JSON answer
            raise ValueError(f"labels must be unique, got {self.labels}")
        names = [f.name for f in self.features]
        if len(set(names)) != len(names):
            raise ValueError("feature names must be unique")
        if self.onnx.inputs != names:
            raise ValueError(f"onnx inputs {self.onnx.inputs} != features {names}")
        return self

    @property
    def positive_index(self) -> int:
        """Column of the positive class in the probabilities tensor (binary tasks)."""
        return 1

    def feature(self, name: str) -> Feature:
        for feature in self.features:
            if feature.name == name:
                return feature
        raise KeyError(name)

    @classmethod
    def load(cls, folder: Path) -> Manifest:
        """Read and validate `folder/manifest.json`; any problem is a ManifestError.

        The file is read confined to the folder and bounded; the message names the keys that
        are wrong but not their values, which could be anything (it is shown on /readyz).
        """
        path = folder / MANIFEST_FILE
        try:
            with open_artefact(folder, MANIFEST_FILE, MANIFEST_MAX_BYTES) as handle:
                data = handle.read(MANIFEST_MAX_BYTES + 1)
        except UnsafeFile as exc:
            raise ManifestError(path, str(exc)) from exc
        except OSError as exc:
            raise ManifestError(path, f"cannot read ({exc.strerror})") from exc
        if len(data) > MANIFEST_MAX_BYTES:
            raise ManifestError(path, f"larger than {MANIFEST_MAX_BYTES} bytes")
        try:
            return cls.model_validate_json(data)
        except ValidationError as exc:
            raise ManifestError(path, f"not a valid manifest: {_summary(exc)}") from exc

    def dump(self, folder: Path) -> Path:
        """Write the manifest beside the model; used by training only."""
        path = folder / MANIFEST_FILE
        path.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")
        return path


@lru_cache(maxsize=4096)
def normalize_header(header: str) -> str:
    """How a CSV header is matched to a feature name or alias, the same in training and serving.

    Case, spaces and punctuation are ignored and camelCase is split, so `Num Of Products`,
    `num_of_products` and `NumOfProducts` all match. Cached: every CSV request matches its
    header against every name and alias, two regular expressions each.
    """
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", header.strip())
    return re.sub(r"[^a-z0-9]+", "_", spaced.lower()).strip("_")


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks so a large model never sits twice in memory."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _summary(exc: ValidationError) -> str:
    """Each problem as `key.path: message`, without the offending value."""
    problems = [
        f"{'.'.join(str(part) for part in error['loc']) or 'manifest'}: {error['msg']}"
        for error in exc.errors(include_url=False, include_input=False)
    ]
    more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
    return "; ".join(problems[:5]) + more
