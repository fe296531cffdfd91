"""One servable model version: its manifest, its onnxruntime session, and how to run a batch."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from service.batch import Batch
from service.errors import ArtefactError, ArtefactMismatch, InvalidInput, SelfCheckFailed
from service.manifest import Manifest, ManifestError
from service.records import batch_from_records
from service.tensor_json import TensorsDecoder
from service.typed_json import RecordsDecoder
from service.validation import Validator

PROBABILITIES = "probabilities"
REQUIRED_OUTPUTS = ("label", PROBABILITIES)
ONNX_TYPES = {"float": "tensor(float)", "string": "tensor(string)"}
SELF_CHECK_TOLERANCE = 1e-5
# onnxruntime's errors derive straight from Exception; these are the ones loading or running raises.
ORT_ERRORS: tuple[type[Exception], ...] = (
    ort_state.Fail,
    ort_state.InvalidArgument,
    ort_state.InvalidProtobuf,
    ort_state.InvalidGraph,
    ort_state.NoSuchFile,
    ort_state.NotImplemented,
    ort_state.RuntimeException,
)


@dataclass(frozen=True)
class Prediction:
    """Class probabilities ([n, k], manifest label order) and the decided class index per row."""

    probabilities: npt.NDArray[np.float32]
    classes: npt.NDArray[np.intp]


@dataclass(frozen=True)
class LoadedModel:
    """Immutable, so a hot reload can swap it in one assignment while requests keep the old one."""

    manifest: Manifest
    validator: Validator
    json_records: RecordsDecoder  # v1 JSON bodies' fast path, built with the validator
    json_tensors: TensorsDecoder  # v2 (Open Inference Protocol) JSON bodies' fast path, likewise
    session: ort.InferenceSession
    path: Path
    loaded_at: datetime

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    def predict(self, batch: Batch) -> Prediction:
        """One session run for the whole batch; the label comes from the manifest's threshold."""
        (probabilities,) = self.session.run([PROBABILITIES], batch.inputs)
        return Prediction(probabilities, self.decide(probabilities))

    def decide(self, probabilities: npt.NDArray[np.float32]) -> npt.NDArray[np.intp]:
        """Binary: positive when P(positive) >= threshold (as training evaluates); else argmax.

        The graph's own `label` output uses 0.5, so it is ignored in favour of the tuned threshold.
        """
        if self.manifest.kind == "binary":
            positive = probabilities[:, self.manifest.positive_index].astype(np.float64)
            return (positive >= self.manifest.threshold).astype(np.intp)
        classes: npt.NDArray[np.intp] = np.argmax(probabilities, axis=1).astype(np.intp)
        return classes


def load_model(folder: Path, threads: int) -> LoadedModel:
    """Load a version folder and prove it servable: manifest, sha256, signature, self-check."""
    try:
        manifest = Manifest.load(folder)
    except ManifestError as exc:
        raise ArtefactError(str(exc)) from exc
    _check_identity(manifest, folder)
    model_bytes = _read_verified(folder / manifest.onnx.file, manifest.onnx.sha256)
    try:
        session = ort.InferenceSession(
            model_bytes, _options(threads), providers=["CPUExecutionProvider"]
        )
    except ORT_ERRORS as exc:
        raise ArtefactMismatch(f"{folder}: onnxruntime cannot load the model: {exc}") from exc
    _check_signature(manifest, session, folder)
    validator = Validator(manifest)
    model = LoadedModel(
        manifest,
        validator,
        RecordsDecoder(validator),
        TensorsDecoder(validator),
        session,
        folder,
        datetime.now(UTC),
    )
    self_check(model)
    return model


def self_check(model: LoadedModel) -> float:
    """Run the manifest's example records through the full request path; return the max abs diff."""
    manifest = model.manifest
    if not manifest.examples:
        raise SelfCheckFailed(f"{model.path}: the manifest has no examples to self-check with")
    records = [example.record for example in manifest.examples]
    expected = np.asarray([example.probabilities for example in manifest.examples])
    try:
        got = model.predict(batch_from_records(model.validator, records)).probabilities
    except InvalidInput as exc:
        raise SelfCheckFailed(
            f"{model.path}: the manifest's examples are not valid input: {exc}"
        ) from exc
    except ORT_ERRORS as exc:
        raise SelfCheckFailed(f"{model.path}: the model fails on its examples: {exc}") from exc
    if got.shape != expected.shape:
        raise SelfCheckFailed(f"{model.path}: probabilities shape {got.shape} != {expected.shape}")
    gap = float(np.max(np.abs(got.astype(np.float64) - expected)))
    if not gap <= SELF_CHECK_TOLERANCE:
        raise SelfCheckFailed(
            f"{model.path}: probabilities differ from the manifest's by {gap:.3g} "
            f"(> {SELF_CHECK_TOLERANCE:g})"
        )
    return gap


def _options(threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return options


def _check_identity(manifest: Manifest, folder: Path) -> None:
    if manifest.name != folder.parent.name or manifest.version != folder.name:
        raise ArtefactMismatch(
            f"{folder}: manifest says {manifest.name}/{manifest.version}, "
            f"the folder is {folder.parent.name}/{folder.name}"
        )
    if manifest.onnx.outputs[:2] != list(REQUIRED_OUTPUTS):
        raise ArtefactMismatch(
            f"{folder}: outputs {manifest.onnx.outputs} != {list(REQUIRED_OUTPUTS)}"
        )


def _read_verified(path: Path, sha256: str) -> bytes:
    """Read once and hash those bytes, so the file checked is exactly the file loaded."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ArtefactError(f"{path}: cannot read ({exc.strerror})") from exc
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise ArtefactMismatch(f"{path}: sha256 {actual[:12]}… != manifest {sha256[:12]}…")
    return data


def _check_signature(manifest: Manifest, session: ort.InferenceSession, folder: Path) -> None:
    inputs: list[Any] = session.get_inputs()
    expected = [(f.name, ONNX_TYPES[f.onnx_type]) for f in manifest.features]
    actual = [(i.name, i.type) for i in inputs]
    if actual != expected:
        raise ArtefactMismatch(f"{folder}: inputs {actual} != manifest {expected}")
    for node in inputs:
        if len(node.shape) != 2 or node.shape[1] not in (1, None, "None"):
            raise ArtefactMismatch(
                f"{folder}: input {node.name!r} has shape {node.shape}, not [n, 1]"
            )
    outputs = {o.name: o for o in session.get_outputs()}
    missing = [name for name in REQUIRED_OUTPUTS if name not in outputs]
    if missing:
        raise ArtefactMismatch(f"{folder}: the graph has no output {missing}")
    probabilities = outputs[PROBABILITIES]
    if probabilities.type != "tensor(float)" or len(probabilities.shape) != 2:
        raise ArtefactMismatch(
            f"{folder}: output 'probabilities' is {probabilities.type} {probabilities.shape}"
        )
    columns, labels = probabilities.shape[1], len(manifest.labels)
    if isinstance(columns, int) and columns != labels:
        raise ArtefactMismatch(f"{folder}: {columns} probability columns for {labels} labels")
