"""The contract between training (which writes it) and serving (which reads it): the registry's
on-disk layout and manifest.json.

models/<task>/<version>/model.onnx, manifest.json, report/
models/<task>/current          a text file naming the version served
models/<task>/.staging-*       a version being written; never read

This module must stay light (pydantic and the standard library only): the serving image imports it,
and so does the training package, so the two sides cannot drift apart."""

from __future__ import annotations

import hashlib
import os
import re
import stat
import unicodedata
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

POINTER_FILE = "current"
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")  # where a camelCase header splits
_SEPARATORS = re.compile(r"[\W_]+")  # anything but a letter or digit, of any script
STAGING_PREFIX = ".staging-"
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
VERSION_PATTERN = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,63}$")
FILE_PATTERN = re.compile(r"^[0-9A-Za-z_][0-9A-Za-z._-]{0,127}$")
POINTER_MAX_BYTES = 256
# What loading one version may cost at most, unless the service's settings say otherwise: the
# model file's size (each worker holds it in memory while loading) and the time to load it and
# pass its self-check.
MAX_MODEL_BYTES = 256 * 1024 * 1024
LOAD_TIMEOUT_SECONDS = 30.0


class PointerError(Exception):
    """A task's `current` pointer is missing, unreadable or names no usable version.

    The message names the kind of problem, never the pointer's content or a path: it is shown
    on /readyz, which anyone may read.
    """


class UnsafeFile(Exception):
    """A file a manifest names is not a plain, regular file inside its version folder."""


class FileTooLarge(UnsafeFile):
    """A registry file is larger than the cap its reader set."""


class _OverCap(OSError):
    """What `_open_regular` raises for a file over its cap (an OSError, as its other refusals)."""


def is_task_name(name: str) -> bool:
    """True for a string that may name a task (and so a folder): snake_case, no path characters."""
    return NAME_PATTERN.fullmatch(name) is not None


def is_version_name(name: str) -> bool:
    """True for a string that may name a version folder (no separators, no leading dot)."""
    return VERSION_PATTERN.fullmatch(name) is not None


def is_file_name(name: str) -> bool:
    """True for a plain file name: no separator, not `.` or `..`, no NUL, not hidden."""
    return FILE_PATTERN.fullmatch(name) is not None


def read_pointer(task_dir: Path, pointer: str = POINTER_FILE) -> str:
    """The version named by `task_dir/current`, checked to be a plain, existing version folder.

    The pointer must be a small regular file (checked before it is opened, and opened
    non-blocking): a FIFO, a device or a symlink to elsewhere is refused, never read.
    """
    path = task_dir / pointer
    try:
        info = path.lstat()
    except FileNotFoundError as exc:
        raise PointerError("pointer is missing") from exc
    except OSError as exc:
        raise PointerError(f"pointer cannot be read ({_reason(exc)})") from exc
    if not stat.S_ISREG(info.st_mode):
        raise PointerError("pointer is not a regular file")
    if info.st_size > POINTER_MAX_BYTES:
        raise PointerError(f"pointer is larger than {POINTER_MAX_BYTES} bytes")
    try:
        with _open_regular(path, POINTER_MAX_BYTES, follow=False) as handle:
            data = handle.read(POINTER_MAX_BYTES + 1)
    except OSError as exc:
        raise PointerError(f"pointer cannot be read ({_reason(exc)})") from exc
    try:
        text = data.decode("ascii").strip()
    except UnicodeDecodeError as exc:
        raise PointerError("version id invalid (not ASCII)") from exc
    if not is_version_name(text):
        raise PointerError("version id invalid (not of the form [0-9A-Za-z][0-9A-Za-z._-]*)")
    if not (task_dir / text).is_dir():
        raise PointerError(f"pointer names version {text!r}, which has no folder")
    return text


def open_artefact(folder: Path, name: str, max_bytes: int) -> BinaryIO:
    """Open the file `name` of a version folder for reading, confined and bounded.

    `name` must be a plain file name; after symlinks it must still be inside `folder`, a regular
    file (checked on the open descriptor, so it cannot be swapped in between) and at most
    `max_bytes` long. The caller still bounds its reads: the file may grow.
    """
    if not is_file_name(name):
        raise UnsafeFile("the file name is not a plain name inside the version folder")
    try:
        real = (folder / name).resolve(strict=True)
        inside = real.parent == folder.resolve(strict=True)
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
        raise UnsafeFile(f"{name}: cannot be opened ({_reason(exc)})") from exc
    if not inside:
        raise UnsafeFile(f"{name}: a symlink that leaves the version folder")
    try:
        handle = _open_regular(real, max_bytes)
    except _OverCap as exc:
        raise FileTooLarge(f"{name}: {_reason(exc)}") from exc
    except OSError as exc:
        raise UnsafeFile(f"{name}: cannot be opened ({_reason(exc)})") from exc
    return handle


def task_dirs(models_dir: Path) -> list[Path]:
    """The task folders of a registry, sorted; hidden and oddly named entries are skipped."""
    if not models_dir.is_dir():
        return []
    return sorted(p for p in models_dir.iterdir() if p.is_dir() and is_task_name(p.name))


def _open_regular(path: Path, max_bytes: int, follow: bool = True) -> BinaryIO:
    """Open non-blocking (a FIFO would block a plain open), then check what was opened."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(0, "not a regular file")
        if info.st_size > max_bytes:
            raise _OverCap(0, f"{info.st_size} bytes, over the limit of {max_bytes}")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _reason(exc: BaseException) -> str:
    """An error's reason without the paths an OSError carries."""
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return "a symlink loop" if isinstance(exc, RuntimeError) else type(exc).__name__


MANIFEST_FILE = "manifest.json"
MANIFEST_MAX_BYTES = 16 * 1024 * 1024
SCHEMA_VERSION = 1

FeatureType = Literal["float", "int", "bool", "category"]
TaskKind = Literal["binary", "multiclass"]
Scalar = float | int | bool | str
Transform = Literal["standard", "spline"]
ImputeRule = Literal["median", "mean", "most_frequent", "constant"]
# The CSV cells that mean "missing" unless a spec says otherwise (compared after stripping).
DEFAULT_NA_VALUES = ("", "NA", "N/A", "NaN", "null", "None", "?")
# How a missing value reaches the ONNX graph, which imputes it: NaN for numbers, and this for
# categories (ONNX string tensors have no null).
MISSING_CATEGORY = ""
# Short forms a feature name may use that read badly on a form, and the words they stand for.
_ABBREVIATIONS = {
    "amt": "amount",
    "avg": "average",
    "id": "ID",
    "nb": "number",
    "num": "number",
    "pct": "percent",
    "qty": "quantity",
    "yrs": "years",
}
# A unit at the end of a name is kept after these words: it is part of the meaning there
# (`num_of_products`), not a suffix (`height_cm`).
_CONNECTORS = frozenset({"a", "and", "at", "by", "for", "in", "of", "on", "or", "per", "the", "to"})


class ManifestError(Exception):
    """A manifest file is missing, unreadable or does not follow the contract."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.reason = reason  # without the path, for messages that name the version instead


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def default_label(name: str, unit: str = "") -> str:
    """A feature's display label when its spec gives none: the name in words, a unit suffix the
    page shows beside it dropped, a few abbreviations spelled out (`height_cm`, unit cm: `Height`;
    `num_of_products`, unit products: `Number of products`)."""
    words = [word for word in name.split("_") if word]
    suffix = [word for word in _SEPARATORS.split(unit.casefold()) if word]
    kept = len(words) - len(suffix)
    if suffix and kept > 0 and words[kept:] == suffix and words[kept - 1] not in _CONNECTORS:
        words = words[:kept]
    text = " ".join(_ABBREVIATIONS.get(word, word) for word in words) or name
    return text[:1].upper() + text[1:]


MISSING_BIN = "missing"
OTHER_BIN = "other"


class Distribution(_Frozen):
    """Where the training rows fell, for drift: bins in order, each with its share of the rows.

    Numbers: `edges` are the inner bin edges, increasing; bin 0 holds v <= edges[0], bin i
    edges[i-1] < v <= edges[i], and bin len(edges) v > edges[-1] (numpy's
    `searchsorted(edges, v, side="left")`). Categories: one bin per name in `categories`, then
    OTHER_BIN (a value training never saw). Either way the last bin is MISSING_BIN (a nullable
    feature's missing value; share 0 for a required one). `bins` names each bin, in order: the
    `bin` label of the drift counters and what the drift view shows.
    """

    bins: list[str] = Field(min_length=2)
    edges: list[float] = []
    categories: list[str] = []
    shares: list[float]

    @model_validator(mode="after")
    def _consistent(self) -> Distribution:
        numbered = len(self.edges) + 1 if not self.categories else len(self.categories) + 1
        if self.edges and self.categories:
            raise ValueError("a distribution has edges (numbers) or categories, not both")
        if len(self.bins) != numbered + 1 or self.bins[-1] != MISSING_BIN:
            raise ValueError(f"a distribution has {numbered} bins, then {MISSING_BIN!r}")
        if len(self.shares) != len(self.bins) or any(share < 0 for share in self.shares):
            raise ValueError("a distribution has one share (>= 0) per bin")
        if abs(sum(self.shares) - 1.0) > 1e-6:
            raise ValueError(f"the shares of a distribution sum to 1, not {sum(self.shares)}")
        if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError("the edges of a distribution increase")
        return self


class Feature(_Frozen):
    """One input column: its name is also the ONNX input name and the JSON key."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    type: FeatureType
    # What the web form, the model card and the API docs call the feature; a manifest written
    # before labels existed (or with none) gets `default_label` when it is read.
    label: str = ""
    unit: str = ""
    description: str = ""
    min: float | None = None
    max: float | None = None
    categories: list[str] | None = None
    aliases: list[str] = []
    train_min: float | None = None
    train_max: float | None = None
    # Missing values: a nullable feature may be left out of a record; the graph then uses
    # `impute_value`, learned by `impute` from the training rows (or the spec's fill value).
    nullable: bool = False
    impute: ImputeRule | None = None
    impute_value: float | str | None = None
    missing_indicator: bool = False
    train_missing_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    # How the network sees a number: scaled ("standard") or as cubic splines over its training
    # range, then scaled ("spline"), for effects that rise and fall. The ONNX graph does either.
    transform: Transform = "standard"
    # Insight (drift, explanations); absent in manifests written before them. `distribution`: the
    # training rows' bins. `reference`: what an explanation puts in this feature's place, the
    # training median (numbers; 0/1 for a bool) or the most frequent category.
    distribution: Distribution | None = None
    reference: float | str | None = None

    @model_validator(mode="before")
    @classmethod
    def _label_or_default(cls, data: Any) -> Any:
        """Fill in a missing, null or blank label from the name and unit (read-time default)."""
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            return data  # not a feature's table, or no name: reported by the field checks
        label = data.get("label")
        if isinstance(label, str) and label.strip():
            return data
        if label is not None and not isinstance(label, str):
            return data  # a wrong type: reported by the field check
        unit = data.get("unit")
        return {**data, "label": default_label(data["name"], unit if isinstance(unit, str) else "")}

    @model_validator(mode="after")
    def _domain_fits_type(self) -> Feature:
        if self.type == "category":
            if not self.categories:
                raise ValueError(f"feature '{self.name}': a category feature needs categories")
            if MISSING_CATEGORY in self.categories:
                raise ValueError(f"feature '{self.name}': a category cannot be empty")
        elif self.categories is not None:
            raise ValueError(f"feature '{self.name}': only category features have categories")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"feature '{self.name}': min {self.min} > max {self.max}")
        if self.nullable != (self.impute is not None) or self.nullable != (
            self.impute_value is not None
        ):
            raise ValueError(
                f"feature '{self.name}': a nullable feature has `impute` and `impute_value`, "
                "a required one neither"
            )
        if self.impute_value is not None:
            if self.type == "category" and self.impute_value not in (self.categories or []):
                raise ValueError(f"feature '{self.name}': impute_value is not a category")
            if self.type != "category" and not isinstance(self.impute_value, float | int):
                raise ValueError(f"feature '{self.name}': impute_value is not a number")
        if self.missing_indicator and not self.nullable:
            raise ValueError(f"feature '{self.name}': only a nullable feature has an indicator")
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
    # Bootstrap 95% interval of roc_auc (percentiles of resamples of these rows).
    roc_auc_interval: tuple[float, float] | None = None


class Baseline(_Frozen):
    """A classical model fitted on the same rows and preprocessing as the network, to compare."""

    name: str  # "logistic_regression", "gradient_boosting"
    title: str  # "logistic regression", "gradient boosting" (for sentences)
    metrics: Evaluation  # on the same sample as the manifest's metrics


NETWORK = "network"  # the network's key in CrossValidation.roc_auc (baselines use their names)


class CrossValidation(_Frozen):
    """k-fold stratified CV ROC AUC on the training and validation rows (never the test rows);
    every model is scored on the same folds, so per-fold differences are paired."""

    folds: int = Field(ge=2)
    seed: int
    rows: int
    roc_auc: dict[str, list[float]]  # "network" and each baseline's name -> one AUC per fold

    def mean(self, model: str) -> float:
        return float(sum(self.roc_auc[model]) / len(self.roc_auc[model]))

    def std(self, model: str) -> float:
        scores, mean = self.roc_auc[model], self.mean(model)
        return float((sum((s - mean) ** 2 for s in scores) / len(scores)) ** 0.5)


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
    baselines: list[Baseline] = []
    cross_validation: CrossValidation | None = None
    data: DataInfo
    parity_max_abs_diff: float
    examples: list[Example] = []
    # The predictions on the metrics' sample, binned as a feature is (binary: P(positive label)
    # in that sample's deciles; multi-class: one bin per predicted label), for drift of the
    # answers; absent in manifests written before drift.
    prediction_distribution: Distribution | None = None
    # CSV cells read as "missing" (after stripping) in nullable features.
    na_values: list[str] = list(DEFAULT_NA_VALUES)
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
def header_keys(header: str) -> tuple[str, ...]:
    """The forms under which a CSV header matches a feature name or alias, the same in training
    and serving: case, spaces and punctuation ignored, camelCase split or not (`NumOfProducts` is
    `num_of_products`, `TARGET_5Yrs` is `target_5yrs`), letters of any script kept (`Größe`,
    `年龄`). A header with no letter or digit at all (`%`) must match exactly. Two texts match
    when they share a key. Cached: every CSV request matches its header against every name.
    """
    text = unicodedata.normalize("NFKC", header.strip())
    split = _CAMEL.sub("_", text)
    keys = (_SEPARATORS.sub("_", form.casefold()).strip("_") for form in (split, text))
    return tuple(dict.fromkeys(key for key in keys if key)) or (header.strip(),)


def normalize_header(header: str) -> str:
    """A header's first key (`header_keys`): lower case, words joined by underscores."""
    return header_keys(header)[0]


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
