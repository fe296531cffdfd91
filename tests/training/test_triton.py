"""export-triton writes a model repository Triton can read: the config parses as Triton's
protobuf text format and its names and datatypes match the ONNX model."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import onnx
import pytest
import tritonclient
from google.protobuf import text_format

from service.manifest import Manifest
from training import registry
from training.__main__ import main
from training.triton import TritonExportError, export_triton

from .conftest import TrainFn

ONNX_TO_TRITON = {
    onnx.TensorProto.FLOAT: "TYPE_FP32",
    onnx.TensorProto.STRING: "TYPE_STRING",
    onnx.TensorProto.INT64: "TYPE_INT64",
}


def model_config_module() -> ModuleType:
    """tritonclient ships Triton's model-config protobuf; load it without the gRPC extra (whose
    protobuf<7 pin conflicts with onnx's), straight from its file."""
    path = Path(tritonclient.__file__).parent / "grpc" / "model_config_pb2.py"
    spec = importlib.util.spec_from_file_location("triton_model_config_pb2", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse(config: Path) -> Any:
    pb2 = model_config_module()
    return text_format.Parse(config.read_text(), pb2.ModelConfig())


@pytest.mark.parametrize("task", ["churn", "digits"])
def test_config_matches_the_onnx_model(quick_train: TrainFn, tmp_path: Path, task: str) -> None:
    result = quick_train(task)
    model_dir = export_triton(result.path, tmp_path / "triton")
    config = parse(model_dir / "config.pbtxt")
    graph = onnx.load(str(model_dir / "1" / "model.onnx")).graph
    assert config.name == task and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size > 0 and config.HasField("dynamic_batching")
    names = [i.name for i in config.input]
    assert names == [i.name for i in graph.input] == result.manifest.onnx.inputs
    for declared, actual in zip(config.input, graph.input, strict=True):
        pb2 = model_config_module()
        assert (
            pb2.DataType.Name(declared.data_type)
            == ONNX_TO_TRITON[actual.type.tensor_type.elem_type]
        )
        assert list(declared.dims) == [1]
    outputs = {o.name: o for o in config.output}
    assert set(outputs) == {o.name for o in graph.output} == {"label", "probabilities"}
    assert list(outputs["probabilities"].dims) == [len(result.manifest.labels)]
    assert (model_dir / "1" / "model.onnx").read_bytes() == (
        result.path / "model.onnx"
    ).read_bytes()


def test_cli_exports_the_current_version(
    quick_train: TrainFn, models: Path, tmp_path: Path
) -> None:
    result = quick_train("draft_pick")
    assert (
        main(
            [
                "export-triton",
                "draft_pick",
                "--models",
                str(models),
                "--out",
                str(tmp_path / "repo"),
            ]
        )
        == 0
    )
    assert (
        parse(tmp_path / "repo" / "draft_pick" / "config.pbtxt")
        .parameters["registry_version"]
        .string_value
        == result.version
    )
    assert main(["export-triton", "nba", "--models", str(models), "--out", str(tmp_path)]) == 2


def test_tampered_model_is_not_exported(quick_train: TrainFn, tmp_path: Path) -> None:
    result = quick_train("draft_pick")
    copy = tmp_path / "copy"
    shutil.copytree(result.path, copy)
    (copy / "model.onnx").write_bytes(b"not a model")
    with pytest.raises(TritonExportError, match="sha256"):
        export_triton(copy, tmp_path / "repo")
    assert Manifest.load(copy).version == result.version
    assert registry.versions(result.path.parent) == [result.version]
