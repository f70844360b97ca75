#!/usr/bin/env bash
# ansible-test sanity for atlasia.dr.
#
# ansible-test needs the collection at .../ansible_collections/atlasia/dr, so the files git knows (tracked,
# plus untracked ones that are not ignored; .collections/ excluded) are mirrored with rsync into
# .tmp/sanity/ansible_collections/atlasia/dr and the tests run there.
# The mirror is made a git repository of its own (`git init`, nothing committed): ansible-test looks for
# `.git` from the collection root upwards, and without one it would find this checkout's .git, where .tmp/
# is ignored, and skip every target ("All targets skipped"). In its own repo every mirrored file counts
# (git ls-files --cached --others --exclude-standard).
# Offline: scripts/setup.sh installs the pip bootstrap that ansible-test's own venvs need.
#
#   scripts/sanity.sh                      all sanity tests, Python 3.11
#   scripts/sanity.sh --test pylint        any further ansible-test sanity arguments
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${ROOT}"
export PATH="${ROOT}/.venv/bin:${PATH}"
export ANSIBLE_HOME="${ANSIBLE_HOME:-${ROOT}/.ansible}"
PYTHON_VERSION="${SANITY_PYTHON:-3.11}"
DEST="${ROOT}/.tmp/sanity/ansible_collections/atlasia/dr"

log() { printf '[sanity] %s\n' "$*" >&2; }

[[ -x .venv/bin/ansible-test ]] || { log ".venv/bin/ansible-test missing: run 'make setup'"; exit 1; }
command -v rsync >/dev/null || { log "rsync missing: run 'make setup'"; exit 1; }

# Ignore files must stay empty: a sanity failure is fixed, not ignored.
for f in tests/sanity/ignore-*.txt; do
  [[ -f "${f}" ]] || continue
  if grep -qvE '^[[:space:]]*(#.*)?$' "${f}"; then
    log "${f} has entries; fix the code instead of ignoring sanity failures:"
    grep -vE '^[[:space:]]*(#.*)?$' "${f}" >&2
    exit 1
  fi
done

# One run at a time per checkout: concurrent runs would share the mirror and its tests/output.
mkdir -p "${ROOT}/.tmp"
exec 9>"${ROOT}/.tmp/sanity.lock"
if ! flock -w 900 9; then log "another sanity run held .tmp/sanity.lock for 15 min"; exit 1; fi

# The file list: what git would commit now, minus the self-referencing .collections tree and deleted files.
list="$(mktemp)"
trap 'rm -f "${list}"' EXIT
git ls-files -z --cached --others --exclude-standard \
  | while IFS= read -r -d '' f; do
      [[ "${f}" == .collections/* ]] && continue
      [[ -e "${f}" || -L "${f}" ]] || continue
      printf '%s\0' "${f}"
    done >"${list}"

mkdir -p "${DEST}"
rsync -a --from0 --files-from="${list}" ./ "${DEST}/"
# Drop files that left the source since the last run (tests/output holds ansible-test's own results).
(cd "${DEST}" && find . \( -path ./tests/output -o -path ./.git \) -prune -o \( -type f -o -type l \) -print0) \
  | while IFS= read -r -d '' f; do
      f="${f#./}"
      if ! grep -qzxF -- "${f}" "${list}"; then rm -f -- "${DEST}/${f}"; fi
    done
find "${DEST}" -mindepth 1 -depth -type d -empty -not -path "${DEST}/.git*" -not -path "${DEST}/tests/output*" -delete
[[ -d "${DEST}/.git" ]] || git -C "${DEST}" init -q

log "ansible-test sanity --python ${PYTHON_VERSION} in ${DEST#"${ROOT}/"}"
cd "${DEST}"
exec "${ROOT}/.venv/bin/ansible-test" sanity --python "${PYTHON_VERSION}" --color no "$@"
