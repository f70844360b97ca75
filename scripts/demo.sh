#!/usr/bin/env bash
# make demo: a full DR drill on the embedded local default (see scripts/demo.py).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python scripts/demo.py "$@"
