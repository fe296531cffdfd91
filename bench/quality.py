"""`python -m bench.quality`: model quality over many seeds, the way `train` makes it.

Each run is the real training code (`training.train.train`) into a scratch registry, so a figure
here is what a user gets from `python -m training train TASK --seed S`. Per run: ROC AUC of the
network on its primary sample (the 20,000 fresh rows for generated tasks, else the test split),
the gap to the Bayes-optimal AUC where the truth is known, accuracy, the best baseline, and the
cross-validated means when `--cv-folds` is given. A summary gives min / median / max per task.

    python -m bench.quality --tasks churn,draft_pick --seeds 0-29 --cv-folds 0
    python -m bench.quality --tasks churn --data /path/Churn_Modelling.csv --set alpha=0.03
    python -m bench.quality --spec churn_without_splines.toml --data /path/Churn_Modelling.csv

`--cv-folds 0` is quicker and gives the same network: cross-validation only chooses the
threshold (so accuracy may differ) and reports; the kept fit uses the same rows either way.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path
from typing import Any

from training.spec import load_spec, load_task
from training.train import DEFAULT_SEED, TrainOptions, train


def main() -> None:
    args = _parser().parse_args()
    overrides: dict[str, Any] = {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = _value(value)
    results: dict[str, list[dict[str, float]]] = {}
    _say(
        "| task | seed | ROC AUC | Bayes AUC | gap | accuracy | best baseline | CV network | "
        "CV best baseline | seconds |"
    )
    _say("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as scratch:
        specs = (
            [load_spec(args.spec)] if args.spec else [load_task(t) for t in args.tasks.split(",")]
        )
        for spec in specs:
            task = spec.name
            for seed in _seeds(args.seeds):
                options = TrainOptions(
                    out=Path(scratch) / "models",
                    seed=seed,
                    data=args.data,
                    cv_folds=args.cv_folds,
                    mlp_overrides=overrides,
                    force=True,
                )
                result = train(spec, options)
                row = _row(result.manifest)
                row["seconds"] = result.seconds
                results.setdefault(task, []).append(row)
                _say(_line(task, seed, row))
    _say("")
    _say("| task | runs | figure | min | median | max |")
    _say("| --- | --- | --- | --- | --- | --- |")
    for task, rows in results.items():
        for figure in ("roc_auc", "gap", "accuracy", "cv_network", "cv_baseline", "seconds"):
            values = [r[figure] for r in rows if figure in r]
            if values:
                _say(
                    f"| {task} | {len(values)} | {figure} | {min(values):.4f} | "
                    f"{statistics.median(values):.4f} | {max(values):.4f} |"
                )


def _say(text: str) -> None:
    print(text, flush=True)  # noqa: T201  # the benchmark's output is the table


def _row(manifest: Any) -> dict[str, float]:
    metrics = manifest.metrics
    row = {"roc_auc": metrics.roc_auc, "accuracy": metrics.accuracy}
    if metrics.bayes_roc_auc is not None:
        row["bayes"] = metrics.bayes_roc_auc
        row["gap"] = metrics.bayes_roc_auc - metrics.roc_auc
    best = max(manifest.baselines, key=lambda b: b.metrics.roc_auc)
    row["baseline"] = best.metrics.roc_auc
    cv = manifest.cross_validation
    if cv is not None:
        row["cv_network"] = cv.mean("network")
        row["cv_baseline"] = max(cv.mean(b.name) for b in manifest.baselines)
    return row


def _line(task: str, seed: int, row: dict[str, float]) -> str:
    def cell(key: str) -> str:
        return f"{row[key]:.4f}" if key in row else "-"

    cells = [cell(k) for k in ("roc_auc", "bayes", "gap", "accuracy", "baseline")]
    cells += [cell("cv_network"), cell("cv_baseline"), f"{row['seconds']:.1f}"]
    return f"| {task} | {seed} | " + " | ".join(cells) + " |"


def _seeds(text: str) -> list[int]:
    first, _, last = text.partition("-")
    return list(range(int(first), int(last or first) + 1))


def _value(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__)
    p.add_argument("--tasks", default="churn,draft_pick")
    p.add_argument("--seeds", default=str(DEFAULT_SEED), help="one seed or a range: 0-29")
    p.add_argument("--spec", type=Path, help="a spec file instead of --tasks (a variant)")
    p.add_argument("--data", type=Path, help="train on this CSV (one task)")
    p.add_argument("--cv-folds", type=int, default=5)
    p.add_argument("--set", action="append", default=[], help="[mlp] override: key=value")
    return p


if __name__ == "__main__":
    main()
