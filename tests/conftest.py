"""Session-wide test settings."""

import os

# Every server a test starts (in this process or as a subprocess, which inherits the
# environment) leaves gRPC off unless the test gives it a port: many servers run at once here,
# and PREDICT_GRPC_PORT's default (8001) would be taken by the first (tests/service/test_grpc.py).
os.environ["PREDICT_GRPC_PORT"] = "0"
