"""Corrupt, slow and stuck versions: each is that task's failure alone, against a real server.

A corrupt model.onnx whose manifest carries its (matching) sha256 passes the hash check, so only
onnxruntime can find the damage, and it raises almost anything (its own errors, but also
UnicodeDecodeError). Every kind must be refused, counted, logged and shown for its task while the
version before keeps serving under load and the other task loads and reloads normally.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.reliability.conftest import StartServer
from tests.reliability.helpers import Load, assert_no_internals, wait_until
from tests.service.helpers import ADMIN_TOKEN, copy_registry, manifest_of, train_task
from training.registry import promote

POLL = "0.1"
TIMEOUT = 6  # PREDICT_LOAD_TIMEOUT_SECONDS for the slow graph
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="module")
def two_tasks(registry_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pristine registry of churn and draft_pick; tests work on copies of it."""
    models = copy_registry(registry_dir, tmp_path_factory.mktemp("two-tasks") / "models")
    train_task(models, "draft_pick")
    return models


@pytest.fixture
def models(two_tasks: Path, tmp_path: Path) -> Path:
    return copy_registry(two_tasks, tmp_path / "models")


def corruptions(model: bytes, other_task: bytes) -> dict[str, bytes]:
    """Damaged copies of `model`, each one onnxruntime itself cannot load (checked here).

    The byte flips are seeded; among them is one that makes onnxruntime raise a
    UnicodeDecodeError, the kind that used to take the whole service down.
    """
    damaged = {
        "truncated": model[: len(model) // 2],
        "zeroed": bytes(len(model)),
        "random": random.Random(7).randbytes(len(model)),
        "other-task": other_task,
        "empty": b"",
    }
    kinds: set[str] = set()
    for seed in range(5_000):
        flipped = _flip(model, seed)
        kind = _load_error(flipped)
        if kind is not None and kind not in kinds:
            kinds.add(kind)
            damaged[f"flipped-{kind}"] = flipped
    assert "UnicodeDecodeError" in kinds, kinds
    return damaged


def test_corrupt_versions_with_matching_sha256_are_refused_under_load(
    models: Path, start_server: StartServer
) -> None:
    churn, draft = manifest_of(models, "churn"), manifest_of(models, "draft_pick")
    server = start_server(
        models, PREDICT_POLL_INTERVAL_SECONDS=POLL, PREDICT_ADMIN_TOKEN=ADMIN_TOKEN
    )
    good = (models / "churn" / churn.version / "model.onnx").read_bytes()
    other = (models / "draft_pick" / draft.version / "model.onnx").read_bytes()
    damaged = corruptions(good, other)
    with (
        server.client() as client,
        Load(server.url, churn.examples[0].record) as churn_load,
        Load(server.url, draft.examples[0].record, "/v1/models/draft_pick/predict") as draft_load,
    ):
        failures_before = _failures(client, "churn")
        for n, (kind, data) in enumerate(damaged.items()):
            version = f"29990301T0000{n:02d}Z"
            _release(models / "churn", churn.version, version, data)
            status = wait_until(_refused(client, "churn", version))
            assert (status["state"], status["version"]) == ("ready", churn.version), kind
            listed = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
            assert listed["churn"]["last_error"] == status["last_error"], kind
            assert_no_internals(status["last_error"])
        assert _failures(client, "churn") - failures_before == len(damaged)
        reload = client.post("/admin/reload", headers=ADMIN)
        assert reload.status_code == 200, reload.text
        assert reload.json()["models"]["churn"]["error"] is not None
        assert reload.json()["models"]["draft_pick"]["error"] is None
        # the other task still reloads: a new version of draft_pick is picked up by the poll
        _release(models / "draft_pick", draft.version, "29990301T000100Z", other)
        wait_until(lambda: _serving(client, "draft_pick") == "29990301T000100Z")
    for load in (churn_load, draft_load):
        failed = [a for a in load.answers if a.status != 200]
        assert load.answers and not failed, failed[:3]
    assert {a.version for a in churn_load.answers} == {churn.version}
    assert "Traceback" not in server.log()


def test_start_up_serves_every_healthy_task_beside_a_corrupt_one(
    models: Path, start_server: StartServer
) -> None:
    """The version served at start-up is corrupt (and the only one): the rest still serves."""
    churn = manifest_of(models, "churn")
    good = (models / "churn" / churn.version / "model.onnx").read_bytes()
    flipped = next(
        data for seed in range(5_000) if _load_error(data := _flip(good, seed)) is not None
    )
    _release(models / "churn", churn.version, "29990302T000000Z", flipped)
    shutil.rmtree(models / "churn" / churn.version)
    server = start_server(models, PREDICT_POLL_INTERVAL_SECONDS=POLL)
    with server.client() as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        states = ready.json()["models"]
        assert states["draft_pick"]["state"] == "ready"
        assert states["churn"]["state"] == "failed"
        assert "cannot" in states["churn"]["last_error"]
        draft = manifest_of(models, "draft_pick")
        answer = client.post(
            "/v1/models/draft_pick/predict", json={"records": [draft.examples[0].record]}
        )
        assert answer.status_code == 200, answer.text
        refused = client.post("/v1/models/churn/predict", json={"records": [{}]})
        assert refused.status_code == 503, refused.text
    assert server.process is not None and server.process.poll() is None


def test_a_slow_graph_is_refused_at_the_load_timeout_and_delays_no_other_task(
    models: Path, start_server: StartServer
) -> None:
    """A valid graph that would run for hours on its self-check: stopped at the timeout."""
    churn, draft = manifest_of(models, "churn"), manifest_of(models, "draft_pick")
    good = models / "churn" / churn.version / "model.onnx"
    server = start_server(
        models, PREDICT_POLL_INTERVAL_SECONDS=POLL, PREDICT_LOAD_TIMEOUT_SECONDS=str(TIMEOUT)
    )
    other = (models / "draft_pick" / draft.version / "model.onnx").read_bytes()
    slow = "29990303T000000Z"
    with server.client() as client:
        _release(models / "churn", churn.version, slow, slow_graph(good))
        time.sleep(1.0)  # ten polls: the slow self-check is under way
        _release(models / "draft_pick", draft.version, "29990303T000001Z", other)
        wait_until(lambda: _serving(client, "draft_pick") == "29990303T000001Z")
        assert _refused(client, "churn", slow)() is None, "draft_pick waited for churn's load"
        status = wait_until(_refused(client, "churn", slow))
        assert "ran out of time" in status["last_error"]
        assert status["version"] == churn.version
        answer = client.post(
            "/v1/models/churn/predict", json={"records": [churn.examples[0].record]}
        )
        assert answer.json()["version"] == churn.version
    assert "Traceback" not in server.log()


def test_a_fifo_pointer_is_refused_without_blocking_any_task(
    models: Path, start_server: StartServer
) -> None:
    """A FIFO as `current` would block a plain open forever; it is refused by kind."""
    draft = manifest_of(models, "draft_pick")
    pointer = models / "churn" / "current"
    pointer.unlink()
    os.mkfifo(pointer)
    server = start_server(models, PREDICT_POLL_INTERVAL_SECONDS=POLL)
    other = (models / "draft_pick" / draft.version / "model.onnx").read_bytes()
    with server.client() as client:
        churn = client.get("/readyz").json()["models"]["churn"]
        assert (churn["state"], churn["last_error"]) == ("failed", "pointer is not a regular file")
        _release(models / "draft_pick", draft.version, "29990304T000000Z", other)
        wait_until(lambda: _serving(client, "draft_pick") == "29990304T000000Z")


def slow_graph(model_path: Path) -> bytes:
    """The model with a Loop of 10**12 steps whose result (times zero) is added to its output.

    The probabilities stay exactly those of the model, so the manifest's examples still hold:
    only the time it takes is wrong.
    """
    model = onnx.load(model_path)
    graph = model.graph
    for node in graph.node:
        for names in (node.input, node.output):
            for i, name in enumerate(names):
                if name == "probabilities":
                    names[i] = "fast_probabilities"
    constants = {
        "slow_trip": np.array(10**12, dtype=np.int64),
        "slow_go": np.array(True),
        "slow_start": np.zeros(1, dtype=np.float32),
        "slow_zero": np.zeros(1, dtype=np.float32),
        "slow_one": np.ones(1, dtype=np.float32),
    }
    graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in constants.items())
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["go_in"], ["go_out"]),
            helper.make_node("Add", ["x_in", "slow_one"], ["x_out"]),
        ],
        "slow_body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("go_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("x_in", TensorProto.FLOAT, [1]),
        ],
        [
            helper.make_tensor_value_info("go_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("x_out", TensorProto.FLOAT, [1]),
        ],
    )
    graph.node.extend(
        [
            helper.make_node("Loop", ["slow_trip", "slow_go", "slow_start"], ["slow_x"], body=body),
            helper.make_node("Mul", ["slow_x", "slow_zero"], ["slow_nothing"]),
            helper.make_node("Add", ["fast_probabilities", "slow_nothing"], ["probabilities"]),
        ]
    )
    onnx.checker.check_model(model)
    data: bytes = model.SerializeToString()
    return data


def _flip(data: bytes, seed: int) -> bytes:
    rng = random.Random(seed)
    flipped = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
    return bytes(flipped)


def _load_error(data: bytes) -> str | None:
    """The type of what onnxruntime raises on these bytes, or None when it loads them."""
    options = ort.SessionOptions()
    options.log_severity_level = 4
    try:
        ort.InferenceSession(data, options, providers=["CPUExecutionProvider"], enable_fallback=0)
    except Exception as exc:
        return type(exc).__name__
    return None


def _release(task_dir: Path, source: str, version: str, model: bytes) -> None:
    """A copy of version `source` named `version`, with these model bytes and their sha256."""
    folder = task_dir / version
    shutil.copytree(task_dir / source, folder, ignore=shutil.ignore_patterns("report"))
    (folder / "model.onnx").write_bytes(model)
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    manifest["version"] = version
    manifest["onnx"]["sha256"] = hashlib.sha256(model).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    promote(task_dir, version)


def _refused(client: httpx.Client, task: str, version: str) -> Callable[[], dict[str, Any] | None]:
    """A check: the task's status once it names `version` as refused."""

    def check() -> dict[str, Any] | None:
        status: dict[str, Any] = client.get("/readyz").json()["models"][task]
        return status if status["last_error_version"] == version else None

    return check


def _serving(client: httpx.Client, task: str) -> str | None:
    version: str | None = client.get(f"/v1/models/{task}").json().get("version")
    return version


def _failures(client: httpx.Client, task: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        labels = f'model="{task}"' in line and 'result="failure"' in line
        if line.startswith("predict_model_reloads_total{") and labels:
            return float(line.rsplit(" ", 1)[1])
    return 0.0
