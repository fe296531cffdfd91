"""`--search`: candidates scored on the run's folds, the defaults first, the best kept."""

from __future__ import annotations

from tests.training.conftest import FAST_MLP
from training.baselines import fold_plan, learning_rows
from training.data import split
from training.search import search
from training.spec import load_task
from training.train import TrainOptions, load_data


def test_search_scores_candidates_by_cross_validation_and_keeps_the_best() -> None:
    spec = load_task("draft_pick")
    spec = spec.model_copy(
        update={"search": spec.search.model_copy(update={"budget_seconds": 4.0})}
    )
    splits = split(load_data(spec, TrainOptions(seed=2, rows=300)), spec.split, 2)
    folds, _ = fold_plan(splits, 3, 2)
    base = spec.mlp.model_copy(update=FAST_MLP)
    chosen, tried = search(spec, base, learning_rows(splits), folds, 2)
    assert len(tried) >= 2  # the defaults, then at least one candidate within the budget
    first = tried[0]
    assert (first["alpha"], tuple(first["hidden_layer_sizes"])) == (
        base.alpha,
        base.hidden_layer_sizes,
    )
    best = max(tried, key=lambda t: (t["cv_roc_auc"], -t["cv_log_loss"]))
    assert (chosen.alpha, list(chosen.hidden_layer_sizes)) == (
        best["alpha"],
        best["hidden_layer_sizes"],
    )
    assert chosen.ensemble == base.ensemble  # candidates are scored as one network, kept as set
    assert best["cv_roc_auc"] >= first["cv_roc_auc"] > 0.5  # it can only match or beat them
