"""The ensemble merged into one MLP: it predicts the mean of its members' logits, and the exported
ONNX graph (the same inputs and outputs as a single network) matches scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.neural_network import MLPClassifier

from training.data import split
from training.ensemble import merge
from training.export import convert, onnx_probabilities, open_session
from training.pipeline import fit_pipeline
from training.spec import load_task
from training.train import TrainOptions, load_data

FAST = {"max_iter": 60, "n_iter_no_change": 5}


def _members(
    n_classes: int, hidden: tuple[int, ...], k: int
) -> tuple[list[MLPClassifier], np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 6))
    y = (X[:, 0] + X[:, 1] ** 2 > 0.5).astype(int) + (X[:, 2] > 1).astype(int) * (n_classes - 2)
    members = [
        MLPClassifier(hidden_layer_sizes=hidden, max_iter=50, random_state=seed).fit(X, y)
        for seed in range(k)
    ]
    return members, X


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize(("n_classes", "hidden"), [(2, (8, 4)), (3, (8,)), (2, (5, 4, 3))])
def test_merged_network_predicts_the_mean_of_member_logits(
    n_classes: int, hidden: tuple[int, ...]
) -> None:
    members, X = _members(n_classes, hidden, k=4)
    merged = merge(members)
    assert merged.hidden_layer_sizes == tuple(4 * h for h in hidden)
    logs = [np.log(m.predict_proba(X)) for m in members]
    if n_classes == 2:
        z = np.mean([p[:, 1] - p[:, 0] for p in logs], axis=0)
        expected = np.c_[1 / (1 + np.exp(z)), 1 / (1 + np.exp(-z))]
    else:
        z = np.mean(logs, axis=0)
        expected = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(merged.predict_proba(X), expected, atol=1e-9)
    # and it differs from every single member: the members really disagree
    assert all(np.abs(merged.predict_proba(X) - m.predict_proba(X)).max() > 1e-4 for m in members)


def test_one_member_is_that_member() -> None:
    members, _ = _members(2, (4,), k=1)
    assert merge(members) is members[0]


def test_members_of_different_shapes_are_refused() -> None:
    narrow, _ = _members(2, (4,), k=1)
    wide, _ = _members(2, (6,), k=1)
    with pytest.raises(ValueError, match="share hidden_layer_sizes"):
        merge([narrow[0], wide[0]])


@pytest.mark.parametrize("task", ["churn", "digits"])
def test_ensemble_pipeline_exports_one_graph_within_parity(task: str) -> None:
    spec = load_task(task)
    data = load_data(spec, TrainOptions(seed=3, rows=500))
    splits = split(data, spec.split, 3)
    mlp = spec.mlp.model_copy(update={**FAST, "ensemble": 3})
    pipeline = fit_pipeline(spec, mlp, 3, splits.train)
    single = fit_pipeline(spec, mlp.model_copy(update={"ensemble": 1}), 3, splits.train)
    hidden = spec.mlp.hidden_layer_sizes
    assert pipeline.named_steps["mlp"].hidden_layer_sizes == tuple(3 * h for h in hidden)
    # member 0 of the ensemble is the single network of the same seed
    np.testing.assert_array_equal(
        pipeline.named_steps["mlp"].coefs_[0][:, : hidden[0]], single.named_steps["mlp"].coefs_[0]
    )
    session = open_session(convert(pipeline, spec))
    assert [o.name for o in session.get_outputs()] == [
        o.name for o in open_session(convert(single, spec)).get_outputs()
    ]
    onnx = onnx_probabilities(session, spec, splits.test.X)
    np.testing.assert_allclose(onnx, pipeline.predict_proba(splits.test.X), atol=1e-5)
