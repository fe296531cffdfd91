"""The gRPC ceiling: a grpc.aio server on uvloop (as ours runs in uvicorn's loop) whose
`ModelInfer` answers one constant, pre-serialized response without reading the request.

The gRPC counterpart of `bench/ceiling.py`: what grpc.aio itself costs a Python server per
call, which no model server on it can beat. Run as `python -m bench.grpc_ceiling PORT`
(127.0.0.1 only); stopped by the benchmark with SIGTERM to its process group.
"""

from __future__ import annotations

import sys
from typing import Any

import grpc
import numpy as np
import uvloop

from bench.grpc_load import METHOD

HOST = "127.0.0.1"


def constant_response() -> bytes:
    """One row's answer as ours gives it to raw contents: label BYTES [1], probabilities FP32
    [1, 2] (tritonclient's messages; this process never imports `service.protocol`)."""
    from tritonclient.grpc import service_pb2

    response = service_pb2.ModelInferResponse(model_name="churn", model_version="constant")
    response.outputs.add(name="label", datatype="BYTES", shape=[1])
    response.outputs.add(name="probabilities", datatype="FP32", shape=[1, 2])
    label = b"stayed"
    response.raw_output_contents.append(len(label).to_bytes(4, "little") + label)
    response.raw_output_contents.append(np.array([[0.75, 0.25]], dtype="<f4").tobytes())
    serialized: bytes = response.SerializeToString()
    return serialized


async def serve(port: int) -> None:
    answer = constant_response()
    service, method = METHOD.strip("/").split("/")

    async def infer(request: bytes, context: Any) -> bytes:
        return answer

    handler = grpc.unary_unary_rpc_method_handler(infer)  # bytes in, bytes out
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(service, {method: handler})]
    )
    server.add_insecure_port(f"{HOST}:{port}")
    await server.start()
    await server.wait_for_termination()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    uvloop.run(serve(int(args[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
