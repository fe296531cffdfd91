"""Shared fixtures for the training tests: small, fast runs of the real training code."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.training.sports import SPORTS_SPEC, sports_frame
from training.spec import load_task
from training.train import TrainOptions, TrainResult, train

FAST_MLP = {"max_iter": 40, "n_iter_no_change": 5}
SMALL_ROWS = {"draft_pick": 400, "churn": 600, "digits": 600}

TrainFn = Callable[..., TrainResult]


@pytest.fixture
def models(tmp_path: Path) -> Path:
    """An empty registry folder."""
    return tmp_path / "models"


@pytest.fixture
def quick_train(models: Path) -> TrainFn:
    """Train a built-in task on few rows and few epochs into the test's registry."""

    def run(task: str = "draft_pick", **overrides: object) -> TrainResult:
        options: dict[str, object] = {
            "out": models,
            "seed": 0,
            "rows": SMALL_ROWS[task],
            "mlp_overrides": FAST_MLP,
        }
        options.update(overrides)
        return train(load_task(task), TrainOptions(**options))  # type: ignore[arg-type]

    return run


@pytest.fixture
def sports(tmp_path: Path) -> tuple[Path, Path]:
    """(spec file, CSV file) of the sports data set, written into the test's folder."""
    spec_path, csv_path = tmp_path / "rookies.toml", tmp_path / "rookies.csv"
    spec_path.write_text(SPORTS_SPEC, encoding="utf-8")
    sports_frame().to_csv(csv_path, index=False)
    return spec_path, csv_path
