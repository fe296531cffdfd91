"""Task specs: one TOML file per task declares its target, features and default MLP settings.

The spec is parsed with pydantic so that every bad key gets an error naming its dotted path
(`features.3.max: ...`) without hand-written checks.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from service.manifest import Feature, FeatureType

TASKS_DIR = Path(__file__).parent / "tasks"

SnakeName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
Positive = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(gt=0, lt=0.9)]


class SpecError(ValueError):
    """A task spec is missing a key or has a bad value; the message names the file and the key."""


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class FeatureSpec(_Spec):
    """One input column as declared in the spec."""

    name: SnakeName
    type: FeatureType
    unit: str = ""
    description: str = ""
    min: float | None = Field(default=None, allow_inf_nan=False)
    max: float | None = Field(default=None, allow_inf_nan=False)
    categories: tuple[str, ...] | None = None
    aliases: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _domain_fits_type(self) -> FeatureSpec:
        if self.type == "category":
            if not self.categories or len(set(self.categories)) != len(self.categories):
                raise ValueError("a category feature needs a list of unique categories")
            if self.min is not None or self.max is not None:
                raise ValueError("a category feature has categories, not min/max")
            return self
        if self.categories is not None:
            raise ValueError(f"only category features have categories, not {self.type}")
        if self.type in ("float", "int") and (self.min is None or self.max is None):
            raise ValueError(f"a {self.type} feature needs both min and max")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is greater than max {self.max}")
        return self

    def to_manifest(self, train_min: float | None, train_max: float | None) -> Feature:
        """The manifest's view of this feature, with the range seen in the training rows."""
        return Feature(
            name=self.name,
            type=self.type,
            unit=self.unit,
            description=self.description,
            min=self.min,
            max=self.max,
            categories=list(self.categories) if self.categories else None,
            aliases=list(self.aliases),
            train_min=train_min,
            train_max=train_max,
        )


class TargetSpec(_Spec):
    """The label column: class labels in model order and how each is written in a CSV."""

    name: SnakeName
    labels: tuple[str, ...] = Field(min_length=2)
    values: tuple[int | str, ...] | None = None
    positive: str | None = None
    aliases: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> TargetSpec:
        if len(set(self.labels)) != len(self.labels) or not all(self.labels):
            raise ValueError("labels must be unique, non-empty strings")
        if self.values is not None and len(self.values) != len(self.labels):
            raise ValueError(f"values needs one entry per label ({len(self.labels)})")
        if self.kind == "binary" and self.positive != self.labels[1]:
            raise ValueError(
                f"positive must name the second label {self.labels[1]!r} of a binary task "
                f"(list the negative class first); got {self.positive!r}"
            )
        if self.kind == "multiclass" and self.positive is not None:
            raise ValueError("only binary tasks have a positive class")
        return self

    @property
    def kind(self) -> Literal["binary", "multiclass"]:
        return "binary" if len(self.labels) == 2 else "multiclass"

    @property
    def raw_values(self) -> tuple[int | str, ...]:
        """How each label is written in a CSV (the labels themselves unless `values` says)."""
        return self.values if self.values is not None else self.labels


class SplitSpec(_Spec):
    """How rows are divided: test is a fixed count or a fraction; validation comes from the rest."""

    test_rows: Annotated[int, Field(ge=10)] | None = None
    test_fraction: Fraction = 0.2
    validation_fraction: Fraction = 0.15
    fresh_rows: Annotated[int, Field(ge=0)] = 0


class MLPSpec(_Spec):
    """Default hyperparameters of scikit-learn's MLPClassifier for this task."""

    hidden_layer_sizes: tuple[Annotated[int, Field(gt=0)], ...] = Field((32, 16), min_length=1)
    activation: Literal["identity", "logistic", "tanh", "relu"] = "relu"
    solver: Literal["lbfgs", "sgd", "adam"] = "adam"
    alpha: Annotated[float, Field(ge=0)] = 1e-3
    learning_rate_init: Positive = 1e-3
    batch_size: Annotated[int, Field(gt=0)] = 64
    max_iter: Annotated[int, Field(gt=0)] = 300
    early_stopping: bool = True
    n_iter_no_change: Annotated[int, Field(gt=0)] = 20


class SearchSpec(_Spec):
    """The small grid tried by `train --search`, within a time budget, scored on validation."""

    hidden_layer_sizes: tuple[tuple[Annotated[int, Field(gt=0)], ...], ...] = ()
    alpha: tuple[Annotated[float, Field(ge=0)], ...] = ()
    learning_rate_init: tuple[Positive, ...] = ()
    budget_seconds: Positive = 60.0


class TaskSpec(_Spec):
    """Everything training needs to know about a task; read from one TOML file."""

    name: SnakeName
    title: str = ""
    description: str = ""
    source: str | None = None
    threshold_criterion: Literal["max_f1", "max_accuracy", "fixed"] = "max_f1"
    threshold: Annotated[float, Field(gt=0, lt=1)] = 0.5
    target: TargetSpec
    split: SplitSpec = SplitSpec()
    mlp: MLPSpec = MLPSpec()
    search: SearchSpec = SearchSpec()
    features: tuple[FeatureSpec, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> TaskSpec:
        names = self.feature_names
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate feature names: {', '.join(duplicates)}")
        if self.target.name in names:
            raise ValueError(f"target {self.target.name!r} is also a feature")
        return self

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def numeric_features(self) -> list[str]:
        return [f.name for f in self.features if f.type != "category"]

    @property
    def categorical_features(self) -> list[str]:
        return [f.name for f in self.features if f.type == "category"]


def builtin_tasks() -> list[str]:
    """Names of the tasks whose spec ships with the package."""
    return sorted(p.stem for p in TASKS_DIR.glob("*.toml"))


def load_task(name: str) -> TaskSpec:
    """The built-in spec of a task, by name."""
    if name not in builtin_tasks():
        raise SpecError(f"unknown task {name!r}; built-in tasks: {', '.join(builtin_tasks())}")
    return load_spec(TASKS_DIR / f"{name}.toml")


def load_spec(path: Path) -> TaskSpec:
    """Read and check a spec file; every problem is a SpecError naming the file and the key."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the spec ({exc.strerror})") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from exc
    try:
        # JSON mode keeps strictness (no "5" -> 5) while accepting TOML arrays for tuples.
        return TaskSpec.model_validate_json(json.dumps(raw, default=str))
    except ValidationError as exc:
        raise SpecError(f"{path}: {_describe(exc)}") from exc


def _describe(exc: ValidationError) -> str:
    """The first error as `dotted.key: message`, which is what a spec author needs to fix."""
    first = exc.errors(include_url=False)[0]
    key = ".".join(str(part) for part in first["loc"]) or "(top level)"
    message = first["msg"].removeprefix("Value error, ")
    extra = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{key}: {message}{extra}"
