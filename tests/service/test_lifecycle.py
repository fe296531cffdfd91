"""Model lifecycle on real servers: hot reload under load, refusals, start-up failures, admin."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from service.manifest import read_pointer
from tests.service.helpers import ADMIN_TOKEN, Server, copy_registry, manifest_of, train_task

StartServer = Callable[..., Server]
FAST_POLL = {"PREDICT_POLL_INTERVAL_SECONDS": "0.2", "PREDICT_ADMIN_TOKEN": ADMIN_TOKEN}
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def wait_for(check: Callable[[], bool], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"condition not met within {seconds}s")


def point(task_dir: Path, version: str) -> None:
    """Move `current` atomically, as training's promote does."""
    tmp = task_dir / ".staging-pointer"
    tmp.write_text(version + "\n", encoding="utf-8")
    os.replace(tmp, task_dir / "current")


def clone_version(
    task_dir: Path, source: str, new: str, edit: Callable[[dict[str, Any]], None] | None = None
) -> Path:
    """A copy of a version under a new name (manifest updated to match), optionally edited."""
    target = task_dir / new
    shutil.copytree(task_dir / source, target)
    manifest = json.loads((target / "manifest.json").read_text(encoding="utf-8"))
    manifest["version"] = new
    if edit is not None:
        edit(manifest)
    (target / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return target


def served_version(client: httpx.Client, task: str) -> str | None:
    models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    model = models.get(task)
    return None if model is None else model["version"]


def task_status(client: httpx.Client, task: str) -> dict[str, Any]:
    status: dict[str, Any] = client.get("/readyz").json()["models"][task]
    return status


def metric(client: httpx.Client, line_start: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


class Traffic:
    """Keeps predicting in a thread and records (status, version) of every answer."""

    def __init__(self, server: Server, payload: dict[str, Any]) -> None:
        self.answers: list[tuple[int, str | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(server, payload))

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self, server: Server, payload: dict[str, Any]) -> None:
        with server.client() as client:
            while not self._stop.is_set():
                response = client.post("/v1/models/churn/predict", json=payload)
                version = response.json().get("version") if response.status_code == 200 else None
                self.answers.append((response.status_code, version))


def test_hot_reload_to_a_newly_trained_version_under_load(
    registry_dir: Path, tmp_path: Path, start_server: StartServer
) -> None:
    models = copy_registry(registry_dir, tmp_path / "models")
    old = manifest_of(models, "churn")
    server = start_server(models, **FAST_POLL)
    payload = {"records": [old.examples[0].record] * 20}
    with server.client() as client, Traffic(server, payload) as traffic:
        new = train_task(models, "churn", seed=1, force=True)
        wait_for(lambda: served_version(client, "churn") == new)
        time.sleep(0.5)
        assert metric(client, f'predict_model_info{{model="churn",version="{new}"}}') == 1.0
        assert metric(client, f'predict_model_info{{model="churn",version="{old.version}"}}') == 0.0
        assert metric(client, 'predict_model_reloads_total{model="churn",result="success"}') == 2.0
    statuses = {status for status, _ in traffic.answers}
    versions = [version for _, version in traffic.answers]
    assert statuses == {200}, traffic.answers[-5:]
    assert versions[0] == old.version and versions[-1] == new
    switch = versions.index(new)
    assert set(versions[switch:]) == {new}, "a request after the swap was served by the old version"


def test_corrupt_or_incompatible_versions_are_refused_while_the_old_one_serves(
    registry_dir: Path, tmp_path: Path, start_server: StartServer
) -> None:
    models = copy_registry(registry_dir, tmp_path / "models")
    task_dir = models / "churn"
    old = manifest_of(models, "churn")
    server = start_server(models, **FAST_POLL)
    payload = {"records": [old.examples[0].record]}
    with server.client() as client:
        truncated = clone_version(task_dir, old.version, "29990101T000000Z")
        model_file = truncated / "model.onnx"
        model_file.write_bytes(model_file.read_bytes()[:100])
        point(task_dir, truncated.name)
        wait_for(lambda: task_status(client, "churn")["last_error_version"] == truncated.name)
        ready = client.get("/readyz")
        assert ready.status_code == 200
        status = ready.json()["models"]["churn"]
        assert status["version"] == old.version and "sha256" in status["last_error"]
        answer = client.post("/v1/models/churn/predict", json=payload)
        assert answer.status_code == 200 and answer.json()["version"] == old.version
        failures = 'predict_model_reloads_total{model="churn",result="failure"}'
        assert metric(client, failures) == 1.0
        time.sleep(0.6)  # several polls: the same refusal is not counted again
        assert metric(client, failures) == 1.0
        reload = client.post("/admin/reload", headers=AUTH).json()
        assert "sha256" in reload["models"]["churn"]["error"]
        assert metric(client, failures) == 2.0

        def rename_input(manifest: dict[str, Any]) -> None:
            manifest["features"][0]["name"] = "credit"
            manifest["onnx"]["inputs"][0] = "credit"

        renamed = clone_version(task_dir, old.version, "29990102T000000Z", rename_input)
        point(task_dir, renamed.name)
        wait_for(lambda: task_status(client, "churn")["last_error_version"] == renamed.name)
        assert "inputs" in task_status(client, "churn")["last_error"]

        def wrong_examples(manifest: dict[str, Any]) -> None:
            manifest["examples"][0]["probabilities"] = [0.0, 1.0]

        unfaithful = clone_version(task_dir, old.version, "29990103T000000Z", wrong_examples)
        point(task_dir, unfaithful.name)
        wait_for(lambda: task_status(client, "churn")["last_error_version"] == unfaithful.name)
        assert "differ from the manifest" in task_status(client, "churn")["last_error"]
        assert served_version(client, "churn") == old.version

        good = clone_version(task_dir, old.version, "29990104T000000Z")
        point(task_dir, good.name)
        wait_for(lambda: served_version(client, "churn") == good.name)
        assert task_status(client, "churn")["last_error"] is None
    assert '"model refused"' in server.log()


def test_a_new_task_in_the_registry_is_picked_up(
    registry_dir: Path, tmp_path: Path, start_server: StartServer
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    shutil.copytree(registry_dir / "churn", models / "churn")
    server = start_server(models, **FAST_POLL)
    with server.client() as client:
        assert client.post("/v1/models/digits/predict", json={"records": [{}]}).status_code == 404
        shutil.copytree(registry_dir / "digits", models / "digits")
        wait_for(lambda: served_version(client, "digits") is not None)
        record = manifest_of(models, "digits").examples[0].record
        assert (
            client.post("/v1/models/digits/predict", json={"records": [record]}).status_code == 200
        )


def test_missing_and_broken_models_at_start_up_do_not_stop_the_others(
    registry_dir: Path, tmp_path: Path, start_server: StartServer
) -> None:
    models = copy_registry(registry_dir, tmp_path / "models")
    (models / "ghost").mkdir()
    (models / "ghost" / "current").write_text("20990101T000000Z\n", encoding="utf-8")
    broken = models / "draft_pick" / read_pointer(models / "draft_pick") / "model.onnx"
    broken.write_bytes(b"not a model")
    server = start_server(models)  # no admin token: admin routes are off
    with server.client() as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        states = ready.json()["models"]
        assert states["ghost"]["state"] == "failed" and "no folder" in states["ghost"]["last_error"]
        assert (
            states["draft_pick"]["state"] == "failed"
            and "sha256" in states["draft_pick"]["last_error"]
        )
        assert states["churn"]["state"] == "ready"
        record = manifest_of(models, "churn").examples[0].record
        assert (
            client.post("/v1/models/churn/predict", json={"records": [record]}).status_code == 200
        )
        refused = client.post("/v1/models/draft_pick/predict", json={"records": [{}]})
        assert refused.status_code == 503 and "sha256" in refused.json()["detail"]
        assert client.get("/v2/health/ready").status_code == 503
        assert client.get("/v2/models/ghost/ready").status_code == 503
        assert client.post("/admin/reload", headers=AUTH).status_code == 404


def test_admin_reload_token_rules(client: httpx.Client) -> None:
    missing = client.post("/admin/reload")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert client.post("/admin/reload", headers={"Authorization": "Basic abc"}).status_code == 401
    assert client.post("/admin/reload", headers={"Authorization": "Bearer nope"}).status_code == 403
    assert (
        client.post(
            "/admin/reload", headers={"Authorization": f"Bearer {ADMIN_TOKEN}x"}
        ).status_code
        == 403
    )
    ok = client.post("/admin/reload", headers=AUTH)
    assert ok.status_code == 200
    assert ok.json()["ready"] is True
    assert {m["changed"] for m in ok.json()["models"].values()} == {False}
