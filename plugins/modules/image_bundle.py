#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: image_bundle
short_description: Save container images into a verified offline bundle, or make them available on a new host
version_added: 0.1.0
description:
  - A rebuild must never depend on a registry being reachable. With O(state=saved) the images the application
    stack runs (O(images)) are written with C(docker save) into one offline bundle
    C(<prefix>_<YYYYMMDD>_<HHMMSS>.tar.gz) (C(.tar.zst), C(.tar)) that a backup set carries like any other artifact.
  - The stream C(docker save | compressor) is hashed while it is written under a hidden temporary name, every
    stage is checked, then the temporary file is read back whole and the archive's own C(manifest.json) must name
    every requested image. Only then are C(<file>.md5), C(<file>.sha256) and the JSON manifest
    C(<prefix>_<YYYYMMDD>_<HHMMSS>.json) (each image with its id, tags, registry digests and size) written and the
    bundle renamed. A killed run never leaves a file with a final name.
  - With O(state=loaded) the images are made available to the Docker engine of the host. Images already present
    with the recorded id are left alone (nothing changes the second time). With O(source=auto), an image that came
    from a registry (its registry digest is recorded) is first pulled B(by digest), so exactly the same image is
    used; whatever is still missing is loaded from the bundle O(src), which is checked against its sidecars first.
    The id of every image is compared with the recorded one at the end.
author:
  - atlasia DevOps team (@atlasia-devops)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - atlasia.dr.compression
attributes:
  check_mode:
    support: full
    details:
      - O(state=saved) checks that every image exists and reports the bundle it would write.
      - O(state=loaded) checks the bundle's sidecars and reports what it would pull and load; the engine is not changed.
  diff_mode:
    support: none
  platform:
    support: full
    platforms: posix
    details: Needs the Docker CLI and a Docker engine that answers.
options:
  state:
    description:
      - V(saved) writes a new bundle of O(images) into the directory O(dest).
      - V(loaded) makes O(images) (by default every image recorded in the bundle) available on this host.
    type: str
    default: saved
    choices: [saved, loaded]
  images:
    description:
      - Image references, for example V(atlasia/postgres:15) or V(ghcr.io/atlasia/ai-orchestrator:1.4.2).
      - Required with O(state=saved). With O(state=loaded) the images that must be present; by default those
        recorded in the manifest of O(src).
    type: list
    elements: str
  dest:
    description:
      - Directory receiving the bundle, its sidecars and its manifest; created (mode 0700) when missing.
      - Required with O(state=saved).
    type: path
  prefix:
    description:
      - First part of the bundle name.
    type: str
    default: images
  timestamp:
    description:
      - Timestamp to name the bundle with, C(YYYYMMDD_HHMMSS) in UTC. Defaults to now. Lets every artifact of one
        backup set share one timestamp.
    type: str
  compression:
    description:
      - V(gzip) is produced by C(pigz) when installed; V(zstd) is faster at a similar ratio; V(none) writes a plain
        C(.tar).
    type: str
    default: gzip
    choices: [gzip, zstd, none]
  mode:
    description:
      - Permissions of the bundle file (images may hold configuration baked into them). The sidecars and the
        manifest are 0644.
    type: raw
    default: '0600'
  src:
    description:
      - Bundle to load from (O(state=loaded)), written by this module with O(state=saved). Without it, missing
        images can only come from a registry.
    type: path
  source:
    description:
      - Where missing images come from with O(state=loaded).
      - V(auto) pulls by digest the images that came from a registry, and loads the rest (and any failed pull) from
        O(src).
      - V(registry) only pulls (by digest when recorded, else by reference).
      - V(bundle) only loads from O(src).
    type: str
    default: auto
    choices: [auto, registry, bundle]
  pull_timeout:
    description:
      - Seconds a single C(docker pull) may take before the registry is given up (and the bundle used).
    type: int
    default: 300
  require_checksum:
    description:
      - With O(state=loaded), refuse a bundle that has neither a C(.sha256) nor a C(.md5) sidecar. A sidecar that
        exists is always checked.
    type: bool
    default: true
  docker_bin:
    description:
      - Path of the Docker CLI. By default C(docker) is looked up in E(PATH).
    type: path
notes:
  - Layers shared by several images are stored once in a bundle.
  - C(docker load) of a gzip or plain bundle reads the file directly; a zstd bundle is decompressed by C(zstd) on the
    way, so the loading host needs C(zstd).
seealso:
  - module: atlasia.dr.backup_set
  - name: docker image save
    description: The command that writes the archive.
    link: https://docs.docker.com/reference/cli/docker/image/save/
"""

EXAMPLES = r"""
- name: Bundle the images of the stack into tonight's backup set
  atlasia.dr.image_bundle:
    images:
      - atlasia/postgres:15
      - ghcr.io/atlasia/ai-orchestrator:1.4.2
    dest: /srv/atlasia/backups/daily
    timestamp: "{{ backup_timestamp }}"
    compression: zstd
  register: bundle

- name: On a new host, take the images from the registry when it answers, else from the bundle
  atlasia.dr.image_bundle:
    state: loaded
    src: /var/backups/atlasia/restore-staging/20261126_020000/images_20261126_020000.tar.zst

- name: Never touch a registry
  atlasia.dr.image_bundle:
    state: loaded
    source: bundle
    src: /var/backups/atlasia/restore-staging/20261126_020000/images_20261126_020000.tar.gz
    images: [atlasia/postgres:15]
"""

RETURN = r"""
path:
  description: Path of the bundle (written, that would be written in check mode, or loaded from).
  returned: when a bundle is involved
  type: str
  sample: /srv/atlasia/backups/daily/images_20261126_020000.tar.gz
size:
  description: Size of the bundle file in bytes; 0 with O(state=saved) in check mode.
  returned: when a bundle is involved
  type: int
  sample: 227525617
md5:
  description: MD5 of the bundle, as in the C(.md5) sidecar.
  returned: O(state=saved), success and not check mode
  type: str
  sample: 9e107d9d372bb6826bd81d3542a419d6
sha256:
  description: SHA-256 of the bundle, as in the C(.sha256) sidecar.
  returned: O(state=saved), success and not check mode
  type: str
  sample: d7a8fbb307d7809469ca9abcb0082e4f8d5651e46d3cdb762d02d0bf37c9e592
manifest:
  description: Path of the bundle's JSON manifest (written, or read with O(state=loaded)), or null.
  returned: when a bundle is involved
  type: str
  sample: /srv/atlasia/backups/daily/images_20261126_020000.json
manifest_data:
  description: Content of the manifest.
  returned: O(state=saved), success and not check mode
  type: dict
  sample: {"type": "image_bundle", "compression": "gzip", "images": [{"ref": "atlasia/postgres:15", "id": "sha256:562a..."}]}
images:
  description:
    - One entry per image with C(ref), C(id) (as recorded, or as found), C(present) (available at the end) and
      C(action) (V(present) already there, V(pulled), V(loaded), V(saved), or what would be done in check mode).
  returned: always
  type: list
  elements: dict
  sample: [{"ref": "atlasia/postgres:15", "id": "sha256:562a...", "present": true, "action": "loaded"}]
pulled:
  description: Images pulled from a registry (or that would be).
  returned: O(state=loaded)
  type: list
  elements: str
  sample: [ghcr.io/atlasia/ai-orchestrator:1.4.2]
loaded:
  description: Images loaded from the bundle (or that would be).
  returned: O(state=loaded)
  type: list
  elements: str
  sample: [atlasia/postgres:15]
pull_errors:
  description: Pulls that failed (the image was then taken from the bundle), with the reason.
  returned: O(state=loaded)
  type: list
  elements: dict
  sample: [{"ref": "ghcr.io/atlasia/ai-orchestrator:1.4.2", "error": "timed out after 300 s"}]
checksums:
  description: Result of the sidecar check of O(src) per algorithm (V(ok) or V(missing)).
  returned: O(state=loaded) when the bundle was used
  type: dict
  sample: {"md5": "ok", "sha256": "ok"}
duration:
  description: Seconds the task took.
  returned: always
  type: float
  sample: 21.4
"""

import json
import os
import time

from ansible_collections.atlasia.dr.plugins.module_utils import artifact, atomic, checksum, compression, naming
from ansible_collections.atlasia.dr.plugins.module_utils.common import DRModule
from ansible_collections.atlasia.dr.plugins.module_utils.pipeline import PipelineError, run_pipeline

EXTENSIONS = {"gzip": "tar.gz", "zstd": "tar.zst", "none": "tar"}


class BundleError(Exception):
    """The bundle cannot be written, verified or used."""


def _mode(value):
    try:
        return atomic.parse_mode(value)
    except ValueError as exc:
        raise BundleError(str(exc))


def repository_of(ref):
    """Repository part of an image reference (no tag, no digest): ``ghcr.io/a/b:1`` -> ``ghcr.io/a/b``."""
    name = ref.split("@", 1)[0]
    last = name.rsplit("/", 1)
    if ":" in last[-1]:
        name = name[: len(name) - len(last[-1])] + last[-1].split(":", 1)[0]
    return name


def _normalised(repo):
    """``docker.io/library/x`` and ``x`` name the same repository."""
    for head in ("docker.io/library/", "docker.io/", "index.docker.io/library/", "index.docker.io/"):
        if repo.startswith(head):
            return repo[len(head):]
    return repo


def registry_digest(ref, repo_digests):
    """``repo@sha256:...`` among ``repo_digests`` for the repository of ``ref``, else None."""
    wanted = _normalised(repository_of(ref))
    for item in repo_digests or []:
        if "@" in item and _normalised(item.split("@", 1)[0]) == wanted:
            return item
    return None


class Docker(object):
    """The Docker CLI calls this module needs."""

    def __init__(self, module):
        self.module = module
        self.bin = module.params.get("docker_bin") or module.get_bin_path("docker", required=True)

    def inspect(self, ref):
        """Image facts of ``ref`` (dict), or None when the engine does not have it."""
        rc, out, err = self.module.run_command([self.bin, "image", "inspect", "--format", "{{json .}}", ref])
        if rc != 0:
            if "No such image" in err or "No such object" in err:
                return None
            raise BundleError("docker image inspect %s failed: %s" % (ref, (err or out).strip()))
        data = json.loads(out)
        return dict(ref=ref, id=data.get("Id"), repo_tags=data.get("RepoTags") or [],
                    repo_digests=data.get("RepoDigests") or [], size=data.get("Size"), created=data.get("Created"),
                    architecture=data.get("Architecture"), os=data.get("Os"))

    def server_version(self):
        rc, out, err = self.module.run_command([self.bin, "version", "--format", "{{.Server.Version}}"])
        if rc != 0:
            raise BundleError("the Docker engine does not answer: %s" % (err or out).strip())
        return out.strip()

    def pull(self, ref, timeout):
        """``None`` on success, else the reason (a registry that does not answer in ``timeout`` seconds included)."""
        limit = self.module.get_bin_path("timeout", required=True)
        rc, out, err = self.module.run_command([limit, "--kill-after=10", str(timeout), self.bin, "pull", "--quiet",
                                                ref])
        if rc in (124, 137):
            return "timed out after %d s" % timeout
        if rc != 0:
            lines = (err or out).strip().splitlines()
            return lines[-1] if lines else "exit status %d" % rc
        return None

    def tag(self, source, target):
        rc, out, err = self.module.run_command([self.bin, "tag", source, target])
        if rc != 0:
            raise BundleError("docker tag %s %s failed: %s" % (source, target, (err or out).strip()))


class TarScanner(object):
    """Reads a tar stream pushed to it in chunks (a pipeline sink) and keeps ``manifest.json``.

    Only the headers are parsed (ustar, GNU long names, pax headers skipped); member data is counted, not kept,
    so memory stays constant whatever the size of the layers. :meth:`finish` raises :class:`BundleError` unless the
    stream ended with the end-of-archive marker after complete members.
    """

    BLOCK = 512

    def __init__(self):
        self._buffer = b""
        self._skip = 0
        self._capture = None
        self._long_name = None
        self._pending = None
        self.members = 0
        self.manifest = None
        self.ended = False

    def __call__(self, data):
        self._buffer += data
        while True:
            if self._skip:
                take = min(self._skip, len(self._buffer))
                if self._capture is not None:
                    self._capture.append(self._buffer[:take])
                self._buffer = self._buffer[take:]
                self._skip -= take
                if self._skip:
                    return
                self._complete()
            if len(self._buffer) < self.BLOCK:
                return
            header, self._buffer = self._buffer[:self.BLOCK], self._buffer[self.BLOCK:]
            if self.ended:
                continue  # zero padding after the end-of-archive marker
            if header == b"\0" * self.BLOCK:
                self.ended = True
                continue
            self._header(header)

    def _header(self, header):
        try:
            size = int(header[124:136].rstrip(b"\0 ").decode("ascii") or "0", 8)
        except ValueError:
            raise BundleError("the bundle is not a tar archive (bad header after %d members)" % self.members)
        kind = header[156:157]
        name = header[0:100].split(b"\0", 1)[0]
        prefix = header[345:500].split(b"\0", 1)[0] if header[257:263] == b"ustar\0" else b""
        if prefix:
            name = prefix + b"/" + name
        if self._long_name is not None:
            name, self._long_name = self._long_name, None
        padded = (size + self.BLOCK - 1) // self.BLOCK * self.BLOCK
        self._pending = (kind, name, size)
        self._capture = [] if (kind == b"L" or (kind in (b"0", b"\0") and name == b"manifest.json")) else None
        self._skip = padded
        if not padded:
            self._complete()

    def _complete(self):
        kind, name, size = self._pending
        data = b"".join(self._capture)[:size] if self._capture is not None else None
        self._capture = None
        if kind == b"L":
            self._long_name = data.split(b"\0", 1)[0]
            return
        if kind in (b"x", b"g"):
            return
        self.members += 1
        if data is not None:
            try:
                self.manifest = json.loads(data.decode("utf-8"))
            except ValueError as exc:
                raise BundleError("manifest.json of the bundle is not JSON: %s" % exc)

    def finish(self):
        if self._skip or not self.ended:
            raise BundleError("the bundle is truncated: the image archive ends inside a member or without its "
                              "end-of-archive marker")
        if not isinstance(self.manifest, list) or not self.members:
            raise BundleError("the bundle holds no manifest.json: it was not written by docker save")
        return self.manifest


def read_archive_manifest(module, path, comp):
    """Read a ``docker save`` archive whole and return its ``manifest.json`` (a list).

    The whole stream is decompressed and parsed so that a truncated or damaged file fails here, not at load time.
    """
    scanner = TarScanner()
    if comp == "none":
        with open(path, "rb") as handle:
            while True:
                block = handle.read(checksum.CHUNK_SIZE)
                if not block:
                    break
                scanner(block)
    else:
        argv = compression.decompressor_argv(module, comp, path)
        try:
            run_pipeline([(os.path.basename(argv[0]) + " -d", argv)], sink=scanner)
        except PipelineError as exc:
            raise BundleError("the bundle does not decompress: %s" % exc)
    return scanner.finish()


def check_archive_holds(manifest, images):
    """Problems (list of text) when an image of ``images`` (inspect dicts) is not in the archive's manifest."""
    tags = set()
    configs = set()
    for entry in manifest:
        tags.update(entry.get("RepoTags") or [])
        config = os.path.basename(entry.get("Config") or "")
        configs.add(config.split(".", 1)[0])
    problems = []
    for image in images:
        hex_id = (image.get("id") or "").split(":", 1)[-1]
        if image["ref"] in tags or hex_id in configs:
            continue
        problems.append("%s is not in the archive" % image["ref"])
    return problems


def save(module, docker, t0):
    p = module.params
    mode = _mode(p["mode"])
    moment = naming.parse_timestamp(p["timestamp"]) if p["timestamp"] else naming.utc_now()
    stem = naming.backup_stem(p["prefix"], moment)
    name = naming.backup_name(p["prefix"], moment, EXTENSIONS[p["compression"]])
    path = os.path.join(p["dest"], name)
    manifest_path = os.path.join(p["dest"], naming.manifest_name(stem))
    result = dict(path=path, manifest=manifest_path, size=0, images=[])
    images = []
    missing = []
    for ref in p["images"]:
        info = docker.inspect(ref)
        if info is None:
            missing.append(ref)
        else:
            images.append(info)
    if missing:
        module.fail_json(msg="image(s) not present on this host, nothing was written: %s (docker pull or build them "
                             "first)" % ", ".join(missing), **result)
    result["images"] = [dict(ref=i["ref"], id=i["id"], present=True, action="saved") for i in images]
    if os.path.lexists(path):
        module.fail_json(msg="%s already exists; a bundle is never overwritten (pass another timestamp or prefix)"
                             % path, **result)
    if module.check_mode:
        module.exit_json(changed=True, duration=round(time.time() - t0, 3), **result)

    started = naming.utc_now()
    engine = docker.server_version()
    stages = [("docker save", [docker.bin, "save"] + list(p["images"]))]
    comp = compression.compressor_argv(module, p["compression"], p["compression_level"], p["compression_threads"])
    if comp:
        stages.append((os.path.basename(comp[0]), comp))

    def verify(out):
        if out.size == 0:
            raise BundleError("docker save produced no output")
        problems = check_archive_holds(read_archive_manifest(module, out.temp_path, p["compression"]), images)
        if problems:
            raise BundleError("; ".join(problems))

    def manifest(out):
        return artifact.base_manifest(name, "image_bundle", "atlasia.dr.image_bundle", out.size, out.digests, started,
                                      t0, compression=p["compression"], images=images, engine_version=engine)

    artifact.prepare(p["dest"])
    try:
        with artifact.Writer(path, mode=mode, manifest_path=manifest_path, verify=verify, manifest=manifest) as out:
            run_pipeline(stages, sink=out.write)
    except (BundleError, PipelineError) as exc:
        module.fail_json(msg="bundle %s failed and nothing was written: %s" % (name, exc), **result)
    except OSError as exc:
        module.fail_json(msg="bundle %s failed and nothing was written: cannot write under %s: %s" % (
            name, p["dest"], exc), error_kind="disk_full" if exc.errno == 28 else "io", **result)
    result.update(size=out.size, md5=out.manifest["md5"], sha256=out.manifest["sha256"], manifest_data=out.manifest,
                  duration=round(time.time() - t0, 3))
    module.exit_json(changed=True, **result)


def _bundle_manifest(src):
    """``(path, data)`` of the JSON manifest next to a bundle, ``(None, None)`` when there is none."""
    path = naming.manifest_path_for(src)
    if path is None:
        return None, None
    try:
        with open(path) as handle:
            return path, json.load(handle)
    except (OSError, ValueError) as exc:
        raise BundleError("the bundle manifest %s is unreadable: %s" % (path, exc))


def load(module, docker, t0):
    p = module.params
    src = p["src"]
    result = dict(images=[], pulled=[], loaded=[], pull_errors=[])
    recorded = {}
    manifest_path = None
    if src:
        if not os.path.isfile(src):
            module.fail_json(msg="bundle %s does not exist" % src, **result)
        manifest_path, data = _bundle_manifest(src)
        for image in (data or {}).get("images") or []:
            recorded[image["ref"]] = image
        result.update(path=src, size=os.path.getsize(src), manifest=manifest_path)
    wanted = p["images"] or list(recorded)
    if not wanted:
        module.fail_json(msg="no image to make available: give images, or a bundle with its manifest", **result)

    status = {}
    for ref in wanted:
        found = docker.inspect(ref)
        expected = (recorded.get(ref) or {}).get("id")
        status[ref] = dict(ref=ref, id=expected or (found or {}).get("id"),
                           present=bool(found) and (not expected or found["id"] == expected), action="present")
    missing = [ref for ref in wanted if not status[ref]["present"]]

    # 1. registry, by digest (exactly the recorded image) unless told to use only the bundle
    if missing and p["source"] != "bundle":
        for ref in list(missing):
            digest_ref = registry_digest(ref, (recorded.get(ref) or {}).get("repo_digests"))
            if not digest_ref and p["source"] == "auto" and recorded.get(ref):
                continue  # built locally: only the bundle has exactly this image
            target = digest_ref or ref
            if module.check_mode:
                status[ref]["action"] = "pull"
                result["pulled"].append(ref)
                continue
            error = docker.pull(target, p["pull_timeout"])
            if error is None and digest_ref:
                docker.tag(digest_ref, ref)
            found = docker.inspect(ref) if error is None else None
            expected = (recorded.get(ref) or {}).get("id")
            if found and (not expected or found["id"] == expected):
                status[ref].update(present=True, action="pulled", id=found["id"])
                result["pulled"].append(ref)
                missing.remove(ref)
            else:
                result["pull_errors"].append(dict(ref=target, error=error or "the registry's image has id %s, not %s"
                                                  % ((found or {}).get("id"), expected)))
        if module.check_mode:
            missing = [ref for ref in missing if ref not in result["pulled"]]

    # 2. the bundle
    if missing and p["source"] != "registry":
        if not src:
            module.fail_json(msg="image(s) missing and no bundle to load them from: %s%s" % (
                ", ".join(missing), "; pulls failed: %s" % result["pull_errors"] if result["pull_errors"] else ""),
                **result)
        try:
            result["checksums"], dummy = checksum.verify_sidecars(src, required=p["require_checksum"])
        except checksum.ChecksumError as exc:
            module.fail_json(msg="bundle refused, nothing was loaded: %s" % exc, error_kind="checksum", **result)
        comp = compression.detect(src)[1] or "none"
        if module.check_mode:
            for ref in missing:
                status[ref]["action"] = "load"
                result["loaded"].append(ref)
            missing = []
        else:
            if comp == "none":
                stages, stdin_path = [("docker load", [docker.bin, "load", "--input", src])], None
            else:
                stages = [(os.path.basename(compression.decompressor_argv(module, comp)[0]) + " -d",
                           compression.decompressor_argv(module, comp, src)),
                          ("docker load", [docker.bin, "load"])]
                stdin_path = None
            try:
                run_pipeline(stages, stdin_path=stdin_path)
            except PipelineError as exc:
                module.fail_json(msg="loading %s failed: %s" % (src, exc), **result)
            for ref in list(missing):
                found = docker.inspect(ref)
                expected = (recorded.get(ref) or {}).get("id")
                if found and (not expected or found["id"] == expected):
                    status[ref].update(present=True, action="loaded", id=found["id"])
                    result["loaded"].append(ref)
                    missing.remove(ref)

    result["images"] = [status[ref] for ref in wanted]
    changed = bool(result["pulled"] or result["loaded"])
    result["duration"] = round(time.time() - t0, 3)
    if missing:
        module.fail_json(msg="image(s) still missing (or with another id than recorded): %s" % ", ".join(missing),
                         changed=changed, **result)
    module.exit_json(changed=changed, **result)


def main():
    module = DRModule(
        argument_spec=dict(
            state=dict(type="str", default="saved", choices=["saved", "loaded"]),
            images=dict(type="list", elements="str"),
            dest=dict(type="path"),
            prefix=dict(type="str", default="images"),
            timestamp=dict(type="str"),
            compression=dict(type="str", default="gzip", choices=list(compression.COMPRESSIONS)),
            compression_level=dict(type="int"),
            compression_threads=dict(type="int", default=0),
            mode=dict(type="raw", default="0600"),
            src=dict(type="path"),
            source=dict(type="str", default="auto", choices=["auto", "registry", "bundle"]),
            pull_timeout=dict(type="int", default=300),
            require_checksum=dict(type="bool", default=True),
            docker_bin=dict(type="path"),
        ),
        required_if=[("state", "saved", ("images", "dest"))],
        supports_check_mode=True,
    )
    t0 = time.time()
    p = module.params
    if p["timestamp"]:
        try:
            naming.parse_timestamp(p["timestamp"])
        except ValueError:
            module.fail_json(msg="timestamp %r is not YYYYMMDD_HHMMSS" % p["timestamp"])
    try:
        naming.backup_stem(p["prefix"], naming.utc_now())
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    try:
        docker = Docker(module)
        if p["state"] == "saved":
            save(module, docker, t0)
        else:
            load(module, docker, t0)
    except BundleError as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg="%s: %s" % (exc.filename or "I/O error", exc.strerror or exc))


if __name__ == "__main__":
    main()
