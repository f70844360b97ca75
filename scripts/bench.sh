#!/usr/bin/env bash
# make bench / make bench-smoke: our backup and restore beside the plan's pipeline (scripts/bench.py), then the
# physical paths, pgBackRest beside pg_dump | gzip and gunzip | psql (scripts/bench_physical.py).
#   scripts/bench.sh                  # default size: pgbench scale 60 + 1 M JSON rows, 3 rounds
#   scripts/bench.sh --smoke          # tiny database, one round (make test runs this so the bench cannot rot)
#   BENCH_SCALE=15 BENCH_ROWS=250000 BENCH_ROUNDS=5 scripts/bench.sh
#   BENCH_PHYSICAL=0 scripts/bench.sh # logical bench only
#   BENCH_PHYSICAL=0 scripts/bench.sh --only files --files-mb 287   # only the file data nights (no PostgreSQL)
# Reports go to reports/bench-<timestamp>.json/.md and reports/bench-physical-<timestamp>.json/.md.
# It never fails on a figure, only when a command fails.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  echo "bench: .venv is missing: run \`make setup\` first" >&2
  exit 2
fi
.venv/bin/python scripts/bench.py "$@"
[ "${BENCH_PHYSICAL:-1}" = "0" ] && exit 0
if ! command -v pgbackrest > /dev/null; then
  echo "bench: pgbackrest is not installed (Debian package pgbackrest): physical bench skipped" >&2
  exit 0
fi
# the physical bench takes --smoke, --out, --scale and --rows from the same command line (or BENCH_SCALE and
# BENCH_ROWS), so both benches measure the same database
physical=(--scale "${BENCH_SCALE:-60}" --rows "${BENCH_ROWS:-1000000}")
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[$i]}" in
    --smoke) physical+=(--smoke) ;;
    --out | --scale | --rows) physical+=("${args[$i]}" "${args[$((i + 1))]}") ;;
    --out=* | --scale=* | --rows=*) physical+=("${args[$i]}") ;;
  esac
done
if [ -n "${BENCH_OUT:-}" ] && [[ " ${physical[*]:-} " != *" --out"* ]]; then
  physical+=(--out "$BENCH_OUT")
fi
exec .venv/bin/python scripts/bench_physical.py "${physical[@]}"
