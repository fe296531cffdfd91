#!/usr/bin/env bash
# The serving benchmark (bench/README.md): `bash bench/run.sh [--quick] [--no-mlserver] ...`
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m bench "$@"
