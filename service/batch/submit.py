"""spark-submit's entry point: `spark-submit [spark options] service/batch/submit.py ARGS...` is
`python -m service score --engine spark ARGS...` in the driver spark-submit starts, with its
master and configuration (`service.batch.spark.session`)."""

from __future__ import annotations

import sys

from service.batch.cli import main

if __name__ == "__main__":
    sys.exit(main(["--engine", "spark", *sys.argv[1:]]))
