"""The docker-compose topology, run natively on loopback: the trainer writes a registry, two API
replicas serve it behind nginx (the scale profile's own config), and a retrain under traffic
reaches every replica with no failed request. Everything is started and stopped by the test."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from service.manifest import Manifest, read_pointer
from tests.service.helpers import REPO, Server, free_port

from .conftest import require_tool
from .fronts import front_config, local_config

TASK = "churn"
TRAIN_ROWS = "600"
SWITCH_SECONDS = 60.0
MAX_REQUESTS = 20_000


@dataclass
class Traffic:
    """Requests sent through the load balancer from a background thread, bounded in count."""

    url: str
    record: dict[str, object]
    results: list[tuple[int, str, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30.0) as client:
            while not self.stop.is_set() and len(self.results) < MAX_REQUESTS:
                self.results.append(send(client, self.record))

    def seen_since(self, start: int) -> list[tuple[int, str, str]]:
        return self.results[start:]


def send(client: httpx.Client, record: dict[str, object]) -> tuple[int, str, str]:
    """(status, model version, upstream address) of one prediction."""
    try:
        response = client.post(f"/v1/models/{TASK}/predict", json={"records": [record]})
    except httpx.TransportError as exc:
        return (0, repr(exc), "")
    version = response.json().get("version", "") if response.status_code == 200 else ""
    return (response.status_code, version, response.headers.get("x-upstream", ""))


def start_nginx(prefix: Path, port: int, upstreams: list[int]) -> subprocess.Popen[bytes]:
    """The scale profile's own nginx.conf, pointed at loopback replicas and a private prefix; each
    answer names the replica that gave it (X-Upstream)."""
    binary = require_tool("nginx")
    config = prefix / "nginx.conf"
    upstream_header = "            add_header X-Upstream $upstream_addr always;\n"
    config.write_text(
        local_config(front_config("compose"), prefix, port, upstreams, location=upstream_header)
    )
    check = subprocess.run(
        [binary, "-t", "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    process = subprocess.Popen(
        [binary, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1.0)
            return process
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError((prefix / "error.log").read_text())


def trainer(models: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The compose `trainer` service's command, run natively."""
    return subprocess.run(
        [sys.executable, "-m", "training", "train", *args, "--out", str(models), "--quiet"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def wait_for_version(server: Server, version: str) -> None:
    deadline = time.monotonic() + SWITCH_SECONDS
    with server.client() as client:
        while time.monotonic() < deadline:
            if client.get(f"/v1/models/{TASK}").json().get("version") == version:
                return
            time.sleep(0.1)
    raise AssertionError(f"{server.url} never served {version}:\n{server.log()}")


def test_retrain_behind_nginx_reaches_every_replica_without_a_failed_request(
    tmp_path: Path,
) -> None:
    models = tmp_path / "models"
    first = trainer(models, "all", "--rows", TRAIN_ROWS)
    assert first.returncode == 0, first.stderr
    old_version = read_pointer(models / TASK)
    record: dict[str, object] = dict(Manifest.load(models / TASK / old_version).examples[0].record)

    env = {"PREDICT_POLL_INTERVAL_SECONDS": "0.2"}
    replicas = [Server(models, tmp_path / f"api-{i}.log", env).start() for i in range(2)]
    prefix, port = tmp_path / "nginx", free_port()
    prefix.mkdir()
    balancer = start_nginx(prefix, port, [r.port for r in replicas])
    traffic = Traffic(f"http://127.0.0.1:{port}", record)
    thread = threading.Thread(target=traffic.run, daemon=True)
    try:
        thread.start()
        time.sleep(1.0)
        before = list(traffic.results)
        assert {upstream for _, _, upstream in before} == {
            f"127.0.0.1:{r.port}" for r in replicas
        }, "round robin did not reach both replicas"

        second = trainer(models, TASK, "--rows", TRAIN_ROWS, "--seed", "1", "--force")
        assert second.returncode == 0, second.stderr
        new_version = read_pointer(models / TASK)
        assert new_version != old_version
        for replica in replicas:
            wait_for_version(replica, new_version)
        switched = len(traffic.results)
        time.sleep(1.0)
    finally:
        traffic.stop.set()
        thread.join(timeout=30)
        balancer.terminate()
        balancer.wait(timeout=15)
        for replica in replicas:
            replica.stop()

    failed = [r for r in traffic.results if r[0] != 200]
    assert not failed, failed[:5]
    assert {version for _, version, _ in traffic.results} == {old_version, new_version}
    after = traffic.seen_since(switched)
    assert after and {version for _, version, _ in after} == {new_version}
    assert {upstream for _, _, upstream in after} == {f"127.0.0.1:{r.port}" for r in replicas}
