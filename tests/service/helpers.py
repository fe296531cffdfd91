"""Helpers of the service tests: training a registry, copying it, running the real server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

from service.manifest import Manifest, read_pointer
from service.validation import Batch
from training.spec import load_task
from training.train import TrainOptions, train

ADMIN_TOKEN = "test-admin-token"
TASK_ROWS = {"churn": 600, "draft_pick": 400, "digits": 600}
FAST_MLP = {"max_iter": 40, "n_iter_no_change": 5}
STARTUP_SECONDS = 60.0
REPO = Path(__file__).resolve().parents[2]


def train_task(models_dir: Path, task: str, seed: int = 0, force: bool = False) -> str:
    """Train one built-in task with the real training code; returns the version written."""
    options = TrainOptions(
        out=models_dir, seed=seed, rows=TASK_ROWS[task], mlp_overrides=FAST_MLP, force=force
    )
    return train(load_task(task), options).version


def copy_registry(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("report"))
    return target


def manifest_of(models_dir: Path, task: str) -> Manifest:
    task_dir = models_dir / task
    return Manifest.load(task_dir / read_pointer(task_dir))


@dataclass
class Server:
    """`python -m service` in a subprocess on a free loopback port, configured by environment."""

    models_dir: Path
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    # Prepended to the command, e.g. to drop privileges (tests/reliability/test_faults.py).
    command_prefix: list[str] = field(default_factory=list)
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Server:
        self.port = free_port()
        env = {
            **os.environ,
            "PREDICT_MODELS_DIR": str(self.models_dir),
            "PREDICT_HOST": "127.0.0.1",
            "PREDICT_PORT": str(self.port),
            "PREDICT_LOG_LEVEL": "INFO",
            **self.env,
        }
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [*self.command_prefix, sys.executable, "-m", "service"],
            cwd=REPO,
            env=env,
            stdout=self._log,
            stderr=self._log,
        )
        self._wait_until_up()
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self._log is not None:
            self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60.0, **kwargs)

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        with self.client() as client:
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise RuntimeError(f"server exited early:\n{self.log()}")
                try:
                    if client.get("/healthz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        raise RuntimeError(f"server did not start in {STARTUP_SECONDS}s:\n{self.log()}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def assert_same(fast: Batch, slow: Batch) -> None:
    """A fast path's batch is the general path's to the bit: inputs, shapes, dtypes, flags."""
    assert fast.size == slow.size
    assert list(fast.inputs) == list(slow.inputs)
    for name, array in slow.inputs.items():
        assert fast.inputs[name].dtype == array.dtype
        assert fast.inputs[name].shape == array.shape
        if array.dtype == object:
            assert fast.inputs[name].tolist() == array.tolist()
        else:
            assert fast.inputs[name].tobytes() == array.tobytes()
    assert fast.flags() == slow.flags()


def children(pid: int) -> dict[int, bytes]:
    """The processes whose parent is `pid`, with their command lines (from /proc)."""
    found: dict[int, bytes] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # ended meanwhile
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            found[int(entry.name)] = command
    return found
