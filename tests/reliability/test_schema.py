"""schemathesis against the service's own OpenAPI schema: zero 5xx, zero off-schema answers.

Every operation of /openapi.json (v1 with one path per model, V2, health, admin) gets a bounded
number of generated requests, valid and invalid, plus schemathesis' boundary-value and stateful
phases, sent to a real server over loopback. Its CLI runs the checks (its pytest plugin does not
support pytest 9 yet); any failure fails the test with schemathesis' own report.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.reliability.conftest import StartServer
from tests.service.helpers import ADMIN_TOKEN

MAX_EXAMPLES = 25
# v1: list, describe, generic and per-model predict; V2: 10; health, readiness, metrics, admin.
MIN_OPERATIONS = 18
SECONDS = 240
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "unsupported_method",
    "missing_required_header",
)
# Path parameters are pinned to the served model so generated bodies reach the validators (random
# task names are 404s, which the fuzz tests already cover). A 408, 413 or 503 is a correct
# refusal of invalid data too.
CONFIG = """
[parameters]
"path.task" = "churn"

[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "408", "413", "415", "422"]
"""


def test_every_operation_answers_within_its_schema(
    registry_dir: Path, tmp_path: Path, start_server: StartServer
) -> None:
    server = start_server(registry_dir, PREDICT_ADMIN_TOKEN=ADMIN_TOKEN)
    (tmp_path / "schemathesis.toml").write_text(CONFIG, encoding="utf-8")
    command = [
        str(Path(sys.executable).parent / "st"),
        "--config-file",
        str(tmp_path / "schemathesis.toml"),
        "run",
        f"{server.url}/openapi.json",
        "--checks",
        ",".join(CHECKS),
        "--header",
        f"Authorization: Bearer {ADMIN_TOKEN}",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        "6",
        "--generation-database",
        "none",
        "--request-timeout",
        "30",
        "--no-color",
    ]
    # cwd: schemathesis keeps its cache folder in the working directory, not in the work tree.
    result = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=SECONDS, check=False
    )
    report = result.stdout[-20_000:] + result.stderr[-5_000:]
    assert result.returncode == 0, report
    tested = re.search(r"Tested: (\d+)", result.stdout)
    assert tested is not None and int(tested.group(1)) >= MIN_OPERATIONS, report
