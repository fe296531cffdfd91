"""Faults in the registry while a model serves: each is refused, reported, and the model serves on.

One server for the module, run as root *without* CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (via
`setpriv`): file modes then bind it as they bind the container's non-root user, so `chmod 000`
really makes a folder unreadable (plain root reads through any mode). Each test breaks one thing,
checks that /readyz names it while the old version still answers, then repairs the registry and
waits until the task is clean again, so the tests do not depend on each other's order.

Already covered in tests/service/test_lifecycle.py and not repeated here: a model.onnx truncated
without fixing the manifest (sha256 refusal), renamed inputs, wrong self-check examples, broken
models at start-up.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.manifest import Manifest, read_pointer
from tests.reliability.helpers import rss_mib, wait_until
from tests.service.helpers import REPO, Server, copy_registry, manifest_of
from training.registry import promote

MAX_MODEL_BYTES = 1024 * 1024
_VERSIONS = itertools.count(1)
POLL = "0.1"
SETPRIV = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
needs_setpriv = pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs util-linux")


@pytest.fixture(scope="module")
def models(registry_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_registry(registry_dir, tmp_path_factory.mktemp("faults") / "models")


@pytest.fixture(scope="module")
def server(models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv (util-linux)")
    env = {
        "PREDICT_POLL_INTERVAL_SECONDS": POLL,
        "PREDICT_ADMIN_TOKEN": "faults-token",
        "PREDICT_MAX_MODEL_BYTES": str(MAX_MODEL_BYTES),
    }
    log = tmp_path_factory.mktemp("faults-log") / "server.log"
    # As root but without the capabilities that bypass file permissions, so chmod 000 bites.
    running = Server(models, log, env, command_prefix=list(SETPRIV)).start()
    yield running
    running.stop()


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client() as http:
        yield http


@pytest.fixture(scope="module")
def original(models: Path) -> Manifest:
    return manifest_of(models, "churn")


@pytest.fixture
def good(models: Path, original: Manifest, client: httpx.Client) -> Iterator[Manifest]:
    """The version serving before the fault; afterwards the registry points at it again."""
    task_dir = models / "churn"
    assert _status(client)["last_error"] is None
    yield original
    for path in (models, task_dir, task_dir / original.version):
        path.chmod(0o755)
    if (task_dir / "current").is_dir():
        (task_dir / "current").rmdir()
    promote(task_dir, original.version)
    wait_until(lambda: _status(client)["last_error"] is None)


def test_a_manifest_with_a_wrong_sha256_is_refused(
    models: Path, client: httpx.Client, good: Manifest
) -> None:
    def wrong_sha(manifest: dict[str, Any]) -> None:
        manifest["onnx"]["sha256"] = "0" * 64

    _clone(models / "churn", good.version, "29990201T000000Z", wrong_sha)
    _point(models / "churn", b"29990201T000000Z\n")
    _assert_refused_while_serving(models, client, good, "29990201T000000Z", "sha256")


def test_a_truncated_model_whose_manifest_matches_it_is_refused_by_onnxruntime(
    models: Path, client: httpx.Client, good: Manifest
) -> None:
    """The sha256 check passes (the manifest was rewritten for the cut file); loading does not."""
    folder = _clone(models / "churn", good.version, "29990202T000000Z")
    model = folder / "model.onnx"
    model.write_bytes(model.read_bytes()[:2000])
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    _edit(folder, lambda m: m["onnx"].update(sha256=digest))
    _point(models / "churn", b"29990202T000000Z\n")
    _assert_refused_while_serving(models, client, good, "29990202T000000Z", "onnxruntime")


def test_a_pointer_to_a_missing_folder_is_refused(
    models: Path, client: httpx.Client, good: Manifest
) -> None:
    _point(models / "churn", b"29990203T000000Z\n")
    _assert_refused_while_serving(models, client, good, None, "no folder")


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"", "version id invalid"),
        (b"\n\n  \n", "version id invalid"),
        (b"../../etc/passwd\n", "version id invalid"),
        (b"/etc\n", "version id invalid"),
        (b"\xff\xfe\x00garbage", "version id invalid (not ASCII)"),
        (b"x" * 100_000, "pointer is larger than 256 bytes"),
    ],
    ids=["empty", "blank-lines", "traversal", "absolute", "binary", "huge"],
)
def test_an_empty_or_garbage_pointer_is_refused(
    models: Path, client: httpx.Client, good: Manifest, content: bytes, words: str
) -> None:
    _point(models / "churn", content)
    _assert_refused_while_serving(models, client, good, None, words)


def test_a_pointer_that_is_a_folder_or_is_gone_is_refused(
    models: Path, client: httpx.Client, good: Manifest
) -> None:
    pointer = models / "churn" / "current"
    pointer.unlink()
    _assert_refused_while_serving(models, client, good, None, "pointer is missing")
    pointer.mkdir()
    _assert_refused_while_serving(models, client, good, None, "pointer is not a regular file")


@pytest.mark.parametrize("path", ["../../../../dev/zero", "/etc/passwd", "sub/model.onnx", ".."])
def test_a_model_file_named_outside_the_version_folder_is_refused_unread(
    models: Path, server: Server, client: httpx.Client, good: Manifest, path: str
) -> None:
    """`onnx.file` is a plain name; a path (which once read /dev/zero to 5 GB) never reaches
    the disk, and the refusal does not echo it."""
    assert server.process is not None
    rss_before = rss_mib(server.process.pid)
    version = _fresh_version()
    _clone(models / "churn", good.version, version, lambda m: m["onnx"].update(file=path))
    _point(models / "churn", version.encode())
    _assert_refused_while_serving(models, client, good, version, "plain file name")
    assert path not in client.get("/readyz").text
    assert rss_mib(server.process.pid) - rss_before < 50


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda model: model.symlink_to("/dev/zero"), "leaves the version folder"),
        (lambda model: model.symlink_to("../current"), "leaves the version folder"),
        (os.mkfifo, "not a regular file"),
        (lambda model: model.mkdir(), "not a regular file"),
        (lambda model: model.write_bytes(b"\0" * (MAX_MODEL_BYTES + 1)), "over the limit"),
    ],
    ids=["symlink-to-device", "symlink-out", "fifo", "folder", "over-the-cap"],
)
def test_a_model_file_that_is_not_a_small_regular_file_in_the_folder_is_refused(
    models: Path,
    client: httpx.Client,
    good: Manifest,
    make: Callable[[Path], object],
    words: str,
) -> None:
    version = _fresh_version()
    folder = _clone(models / "churn", good.version, version)
    (folder / "model.onnx").unlink()
    make(folder / "model.onnx")
    _point(models / "churn", version.encode())
    _assert_refused_while_serving(models, client, good, version, words)
    assert "/dev/zero" not in client.get("/readyz").text


def test_a_model_file_symlinked_inside_its_folder_is_served(
    models: Path, client: httpx.Client, good: Manifest
) -> None:
    version = _fresh_version()
    folder = _clone(models / "churn", good.version, version)
    (folder / "model.onnx").rename(folder / "graph.onnx")
    (folder / "model.onnx").symlink_to("graph.onnx")
    _point(models / "churn", version.encode())
    wait_until(lambda: client.get("/v1/models/churn").json()["version"] == version)
    promote(models / "churn", good.version)  # the next test expects the original served
    wait_until(lambda: client.get("/v1/models/churn").json()["version"] == good.version)


def test_a_pointer_that_links_elsewhere_is_refused_without_echoing_it(
    models: Path, client: httpx.Client, good: Manifest
) -> None:
    """Its content was once shown on /readyz, which anyone may read."""
    pointer = models / "churn" / "current"
    pointer.unlink()
    pointer.symlink_to("/etc/passwd")
    _assert_refused_while_serving(models, client, good, None, "pointer is not a regular file")
    ready = client.get("/readyz").text
    assert "root" not in ready and "passwd" not in ready
    pointer.unlink()


@needs_setpriv
def test_an_unreadable_task_folder_is_refused(
    models: Path, client: httpx.Client, good: Manifest
) -> None:
    (models / "churn").chmod(0o000)
    _assert_refused_while_serving(models, client, good, None, "Permission denied")


@needs_setpriv
def test_an_unreadable_version_folder_is_refused(
    models: Path, client: httpx.Client, good: Manifest
) -> None:
    folder = _clone(models / "churn", good.version, "29990204T000000Z")
    folder.chmod(0o000)
    _point(models / "churn", b"29990204T000000Z\n")
    _assert_refused_while_serving(models, client, good, "29990204T000000Z", "ermission denied")
    folder.chmod(0o755)


@needs_setpriv
def test_an_unreadable_models_folder_keeps_every_model_serving(
    models: Path, client: httpx.Client, good: Manifest
) -> None:
    """The registry cannot even be listed: polling logs it, admin reload says 503, models serve."""
    models.chmod(0o000)
    reload = client.post("/admin/reload", headers={"Authorization": "Bearer faults-token"})
    assert reload.status_code == 503, reload.text
    assert "cannot be read" in reload.json()["detail"]
    assert str(models) not in reload.text
    time.sleep(3 * float(POLL))
    assert client.get("/readyz").status_code == 200
    _assert_serves(client, good)


def test_a_training_run_killed_while_writing_never_reaches_the_server(
    models: Path, client: httpx.Client, good: Manifest
) -> None:
    """SIGKILL as soon as the run's staging folder appears (the files are being written)."""
    task_dir = models / "churn"
    before = set(os.listdir(task_dir))
    command = [sys.executable, "-m", "training", "train", "churn", "--out", str(models)]
    command += ["--rows", "600", "--seed", "5", "--force", "--quiet"]
    run = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        staging = wait_until(lambda: _staging(task_dir), seconds=120)
        time.sleep(0.05)  # a few files in
        run.send_signal(signal.SIGKILL)
    finally:
        run.kill()
        run.wait(timeout=30)
    assert run.returncode == -signal.SIGKILL
    assert staging, "the run was killed before it wrote anything"
    time.sleep(5 * float(POLL))
    assert read_pointer(task_dir) == good.version
    status = _status(client)
    assert (status["version"], status["last_error"]) == (good.version, None)
    _assert_serves(client, good)
    leftovers = set(os.listdir(task_dir)) - before
    assert all(name.startswith(".staging-") or name == ".lock" for name in leftovers), leftovers
    for name in leftovers:
        if name.startswith(".staging-"):
            shutil.rmtree(task_dir / name, ignore_errors=True)


def _assert_refused_while_serving(
    models: Path, client: httpx.Client, good: Manifest, version: str | None, words: str
) -> None:
    """/readyz names the refusal (without the machine's paths) and the old version answers."""
    wait_until(lambda: words in (_status(client)["last_error"] or ""))
    ready = client.get("/readyz")
    status = ready.json()["models"]["churn"]
    assert ready.status_code == 200, "a task that still serves a verified version stays ready"
    assert (status["state"], status["version"]) == ("ready", good.version)
    assert status["last_error_version"] == version
    assert str(models) not in ready.text and str(models.resolve()) not in ready.text
    _assert_serves(client, good)


def _assert_serves(client: httpx.Client, good: Manifest) -> None:
    answer = client.post("/v1/models/churn/predict", json={"records": [good.examples[0].record]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["version"] == good.version


def _status(client: httpx.Client) -> dict[str, Any]:
    status: dict[str, Any] = client.get("/readyz").json()["models"]["churn"]
    return status


def _fresh_version() -> str:
    """A version name no other test of the module uses (parametrized tests need one each)."""
    return f"29990299T{next(_VERSIONS):06d}Z"


def _staging(task_dir: Path) -> list[str]:
    """Staging folders of a run (not the pointer's temporary file, `.staging-current-*`)."""
    names = os.listdir(task_dir)
    return [n for n in names if n.startswith(".staging-") and not n.startswith(".staging-current")]


def _point(task_dir: Path, content: bytes) -> None:
    """Replace `current` atomically with any bytes (what a broken writer might leave)."""
    tmp = task_dir / ".staging-pointer-test"
    tmp.write_bytes(content)
    if (task_dir / "current").is_dir():
        (task_dir / "current").rmdir()
    os.replace(tmp, task_dir / "current")


def _clone(
    task_dir: Path, source: str, new: str, edit: Callable[[dict[str, Any]], None] | None = None
) -> Path:
    """A copy of a version under a new name (manifest renamed to match), optionally edited."""
    target = task_dir / new
    shutil.copytree(task_dir / source, target)
    _edit(target, lambda m: m.update(version=new))
    if edit is not None:
        _edit(target, edit)
    return target


def _edit(folder: Path, change: Callable[[dict[str, Any]], Any]) -> None:
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    change(manifest)
    path.write_text(json.dumps(manifest), encoding="utf-8")
