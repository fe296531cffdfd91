"""Seldon MLServer for the comparison: its own virtualenv, the joblib pipeline, model settings.

MLServer 1.7 caps fastapi below 0.116, so it lives in `bench/.cache/mlserver-venv`, made once
and reused. It serves the churn model twice from one process: its scikit-learn runtime on the
same pipeline training fits (joblib; bench-only, never in the service), and `mlserver_onnx` on
our ONNX file. `parallel_workers: 0` (inference in the server process) sidesteps MLServer#2286
(workers fail to load models with uvloop >= 0.22 while /v2/health/ready says 200); uvloop is
pinned below 0.22 as well, and readiness is checked per model.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import joblib
import onnxruntime
import sklearn

from service.manifest import Manifest
from training.data import split
from training.pipeline import fit_pipeline
from training.spec import load_task
from training.train import DEFAULT_SEED, TrainOptions, load_data

BENCH_DIR = Path(__file__).resolve().parent
MLSERVER_VERSION = "1.7.*"
SKLEARN_MODEL = "churn-sklearn"
ONNX_MODEL = "churn-onnx"


def requirements() -> list[str]:
    """Same scikit-learn and onnxruntime as ours, so the pickle loads and the runs compare."""
    return [
        f"mlserver=={MLSERVER_VERSION}",
        f"mlserver-sklearn=={MLSERVER_VERSION}",
        f"scikit-learn=={sklearn.__version__}",
        f"onnxruntime=={onnxruntime.__version__}",
        "uvloop<0.22",
    ]


def ensure_venv(cache: Path) -> Path:
    """The MLServer virtualenv's python, created (or re-created for new pins) once."""
    venv = cache / "mlserver-venv"
    python = venv / "bin" / "python"
    stamp = venv / "requirements.txt"
    wanted = "\n".join(requirements())
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, *requirements()], check=True)
    stamp.write_text(wanted)
    return python


def fit_pickle(cache: Path, manifest: Manifest) -> Path:
    """The churn pipeline fitted as `training.train` fits it (default seed), dumped with joblib."""
    path = cache / "pickles" / f"churn-seed{DEFAULT_SEED}.joblib"
    if path.exists():
        return path
    spec = load_task("churn")
    options = TrainOptions(seed=DEFAULT_SEED)
    splits = split(load_data(spec, options), spec.split, options.seed)
    pipeline = fit_pipeline(spec, spec.mlp, options.seed, splits.train)
    path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(pipeline, path)
    return path


def write_model_repository(
    folder: Path, pickle: Path, onnx_file: Path, ports: dict[str, int]
) -> None:
    """settings.json plus one folder per model with its model-settings.json."""
    folder.mkdir(parents=True, exist_ok=True)
    settings = {
        "debug": False,
        "parallel_workers": 0,
        "host": "127.0.0.1",
        "http_port": ports["http"],
        "grpc_port": ports["grpc"],
        "metrics_port": ports["metrics"],
    }
    (folder / "settings.json").write_text(json.dumps(settings, indent=2))
    models = {
        SKLEARN_MODEL: ("mlserver_sklearn.SKLearnModel", pickle),
        ONNX_MODEL: ("mlserver_onnx.runtime.OnnxModel", onnx_file),
    }
    for name, (implementation, uri) in models.items():
        model_dir = folder / name
        model_dir.mkdir(exist_ok=True)
        model_settings = {
            "name": name,
            "implementation": implementation,
            "parameters": {"uri": str(uri.resolve()), "version": "v1"},
        }
        (model_dir / "model-settings.json").write_text(json.dumps(model_settings, indent=2))
