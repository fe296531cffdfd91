"""`python -m service` / `draftpick-serve`: run uvicorn with settings from PREDICT_* variables.

`python -m service score ...` scores a CSV file offline instead (see `service.score`).
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType


def main() -> None:
    """Start the server; the app itself is built by the factory in each worker process.

    Each command imports only what it uses: the score command starts in a third less time
    without uvicorn and the settings model.
    """
    if sys.argv[1:2] == ["score"]:
        from service.score import main as score

        code = score(sys.argv[2:])
        # The run is over and every file it wrote is closed and renamed. Skipping the teardown
        # of numpy, onnxruntime and pydantic saves about 0.1 s, a twentieth of scoring
        # 1,000,000 rows. An exception or argparse's exit still ends the usual way.
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:  # None when the descriptor was closed by the caller
                stream.flush()
        os._exit(code)
    import uvicorn

    from service.logs import configure_logging
    from service.settings import Settings

    settings = Settings()
    configure_logging(settings.log_level)
    # uvicorn re-raises the signal it shut down on once it has finished; this handler is the one
    # it restores first, so a graceful SIGTERM shutdown ends with exit status 0, not 143.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    uvicorn.run(
        "service.app:app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_config=None,
        access_log=False,  # service.middleware writes one JSON line per request instead
        log_level=settings.log_level.lower(),
        server_header=False,
        # On SIGTERM: stop accepting, let requests in flight finish for up to this long.
        timeout_graceful_shutdown=settings.graceful_timeout_seconds,
    )


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


if __name__ == "__main__":
    main()
