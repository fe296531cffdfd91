"""`python -m service` / `draftpick-serve`: run the server with settings from PREDICT_* variables.

`python -m service score ...` scores a CSV file offline instead (see `service.batch.cli`).

Exit codes: 0 after a clean drain; 75 when the grace period ran out with requests still running
(`service.server.DRAIN_CUT_SHORT`); 3 when the server could not start (uvicorn's code).
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from service.server import ServiceConfig


def main() -> None:
    """Start the server; the app itself is built by the factory in each worker process.

    Each command imports only what it uses: the score command starts in a third less time
    without uvicorn and the settings model.
    """
    if sys.argv[1:2] == ["score"]:
        from service.batch.cli import main as score

        code = score(sys.argv[2:])
        # The run is over and every file it wrote is closed and renamed. Skipping the teardown
        # of numpy, onnxruntime and pydantic saves about 0.1 s, a twentieth of scoring
        # 1,000,000 rows. An exception or argparse's exit still ends the usual way.
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:  # None when the descriptor was closed by the caller
                stream.flush()
        os._exit(code)
    from service.observability.logs import configure_logging
    from service.server import ServiceConfig
    from service.settings import Settings

    settings = Settings()
    configure_logging(settings.log_level)
    # Until the server takes the signal over, SIGTERM ends the process quietly: nothing is
    # served yet, so nothing is cut short.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    sys.exit(_serve(ServiceConfig.from_settings(settings)))


def _serve(config: ServiceConfig) -> int:
    """Serve in this process, or under a supervisor of `config.workers` worker processes.

    The server runs from here, so no other frame of ours sits under the event loop in a
    profile (bench/spy.py counts this file as the entry point).
    """
    from uvicorn.config import STARTUP_FAILURE

    from service.server import ServiceServer, Supervisor, drop_metrics_directory

    if config.workers > 1:
        # Sets up the directory where the workers' metrics meet (service.observability.metrics).
        supervisor = Supervisor(config, sockets=[config.bind_socket()])
        supervisor.run()
        return supervisor.exit_code
    drop_metrics_directory()
    server = ServiceServer(config)
    server.run()
    return server.exit_code if server.started else STARTUP_FAILURE


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


if __name__ == "__main__":
    main()
