"""Container images: the Dockerfile lints clean; the serving and Spark images exclude the
training stack."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from .conftest import ROOT, require_tool

TRAINING_STACK = {"scikit-learn", "pandas", "skl2onnx", "matplotlib", "onnx", "scipy", "joblib"}


def pinned(path: Path) -> dict[str, str]:
    """name -> version of a pip freeze file, names normalised as PyPI does."""
    pins = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run(
        [require_tool("hadolint"), str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_has_both_targets_and_runs_serve_as_non_root() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM \S+ AS serve$", text, re.M)
    assert re.search(r"^FROM \S+ AS train$", text, re.M)
    serve = text.split(" AS serve")[1].split(" AS train")[0]
    assert "USER 10001:10001" in serve and "HEALTHCHECK" in serve and "/readyz" in serve
    assert "requirements/serve.txt" in serve and "training/" not in serve


def test_serve_requirements_exclude_the_training_stack() -> None:
    serve = pinned(ROOT / "requirements" / "serve.txt")
    assert {"onnxruntime", "fastapi", "uvicorn", "orjson", "prometheus-client"} <= set(serve)
    assert not TRAINING_STACK & set(serve)
    train = pinned(ROOT / "requirements" / "train.txt")
    assert {"scikit-learn", "skl2onnx", "onnxruntime"} <= set(train)


def test_the_spark_image_has_java_pyspark_and_the_serving_stack_only() -> None:
    text = (ROOT / "Dockerfile").read_text()
    spark = text.split(" AS spark")[1]
    assert "openjdk-17-jre-headless" in spark and "requirements/spark.txt" in spark
    assert "USER 10001:10001" in spark and "training/" not in spark
    pins = pinned(ROOT / "requirements" / "spark.txt")
    assert {"pyspark", "py4j", "onnxruntime", "pyarrow"} <= set(pins)
    assert not (TRAINING_STACK - {"pandas"}) & set(pins)  # pyspark imports pandas


def test_pins_agree_with_the_constraints() -> None:
    constraints = pinned(ROOT / "constraints.txt")
    for name in ("serve", "train", "spark"):
        for package, version in pinned(ROOT / "requirements" / f"{name}.txt").items():
            assert constraints.get(package) == version, (name, package, version)


def test_serving_code_imports_without_the_training_stack(tmp_path: Path) -> None:
    """Install only requirements/serve.txt into a fresh venv, as the image does, and import."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run(
        [*pip, "install", "--no-deps", "-r", str(ROOT / "requirements" / "serve.txt")],
        check=True,
        timeout=600,
    )
    probe = (
        "import sys, service.app, service.__main__, service.api.grpc_v2, service.api.docs\n"
        "banned = {'sklearn', 'pandas', 'skl2onnx', 'matplotlib', 'training', 'joblib'}\n"
        "loaded = banned & set(sys.modules)\n"
        "assert not loaded, loaded\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
