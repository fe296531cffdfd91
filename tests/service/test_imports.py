"""The service must run without the training stack: no scikit-learn, pandas, skl2onnx, pickle."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SERVICE = Path(__file__).resolve().parents[2] / "service"
FORBIDDEN = ("sklearn", "pandas", "skl2onnx", "onnx", "scipy", "matplotlib", "training")
FORBIDDEN_IMPORTS = {*FORBIDDEN, "pickle", "cloudpickle", "joblib", "dill"}


def test_importing_and_building_the_app_loads_no_training_library(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "import service.__main__\n"
        "from service.app import create_app\n"
        "from service.settings import Settings\n"
        f"create_app(Settings(models_dir={str(tmp_path)!r}))\n"
        f"loaded = [m for m in {FORBIDDEN!r} if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_no_service_module_imports_pickle_or_the_training_stack() -> None:
    for path in SERVICE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN_IMPORTS, f"{path}: imports {name}"


def test_scoring_a_parquet_file_loads_no_training_library(tmp_path: Path) -> None:
    """pyarrow would import pandas where it is installed; the score command keeps it out."""
    models = SERVICE.parent / "models"
    source, target = tmp_path / "in.parquet", tmp_path / "out.parquet"
    code = (
        "import sys\n"
        "import pyarrow as pa, pyarrow.parquet as pq\n"
        "from service.batch import parquet\n"  # as the command imports it, before any array
        "from service.manifest import Manifest, read_pointer\n"
        "from pathlib import Path\n"
        f"folder = Path({str(models)!r}) / 'churn'\n"
        "record = Manifest.load(folder / read_pointer(folder)).examples[0].record\n"
        "columns = {name: [value] for name, value in record.items()}\n"
        f"pq.write_table(pa.table(columns), {str(source)!r})\n"
        "from service.batch.cli import main\n"
        f"code = main(['--model', 'churn', '--models', {str(models)!r}, {str(source)!r},"
        f" '-o', {str(target)!r}, '--quiet'])\n"
        "assert code == 0, code\n"
        f"loaded = [m for m in {FORBIDDEN!r} if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert target.stat().st_size > 0
