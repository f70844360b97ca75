#!/usr/bin/env bash
# Build the project's local container images. There is no registry on this machine, so nothing is pulled:
#
#   atlasia/debian-base:bookworm  Debian 12 minbase + python3 + ca-certificates, made with debootstrap from
#                                 the apt mirror this machine already uses, then `docker import`ed. Its apt
#                                 sources are the host's Debian sources; services never start during apt
#                                 installs (policy-rc.d); recommends are off; LANG=C.UTF-8.
#   atlasia/postgres:15           images/postgres/Dockerfile (see the header there)
#   atlasia/dr-host:bookworm      images/host/Dockerfile (see the header there)
#
# Cache: an image is built only when it is missing, or when its build context changed (each image carries
# the hash of its context in the label org.atlasia.context-sha256). FORCE=1 rebuilds everything.
#
#   scripts/build-images.sh            build what is missing or stale
#   scripts/build-images.sh --list     print the image names
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${ROOT}"

BASE_IMAGE="atlasia/debian-base:bookworm"
POSTGRES_IMAGE="atlasia/postgres:15"
HOST_IMAGE="atlasia/dr-host:bookworm"
SUITE="bookworm"
LABEL="org.atlasia.context-sha256"
FORCE="${FORCE:-0}"

log() { printf '[build-images] %s\n' "$*" >&2; }

if [[ "${1:-}" == "--list" ]]; then
  printf '%s\n' "${BASE_IMAGE}" "${POSTGRES_IMAGE}" "${HOST_IMAGE}"
  exit 0
fi

"${ROOT}/scripts/docker-engine.sh" start
export DOCKER_BUILDKIT=0  # the classic builder of docker.io 20.10; no buildx here

image_label() {
  # Print the context hash label of image $1, or nothing when the image is missing.
  docker image inspect --format "{{ index .Config.Labels \"${LABEL}\" }}" "$1" 2>/dev/null || true
}

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

debian_mirror() {
  # The first Debian mirror URI (deb822 or one-line format) that serves the suite, from the host's apt config.
  local f uri
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f "${f}" ]] || continue
    uri="$(awk -v suite="${SUITE}" '
      BEGIN { RS=""; FS="\n" }
      {
        uris=""; ok=0; types=0
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^[Tt]ypes:/ && $i ~ /[[:space:]]deb([[:space:]]|$)/) types=1
          if ($i ~ /^URIs:/) { uris=$i; sub(/^URIs:[[:space:]]*/, "", uris) }
          if ($i ~ /^Suites:/) { n=split($i, s, /[[:space:]]+/); for (j = 2; j <= n; j++) if (s[j] == suite) ok=1 }
        }
        if (types && ok && uris != "") { split(uris, u, /[[:space:]]+/); print u[1]; exit }
      }' "${f}")"
    if [[ -n "${uri}" ]]; then printf '%s\n' "${uri}"; return 0; fi
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f "${f}" ]] || continue
    uri="$(awk -v suite="${SUITE}" '$1 == "deb" { o = 2; if ($2 ~ /^\[/) { while ($o !~ /\]$/) o++; o++ } if ($(o + 1) == suite) { print $o; exit } }' "${f}")"
    if [[ -n "${uri}" ]]; then printf '%s\n' "${uri}"; return 0; fi
  done
  return 1
}

build_base() {
  local want="debootstrap-minbase-${SUITE}-v1"
  if [[ "${FORCE}" != "1" ]] && [[ "$(image_label "${BASE_IMAGE}")" == "${want}" ]]; then
    log "${BASE_IMAGE}: present, not rebuilt"
    return 0
  fi
  command -v debootstrap >/dev/null || { log "debootstrap missing: run 'make setup' as root"; return 1; }
  local mirror
  mirror="$(debian_mirror)" || { log "no Debian ${SUITE} mirror found in /etc/apt/sources.list*"; return 1; }
  log "${BASE_IMAGE}: debootstrap ${SUITE} from ${mirror} (about a minute)"
  mkdir -p "${ROOT}/.tmp"
  local rootfs
  rootfs="$(mktemp -d "${ROOT}/.tmp/rootfs.XXXXXX")"
  # shellcheck disable=SC2064  # expand now: the trap must remove this very directory
  trap "umount -R '${rootfs}/proc' '${rootfs}/sys' 2>/dev/null || true; rm -rf --one-file-system '${rootfs}'" EXIT
  debootstrap --variant=minbase --include=python3,ca-certificates "${SUITE}" "${rootfs}" "${mirror}" \
    >"${ROOT}/.tmp/debootstrap.log" 2>&1 || {
      log "debootstrap failed; see .tmp/debootstrap.log"
      tail -n 20 "${ROOT}/.tmp/debootstrap.log" >&2
      return 1
    }

  # apt inside the image uses the host's Debian sources (main, updates, security), keyring from the rootfs.
  rm -f "${rootfs}/etc/apt/sources.list"
  local f
  for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list /etc/apt/sources.list; do
    [[ -f "${f}" ]] || continue
    if grep -q "${SUITE}" "${f}" && grep -qi 'debian' "${f}"; then
      cp "${f}" "${rootfs}/etc/apt/sources.list.d/"
    fi
  done
  if ! ls "${rootfs}"/etc/apt/sources.list.d/* >/dev/null 2>&1; then
    printf 'deb %s %s main\n' "${mirror}" "${SUITE}" >"${rootfs}/etc/apt/sources.list"
  fi
  printf '#!/bin/sh\n# Never start services from package scripts inside images.\nexit 101\n' \
    >"${rootfs}/usr/sbin/policy-rc.d"
  chmod 0755 "${rootfs}/usr/sbin/policy-rc.d"
  printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
    >"${rootfs}/etc/apt/apt.conf.d/90atlasia-no-recommends"
  rm -rf "${rootfs}"/var/cache/apt/archives/*.deb "${rootfs}"/var/lib/apt/lists/*
  : >"${rootfs}/etc/resolv.conf"
  printf 'atlasia\n' >"${rootfs}/etc/hostname"

  tar --numeric-owner -C "${rootfs}" -c . | docker import \
    --change "LABEL ${LABEL}=${want}" \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' \
    - "${BASE_IMAGE}" >/dev/null
  rm -rf --one-file-system "${rootfs}"
  trap - EXIT
  log "${BASE_IMAGE}: built"
}

context_hash() {
  # Hash of a build context (file names and contents) plus the base image id, so a new base rebuilds it.
  local dir="$1"
  {
    (cd "${dir}" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
    docker image inspect --format '{{ .Id }}' "${BASE_IMAGE}"
  } | sha256sum | cut -d' ' -f1
}

build_dockerfile() {
  local name="$1" dir="$2" want
  want="$(context_hash "${dir}")"
  if [[ "${FORCE}" != "1" ]] && [[ "$(image_label "${name}")" == "${want}" ]]; then
    log "${name}: present, not rebuilt"
    return 0
  fi
  if image_exists "${name}"; then
    log "${name}: context changed, rebuilding"
  fi
  local old_id build_log="${ROOT}/.tmp/build-${name//[\/:]/_}.log"
  old_id="$(docker image inspect --format '{{ .Id }}' "${name}" 2>/dev/null || true)"
  mkdir -p "${ROOT}/.tmp"
  log "${name}: docker build ${dir#"${ROOT}/"} (log: ${build_log#"${ROOT}/"})"
  if ! docker build --network host --label "${LABEL}=${want}" \
      --build-arg "BASE_IMAGE=${BASE_IMAGE}" -t "${name}" "${dir}" >"${build_log}" 2>&1; then
    log "${name}: docker build failed; last lines of ${build_log}:"
    tail -n 30 "${build_log}" >&2
    return 1
  fi
  # The replaced image is now untagged: remove it unless a container still uses it.
  if [[ -n "${old_id}" && "${old_id}" != "$(docker image inspect --format '{{ .Id }}' "${name}")" ]]; then
    docker image rm "${old_id}" >/dev/null 2>&1 || true
  fi
  log "${name}: built"
}

build_base
build_dockerfile "${POSTGRES_IMAGE}" "${ROOT}/images/postgres"
build_dockerfile "${HOST_IMAGE}" "${ROOT}/images/host"
docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep '^atlasia/' >&2 || true
