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
import hashlib, importlib.util, io, json, os, sys, tarfile, time
name, dest = sys.argv[1], sys.argv[2]
namespace, short = name.split(".")
spec = importlib.util.find_spec("ansible_collections.%s.%s" % (namespace, short))
if spec is None or not spec.submodule_search_locations:
    sys.exit("build-ee: %s is not installed in this Python (pip install -r requirements-dev.txt)" % name)
root = list(spec.submodule_search_locations)[0]
files = json.load(open(os.path.join(root, "FILES.json")))
manifest = json.load(open(os.path.join(root, "MANIFEST.json")))
# The `ansible` package leaves out what a collection only needs for its own CI (tests, .azure-pipelines...):
# FILES.json lists only what is there, so ansible-galaxy installs it and checks every file's SHA-256.
kept = [f for f in files["files"] if f["name"] == "." or os.path.lexists(os.path.join(root, f["name"]))]
files["files"] = kept
files_json = json.dumps(files, indent=4).encode("utf-8")
manifest["file_manifest_file"]["chksum_sha256"] = hashlib.sha256(files_json).hexdigest()
manifest_json = json.dumps(manifest, indent=4).encode("utf-8")
tmp = dest + ".tmp"
with tarfile.open(tmp, "w:gz") as tar:
    for member, data in (("MANIFEST.json", manifest_json), ("FILES.json", files_json)):
        info = tarfile.TarInfo(member)
        info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
        tar.addfile(info, io.BytesIO(data))
    for entry in kept:
        if entry["name"] != ".":
            tar.add(os.path.join(root, entry["name"]), arcname=entry["name"], recursive=False)
os.chmod(tmp, 0o644)
os.replace(tmp, dest)
print("build-ee: %s from %s %s (%d files)" % (dest, name, manifest["collection_info"]["version"], len(kept) - 1))
PY
done

if [[ "${1:-}" == "--build" ]]; then
  shift
  ansible-builder build --file execution-environment.yml --context "${CONTEXT}" "$@"
else
  ansible-builder create --file execution-environment.yml --context "${CONTEXT}" "$@"
fi
echo "build-ee: context in ${CONTEXT#"${ROOT}/"}"
