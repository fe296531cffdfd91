"""Helpers of the reliability tests: fuzzing settings, a model oracle, load, process memory."""

from __future__ import annotations

import contextlib
import json
import math
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio.from_thread
import httpx
import numpy as np
import onnxruntime as ort
from hypothesis import HealthCheck, settings

from service.app import create_app
from service.manifest import Feature, Manifest
from service.settings import Settings

# Bounded and derandomized: the suite's time is known in CI, a failure reproduces from its seed,
# and no example database is written into the work tree.
FUZZ = settings(
    max_examples=120,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
# What no response may ever carry: a traceback, a path of the machine, a library's location.
INTERNALS = ("Traceback", "/work/", "site-packages", "/tmp/", 'File "', "/usr/lib")


def valid_for(feature: Feature, value: Any) -> bool:
    """The contract, written independently of service.validation: does `value` fit the feature?"""
    if feature.type == "bool":
        return type(value) is bool
    if feature.type == "category":
        return type(value) is str and value in (feature.categories or [])
    if type(value) not in (int, float):
        return False
    if feature.type == "int" and not float(value).is_integer():
        return False
    number = float(value)
    return (feature.min is None or number >= feature.min) and (
        feature.max is None or number <= feature.max
    )


class Oracle:
    """The model run directly by onnxruntime, without any service code, to check predictions."""

    def __init__(self, version_dir: Path, manifest: Manifest) -> None:
        self.manifest = manifest
        self.session = ort.InferenceSession(
            str(version_dir / manifest.onnx.file), providers=["CPUExecutionProvider"]
        )

    def probabilities(self, records: list[dict[str, Any]]) -> np.ndarray[Any, Any]:
        feeds = {
            f.name: np.array(
                [[r[f.name]] for r in records],
                dtype=object if f.type == "category" else np.float32,
            )
            for f in self.manifest.features
        }
        result: np.ndarray[Any, Any] = self.session.run(["probabilities"], feeds)[0]
        return result


def strict_json(text: str) -> Any:
    """Parse a response body, refusing NaN and Infinity (which the stdlib would accept)."""

    def refuse(literal: str) -> None:
        raise AssertionError(f"non-finite number {literal} in a response")

    return json.loads(text, parse_constant=refuse)


def assert_finite_probabilities(predictions: list[dict[str, Any]], labels: list[str]) -> None:
    for prediction in predictions:
        values = [prediction["probability"], *prediction["probabilities"].values()]
        assert all(type(v) is float and math.isfinite(v) and 0 <= v <= 1 for v in values), values
        assert list(prediction["probabilities"]) == labels
        assert math.isclose(sum(prediction["probabilities"].values()), 1.0, abs_tol=1e-5)


def assert_no_internals(text: str) -> None:
    for marker in INTERNALS:
        assert marker not in text, f"{marker!r} in a response: {text[:300]}"


def wait_until(check: Callable[[], Any], seconds: float = 30.0) -> Any:
    """Poll `check` until it returns something truthy (returned), or fail after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError(f"condition not met within {seconds}s")


def accepts(port: int) -> bool:
    """True while something accepts TCP connections on 127.0.0.1:`port`."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def rss_mib(pid: int) -> float:
    """Resident memory of a process, from /proc (what the kernel charges it, in MiB)."""
    return _status_mib(pid, "VmRSS")


def peak_rss_mib(pid: int) -> float:
    """The highest resident memory since the process started or since `reset_peak_rss`."""
    return _status_mib(pid, "VmHWM")


def reset_peak_rss(pid: int) -> None:
    """Set the peak back to the current RSS (Linux: "5" to clear_refs), to measure one request."""
    Path(f"/proc/{pid}/clear_refs").write_text("5", encoding="ascii")


def _status_mib(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {key} for pid {pid}")


@dataclass
class Answer:
    status: int | None
    version: str | None
    probability: float | None
    error: str | None = None


@dataclass
class Load:
    """`clients` threads predicting one record in a loop until stopped; every answer is kept."""

    url: str
    record: dict[str, Any]
    path: str = "/v1/models/churn/predict"
    clients: int = 3
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Load:
        self._threads = [threading.Thread(target=self._run) for _ in range(self.clients)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30.0) as client:
            while not self._stop.is_set():
                self.answers.append(self._one(client))

    def _one(self, client: httpx.Client) -> Answer:
        try:
            response = client.post(self.path, json={"records": [self.record]})
        except httpx.HTTPError as exc:
            return Answer(None, None, None, repr(exc))
        if response.status_code != 200:
            return Answer(response.status_code, None, None, response.text[:200])
        body = response.json()
        return Answer(200, body["version"], body["predictions"][0]["probability"])


class InProcessClient:
    """Synchronous calls into the real ASGI app, lifespan included, on an event loop in a thread.

    httpx's ASGITransport drives the whole stack (middleware, routes, error handlers) with no
    socket, which makes thousands of fuzzing requests cheap; Starlette's TestClient would do the
    same but is deprecated with httpx.
    """

    def __init__(self, portal: anyio.from_thread.BlockingPortal, client: httpx.AsyncClient) -> None:
        self._portal = portal
        self._client = client

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self._portal.call(lambda: self._client.request(method, url, **kwargs))

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def options(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("OPTIONS", url, **kwargs)


@contextlib.contextmanager
def in_process(settings: Settings) -> Iterator[InProcessClient]:
    """The app for `settings`, started (models loaded) and stopped around the block."""
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    with anyio.from_thread.start_blocking_portal() as portal:
        lifespan = portal.wrap_async_context_manager(app.router.lifespan_context(app))
        client = httpx.AsyncClient(transport=transport, base_url="http://service.test")
        with lifespan, portal.wrap_async_context_manager(client):
            yield InProcessClient(portal, client)
