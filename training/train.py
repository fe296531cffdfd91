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

from service.manifest import NETWORK, Baseline, CrossValidation, DataInfo, Evaluation, Manifest
from training import gate, registry
from training.baselines import fit_all, fold_plan, learning_rows, models
from training.data import Dataset, Splits, from_frame, read_csv, split
from training.evaluate import (
    Classes,
    Probabilities,
    bootstrap_auc_interval,
    choose_threshold,
    evaluate,
)
from training.export import ExportInputs, export_model
from training.generators import generate
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
    cv_folds: int = 5  # k-fold cross-validation of the network and the baselines; 0 = off
    jobs: int = -1  # processes fitting models at once; -1: one per core
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
    learn = learning_rows(splits)
    folds, cross_validated = fold_plan(splits, options.cv_folds, options.seed)
    searched: list[dict[str, Any]] = []
    if options.search:
        with step("search hyperparameters"):
            mlp, searched = search(spec, mlp, learn, folds, options.seed)
    candidates = models(spec, mlp, options.seed)
    checked = f"{len(folds)}-fold cross-validation" if cross_validated else "validation"
    with step(f"fit ({checked})"):
        held, fitted = fit_all(
            candidates, learn, folds, options.seed, cross_validated, options.jobs
        )
    with step("evaluate"):
        rows = held.rows()
        thresholds = {
            name: _threshold(spec, learn.y[rows], found[rows])
            for name, found in held.probabilities.items()
        }
        primary_data = fresh or splits.test
        sample = _describe(primary_data, fresh)
        evaluations = {
            name: _evaluate(pipeline, primary_data, thresholds[name], sample, options.seed)
            for name, pipeline in fitted.items()
        }
        pipeline = fitted[NETWORK]
        holdout = None
        if fresh is not None:
            test = _describe(splits.test, None)
            holdout = _evaluate(pipeline, splits.test, thresholds[NETWORK], test, options.seed)
    compared = [
        Baseline(name=model.name, title=model.title, metrics=evaluations[model.name])
        for model in candidates
        if model.name != NETWORK
    ]
    params = _params(spec, mlp, options, pipeline, searched)
    params["fitted_rows"] = len(learn)
    params["threshold_rows"] = held.description()
    run = Run(
        pipeline,
        splits,
        learn,
        primary_data,
        evaluations[NETWORK],
        holdout,
        compared,
        held.cross_validation(),
        thresholds[NETWORK],
        params,
    )
    return _publish(spec, options, step, run, quality, started)


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


@dataclass(frozen=True)
class Run:
    """What training and evaluation produced, ready to export and publish."""

    pipeline: Pipeline
    splits: Splits
    learn: Dataset  # the rows the kept pipeline was fitted on (training and validation)
    primary_data: Dataset  # the rows `primary` was measured on (fresh sample or test split)
    primary: Evaluation
    holdout: Evaluation | None
    baselines: list[Baseline]
    cross_validation: CrossValidation | None
    threshold: float
    params: dict[str, Any]


def _publish(
    spec: TaskSpec,
    options: TrainOptions,
    step: StepFactory,
    run: Run,
    quality: DataQuality,
    started: float,
) -> TrainResult:
    pipeline, splits, primary_data = run.pipeline, run.splits, run.primary_data
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
                    threshold=run.threshold,
                    metrics=run.primary,
                    holdout_metrics=run.holdout,
                    data=_data_info(splits, options.seed),
                    params=run.params,
                    train_X=run.learn.X,
                    check_X=splits.test.X,
                    sample_X=primary_data.X,
                    baselines=run.baselines,
                    cross_validation=run.cross_validation,
                ),
            )
            write_report(folder / "report", manifest, _curves(pipeline, primary_data), quality)
            path = registry.publish(folder, task_dir, version)
        new_probabilities = pipeline.predict_proba(primary_data.X)
        verdict = gate.check(
            task_dir, spec, primary_data, new_probabilities, options.tolerance, options.seed
        )
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


def _threshold(spec: TaskSpec, y: Classes, probabilities: Probabilities) -> float:
    """The decision threshold on P(positive), chosen on held-out predictions by the spec's rule."""
    if spec.target.kind != "binary" or spec.threshold_criterion == "fixed":
        return spec.threshold
    return choose_threshold(y, probabilities[:, 1], spec.threshold_criterion)


def _evaluate(
    pipeline: Pipeline, data: Dataset, threshold: float, sample: str, seed: int
) -> Evaluation:
    """The metrics of `evaluate` and a bootstrap 95% interval of the ROC AUC."""
    probabilities = pipeline.predict_proba(data.X)
    found = evaluate(data.y, probabilities, threshold, sample, data.probability)
    interval = bootstrap_auc_interval(data.y, probabilities, seed)
    return found.model_copy(update={"roc_auc_interval": interval})


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
