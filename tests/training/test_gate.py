"""The promotion gate against a real current version (exported ONNX in a registry): a paired
bootstrap of the AUC difference on the same rows, refusing only a real loss beyond the tolerance."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from sklearn.pipeline import Pipeline

from service.manifest import DataInfo, Manifest, sha256_file
from training import gate, registry
from training.data import Dataset, from_frame
from training.evaluate import Probabilities, evaluate
from training.export import ExportInputs, export_model
from training.generators import generate
from training.pipeline import build_pipeline
from training.spec import TaskSpec, load_task

CURRENT = "20261101T120000Z"
GATE_ROWS = 4000


@pytest.fixture(scope="module")
def trained(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[TaskSpec, Pipeline, Dataset, Path]:
    """(spec, fitted churn pipeline, rows to compare on, a registry whose current version is
    that pipeline exported to ONNX)."""
    spec = load_task("churn")
    train = from_frame(spec, generate("churn", 1500, 3).frame, source="t", where="t")
    mlp = spec.mlp.model_copy(update={"max_iter": 60})
    pipeline = build_pipeline(spec, mlp, 3).fit(train.X, train.y)
    rows = from_frame(spec, generate("churn", GATE_ROWS, 4).frame, source="g", where="g")
    task_dir = tmp_path_factory.mktemp("models") / "churn"
    task_dir.mkdir()
    metrics = evaluate(rows.y, pipeline.predict_proba(rows.X), 0.5, "gate rows")
    run = ExportInputs(
        version=CURRENT,
        created_at=datetime(2026, 11, 1, 12, tzinfo=UTC),
        threshold=0.5,
        metrics=metrics,
        holdout_metrics=None,
        data=DataInfo(
            source="t",
            sha256="0" * 64,
            rows=1500,
            train_rows=1500,
            validation_rows=0,
            test_rows=0,
            seed=3,
        ),
        params={},
        train_X=train.X,
        check_X=rows.X.head(200),
    )
    with registry.staging(task_dir) as folder:
        export_model(pipeline, spec, folder, run)
        registry.publish(folder, task_dir, CURRENT)
    registry.promote(task_dir, CURRENT)
    return spec, pipeline, rows, task_dir


@pytest.fixture
def task_dir(trained: tuple[TaskSpec, Pipeline, Dataset, Path], tmp_path: Path) -> Path:
    """A private copy of the registry, for tests that damage the current version."""
    return Path(shutil.copytree(trained[3], tmp_path / "churn"))


def noisier(probabilities: Probabilities, scale: float, seed: int = 5) -> Probabilities:
    """The same model with seeded noise on its logits: a worse ranking by a known amount."""
    rng = np.random.default_rng(seed)
    logit = np.log(probabilities[:, 1] / probabilities[:, 0])
    positive = 1 / (1 + np.exp(-(logit + rng.normal(scale=scale, size=len(logit)))))
    return np.column_stack([1 - positive, positive])


def figures(message: str) -> tuple[float, float, float]:
    """(difference, low, high) as the message states them."""
    found = re.search(r"difference (\S+) \(95% interval (\S+) to (\S+)\)", message)
    assert found is not None, message
    difference, low, high = (float(x) for x in found.groups())
    return difference, low, high


def test_gate_accepts_an_equal_model(trained: tuple[TaskSpec, Pipeline, Dataset, Path]) -> None:
    spec, pipeline, rows, task_dir = trained
    verdict = gate.check(task_dir, spec, rows, pipeline.predict_proba(rows.X), 0.01, seed=0)
    assert verdict.passed and verdict.message.startswith("promoted: ROC AUC")
    difference, low, high = figures(verdict.message)
    # Only float32 (ONNX) against float64 (scikit-learn) rounding separates the two.
    assert abs(difference) < 1e-3 and low <= 0 <= high and high - low < 1e-3


def test_gate_refuses_a_clearly_worse_model(
    trained: tuple[TaskSpec, Pipeline, Dataset, Path],
) -> None:
    spec, pipeline, rows, task_dir = trained
    worse = noisier(pipeline.predict_proba(rows.X), scale=1.0)
    verdict = gate.check(task_dir, spec, rows, worse, 0.01, seed=0)
    assert not verdict.passed
    message = verdict.message
    assert message.startswith("not promoted: ROC AUC ")
    assert f"vs current {CURRENT}'s " in message and "on the same 4,000 rows" in message
    assert "is below zero and beyond the tolerance 0.01 (use --force" in message
    difference, low, high = figures(message)
    assert low < difference < high < 0 and difference < -0.02


def test_gate_accepts_a_real_but_small_loss_within_the_tolerance(
    trained: tuple[TaskSpec, Pipeline, Dataset, Path],
) -> None:
    spec, pipeline, rows, task_dir = trained
    slightly = noisier(pipeline.predict_proba(rows.X), scale=0.3)
    verdict = gate.check(task_dir, spec, rows, slightly, 0.01, seed=0)
    assert verdict.passed and "within the tolerance 0.01" in verdict.message
    difference, _, high = figures(verdict.message)
    assert difference > -0.01 and high < 0  # a real loss, but smaller than the tolerance
    # The same loss is refused once the tolerance is below it: the tolerance is what let it by.
    strict = gate.check(task_dir, spec, rows, slightly, 0.001, seed=0)
    assert not strict.passed and "tolerance 0.001" in strict.message


def test_gate_accepts_a_loss_the_few_rows_cannot_tell_from_noise(
    trained: tuple[TaskSpec, Pipeline, Dataset, Path],
) -> None:
    spec, pipeline, rows, task_dir = trained
    few = rows.take(np.arange(120))
    worse = noisier(pipeline.predict_proba(few.X), scale=1.0)
    verdict = gate.check(task_dir, spec, few, worse, 0.01, seed=0)
    assert verdict.passed and "the interval includes zero" in verdict.message
    difference, low, high = figures(verdict.message)
    assert difference < -0.01 and low < 0 <= high


def test_gate_verdict_is_the_same_for_the_same_seed(
    trained: tuple[TaskSpec, Pipeline, Dataset, Path],
) -> None:
    spec, pipeline, rows, task_dir = trained
    worse = noisier(pipeline.predict_proba(rows.X), scale=0.3)
    first = gate.check(task_dir, spec, rows, worse, 0.01, seed=1)
    assert gate.check(task_dir, spec, rows, worse, 0.01, seed=1) == first


def test_gate_promotes_the_first_version(
    trained: tuple[TaskSpec, Pipeline, Dataset, Path], tmp_path: Path
) -> None:
    spec, pipeline, rows, _ = trained
    verdict = gate.check(tmp_path / "churn", spec, rows, pipeline.predict_proba(rows.X), 0.01, 0)
    assert verdict == gate.Verdict(True, "no current version: promoted")


def test_gate_skips_a_current_version_with_other_features(
    trained: tuple[TaskSpec, Pipeline, Dataset, Path],
) -> None:
    _, pipeline, rows, task_dir = trained
    other = load_task("draft_pick")
    verdict = gate.check(task_dir, other, rows, pipeline.predict_proba(rows.X), 0.01, 0)
    assert verdict.passed and "other features or labels" in verdict.message


def test_gate_promotes_over_a_current_version_that_fails_its_checksum(
    trained: tuple[TaskSpec, Pipeline, Dataset, Path], task_dir: Path
) -> None:
    spec, pipeline, rows, _ = trained
    worse = noisier(pipeline.predict_proba(rows.X), scale=2.0)
    (task_dir / CURRENT / "model.onnx").write_bytes(b"tampered")
    verdict = gate.check(task_dir, spec, rows, worse, 0.01, 0)
    assert verdict.passed and "fails its checksum" in verdict.message


def test_gate_promotes_over_a_current_version_it_cannot_run(
    trained: tuple[TaskSpec, Pipeline, Dataset, Path], task_dir: Path
) -> None:
    spec, pipeline, rows, _ = trained
    folder = task_dir / CURRENT
    (folder / "model.onnx").write_bytes(b"not a model")
    manifest = Manifest.load(folder)
    onnx = manifest.onnx.model_copy(update={"sha256": sha256_file(folder / "model.onnx")})
    manifest.model_copy(update={"onnx": onnx}).dump(folder)
    verdict = gate.check(task_dir, spec, rows, pipeline.predict_proba(rows.X), 0.01, 0)
    assert verdict.passed and "cannot be evaluated" in verdict.message
