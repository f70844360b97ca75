#!/usr/bin/env bash
# Entry point of atlasia/postgres:15 (see the Dockerfile header). Initialises PGDATA on first start, then
# execs postgres as the `postgres` user, listening on ${POSTGRES_LISTEN_ADDRESSES}:${PGPORT}.
set -Eeuo pipefail

: "${PGDATA:=/var/lib/postgresql/data}"
: "${PGPORT:=5432}"
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=${POSTGRES_USER}}"
: "${POSTGRES_LISTEN_ADDRESSES:=127.0.0.1}"
: "${POSTGRES_HOST_AUTH_METHOD:=scram-sha-256}"
: "${POSTGRES_INITDB_ARGS:=}"
SOCKET_DIR=/var/run/postgresql
export PGDATA PGPORT

log() { printf '[entrypoint] %s\n' "$*" >&2; }

if [[ "${1:-postgres}" == -* ]]; then
  set -- postgres "$@"
fi

if [[ "${1}" != "postgres" ]]; then
  exec "$@"
fi

if [[ "$(id -u)" == "0" ]]; then
  # Fix ownership (volumes may arrive owned by root), then run this script again as postgres.
  mkdir -p "${PGDATA}" "${SOCKET_DIR}"
  chown postgres:postgres "${SOCKET_DIR}"
  chmod 2775 "${SOCKET_DIR}"
  if [[ "$(stat -c %U "${PGDATA}")" != "postgres" ]]; then
    chown -R postgres:postgres "${PGDATA}"
  fi
  chmod 0700 "${PGDATA}"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

psql_init() {
  psql -v ON_ERROR_STOP=1 --no-psqlrc -h "${init_socket}" -p "${PGPORT}" -U "${POSTGRES_USER}" "$@"
}

initialise() {
  if [[ -z "${POSTGRES_PASSWORD:-}" && "${POSTGRES_HOST_AUTH_METHOD}" != "trust" ]]; then
    log "PGDATA is empty and POSTGRES_PASSWORD is not set (set it, or POSTGRES_HOST_AUTH_METHOD=trust)"
    exit 1
  fi
  log "initialising ${PGDATA} (superuser ${POSTGRES_USER})"
  local pwfile
  pwfile="$(mktemp)"
  printf '%s\n' "${POSTGRES_PASSWORD:-}" >"${pwfile}"
  local -a pwargs=()
  [[ -n "${POSTGRES_PASSWORD:-}" ]] && pwargs=(--pwfile="${pwfile}")
  # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a list of words by design
  initdb -D "${PGDATA}" --username="${POSTGRES_USER}" "${pwargs[@]}" --encoding=UTF8 --locale=C.UTF-8 \
    --auth-local=trust --auth-host="${POSTGRES_HOST_AUTH_METHOD}" ${POSTGRES_INITDB_ARGS} >/dev/null
  rm -f "${pwfile}"
  {
    printf '\n# atlasia/postgres: TCP connections from anywhere the listen address allows, with %s\n' \
      "${POSTGRES_HOST_AUTH_METHOD}"
    printf 'host all all all %s\n' "${POSTGRES_HOST_AUTH_METHOD}"
  } >>"${PGDATA}/pg_hba.conf"

  # A temporary server on a private socket only (no TCP, so clients and health checks wait for the real one).
  init_socket="$(mktemp -d)"
  pg_ctl -D "${PGDATA}" -w -t 60 -o "-c listen_addresses='' -c unix_socket_directories=${init_socket} -p ${PGPORT}" \
    start >/dev/null
  if [[ "${POSTGRES_DB}" != "postgres" ]]; then
    psql_init --dbname postgres --set db="${POSTGRES_DB}" <<<'CREATE DATABASE :"db";' >/dev/null
  fi
  local f
  for f in /docker-entrypoint-initdb.d/*; do
    [[ -e "${f}" ]] || continue
    # shellcheck disable=SC1090  # init scripts are found at run time
    case "${f}" in
      *.sh) log "running ${f}"; if [[ -x "${f}" ]]; then "${f}"; else . "${f}"; fi ;;
      *.sql) log "running ${f}"; psql_init --dbname "${POSTGRES_DB}" -f "${f}" >/dev/null ;;
      *.sql.gz) log "running ${f}"; gzip -dc "${f}" | psql_init --dbname "${POSTGRES_DB}" >/dev/null ;;
      *.sql.zst) log "running ${f}"; zstd -dc "${f}" | psql_init --dbname "${POSTGRES_DB}" >/dev/null ;;
      *) log "ignoring ${f}" ;;
    esac
  done
  pg_ctl -D "${PGDATA}" -m fast -w -t 60 stop >/dev/null
  rmdir "${init_socket}" 2>/dev/null || true
  log "initialisation done"
}

if [[ ! -s "${PGDATA}/PG_VERSION" ]]; then
  initialise
fi

shift
exec postgres -D "${PGDATA}" -p "${PGPORT}" \
  -c listen_addresses="${POSTGRES_LISTEN_ADDRESSES}" \
  -c unix_socket_directories="${SOCKET_DIR}" \
  "$@"
