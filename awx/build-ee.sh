#!/usr/bin/env bash
# Build what the atlasia.dr execution environment needs:
#   1. the collection tarball awx/ee/atlasia-dr.tar.gz (ansible-galaxy collection build), which
#      requirements.yml installs into the image;
#   2. the build context (ansible-builder create) in .tmp/ee/context, or with --build the image itself
#      (ansible-builder build; any further arguments go to it, e.g. -t registry/atlasia/dr-ee:0.1.0).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${ROOT}"
export PATH="${ROOT}/.venv/bin:${PATH}"
export ANSIBLE_HOME="${ANSIBLE_HOME:-${ROOT}/.ansible}"
CONTEXT="${EE_CONTEXT:-${ROOT}/.tmp/ee/context}"

build_dir="$(mktemp -d)"
trap 'rm -rf "${build_dir}"' EXIT
ansible-galaxy collection build --force --output-path "${build_dir}" "${ROOT}" >/dev/null
tarball="$(find "${build_dir}" -maxdepth 1 -name 'atlasia-dr-*.tar.gz' -print -quit)"
[[ -n "${tarball}" ]] || { echo "build-ee: ansible-galaxy built no atlasia-dr tarball" >&2; exit 1; }
mkdir -p awx/ee
install -m 0644 "${tarball}" awx/ee/atlasia-dr.tar.gz
echo "build-ee: awx/ee/atlasia-dr.tar.gz from $(basename "${tarball}")"

if [[ "${1:-}" == "--build" ]]; then
  shift
  ansible-builder build --file execution-environment.yml --context "${CONTEXT}" "$@"
else
  ansible-builder create --file execution-environment.yml --context "${CONTEXT}" "$@"
fi
echo "build-ee: context in ${CONTEXT#"${ROOT}/"}"
