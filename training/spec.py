"""Task specs: one TOML file per task declares its target, features and default MLP settings.

The spec is parsed with pydantic so that every bad key gets an error naming its dotted path
(`features.age.max: ...`) without hand-written checks; a spec's problems are reported together.
"""

from __future__ import annotations

import json
import re
import tomllib
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from service.manifest import (
    DEFAULT_NA_VALUES,
    Feature,
    FeatureType,
    ImputeRule,
    Transform,
    default_label,
)

TASKS_DIR = Path(__file__).parent / "tasks"

# Task, feature and target names: each becomes an ONNX input name, a JSON key, a V2 input name, a
# metrics label and a web form field, so it is a plain lowercase identifier; headers go in aliases.
NAME_RULE = "^[a-z][a-z0-9_]{0,63}$"
_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
# pydantic tags the errors of each member of a union (`values = [1.5]`) with the member's type.
_UNION_TAGS = frozenset({"int", "str", "float", "bool"})
_NAME_CLASH = "name_clash"
# How a missing value is filled in: the four rules of scikit-learn's SimpleImputer (a category
# has no median or mean).
IMPUTE_RULES: tuple[ImputeRule, ...] = ("median", "mean", "most_frequent", "constant")
CATEGORY_RULES: tuple[ImputeRule, ...] = ("most_frequent", "constant")
# A feature's `impute`: a rule, or "none" (required, whatever [defaults] says).
ImputeChoice = Literal["median", "mean", "most_frequent", "constant", "none"]
FillValue = bool | int | float | str
# The keys of a feature that a [defaults] table may set for it.
DEFAULT_KEYS = ("impute", "fill_value", "missing_indicator")
# A display label is a form label, a table cell and an API docs title: one short line.
LABEL_MAX_CHARS = 60
# Unicode categories that break a line or are invisible controls (tab, newline, NUL, U+2028).
_NOT_IN_A_LINE = frozenset({"Cc", "Zl", "Zp"})


def _snake(hint: str) -> AfterValidator:
    def check(value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError(
                f"{value[:60]!r} is not a valid name: a lowercase letter, then up to 63 lowercase "
                f"letters, digits or underscores ({NAME_RULE}){hint}"
            )
        return value

    return AfterValidator(check)


TaskName = Annotated[str, _snake("")]
ColumnName = Annotated[str, _snake("; any CSV header can be matched through `aliases`")]
Positive = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(gt=0, lt=0.9)]


def _stripped(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(value.strip() for value in values))


NaValues = Annotated[tuple[str, ...], AfterValidator(_stripped)]


class SpecError(ValueError):
    """A task spec is missing a key or has a bad value; the message names the file and the key."""


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class FeatureSpec(_Spec):
    """One input column as declared in the spec."""

    name: ColumnName
    type: FeatureType
    unit: str = ""
    description: str = ""
    # The display label (web form, model card, API docs); by default one made from the name.
    label: str | None = None
    min: float | None = Field(default=None, allow_inf_nan=False)
    max: float | None = Field(default=None, allow_inf_nan=False)
    categories: tuple[str, ...] | None = None
    aliases: tuple[str, ...] = ()
    impute: ImputeChoice | None = None
    fill_value: FillValue | None = Field(default=None, validate_default=True)
    missing_indicator: bool = False
    transform: Transform = "standard"

    @field_validator("label")
    @classmethod
    def _short_line(cls, value: str | None) -> str | None:
        if value is None:
            return value
        text = value.strip()
        if not text:
            raise ValueError("a label is a short text; leave the key out for the default")
        if any(unicodedata.category(char) in _NOT_IN_A_LINE for char in text):
            raise ValueError(
                "a label is one line, without line breaks, tabs or control characters "
                "(longer text goes in `description`)"
            )
        if len(text) > LABEL_MAX_CHARS:
            raise ValueError(
                f"a label is at most {LABEL_MAX_CHARS} characters, this one has {len(text)} "
                "(longer text goes in `description`)"
            )
        return text

    @field_validator("categories")
    @classmethod
    def _plain_categories(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        # CSV cells are compared stripped, and an empty cell means "missing".
        if value is not None and any(not c.strip() or c != c.strip() for c in value):
            raise ValueError("categories are non-empty strings without surrounding spaces")
        return value

    @field_validator("impute")
    @classmethod
    def _rule_fits_type(
        cls, value: ImputeChoice | None, info: ValidationInfo
    ) -> ImputeChoice | None:
        if info.data.get("type") == "category" and value in ("median", "mean"):
            raise ValueError(
                f'a category feature is imputed with "most_frequent" or "constant", not "{value}"'
            )
        return value

    @field_validator("fill_value")
    @classmethod
    def _fill_fits_domain(cls, value: FillValue | None, info: ValidationInfo) -> FillValue | None:
        if "impute" not in info.data:
            return value  # the rule itself is wrong and reported
        rule = info.data["impute"]
        if value is None:
            if rule == "constant":
                raise ValueError(
                    'impute = "constant" needs a fill_value (the value used for a missing cell), '
                    "here or in [defaults]"
                )
            return value
        if rule != "constant":
            now = f'impute is "{rule}"' if rule else "this feature has no impute"
            raise ValueError(f'fill_value is only used with impute = "constant" ({now})')
        return _check_fill(value, info.data)

    @field_validator("missing_indicator")
    @classmethod
    def _indicator_needs_rule(cls, value: bool, info: ValidationInfo) -> bool:
        required = "impute" in info.data and info.data["impute"] in (None, "none")
        if value and required:  # (an invalid impute is reported at its own key)
            raise ValueError(
                "missing_indicator needs impute: only a feature that may be missing has one"
            )
        return value

    @property
    def rule(self) -> ImputeRule | None:
        """How a missing value of this feature is filled in; None for a required feature."""
        return next((rule for rule in IMPUTE_RULES if rule == self.impute), None)

    @field_validator("transform")
    @classmethod
    def _spline_needs_numbers(cls, value: Transform, info: ValidationInfo) -> Transform:
        kind = info.data.get("type")
        if value == "spline" and kind in ("bool", "category"):
            raise ValueError(
                f'transform = "spline" is for int and float features (a range of numbers), '
                f"not {kind}"
            )
        return value

    @property
    def nullable(self) -> bool:
        return self.rule is not None

    @property
    def display_label(self) -> str:
        """The spec's `label`, or the default made from the name and unit."""
        return self.label or default_label(self.name, self.unit)

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
            article = "an" if self.type == "int" else "a"
            raise ValueError(f"{article} {self.type} feature needs both min and max")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is greater than max {self.max}")
        return self

    def to_manifest(
        self,
        train_min: float | None,
        train_max: float | None,
        impute_value: float | str | None = None,
        train_missing_rate: float = 0.0,
    ) -> Feature:
        """The manifest's view of this feature, with what was seen in the training rows: the
        range, the share of missing values and the value imputed for one (nullable features)."""
        return Feature(
            name=self.name,
            type=self.type,
            label=self.display_label,
            unit=self.unit,
            description=self.description,
            min=self.min,
            max=self.max,
            categories=list(self.categories) if self.categories else None,
            aliases=list(self.aliases),
            train_min=train_min,
            train_max=train_max,
            nullable=self.nullable,
            impute=self.rule,
            impute_value=impute_value,
            missing_indicator=self.missing_indicator,
            train_missing_rate=train_missing_rate,
            transform=self.transform,
        )


class DefaultsSpec(_Spec):
    """The `[defaults]` table: missing-value settings for every feature that does not set its own
    (copied into the features by TaskSpec.from_toml, before they are checked)."""

    impute: ImputeRule | None = None
    fill_value: FillValue | None = None
    missing_indicator: bool = False


class TargetSpec(_Spec):
    """The label column: class labels in model order and how each is written in a CSV."""

    name: ColumnName
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
    # Networks trained with seeds seed, seed+1, ... and merged into one (training/ensemble.py).
    ensemble: Annotated[int, Field(ge=1, le=20)] = 5


class SearchSpec(_Spec):
    """The small grid tried by `train --search`, within a time budget, scored on validation."""

    hidden_layer_sizes: tuple[tuple[Annotated[int, Field(gt=0)], ...], ...] = ()
    alpha: tuple[Annotated[float, Field(ge=0)], ...] = ()
    learning_rate_init: tuple[Positive, ...] = ()
    budget_seconds: Positive = 60.0


class TaskSpec(_Spec):
    """Everything training needs to know about a task; read from one TOML file."""

    name: TaskName
    title: str = ""
    description: str = ""
    source: str | None = None
    threshold_criterion: Literal["max_f1", "max_accuracy", "fixed"] = "max_f1"
    threshold: Annotated[float, Field(gt=0, lt=1)] = 0.5
    target: TargetSpec
    split: SplitSpec = SplitSpec()
    mlp: MLPSpec = MLPSpec()
    search: SearchSpec = SearchSpec()
    defaults: DefaultsSpec = DefaultsSpec()
    na_values: NaValues = DEFAULT_NA_VALUES
    features: tuple[FeatureSpec, ...] = Field(min_length=1)

    @classmethod
    def from_toml(cls, raw: dict[str, Any]) -> TaskSpec:
        """Check a parsed spec file, with its [defaults] copied into each feature that does not
        set the key itself (pydantic's ValidationError lists every problem)."""
        # JSON mode keeps strictness (no "5" -> 5) while accepting TOML arrays for tuples.
        return cls.model_validate_json(json.dumps(_apply_defaults(raw), default=str))

    @model_validator(mode="after")
    def _unique_names(self) -> TaskSpec:
        # load_spec reports these with their keys from the raw file, even when other keys fail.
        clashes = name_clashes(self.target.name, self.feature_names)
        if clashes:
            raise PydanticCustomError(_NAME_CLASH, "; ".join(clashes.values()))
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

    @property
    def nullable_features(self) -> list[str]:
        return [f.name for f in self.features if f.nullable]

    def feature(self, name: str) -> FeatureSpec:
        return next(f for f in self.features if f.name == name)


def builtin_tasks() -> list[str]:
    """Names of the tasks whose spec ships with the package."""
    return sorted(p.stem for p in TASKS_DIR.glob("*.toml"))


def load_task(name: str) -> TaskSpec:
    """The built-in spec of a task, by name."""
    if name not in builtin_tasks():
        raise SpecError(f"unknown task {name!r}; built-in tasks: {', '.join(builtin_tasks())}")
    return load_spec(TASKS_DIR / f"{name}.toml")


def load_spec(path: Path) -> TaskSpec:
    """Read and check a spec file; its problems, all of them, are one SpecError naming each key."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the spec ({exc.strerror})") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from exc
    try:
        return TaskSpec.from_toml(raw)
    except ValidationError as exc:
        problems = [*_problems(exc, raw), *_raw_clashes(raw)] or [f"(top level): {exc}"]
    if len(problems) == 1:
        raise SpecError(f"{path}: {problems[0]}")
    listed = "\n".join(f"  {problem}" for problem in problems)
    raise SpecError(f"{path}: {len(problems)} problems:\n{listed}")


def name_clashes(target: str | None, features: Sequence[str | None]) -> dict[str, str]:
    """Names used twice, by key: a second feature of the same name, or a feature named like the
    target (the key names the later entry by index, as the name itself is ambiguous there)."""
    clashes: dict[str, str] = {}
    first: dict[str, int] = {}
    for index, name in enumerate(features):
        if name is None:
            continue
        if name in first:
            clashes[f"features.{index}.name"] = (
                f"{name!r} is already the name of features.{first[name]}"
            )
        else:
            first[name] = index
    if target is not None and target in first:
        clashes["target.name"] = (
            f"{target!r} is also the name of features.{first[target]}; "
            "the target cannot be an input"
        )
    return clashes


def _apply_defaults(raw: dict[str, Any]) -> dict[str, Any]:
    defaults, features = raw.get("defaults"), raw.get("features")
    if not isinstance(defaults, dict) or not isinstance(features, list):
        return raw
    return {**raw, "features": [_with_defaults(f, defaults) for f in features]}


def _with_defaults(feature: Any, defaults: dict[str, Any]) -> Any:
    """A feature's table with the [defaults] keys it lacks: `impute` (a valid rule only, so that a
    bad default is reported once, at its own key; a category's "median" or "mean" is its most
    frequent value); `missing_indicator` where the feature may be missing; `fill_value` where it
    is imputed with "constant"."""
    if not isinstance(feature, dict):
        return feature
    merged = dict(feature)
    default = defaults.get("impute")
    if "impute" not in merged and default in IMPUTE_RULES:
        central = merged.get("type") == "category" and default not in CATEGORY_RULES
        merged["impute"] = "most_frequent" if central else default
    rule = merged.get("impute")
    if rule in IMPUTE_RULES and isinstance(defaults.get("missing_indicator"), bool):
        merged.setdefault("missing_indicator", defaults["missing_indicator"])
    if rule == "constant" and "fill_value" in defaults:
        merged.setdefault("fill_value", defaults["fill_value"])
    return merged


def _check_fill(value: FillValue, feature: dict[str, Any]) -> FillValue:
    """A constant fill value must be a value the feature could hold: a category of a category
    feature, true/false (or 0/1) for a bool, a number in range (whole for an int) otherwise."""
    kind = feature.get("type")
    if kind is None:
        return value  # the type itself is wrong and reported
    if kind == "category":
        categories = feature.get("categories")
        if categories is None:
            return value  # no categories, or bad ones: reported at their own key
        if value not in categories or not isinstance(value, str):
            listed = ", ".join(categories)
            raise ValueError(f"fill_value {value!r} is not one of the categories ({listed})")
        return value
    if kind == "bool":
        if not isinstance(value, bool) and (not isinstance(value, int) or value not in (0, 1)):
            raise ValueError(f"a bool feature's fill_value is true, false, 0 or 1, not {value!r}")
        return bool(value)
    if isinstance(value, str | bool):
        article = "an" if kind == "int" else "a"
        raise ValueError(f"the fill_value of {article} {kind} feature is a number, not {value!r}")
    low, high = feature.get("min"), feature.get("max")
    if low is not None and high is not None and not low <= value <= high:
        raise ValueError(f"fill_value {value:g} is outside the feature's range {low:g} to {high:g}")
    if kind == "int" and value != round(value):
        raise ValueError(f"fill_value {value:g} is not a whole number (an int feature)")
    return value


def _raw_clashes(raw: dict[str, Any]) -> list[str]:
    """Name clashes found in the file as written, so they show even when other keys are wrong."""
    target = raw.get("target")
    target_name = target.get("name") if isinstance(target, dict) else None
    clashes = name_clashes(target_name if isinstance(target_name, str) else None, _raw_names(raw))
    return [f"{key}: {message}" for key, message in clashes.items()]


def _raw_names(raw: dict[str, Any]) -> list[str | None]:
    """The `name` of each `[[features]]` entry as written (None where it is not a string)."""
    features = raw.get("features")
    if not isinstance(features, list):
        return []
    names = [f.get("name") if isinstance(f, dict) else None for f in features]
    return [name if isinstance(name, str) else None for name in names]


def _problems(exc: ValidationError, raw: dict[str, Any]) -> list[str]:
    """Every error as `dotted.key: message`, features named rather than numbered where possible."""
    errors = [e for e in exc.errors(include_url=False) if e["type"] != _NAME_CLASH]
    names = _raw_names(raw)
    named = {i: n for i, n in enumerate(names) if n and _NAME.fullmatch(n) and names.count(n) == 1}
    by_key: dict[str, list[ErrorDetails]] = {}
    for error in errors:
        if not _is_echo(error, errors):
            by_key.setdefault(_key(error["loc"], named), []).append(error)
    return [f"{key}: {_describe(group)}{_inherited(key, raw)}" for key, group in by_key.items()]


def _inherited(key: str, raw: dict[str, Any]) -> str:
    """A note for a feature key whose value the file sets only in [defaults]."""
    parts = key.split(".")
    defaults = raw.get("defaults")
    if len(parts) != 3 or parts[0] != "features" or parts[2] not in DEFAULT_KEYS:
        return ""
    if not isinstance(defaults, dict) or parts[2] not in defaults:
        return ""
    names = _raw_names(raw)
    index = int(parts[1]) if parts[1].isdigit() else names.index(parts[1])
    features = raw.get("features")
    feature = features[index] if isinstance(features, list) else None
    if isinstance(feature, dict) and parts[2] not in feature:
        return f" (the value comes from [defaults] {parts[2]}; set it here to override)"
    return ""


def _key(loc: tuple[int | str, ...], named: dict[int, str]) -> str:
    parts: list[int | str] = list(loc)
    while len(parts) > 1 and parts[-1] in _UNION_TAGS:
        parts.pop()
    if len(parts) > 1 and parts[0] == "features" and isinstance(parts[1], int):
        parts[1] = named.get(parts[1], parts[1])
    return ".".join(str(part) for part in parts) or "(top level)"


def _is_echo(error: ErrorDetails, errors: list[ErrorDetails]) -> bool:
    """A list reported "too short after validation" only because its entries failed."""
    loc = error["loc"]
    return (
        error["type"] == "too_short"
        and "after validation" in error["msg"]
        and any(len(e["loc"]) > len(loc) and e["loc"][: len(loc)] == loc for e in errors)
    )


def _describe(group: list[ErrorDetails]) -> str:
    """One key's errors as one message; a union's per-type errors read `should be X or Y`."""
    messages = list(dict.fromkeys(_message(error) for error in group))
    prefix = "Input should be "
    if len(messages) > 1 and all(m.startswith(prefix) for m in messages):
        text = prefix + " or ".join(m.removeprefix(prefix) for m in messages)
    else:
        text = "; ".join(messages)
    return text + _got(group[0])


def _message(error: ErrorDetails) -> str:
    if error["type"] == "missing":
        return "required key is missing"
    if error["type"] == "extra_forbidden":
        return "unknown key (not part of a task spec; check the spelling)"
    return error["msg"].removeprefix("Value error, ")


def _got(error: ErrorDetails) -> str:
    """The offending value, when it is a short scalar the message does not already quote."""
    value = error.get("input")
    if error["type"] in ("value_error", "missing", "extra_forbidden"):
        return ""
    if isinstance(value, str):
        return f" (got {value[:40]!r})"
    if isinstance(value, bool | int | float):
        return f" (got {json.dumps(value)})"
    return ""
