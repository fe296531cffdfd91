"""The promotion gate: a new version must not be clearly worse than the one it would replace."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from service.manifest import sha256_file
from training import registry
from training.data import Dataset
from training.evaluate import roc_auc
from training.export import ORT_ERRORS, onnx_probabilities, open_session
from training.spec import TaskSpec

DEFAULT_TOLERANCE = 0.01
MODEL_ERRORS: tuple[type[Exception], ...] = (OSError, *ORT_ERRORS)


@dataclass(frozen=True)
class Verdict:
    passed: bool
    message: str


def check(
    task_dir: Path, spec: TaskSpec, data: Dataset, new_auc: float, tolerance: float
) -> Verdict:
    """Compare ROC AUCs of the current and the new model on the same rows (the new test data)."""
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
        current_auc = roc_auc(data.y, onnx_probabilities(session, spec, data.X))
    except MODEL_ERRORS as exc:
        return Verdict(True, f"current {current.version} cannot be evaluated ({exc}): promoted")
    if new_auc < current_auc - tolerance:
        return Verdict(
            False,
            f"not promoted: ROC AUC {new_auc:.4f} is worse than current "
            f"{current.version}'s {current_auc:.4f} on the same rows by more "
            f"than {tolerance:g} (use --force to promote anyway)",
        )
    return Verdict(True, f"promoted: ROC AUC {new_auc:.4f} vs current {current_auc:.4f}")
