#!/usr/bin/env bash
# Make sure a Docker engine answers on this machine, or stop the one this script started.
#
#   scripts/docker-engine.sh [start]   start dockerd when `docker info` fails (idempotent)
#   scripts/docker-engine.sh stop      stop the dockerd that this script started (PID file), nothing else
#   scripts/docker-engine.sh status    exit 0 when `docker info` answers
#
# The engine runs without a bridge (--bridge=none --iptables=false): containers use network_mode host
# (127.0.0.1) or none, so no test traffic ever goes to a private-range bridge address.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TMP_DIR="${ROOT}/.tmp"
LOG_FILE="${TMP_DIR}/dockerd.log"
PID_FILE="${TMP_DIR}/dockerd.pid"
WAIT_SECONDS="${DOCKERD_WAIT_SECONDS:-60}"

log() { printf '[docker-engine] %s\n' "$*" >&2; }

engine_up() { docker info >/dev/null 2>&1; }

alive() {
  # True while process $1 exists and is not a zombie (PID 1 here may be slow to reap orphans).
  local state
  state="$(awk '{ sub(/.*\) /, ""); print $1 }' "/proc/$1/stat" 2>/dev/null)" || return 1
  [[ -n "${state}" && "${state}" != "Z" ]]
}

our_pid() {
  # Print the PID recorded by this script when that process is still a dockerd.
  [[ -f "${PID_FILE}" ]] || return 1
  local pid
  pid="$(cat "${PID_FILE}")"
  [[ "${pid}" =~ ^[0-9]+$ ]] || return 1
  alive "${pid}" || return 1
  [[ "$(cat "/proc/${pid}/comm" 2>/dev/null)" == "dockerd" ]] || return 1
  printf '%s\n' "${pid}"
}

start() {
  if engine_up; then
    log "engine already answers"
    return 0
  fi
  command -v dockerd >/dev/null 2>&1 || { log "dockerd not found: run 'make setup' (as root) first"; return 1; }
  if [[ "$(id -u)" -ne 0 ]]; then
    log "docker info fails and starting dockerd needs root"
    return 1
  fi
  mkdir -p "${TMP_DIR}"
  local pid
  if pid="$(our_pid)"; then
    log "dockerd ${pid} (ours) is running but not answering yet; waiting"
  else
    log "starting dockerd (log: ${LOG_FILE})"
    # setsid: the daemon outlives make's process group; it is stopped with `$0 stop`.
    setsid dockerd --bridge=none --iptables=false --ip-forward=false --ip-masq=false \
      >>"${LOG_FILE}" 2>&1 </dev/null &
    pid=$!
    printf '%s\n' "${pid}" >"${PID_FILE}"
  fi
  local deadline=$((SECONDS + WAIT_SECONDS))
  until engine_up; do
    if ! alive "${pid}"; then
      log "dockerd exited early; last log lines:"
      tail -n 20 "${LOG_FILE}" >&2 || true
      rm -f "${PID_FILE}"
      return 1
    fi
    if ((SECONDS >= deadline)); then
      log "docker info still fails after ${WAIT_SECONDS}s; last log lines:"
      tail -n 20 "${LOG_FILE}" >&2 || true
      return 1
    fi
    sleep 1
  done
  log "engine up (dockerd pid ${pid})"
}

stop() {
  local pid
  if ! pid="$(our_pid)"; then
    log "no dockerd started by this script is running"
    rm -f "${PID_FILE}"
    return 0
  fi
  log "stopping dockerd ${pid}"
  kill -TERM "${pid}"
  local deadline=$((SECONDS + 30))
  while alive "${pid}"; do
    if ((SECONDS >= deadline)); then
      log "dockerd ${pid} ignored SIGTERM for 30s; sending SIGKILL"
      kill -KILL "${pid}" 2>/dev/null || true
      break
    fi
    sleep 0.5
  done
  rm -f "${PID_FILE}"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status) engine_up ;;
  *) printf 'usage: %s [start|stop|status]\n' "$0" >&2; exit 2 ;;
esac
