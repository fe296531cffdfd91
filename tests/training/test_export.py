"""ONNX export: the whole pipeline in one graph, parity with scikit-learn, and the manifest."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnx
import onnx.numpy_helper
import onnxruntime as ort
import pytest

from service.manifest import DataInfo, Manifest, sha256_file
from tests.missing_values import load_loans_spec, write_files
from training.data import from_frame, missing_mask, read_csv, split
from training.evaluate import evaluate
from training.export import (
    EXAMPLE_COUNT,
    PARITY_MISSING_ROWS,
    ConversionError,
    ExportInputs,
    ParityError,
    example_rows,
    export_model,
    parity_rows,
)
from training.generators import generate
from training.pipeline import build_pipeline
from training.spec import SpecError, load_task


@pytest.fixture(scope="module")
def fitted():  # type: ignore[no-untyped-def]
    spec = load_task("churn")
    sample = generate("churn", 800, 2)
    data = from_frame(spec, sample.frame, source="t", where="t")
    parts = split(data, spec.split, 2)
    mlp = spec.mlp.model_copy(update={"max_iter": 30})
    pipeline = build_pipeline(spec, mlp, 2).fit(parts.train.X, parts.train.y)
    return spec, parts, pipeline


def inputs(parts, pipeline) -> ExportInputs:  # type: ignore[no-untyped-def]
    metrics = evaluate(parts.test.y, pipeline.predict_proba(parts.test.X), 0.5, "test")
    return ExportInputs(
        version="v1",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        threshold=0.4,
        metrics=metrics,
        holdout_metrics=None,
        data=DataInfo(
            source="t",
            sha256="0" * 64,
            rows=800,
            train_rows=1,
            validation_rows=1,
            test_rows=1,
            seed=2,
        ),
        params={"seed": 2},
        train_X=parts.train.X,
        check_X=parts.test.X,
    )


def test_export_writes_one_graph_with_an_input_per_feature(fitted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    spec, parts, pipeline = fitted
    manifest = export_model(pipeline, spec, tmp_path, inputs(parts, pipeline))
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == spec.feature_names
    types = {i.name: i.type for i in session.get_inputs()}
    assert types["geography"] == "tensor(string)" and types["age"] == "tensor(float)"
    assert [o.name for o in session.get_outputs()] == ["label", "probabilities"]
    assert manifest.onnx.sha256 == sha256_file(tmp_path / "model.onnx")
    assert Manifest.load(tmp_path) == manifest


def test_scaling_is_exported_as_plain_arithmetic(fitted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`Sub` and `Div`, which onnxruntime vectorises, not the ML domain's slower `Scaler`."""
    spec, parts, pipeline = fitted
    export_model(pipeline, spec, tmp_path, inputs(parts, pipeline))
    graph = onnx.load(tmp_path / "model.onnx").graph
    ops = [node.op_type for node in graph.node]
    assert "Scaler" not in ops and {"Sub", "Div"} <= set(ops)
    scaler = pipeline.named_steps["pre"].named_transformers_["num"]
    divisors = [i for i in graph.initializer if i.dims == [len(scaler.scale_)]]
    assert any(np.allclose(onnx.numpy_helper.to_array(i), scaler.scale_) for i in divisors)


def test_onnx_matches_sklearn_probabilities(fitted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    spec, parts, pipeline = fitted
    manifest = export_model(pipeline, spec, tmp_path, inputs(parts, pipeline))
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    feeds = {
        f.name: parts.test.X[[f.name]]
        .to_numpy()
        .astype(object if f.type == "category" else np.float32)
        for f in spec.features
    }
    _, probabilities = session.run(None, feeds)
    np.testing.assert_allclose(probabilities, pipeline.predict_proba(parts.test.X), atol=1e-5)
    assert 0 < manifest.parity_max_abs_diff <= 1e-5


def test_manifest_records_training_range_and_examples(fitted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    spec, parts, pipeline = fitted
    manifest = export_model(pipeline, spec, tmp_path, inputs(parts, pipeline))
    age = manifest.feature("age")
    assert age.train_min == parts.train.X["age"].min() and age.min == 18
    assert manifest.threshold == 0.4 and manifest.positive_label == "churned"
    assert len(manifest.examples) == 5
    example = manifest.examples[0]
    assert isinstance(example.record["geography"], str)
    assert isinstance(example.record["has_cr_card"], bool)
    assert isinstance(example.record["age"], int)
    expected = pipeline.predict_proba(parts.test.X.head(1))[0]
    np.testing.assert_allclose(example.probabilities, expected, atol=1e-5)


def test_parity_gate_refuses_to_write(fitted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    spec, parts, pipeline = fitted
    with pytest.raises(ParityError, match="differ by"):
        export_model(pipeline, spec, tmp_path, inputs(parts, pipeline), tolerance=0.0)
    assert not (tmp_path / "model.onnx").exists()
    assert not (tmp_path / "manifest.json").exists()


def test_a_spec_without_missing_values_is_checked_on_its_rows_alone(fitted) -> None:  # type: ignore[no-untyped-def]
    spec, parts, _ = fitted
    assert parity_rows(spec, parts.test.X) is parts.test.X
    assert example_rows(spec, parts.test.X).equals(parts.test.X.head(EXAMPLE_COUNT))


def test_parity_rows_leave_out_each_nullable_feature_then_all(tmp_path: Path) -> None:
    spec = load_loans_spec()
    _, csv_path = write_files(tmp_path, rows=300)
    X = read_csv(spec, csv_path).X
    rows = parity_rows(spec, X)
    nullable = spec.nullable_features
    assert len(rows) == len(X) + (len(nullable) + 1) * PARITY_MISSING_ROWS
    missing = missing_mask(spec, rows).iloc[len(X) :].to_numpy()
    blocks = missing.reshape(len(nullable) + 1, PARITY_MISSING_ROWS, len(spec.features))
    columns = [spec.feature_names.index(name) for name in nullable]
    for block, column in zip(blocks, columns, strict=False):
        assert block[:, column].all()
    assert blocks[-1][:, columns].all() and not blocks[-1][:, spec.feature_names.index("age")].any()


def test_what_skl2onnx_cannot_convert_is_refused_naming_the_feature_and_key(
    tmp_path: Path,
) -> None:
    """An imputer with its own indicator (skl2onnx fails on it) stands for any unsupported step."""
    spec = load_loans_spec()
    _, csv_path = write_files(tmp_path / "data", rows=300)
    data = read_csv(spec, csv_path)
    pipeline = build_pipeline(spec, spec.mlp.model_copy(update={"max_iter": 3}), 0)
    pipeline.set_params(pre__num_median__impute__add_indicator=True)
    pipeline.fit(data.X, data.y)
    parts = split(data, spec.split, 0)
    folder = tmp_path / "version"
    folder.mkdir()
    with pytest.raises(ConversionError) as caught:
        export_model(pipeline, spec, folder, inputs(parts, pipeline))
    message = str(caught.value)
    assert isinstance(caught.value, SpecError)  # the CLI's exit 2, nothing written
    assert message.startswith("loans: skl2onnx cannot convert the 'num_median' step for 'income'")
    assert message.endswith("change features.income.impute; nothing was written")
    assert list(folder.iterdir()) == []
