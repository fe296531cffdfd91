"""Write a Triton / KServe model repository for a registry version: the same ONNX file, at scale.

<out>/<task>/config.pbtxt     inputs, outputs, datatypes, dynamic batching
<out>/<task>/1/model.onnx     the exact file the service serves (checked against its sha256)
"""

from __future__ import annotations

import shutil
from pathlib import Path

from service.manifest import Manifest, sha256_file

MAX_BATCH_SIZE = 10_000
QUEUE_DELAY_MICROSECONDS = 500
TRITON_VERSION = "1"


class TritonExportError(Exception):
    """The version cannot be exported (its model file does not match the manifest)."""


def export_triton(version_dir: Path, out: Path) -> Path:
    """Copy the version's ONNX file into a Triton repository and write its config.pbtxt."""
    manifest = Manifest.load(version_dir)
    source = version_dir / manifest.onnx.file
    if sha256_file(source) != manifest.onnx.sha256:
        raise TritonExportError(f"{source}: sha256 does not match the manifest")
    model_dir = out / manifest.name
    (model_dir / TRITON_VERSION).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, model_dir / TRITON_VERSION / "model.onnx")
    (model_dir / "config.pbtxt").write_text(model_config(manifest), encoding="utf-8")
    return model_dir


def model_config(manifest: Manifest) -> str:
    """Triton's model configuration in protobuf text format.

    Every input is [batch, 1]; with batching on, Triton's dims leave out the batch dimension. The
    label output is [batch] only, which Triton expresses as dims [1] reshaped to [].
    """
    inputs = ",\n".join(
        _tensor(f.name, "TYPE_STRING" if f.type == "category" else "TYPE_FP32", "[ 1 ]")
        for f in manifest.features
    )
    outputs = ",\n".join(
        [
            _tensor("label", "TYPE_INT64", "[ 1 ]", reshape="[ ]"),
            _tensor("probabilities", "TYPE_FP32", f"[ {len(manifest.labels)} ]"),
        ]
    )
    return (
        f'name: "{manifest.name}"\n'
        'platform: "onnxruntime_onnx"\n'
        f"max_batch_size: {MAX_BATCH_SIZE}\n"
        f"version_policy: {{ specific: {{ versions: [ {TRITON_VERSION} ] }} }}\n"
        f"input [\n{inputs}\n]\n"
        f"output [\n{outputs}\n]\n"
        f"dynamic_batching {{ max_queue_delay_microseconds: {QUEUE_DELAY_MICROSECONDS} }}\n"
        "instance_group [ { count: 1, kind: KIND_CPU } ]\n"
        f'parameters {{ key: "registry_version" value: {{ string_value: "{manifest.version}" }} }}'
        "\n"
    )


def _tensor(name: str, dtype: str, dims: str, reshape: str | None = None) -> str:
    extra = f" reshape: {{ shape: {reshape} }}" if reshape is not None else ""
    return f'  {{ name: "{name}" data_type: {dtype} dims: {dims}{extra} }}'
