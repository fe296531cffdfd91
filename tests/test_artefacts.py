"""The committed models: they load as the service will load them, meet the targets, and retrain
to the same metrics with the default seed (so training and serving still agree)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from service.manifest import Manifest, read_pointer, sha256_file, task_dirs
from training.spec import builtin_tasks, load_task
from training.train import TrainOptions, train

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
METRIC_TOLERANCE = 1e-6


def committed(task: str) -> Manifest:
    task_dir = MODELS / task
    return Manifest.load(task_dir / read_pointer(task_dir))


def test_every_builtin_task_has_a_committed_model() -> None:
    assert [d.name for d in task_dirs(MODELS)] == builtin_tasks()


@pytest.mark.parametrize("task", builtin_tasks())
def test_committed_model_loads_and_reproduces_its_examples(task: str) -> None:
    manifest = committed(task)
    folder = MODELS / task / manifest.version
    assert sha256_file(folder / manifest.onnx.file) == manifest.onnx.sha256
    session = ort.InferenceSession(
        str(folder / manifest.onnx.file), providers=["CPUExecutionProvider"]
    )
    assert [i.name for i in session.get_inputs()] == [f.name for f in manifest.features]
    assert [o.name for o in session.get_outputs()] == ["label", "probabilities"]
    feeds = {
        f.name: np.array(
            [[e.record[f.name]] for e in manifest.examples],
            dtype=object if f.type == "category" else np.float32,
        )
        for f in manifest.features
    }
    _, probabilities = session.run(None, feeds)
    expected = [e.probabilities for e in manifest.examples]
    np.testing.assert_allclose(probabilities, expected, atol=1e-6)
    assert manifest.parity_max_abs_diff <= 1e-5
    assert (folder / "report" / "model_card.md").is_file()


def test_draft_pick_meets_the_story() -> None:
    metrics = committed("draft_pick").metrics
    assert metrics.rows == 20_000 and metrics.sample.startswith("fresh sample")
    assert metrics.accuracy >= 0.88
    assert metrics.bayes_roc_auc is not None
    assert metrics.bayes_roc_auc - metrics.roc_auc <= 0.010  # issue 19's target


def test_churn_is_near_bayes_optimal() -> None:
    metrics = committed("churn").metrics
    assert metrics.bayes_roc_auc is not None
    assert metrics.bayes_roc_auc - metrics.roc_auc <= 0.010


def test_digits_accuracy() -> None:
    assert committed("digits").metrics.accuracy >= 0.98


@pytest.mark.parametrize("task", builtin_tasks())
def test_committed_models_carry_baselines_and_cross_validation(task: str) -> None:
    manifest = committed(task)
    assert [b.name for b in manifest.baselines] == ["logistic_regression", "gradient_boosting"]
    cv = manifest.cross_validation
    assert cv is not None and cv.folds == 5 and cv.seed == manifest.data.seed
    assert set(cv.roc_auc) == {"network", "logistic_regression", "gradient_boosting"}
    assert manifest.metrics.roc_auc_interval is not None
    assert manifest.params["mlp"]["ensemble"] == 5


def test_retraining_with_the_default_seed_reproduces_the_committed_metrics(tmp_path: Path) -> None:
    for task in builtin_tasks():
        result = train(load_task(task), TrainOptions(out=tmp_path))
        expected = committed(task)
        fresh, saved = result.manifest.metrics, expected.metrics
        assert fresh.confusion_matrix == saved.confusion_matrix, task
        for name in ("roc_auc", "accuracy", "f1", "log_loss", "brier", "ece"):
            assert getattr(fresh, name) == pytest.approx(
                getattr(saved, name), abs=METRIC_TOLERANCE
            ), (task, name)
        assert result.manifest.threshold == pytest.approx(expected.threshold, abs=METRIC_TOLERANCE)
        assert result.manifest.data.sha256 == expected.data.sha256, task
        assert fresh.roc_auc_interval == pytest.approx(saved.roc_auc_interval, abs=METRIC_TOLERANCE)
        for new, old in zip(result.manifest.baselines, expected.baselines, strict=True):
            assert new.metrics.roc_auc == pytest.approx(old.metrics.roc_auc, abs=METRIC_TOLERANCE)
        new_cv, old_cv = result.manifest.cross_validation, expected.cross_validation
        assert new_cv is not None and old_cv is not None
        for model, scores in old_cv.roc_auc.items():
            assert new_cv.roc_auc[model] == pytest.approx(scores, abs=METRIC_TOLERANCE), model
