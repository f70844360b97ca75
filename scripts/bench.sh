#!/usr/bin/env bash
# make bench / make bench-smoke: our backup and restore beside the plan's pipeline (see scripts/bench.py).
#   scripts/bench.sh                  # default size: pgbench scale 60 + 1 M JSON rows, 3 rounds
#   scripts/bench.sh --smoke          # tiny database, one round (make test runs this so the bench cannot rot)
#   BENCH_SCALE=15 BENCH_ROWS=250000 BENCH_REPEAT=5 scripts/bench.sh
# Reports go to reports/bench-<timestamp>.json and .md. It never fails on a figure, only when a command fails.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  echo "bench: .venv is missing: run \`make setup\` first" >&2
  exit 2
fi
exec .venv/bin/python scripts/bench.py "$@"
