"""The promotion gate: a new version must not be clearly worse than the one it would replace.

Both versions are scored on the same rows and the AUC difference gets a paired bootstrap interval:
the gate refuses only a difference beyond the tolerance (the smallest loss worth refusing) whose
interval also excludes zero (a loss the rows show is real, not noise of the sample)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from service.manifest import sha256_file
from training import registry
from training.data import Dataset
from training.evaluate import (
    BOOTSTRAP_LEVEL,
    AucDifference,
    Probabilities,
    paired_auc_difference,
    roc_auc,
)
from training.export import ORT_ERRORS, onnx_probabilities, open_session
from training.spec import TaskSpec

DEFAULT_TOLERANCE = 0.01
LEVEL_TEXT = f"{BOOTSTRAP_LEVEL:.0%}"
MODEL_ERRORS: tuple[type[Exception], ...] = (OSError, *ORT_ERRORS)


@dataclass(frozen=True)
class Verdict:
    """Whether the new version may be promoted, and the sentence that says why."""

    passed: bool
    message: str


def check(
    task_dir: Path,
    spec: TaskSpec,
    data: Dataset,
    new_probabilities: Probabilities,
    tolerance: float,
    seed: int,
) -> Verdict:
    """Compare the new model's probabilities on `data` with the current version's on the same
    rows (its ONNX file, as served)."""
    current = registry.current_manifest(task_dir)
    if current is None:
        return Verdict(True, "no current version: promoted")
    if current.onnx.inputs != spec.feature_names or current.labels != list(spec.target.labels):
        return Verdict(
            True,
            f"current {current.version} has other features or labels: promoted without comparison",
        )
    model_path = task_dir / current.version / current.onnx.file
    try:
        if sha256_file(model_path) != current.onnx.sha256:
            return Verdict(True, f"current {current.version} fails its checksum: promoted")
        session = open_session(model_path.read_bytes())
        current_probabilities = onnx_probabilities(session, spec, data.X)
    except MODEL_ERRORS as exc:
        return Verdict(True, f"current {current.version} cannot be evaluated ({exc}): promoted")
    new_auc = roc_auc(data.y, new_probabilities)
    current_auc = roc_auc(data.y, current_probabilities)
    paired = paired_auc_difference(data.y, new_probabilities, current_probabilities, seed)
    compared = (
        f"ROC AUC {new_auc:.4f} vs current {current.version}'s {current_auc:.4f} "
        f"on the same {len(data):,} rows: difference {paired.difference:+.4f} "
        f"({LEVEL_TEXT} interval {paired.low:+.4f} to {paired.high:+.4f})"
    )
    if paired.difference < -tolerance and paired.high < 0:
        return Verdict(
            False,
            f"not promoted: {compared} is below zero and beyond the tolerance {tolerance:g} "
            "(use --force to promote anyway)",
        )
    return Verdict(True, f"promoted: {compared}{_why(paired, tolerance)}")


def _why(paired: AucDifference, tolerance: float) -> str:
    """Why a loss, if any, did not stop the promotion."""
    if paired.difference >= 0:
        return ""
    if paired.high >= 0:
        return "; the interval includes zero"
    return f"; within the tolerance {tolerance:g}"
