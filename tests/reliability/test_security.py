"""Security promises of SECURITY.md, each tested: keys, paths, errors, logs, CORS, headers.

Most run against the real app in-process (fast, and an audit hook can watch every file the
process opens); the log test uses a real server and its log file.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.routing import Route

from service.api import admin, v1, v2
from service.manifest import Manifest
from service.security import PREDICTION_PATH
from service.settings import Settings
from tests.reliability.conftest import StartServer
from tests.reliability.helpers import InProcessClient, assert_no_internals, in_process
from tests.service.helpers import REPO, copy_registry

KEYS = ["key-one", "key-two"]
PREDICT = "/v1/models/churn/predict"
OPEN_ROUTES = ["/healthz", "/readyz", "/metrics", "/docs", "/openapi.json", "/v1/models", "/"]
OPEN_ROUTES += [
    "/v1/models/churn",
    "/v2",
    "/v2/health/live",
    "/v2/health/ready",
    "/v2/models/churn",
]
TRAVERSALS = [
    "/v1/models/..%2f..%2fetc/predict",
    "/v1/models/..%2F..%2Fetc%2Fpasswd/predict",
    "/v1/models/%2e%2e/predict",
    "/v1/models/%2e%2e%2f%2e%2e%2fetc%2fpasswd/predict",
    "/v1/models/%2Fetc%2Fpasswd/predict",
    "/v1/models/..%5c..%5cwindows/predict",
    "/v1/models/churn%2f..%2f..%2fcurrent/predict",
    "/v1/models/%00/predict",
    "/v2/models/..%2f..%2fetc/infer",
    "/v2/models/churn/versions/..%2f..%2fcurrent/infer",
    "/v2/models/%2e%2e/versions/current/infer",
    "/v1/models/..%2f..%2fetc",
    "/v2/models/..%2f..%2fetc/ready",
    "/web/..%2f..%2fpyproject.toml",
    "/web/%2e%2e%2fapp.py",
    "/web/models/..%2fchurn/card",
    "/web/models/churn/versions/..%2f..%2f..%2fetc/report/roc.png",
    "/web/models/churn/versions/current/report/..%2fmanifest.json",
]


@pytest.fixture(scope="module")
def keyed(registry_dir: Path) -> Iterator[InProcessClient]:
    settings = Settings(models_dir=registry_dir, poll_interval_seconds=0, api_keys=KEYS)
    with in_process(settings) as client:
        yield client


def _v2_body(manifest: Manifest) -> dict[str, Any]:
    record = manifest.examples[0].record
    inputs = []
    for f in manifest.features:
        datatype = {"category": "BYTES", "bool": "BOOL"}.get(f.type, "FP32")
        inputs.append(
            {"name": f.name, "shape": [1], "datatype": datatype, "data": [record[f.name]]}
        )
    return {"inputs": inputs}


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Basic key-one"}, 401),
        ({"Authorization": "Bearer "}, 401),
        ({"Authorization": "Bearer key-three"}, 403),
        ({"Authorization": "Bearer key-one "}, 200),
        ({"Authorization": "bearer key-two"}, 200),
        ({"X-API-Key": "key-two"}, 200),
        ({"X-API-Key": "key-one-and-more"}, 403),
        ({"X-API-Key": "wrong", "Authorization": "Bearer key-one"}, 200),
    ],
)
def test_prediction_routes_need_an_api_key_when_keys_are_set(
    keyed: InProcessClient, churn: Manifest, headers: dict[str, str], status: int
) -> None:
    record = churn.examples[0].record
    v1_answer = keyed.post(PREDICT, json={"records": [record]}, headers=headers)
    v2_answer = keyed.post("/v2/models/churn/infer", json=_v2_body(churn), headers=headers)
    versioned = f"/v2/models/churn/versions/{churn.version}/infer"
    v2_versioned = keyed.post(versioned, json=_v2_body(churn), headers=headers)
    assert (v1_answer.status_code, v2_answer.status_code, v2_versioned.status_code) == (
        status,
        status,
        status,
    ), v1_answer.text
    if status == 401:
        assert v1_answer.headers["www-authenticate"] == "Bearer"
        assert "X-API-Key" in v1_answer.json()["detail"] and "error" in v2_answer.json()
    if status == 403:
        assert v1_answer.json() == {"detail": "invalid API key"}
        assert v2_answer.json() == {"error": "invalid API key"}


@pytest.mark.parametrize("path", OPEN_ROUTES)
def test_health_metrics_docs_and_metadata_stay_open_with_keys(
    keyed: InProcessClient, path: str
) -> None:
    assert keyed.get(path).status_code == 200


def test_api_keys_are_off_by_default(app_client: InProcessClient, churn: Manifest) -> None:
    answer = app_client.post(PREDICT, json={"records": [churn.examples[0].record]})
    assert answer.status_code == 200


def test_every_prediction_route_is_guarded() -> None:
    """A route that runs a model but escapes the key check's pattern would be an open door."""
    templates = [
        route.path
        for router in (v1.router, v2.router)
        for route in router.routes
        if isinstance(route, Route) and route.endpoint in (v1.predict, v2.infer)
    ]
    assert sorted(templates) == sorted([v1.PREDICT_ROUTE, *v2.INFER_ROUTES])
    for template in templates:
        path = template.replace("{task}", "churn").replace("{model_version}", "1")
        assert PREDICTION_PATH.match(path), template


def test_tokens_and_keys_are_compared_in_constant_time() -> None:
    from service import security

    assert "hmac.compare_digest" in inspect.getsource(admin._authorize)
    assert "hmac.compare_digest" in inspect.getsource(security.KeyCheck.refusal)
    assert "==" not in inspect.getsource(security.KeyCheck.refusal)
    # The gRPC API checks keys with the same KeyCheck as the HTTP routes.
    assert "KeyCheck(" in inspect.getsource(security.ApiKeys)


class FileWatch:
    """Records files opened and folders listed by this process while it is on (an audit hook)."""

    EVENTS = frozenset({"open", "os.listdir", "os.scandir", "os.stat", "pathlib.Path.glob"})

    def __init__(self) -> None:
        self.on = threading.Event()
        self.seen: list[tuple[str, str]] = []
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args: tuple[Any, ...]) -> None:
        if self.on.is_set() and event in self.EVENTS:
            self.seen.append((event, str(args[0]) if args else ""))


@pytest.fixture(scope="module")
def file_watch() -> FileWatch:
    return FileWatch()


@pytest.mark.parametrize("path", TRAVERSALS)
def test_path_traversal_is_a_404_without_touching_the_disk(
    app_client: InProcessClient, churn: Manifest, file_watch: FileWatch, path: str
) -> None:
    app_client.get("/healthz")  # warm: imports and lazy set-up happen outside the watch
    file_watch.seen.clear()
    file_watch.on.set()
    try:
        if path.endswith(("/predict", "/infer")):
            answer = app_client.post(path, json={"records": [churn.examples[0].record]})
        else:
            answer = app_client.get(path)
    finally:
        file_watch.on.clear()
    assert answer.status_code == 404, (path, answer.text)
    assert_no_internals(answer.text)
    assert file_watch.seen == [], file_watch.seen


def test_the_file_watch_sees_a_real_file_read(
    app_client: InProcessClient, file_watch: FileWatch
) -> None:
    """The control for the test above: the page is read from disk on every request."""
    file_watch.seen.clear()
    file_watch.on.set()
    try:
        assert app_client.get("/").status_code == 200
    finally:
        file_watch.on.clear()
    assert any(path.endswith("index.html") for _, path in file_watch.seen), file_watch.seen


@pytest.mark.parametrize(
    "command",
    [
        ["service", "score", "--model", "../../etc", "--models", "{models}", "{csv}"],
        ["service", "score", "--model", "/etc/passwd", "--models", "{models}", "{csv}"],
        ["training", "report", "../../etc", "--models", "{models}"],
    ],
)
def test_cli_task_names_are_matched_against_the_registry(
    registry_dir: Path, tmp_path: Path, command: list[str]
) -> None:
    csv = tmp_path / "in.csv"
    csv.write_text("age\n40\n", encoding="utf-8")
    args = [a.format(models=registry_dir, csv=csv) for a in command]
    result = subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr


def test_error_responses_carry_no_traceback_or_path(
    registry_dir: Path, tmp_path: Path, churn: Manifest
) -> None:
    """Every kind of refusal, from a registry whose only model is broken (so 503s happen too)."""
    models = copy_registry(registry_dir, tmp_path / "models")
    (models / "churn" / churn.version / "model.onnx").write_bytes(b"not a model")
    settings = Settings(models_dir=models, poll_interval_seconds=0, api_keys=KEYS)
    key = {"X-API-Key": KEYS[0]}
    with in_process(settings) as client:
        answers = [
            client.post(PREDICT, json={"records": [{}]}, headers=key),  # 503: not ready
            client.get("/readyz"),  # 503 with the refusal
            client.get("/v1/models"),
            client.post("/v1/models/nope/predict", json={}, headers=key),
            client.post("/v2/models/churn/infer", json={}, headers=key),
            client.post(PREDICT, json={}),  # 401
            client.post(PREDICT, json={}, headers={"X-API-Key": "x"}),  # 403
            client.get(PREDICT, headers=key),  # 405
            client.request("TRACE", "/v2/health/live"),
            client.post("/admin/reload"),  # 404: admin off
            client.get("/no/such/page"),
        ]
    assert [a.status_code for a in answers] == [
        503,
        503,
        200,
        404,
        503,
        401,
        403,
        405,
        405,
        404,
        404,
    ]
    assert "sha256" in answers[0].json()["detail"]
    for answer in answers:
        assert_no_internals(answer.text)
        assert str(tmp_path) not in answer.text


def test_request_bodies_are_not_logged(
    registry_dir: Path, churn: Manifest, start_server: StartServer
) -> None:
    server = start_server(registry_dir, PREDICT_POLL_INTERVAL_SECONDS="0")
    canary_category, canary_number = "Zzyzx-canary-7731", 123457.918273
    record = churn.examples[0].record
    with server.client() as client:
        bad = client.post(PREDICT, json={"records": [{**record, "geography": canary_category}]})
        good = client.post(PREDICT, json={"records": [{**record, "balance": canary_number}]})
        csv = f"{','.join(record)}\n{','.join(str(v).lower() for v in record.values())}\n"
        client.post(
            PREDICT,
            content=csv.replace("France", "Zzyzx-canary-7731"),
            headers={"Content-Type": "text/csv"},
        )
    assert (bad.status_code, good.status_code) == (422, 200)
    server.stop()
    log = server.log()
    assert '"request"' in log  # the access lines are there...
    assert canary_category not in log and str(canary_number) not in log  # ...the bodies are not


def test_cors_is_off_unless_origins_are_configured(
    app_client: InProcessClient, registry_dir: Path
) -> None:
    preflight = {"Origin": "http://evil.test", "Access-Control-Request-Method": "POST"}
    assert (
        "access-control-allow-origin" not in app_client.options(PREDICT, headers=preflight).headers
    )
    assert (
        "access-control-allow-origin"
        not in app_client.get("/v1/models", headers={"Origin": "http://evil.test"}).headers
    )
    settings = Settings(
        models_dir=registry_dir, poll_interval_seconds=0, cors_origins=["http://app.test"]
    )
    with in_process(settings) as client:
        allowed = client.get("/v1/models", headers={"Origin": "http://app.test"})
        other = client.get("/v1/models", headers={"Origin": "http://evil.test"})
    assert allowed.headers["access-control-allow-origin"] == "http://app.test"
    assert "access-control-allow-origin" not in other.headers


def test_the_web_page_and_the_docs_send_security_headers(app_client: InProcessClient) -> None:
    page = app_client.get("/")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    for answer in (page, app_client.get("/docs")):
        assert answer.status_code == 200
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["referrer-policy"] == "no-referrer"
    docs_policy = app_client.get("/docs").headers["content-security-policy"]
    assert "default-src 'self'" in docs_policy and "frame-ancestors 'none'" in docs_policy
    assert "unsafe" not in docs_policy.split("script-src", 1)[1].split(";")[0]
    assert app_client.get("/redoc").status_code == 404  # Swagger UI only, served by us


def test_api_keys_come_from_a_comma_separated_variable_and_never_show(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PREDICT_API_KEYS", " key-one, ,key-two ,")
    settings = Settings()
    assert [key.get_secret_value() for key in settings.api_keys] == KEYS
    assert "key-one" not in repr(settings)
    monkeypatch.setenv("PREDICT_API_KEYS", "")
    assert Settings().api_keys == []
