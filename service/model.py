"""One servable model version: its manifest, its onnxruntime session, and how to run a batch."""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from service.errors import ArtefactError, ArtefactMismatch, InvalidInput, SelfCheckFailed
from service.manifest import (
    LOAD_TIMEOUT_SECONDS,
    MANIFEST_FILE,
    MAX_MODEL_BYTES,
    MISSING_CATEGORY,
    FileTooLarge,
    Manifest,
    ManifestError,
    OnnxInfo,
    UnsafeFile,
    open_artefact,
)
from service.validation import Batch, Validator, batch_from_records

PROBABILITIES = "probabilities"
REQUIRED_OUTPUTS = ("label", PROBABILITIES)
ONNX_TYPES = {"float": "tensor(float)", "string": "tensor(string)"}
SELF_CHECK_TOLERANCE = 1e-5
READ_CHUNK = 1 << 20
QUIET = 4  # onnxruntime's log severity "fatal": errors are the service's to report
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
    session: ort.InferenceSession
    path: Path
    loaded_at: datetime

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    def predict(self, batch: Batch, options: ort.RunOptions | None = None) -> Prediction:
        """One session run for the whole batch; the label comes from the manifest's threshold."""
        (probabilities,) = self.session.run([PROBABILITIES], batch.inputs, options)
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


def load_model(
    folder: Path,
    threads: int,
    *,
    max_bytes: int = MAX_MODEL_BYTES,
    timeout: float = LOAD_TIMEOUT_SECONDS,
) -> LoadedModel:
    """Load a version folder and prove it servable: manifest, sha256, signature, self-check.

    Any failure is an ArtefactError naming `task/version` (never a machine path): a corrupt
    graph makes onnxruntime raise almost anything, and one bad version must never stop the
    others. A self-check still running `timeout` seconds after the load began is stopped.
    """
    where = f"{folder.parent.name}/{folder.name}"
    deadline = time.monotonic() + timeout
    try:
        return _load(folder, where, threads, max_bytes, deadline)
    except ArtefactError:
        raise
    except Exception as exc:
        raise ArtefactError(f"{where}: cannot be loaded ({_describe(exc)})") from exc


def self_check(model: LoadedModel, deadline: float | None = None) -> float:
    """Run the manifest's example records through the full request path; return the max abs diff.

    An example may leave a nullable feature out (it is then missing, as in a request). A model
    with nullable features must also impute as its manifest says (`_imputation_probe`).
    With a deadline (time.monotonic()), onnxruntime is told to stop the run when it passes, so
    a pathologically slow graph is refused instead of holding the loader.
    """
    manifest, where = model.manifest, f"{model.name}/{model.version}"
    if not manifest.examples:
        raise SelfCheckFailed(f"{where}: the manifest has no examples to self-check with")
    records = [example.record for example in manifest.examples]
    expected = np.asarray([example.probabilities for example in manifest.examples])
    try:
        batch = batch_from_records(model.validator, records)
    except InvalidInput as exc:
        raise SelfCheckFailed(
            f"{where}: the manifest's examples are not valid input: {exc}"
        ) from exc
    options = ort.RunOptions()
    options.log_severity_level = QUIET
    with _stopped_at(deadline, options):
        try:
            got = model.predict(batch, options).probabilities
            probe = _imputation_probe(model, batch)
            imputed = None if probe is None else model.predict(probe, options).probabilities
        except ORT_ERRORS as exc:
            if options.terminate:
                raise SelfCheckFailed(f"{where}: the self-check ran out of time") from exc
            raise SelfCheckFailed(
                f"{where}: the model fails on its examples: {_line(exc)}"
            ) from exc
    if got.shape != expected.shape:
        raise SelfCheckFailed(f"{where}: probabilities shape {got.shape} != {expected.shape}")
    gap = float(np.max(np.abs(got.astype(np.float64) - expected)))
    if not gap <= SELF_CHECK_TOLERANCE:
        raise SelfCheckFailed(
            f"{where}: probabilities differ from the manifest's by {gap:.3g} "
            f"(> {SELF_CHECK_TOLERANCE:g})"
        )
    if imputed is not None:
        _check_imputation(imputed, where)
    return gap


def _imputation_probe(model: LoadedModel, batch: Batch) -> Batch | None:
    """Two rows from the first example: every nullable feature missing, then given its impute
    value (None for a model without nullable features). The graph must answer both alike, so
    what the manifest (and the docs, the page, V2 metadata) says a missing value becomes is
    what the model does; a feature with a missing indicator is left missing in both rows, the
    indicator telling them apart.
    """
    nullable = model.validator.nullable
    if not nullable:
        return None
    inputs = {name: np.concatenate([array[:1], array[:1]]) for name, array in batch.inputs.items()}
    for feature in nullable:
        column = inputs[feature.name]
        column[0, 0] = MISSING_CATEGORY if feature.type == "category" else np.nan
        column[1, 0] = column[0, 0] if feature.missing_indicator else feature.impute_value
    return Batch(2, inputs, {})


def _check_imputation(probabilities: npt.NDArray[np.float32], where: str) -> None:
    if not np.isfinite(probabilities).all():
        raise SelfCheckFailed(f"{where}: missing values give non-finite probabilities")
    gap = float(np.max(np.abs(probabilities[0].astype(np.float64) - probabilities[1])))
    if not gap <= SELF_CHECK_TOLERANCE:
        raise SelfCheckFailed(
            f"{where}: missing values are not imputed as the manifest says: the probabilities "
            f"differ from those with the impute values by {gap:.3g} (> {SELF_CHECK_TOLERANCE:g})"
        )


def _load(folder: Path, where: str, threads: int, max_bytes: int, deadline: float) -> LoadedModel:
    try:
        manifest = Manifest.load(folder)
    except ManifestError as exc:
        raise ArtefactError(f"{where}: {MANIFEST_FILE}: {exc.reason}") from exc
    _check_identity(manifest, folder, where)
    model_bytes = _read_verified(folder, manifest.onnx, where, max_bytes)
    try:
        session = ort.InferenceSession(
            model_bytes,
            _options(threads),
            providers=["CPUExecutionProvider"],
            enable_fallback=0,  # no retry (and no message on stdout) for a broken model
        )
    except ORT_ERRORS as exc:
        raise ArtefactMismatch(f"{where}: onnxruntime cannot load the model: {_line(exc)}") from exc
    _check_signature(manifest, session, where)
    validator = Validator(manifest)
    model = LoadedModel(manifest, validator, session, folder, datetime.now(UTC))
    self_check(model, deadline)
    return model


def _options(threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Failures are raised and reported by the service in its own log lines; onnxruntime's own
    # plain-text copies would break the JSON-lines log.
    options.log_severity_level = QUIET
    return options


@contextlib.contextmanager
def _stopped_at(deadline: float | None, options: ort.RunOptions) -> Iterator[None]:
    """Set `options.terminate` when the deadline passes (onnxruntime checks it between nodes)."""
    if deadline is None:
        yield
        return
    timer = threading.Timer(max(0.0, deadline - time.monotonic()), _terminate, (options,))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _terminate(options: ort.RunOptions) -> None:
    options.terminate = True


def _check_identity(manifest: Manifest, folder: Path, where: str) -> None:
    if manifest.name != folder.parent.name or manifest.version != folder.name:
        raise ArtefactMismatch(
            f"{where}: manifest says {manifest.name}/{manifest.version}, "
            f"the folder is {folder.parent.name}/{folder.name}"
        )
    if manifest.onnx.outputs[:2] != list(REQUIRED_OUTPUTS):
        raise ArtefactMismatch(
            f"{where}: outputs {manifest.onnx.outputs} != {list(REQUIRED_OUTPUTS)}"
        )


def _read_verified(folder: Path, onnx: OnnxInfo, where: str, max_bytes: int) -> bytes:
    """Read the model once, confined and bounded, hashing as it streams in, so the file checked
    is exactly the file loaded."""
    try:
        handle = open_artefact(folder, onnx.file, max_bytes)
    except FileTooLarge as exc:
        raise ArtefactMismatch(f"{where}: {exc} (PREDICT_MAX_MODEL_BYTES)") from exc
    except UnsafeFile as exc:
        raise ArtefactMismatch(f"{where}: {exc}") from exc
    digest, chunks, size = hashlib.sha256(), [], 0
    with handle:
        while chunk := handle.read(READ_CHUNK):
            size += len(chunk)
            if size > max_bytes:  # it grew after it was opened
                raise ArtefactMismatch(f"{where}: {onnx.file} is over {max_bytes} bytes")
            digest.update(chunk)
            chunks.append(chunk)
    actual = digest.hexdigest()
    if actual != onnx.sha256:
        raise ArtefactMismatch(f"{where}: sha256 {actual[:12]}… != manifest {onnx.sha256[:12]}…")
    return b"".join(chunks)


def _describe(exc: BaseException) -> str:
    """`Type: first line of the message`, short: shown on /readyz."""
    return f"{type(exc).__name__}: {_line(exc)}"


def _line(exc: BaseException) -> str:
    """The first line of an error's message, at most 200 characters."""
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else ""


def _check_signature(manifest: Manifest, session: ort.InferenceSession, where: str) -> None:
    inputs: list[Any] = session.get_inputs()
    expected = [(f.name, ONNX_TYPES[f.onnx_type]) for f in manifest.features]
    actual = [(i.name, i.type) for i in inputs]
    if actual != expected:
        raise ArtefactMismatch(f"{where}: inputs {actual} != manifest {expected}")
    for node in inputs:
        if len(node.shape) != 2 or node.shape[1] not in (1, None, "None"):
            raise ArtefactMismatch(
                f"{where}: input {node.name!r} has shape {node.shape}, not [n, 1]"
            )
    outputs = {o.name: o for o in session.get_outputs()}
    missing = [name for name in REQUIRED_OUTPUTS if name not in outputs]
    if missing:
        raise ArtefactMismatch(f"{where}: the graph has no output {missing}")
    probabilities = outputs[PROBABILITIES]
    if probabilities.type != "tensor(float)" or len(probabilities.shape) != 2:
        raise ArtefactMismatch(
            f"{where}: output 'probabilities' is {probabilities.type} {probabilities.shape}"
        )
    columns, labels = probabilities.shape[1], len(manifest.labels)
    if isinstance(columns, int) and columns != labels:
        raise ArtefactMismatch(f"{where}: {columns} probability columns for {labels} labels")


# mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's ceiling on 64-bit systems
TRIM_THRESHOLD = 256 * 1024 * 1024
SERVICE_TRIM_THRESHOLD = 64 * 1024 * 1024


def keep_freed_memory(trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Keep freed heap for the next batch: raise glibc's mmap and trim thresholds for this
    process and those it forks later.

    A batch allocates and frees arrays of a megabyte or more; by default glibc returns such
    memory at once, so the next batch faults its pages in again (system time for every block of
    the score command and every big request). What is kept is bounded by one batch's working
    memory (big requests take the lane one at a time); a service worker keeps less
    (`SERVICE_TRIM_THRESHOLD`) so a rare huge body does not leave hundreds of MiB behind.
    False, changing nothing, where the C library has no `mallopt` (musl, macOS).
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):  # TypeError: Windows has no CDLL(None)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    done = [
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX),
        mallopt(M_TRIM_THRESHOLD, trim_threshold),
    ]
    return all(done)
