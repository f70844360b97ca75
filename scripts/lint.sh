#!/usr/bin/env bash
# Lint the collection: ansible-lint (production profile, .ansible-lint) and shellcheck on every shell script
# in the repository (including extension-less ones such as .ci/run).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${ROOT}"
export PATH="${ROOT}/.venv/bin:${PATH}"
export ANSIBLE_HOME="${ANSIBLE_HOME:-${ROOT}/.ansible}"

[[ -x .venv/bin/ansible-lint ]] || { echo "lint: .venv/bin/ansible-lint missing: run 'make setup'" >&2; exit 1; }

status=0

# Shell scripts: *.sh plus files whose first line names bash or sh.
mapfile -t scripts < <(
  git ls-files --cached --others --exclude-standard -- . ':!:.collections' | while IFS= read -r f; do
    [[ -f "${f}" ]] || continue
    case "${f}" in
      *.sh) printf '%s\n' "${f}" ;;
      *.*) ;;
      *) head -n1 "${f}" 2>/dev/null | grep -qE '^#!.*\b(ba)?sh\b' && printf '%s\n' "${f}" ;;
    esac
  done | sort -u
)
if ((${#scripts[@]})); then
  echo "lint: shellcheck ${#scripts[@]} scripts"
  shellcheck --external-sources "${scripts[@]}" || status=1
fi

echo "lint: ansible-lint"
"${ROOT}/.venv/bin/ansible-lint" --nocolor "$@" || status=1

exit "${status}"
