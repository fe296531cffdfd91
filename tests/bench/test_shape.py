"""`bench.shape` on the real tree: the floor plan the renovation (issue 17) set, kept."""

from __future__ import annotations

from pathlib import Path

from bench.shape import closure, cycles, imports, modules, request_path

MODELS = Path(__file__).resolve().parents[2] / "models"


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(path, known) - {name} for name, path in known.items()}


def test_service_has_no_import_cycle() -> None:
    assert cycles(graph()) == []


def test_the_model_knows_no_wire_format_and_no_http() -> None:
    reached = closure(graph(), "service.model")
    assert not {m for m in reached if m.startswith(("service.codecs", "service.api"))}, reached


def test_a_json_prediction_runs_the_json_codec_and_no_other() -> None:
    path = request_path(MODELS, "churn")
    assert {"service.api.v1", "service.codecs.v1_json", "service.model"} <= path.keys()
    assert "LoadedModel.predict" in path["service.model"]
    assert not {"service.codecs.csv", "service.codecs.v2", "service.codecs.csv_blocks"} & set(path)
