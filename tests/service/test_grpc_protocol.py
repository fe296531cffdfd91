"""The committed gRPC code (service/protocol/) is what `make proto` makes of the .proto today."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.service.helpers import REPO

PROTOCOL = Path("service") / "protocol"
GENERATED = ("grpc_predict_v2_pb2.py", "grpc_predict_v2_pb2.pyi", "grpc_predict_v2_pb2_grpc.py")


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    (tmp_path / PROTOCOL).mkdir(parents=True)
    shutil.copy(REPO / PROTOCOL / "grpc_predict_v2.proto", tmp_path / PROTOCOL)
    # The command of `make proto`, run where the copy is.
    command = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        "-I",
        ".",
        "--python_out=.",
        "--pyi_out=.",
        "--grpc_python_out=.",
        str(PROTOCOL / "grpc_predict_v2.proto"),
    ]
    subprocess.run(command, cwd=tmp_path, check=True)
    for name in GENERATED:
        fresh = (tmp_path / PROTOCOL / name).read_text()
        committed = (REPO / PROTOCOL / name).read_text()
        assert fresh == committed, f"{PROTOCOL / name} is stale: run `make proto`"


def test_the_makefile_runs_the_same_command() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert "--pyi_out=. --grpc_python_out=." in makefile
    assert "service/protocol/grpc_predict_v2.proto" in makefile
