"""One training run: data, fit, evaluate, export, report, publish, and promote if good enough."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.pipeline import Pipeline

from service.manifest import DataInfo, Evaluation, Manifest
from training import gate, registry
from training.data import Dataset, Splits, from_frame, read_csv, split
from training.evaluate import choose_threshold, evaluate
from training.export import ExportInputs, export_model
from training.generators import generate
from training.pipeline import fit_pipeline
from training.quality import DataQuality, assess
from training.report import Curves, write_report
from training.search import search
from training.spec import MLPSpec, TaskSpec

DEFAULT_SEED = 42
FRESH_SEED_OFFSET = 1_000_003
StepFactory = Callable[[str], AbstractContextManager[None]]


@dataclass(frozen=True)
class TrainOptions:
    """How to run: where to write, which data, and the switches of the CLI."""

    out: Path = Path("models")
    seed: int = DEFAULT_SEED
    rows: int | None = None
    data: Path | None = None
    force: bool = False
    search: bool = False
    tolerance: float = gate.DEFAULT_TOLERANCE
    keep: int = registry.DEFAULT_KEEP
    mlp_overrides: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainResult:
    """What a run produced and whether it now serves."""

    manifest: Manifest
    path: Path
    promoted: bool
    message: str
    seconds: float
    quality: DataQuality
    pipeline: Pipeline = field(repr=False, compare=False)  # what model.onnx was converted from

    @property
    def version(self) -> str:
        return self.manifest.version


class NoDataError(ValueError):
    """The spec names no built-in data source and no --data file was given."""


def train(spec: TaskSpec, options: TrainOptions, step: StepFactory | None = None) -> TrainResult:
    """Run every stage for one task; raises DataError/SpecError/ParityError on bad input."""
    started = time.perf_counter()
    step = step or _silent
    with step("load data"):
        data = load_data(spec, options)
        quality = assess(spec, data)
        splits = split(data, spec.split, options.seed)
        fresh = fresh_sample(spec, options)
    mlp = spec.mlp.model_copy(update=dict(options.mlp_overrides))
    searched: list[dict[str, Any]] = []
    if options.search:
        with step("search hyperparameters"):
            mlp, searched = search(spec, mlp, splits, options.seed)
    with step("fit"):
        pipeline = fit_pipeline(spec, mlp, options.seed, splits.train)
    with step("evaluate"):
        threshold = _threshold(spec, pipeline, splits.validation)
        primary_data = fresh or splits.test
        primary = _evaluate(pipeline, primary_data, threshold, _describe(primary_data, fresh))
        holdout = None
        if fresh is not None:
            holdout = _evaluate(pipeline, splits.test, threshold, _describe(splits.test, None))
    params = _params(spec, mlp, options, pipeline, searched)
    return _publish(
        spec,
        options,
        step,
        pipeline,
        splits,
        primary_data,
        primary,
        holdout,
        threshold,
        params,
        quality,
        started,
    )


def load_data(spec: TaskSpec, options: TrainOptions) -> Dataset:
    """The user's CSV if given, else the spec's built-in source, optionally cut to --rows."""
    if options.data is not None:
        data = read_csv(spec, options.data)
        if options.rows is not None and options.rows < len(data):
            rng = np.random.default_rng(options.seed)
            data = data.take(np.sort(rng.choice(len(data), options.rows, replace=False)))
        return data
    if spec.source is None:
        raise NoDataError(f"task {spec.name!r} has no built-in data source: pass --data FILE.csv")
    sample = generate(spec.source, options.rows, options.seed)
    kind = "bundled" if sample.probability is None else "generated"
    source = f"{kind}:{spec.source}(rows={len(sample.frame)}, seed={options.seed})"
    return from_frame(
        spec, sample.frame, source=source, where=source, probability=sample.probability
    )


def fresh_sample(spec: TaskSpec, options: TrainOptions) -> Dataset | None:
    """A large new draw from the generator, for a low-noise estimate (generated data only)."""
    if options.data is not None or spec.source is None or spec.split.fresh_rows == 0:
        return None
    seed = options.seed + FRESH_SEED_OFFSET
    sample = generate(spec.source, spec.split.fresh_rows, seed)
    if sample.probability is None:
        return None
    source = f"generated:{spec.source}(rows={spec.split.fresh_rows}, seed={seed})"
    return from_frame(
        spec, sample.frame, source=source, where=source, probability=sample.probability
    )


def _publish(
    spec: TaskSpec,
    options: TrainOptions,
    step: StepFactory,
    pipeline: Pipeline,
    splits: Splits,
    primary_data: Dataset,
    primary: Evaluation,
    holdout: Evaluation | None,
    threshold: float,
    params: dict[str, Any],
    quality: DataQuality,
    started: float,
) -> TrainResult:
    task_dir = options.out / spec.name
    with registry.locked(task_dir):
        registry.remove_stale_staging(task_dir)
        now = datetime.now(UTC).replace(microsecond=0)
        version = registry.new_version_name(task_dir, now)
        with step("export and report"), registry.staging(task_dir) as folder:
            manifest = export_model(
                pipeline,
                spec,
                folder,
                ExportInputs(
                    version=version,
                    created_at=now,
                    threshold=threshold,
                    metrics=primary,
                    holdout_metrics=holdout,
                    data=_data_info(splits, options.seed),
                    params=params,
                    train_X=splits.train.X,
                    check_X=splits.test.X,
                ),
            )
            write_report(folder / "report", manifest, _curves(pipeline, primary_data), quality)
            path = registry.publish(folder, task_dir, version)
        verdict = gate.check(task_dir, spec, primary_data, primary.roc_auc, options.tolerance)
        if verdict.passed or options.force:
            registry.promote(task_dir, version)
            registry.prune(task_dir, options.keep)
        message = (
            verdict.message
            if verdict.passed or not options.force
            else (f"{verdict.message} (promoted anyway: --force)")
        )
    seconds = time.perf_counter() - started
    promoted = verdict.passed or options.force
    return TrainResult(manifest, path, promoted, message, seconds, quality, pipeline)


def _threshold(spec: TaskSpec, pipeline: Pipeline, validation: Dataset) -> float:
    if spec.target.kind != "binary" or spec.threshold_criterion == "fixed":
        return spec.threshold
    positive = pipeline.predict_proba(validation.X)[:, 1]
    return choose_threshold(validation.y, positive, spec.threshold_criterion)


def _evaluate(pipeline: Pipeline, data: Dataset, threshold: float, sample: str) -> Evaluation:
    probabilities = pipeline.predict_proba(data.X)
    return evaluate(data.y, probabilities, threshold, sample, data.probability)


def _describe(data: Dataset, fresh: Dataset | None) -> str:
    if fresh is not None:
        return f"fresh sample: {data.source}"
    return f"held-out test split of {data.source} ({len(data)} rows)"


def _curves(pipeline: Pipeline, data: Dataset) -> Curves:
    mlp = pipeline.named_steps["mlp"]
    return Curves(
        loss=list(mlp.loss_curve_),
        validation_score=list(getattr(mlp, "validation_scores_", None) or []) or None,
        y_true=data.y,
        probabilities=pipeline.predict_proba(data.X),
        true_probability=data.probability,
    )


def _data_info(splits: Splits, seed: int) -> DataInfo:
    train = splits.train
    rows = len(train) + len(splits.validation) + len(splits.test)
    return DataInfo(
        source=train.source,
        sha256=train.sha256,
        rows=rows,
        train_rows=len(train),
        validation_rows=len(splits.validation),
        test_rows=len(splits.test),
        seed=seed,
    )


def _params(
    spec: TaskSpec,
    mlp: MLPSpec,
    options: TrainOptions,
    pipeline: Pipeline,
    searched: list[dict[str, Any]],
) -> dict[str, Any]:
    fitted = pipeline.named_steps["mlp"]
    params: dict[str, Any] = {
        "mlp": mlp.model_dump(mode="json"),
        "seed": options.seed,
        "rows": options.rows,
        "threshold_criterion": spec.threshold_criterion if spec.target.kind == "binary" else None,
        "epochs": int(fitted.n_iter_),
        "spec": str(spec.name),
    }
    if searched:
        params["search"] = searched
    return params


@contextlib.contextmanager
def _silent(_: str) -> Iterator[None]:
    yield
