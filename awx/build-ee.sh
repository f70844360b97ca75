#!/usr/bin/env bash
# Build what the atlasia.dr execution environment needs:
#   1. the collection tarball awx/ee/atlasia-dr.tar.gz (ansible-galaxy collection build), which
#      requirements.yml installs into the image;
#   2. the tarballs of the collections the roles use, awx/ee/community-general.tar.gz and
#      awx/ee/community-docker.tar.gz, packed from the `ansible` package installed in .venv (the versions the
#      project is tested with; their MANIFEST.json and FILES.json come along, so ansible-galaxy installs and
#      checks them as it would a Galaxy download), so the image needs neither Galaxy nor the `ansible` package;
#   3. the build context (ansible-builder create) in .tmp/ee/context, or with --build the image itself
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

for collection in community.general community.docker; do
  python - "${collection}" "awx/ee/${collection/./-}.tar.gz" <<'PY'
import importlib.util, json, os, sys, tarfile
name, dest = sys.argv[1], sys.argv[2]
namespace, short = name.split(".")
spec = importlib.util.find_spec("ansible_collections.%s.%s" % (namespace, short))
if spec is None or not spec.submodule_search_locations:
    sys.exit("build-ee: %s is not installed in this Python (pip install -r requirements-dev.txt)" % name)
root = list(spec.submodule_search_locations)[0]
files = json.load(open(os.path.join(root, "FILES.json")))["files"]
version = json.load(open(os.path.join(root, "MANIFEST.json")))["collection_info"]["version"]
tmp = dest + ".tmp"
with tarfile.open(tmp, "w:gz") as tar:
    for member in ["MANIFEST.json", "FILES.json"] + [f["name"] for f in files if f["name"] != "."]:
        path = os.path.join(root, member)
        if not os.path.lexists(path):
            sys.exit("build-ee: %s lacks %s (listed in its FILES.json): reinstall the ansible package" % (name, member))
        tar.add(path, arcname=member, recursive=False)
os.chmod(tmp, 0o644)
os.replace(tmp, dest)
print("build-ee: %s from %s %s (%s)" % (dest, name, version, root))
PY
done

if [[ "${1:-}" == "--build" ]]; then
  shift
  ansible-builder build --file execution-environment.yml --context "${CONTEXT}" "$@"
else
  ansible-builder create --file execution-environment.yml --context "${CONTEXT}" "$@"
fi
echo "build-ee: context in ${CONTEXT#"${ROOT}/"}"
