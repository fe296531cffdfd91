"""The benchmark's cases: which server, which route, which body, how many connections."""

from __future__ import annotations

from dataclasses import dataclass

OURS = "ours (1 worker)"
OURS_TWO = "ours (2 workers)"
BASELINE = "ours before (baseline source)"
CEILING = "FastAPI constant"
PYDANTIC = "FastAPI + pydantic per record"
MLSERVER = "MLServer"
GRPC_CEILING = "gRPC constant"

V1 = "/v1/models/churn/predict"
V2 = "/v2/models/churn/infer"
MLS_ONNX = "/v2/models/churn-onnx/infer"
MLS_SKLEARN = "/v2/models/churn-sklearn/infer"
GRPC = "grpc"  # a case's path for ModelInfer over gRPC: the model is named in the request body
# gRPC request bodies (payloads.write_bodies): their kind, and the model each one names.
GRPC_BODIES = {"grpc": "churn", "grpcmls": "churn-onnx"}
OURS_GRPC = "ours gRPC"
MLS_ONNX_GRPC = "MLServer onnxruntime gRPC"

ONE_RECORD_CONNECTIONS = (1, 16, 64)
BATCH_SIZES = (1_000, 10_000)
BATCH_CONNECTIONS = 2
GRPC_ONE_RECORD_CONNECTIONS = (16, 64)


@dataclass(frozen=True)
class Case:
    """One wrk run (or `bench.grpc_load` run, when `path` is GRPC): `system` names the row
    (server and API), `body` a key of the written bodies, `connections` the calls in flight."""

    server: str
    system: str
    path: str
    body: str
    connections: int

    @property
    def records(self) -> int:
        return int(self.body.rsplit("-", 1)[1])

    @property
    def key(self) -> tuple[str, int, int]:
        """What makes two systems comparable: the same records per request and connections."""
        return (self.api_family, self.records, self.connections)

    @property
    def api_family(self) -> str:
        return "one" if self.records == 1 else "batch"

    @property
    def is_grpc(self) -> bool:
        return self.path == GRPC


def all_cases(quick: bool, mlserver: bool) -> list[Case]:
    connections = (16,) if quick else ONE_RECORD_CONNECTIONS
    sizes = (10_000,) if quick else BATCH_SIZES
    cases: list[Case] = []
    for c in connections:
        cases += [
            Case(OURS, "ours v1 JSON", V1, "v1-1", c),
            Case(OURS, "ours V2", V2, "v2-1", c),
            Case(CEILING, "FastAPI constant", V1, "v1-1", c),
        ]
        if mlserver:
            cases += [
                Case(MLSERVER, "MLServer onnxruntime V2", MLS_ONNX, "v2-1", c),
                Case(MLSERVER, "MLServer sklearn V2", MLS_SKLEARN, "v2sk-1", c),
            ]
    for size in sizes:
        b = BATCH_CONNECTIONS
        cases += [
            Case(OURS, "ours v1 JSON", V1, f"v1-{size}", b),
            Case(OURS, "ours v1 CSV", V1, f"csv-{size}", b),
            Case(OURS, "ours V2", V2, f"v2-{size}", b),
            Case(PYDANTIC, PYDANTIC, V1, f"v1-{size}", b),
        ]
        if mlserver:
            cases += [
                Case(MLSERVER, "MLServer onnxruntime V2", MLS_ONNX, f"v2-{size}", b),
                Case(MLSERVER, "MLServer sklearn V2", MLS_SKLEARN, f"v2sk-{size}", b),
            ]
    cases += grpc_cases(quick, mlserver)
    for c in (16,) if quick else (16, 64):
        cases += [
            Case(OURS_TWO, "ours v1 JSON, 2 workers", V1, "v1-1", c),
            Case(OURS_TWO, "ours V2, 2 workers", V2, "v2-1", c),
        ]
    return cases


def grpc_cases(quick: bool, mlserver: bool) -> list[Case]:
    """Issue 20: ModelInfer over gRPC, raw contents, ours against MLServer's onnxruntime model,
    and one record against the gRPC ceiling (`bench/grpc_ceiling.py`, a constant answer)."""
    connections = (16,) if quick else GRPC_ONE_RECORD_CONNECTIONS
    sizes = (10_000,) if quick else BATCH_SIZES
    shapes = [(1, c) for c in connections] + [(size, BATCH_CONNECTIONS) for size in sizes]
    cases: list[Case] = []
    for records, c in shapes:
        cases.append(Case(OURS, OURS_GRPC, GRPC, f"grpc-{records}", c))
        if records == 1:
            cases.append(Case(GRPC_CEILING, GRPC_CEILING, GRPC, f"grpc-{records}", c))
        if mlserver:
            cases.append(Case(MLSERVER, MLS_ONNX_GRPC, GRPC, f"grpcmls-{records}", c))
    return cases


def baseline_cases(quick: bool) -> list[Case]:
    """The same service from another source tree (`--baseline-src`), for before/after figures."""
    sizes = (10_000,) if quick else BATCH_SIZES
    cases = [
        Case(BASELINE, "before: v1 JSON", V1, "v1-1", 16),
        Case(BASELINE, "before: V2", V2, "v2-1", 16),
    ]
    for size in sizes:
        cases += [
            Case(BASELINE, "before: v1 JSON", V1, f"v1-{size}", BATCH_CONNECTIONS),
            Case(BASELINE, "before: v1 CSV", V1, f"csv-{size}", BATCH_CONNECTIONS),
            Case(BASELINE, "before: V2", V2, f"v2-{size}", BATCH_CONNECTIONS),
        ]
    return cases
