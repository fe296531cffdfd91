"""`python -m service` / `draftpick-serve`: run uvicorn with settings from PREDICT_* variables."""

from __future__ import annotations

import uvicorn

from service.logs import configure_logging
from service.settings import Settings


def main() -> None:
    """Start the server; the app itself is built by the factory in each worker process."""
    settings = Settings()
    configure_logging(settings.log_level)
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
    )


if __name__ == "__main__":
    main()
