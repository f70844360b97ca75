#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: vault_snapshot
short_description: Save or restore a verified HashiCorp Vault (or OpenBao) raft snapshot
version_added: 0.1.0
description:
  - With O(state=saved), streams C(GET /v1/sys/storage/raft/snapshot) into O(dest) as
    C(<prefix>_<YYYYMMDD>_<HHMMSS>.snap) (UTC), with constant memory whatever the snapshot size.
  - The download is validated while it streams, before it takes its final name. It checks a complete gzip stream
    (CRC checked), a tar archive holding C(meta.json) and C(state.bin), and every digest listed in the
    archive's own C(SHA256SUMS). An empty or short answer (Vault has answered empty snapshots, see
    U(https://github.com/hashicorp/vault/issues/9650)) fails the task and leaves no file.
  - Beside the snapshot it writes C(<file>.md5) (C(md5sum -c) format), C(<file>.sha256) and a JSON manifest
    C(<prefix>_<YYYYMMDD>_<HHMMSS>.json) (server version, cluster, raft index and term, members, size,
    checksums, start and end time, duration). The snapshot takes its final name last, so a killed run never
    leaves a file that looks valid.
  - With O(state=restored), checks O(src) against its sidecars and validates the archive the same way
    B(before Vault sees it), then streams it to C(POST /v1/sys/storage/raft/snapshot) (or
    C(snapshot-force) with O(force=true)), waits until Vault answers again and reports whether it is sealed.
  - Failures carry an C(error_kind) (V(sealed), V(permission_denied), V(invalid_token), V(missing_token),
    V(not_raft), V(unreachable), V(tls), V(seal_mismatch), V(invalid_snapshot), V(checksum), ...) and a
    message saying what to do.
author:
  - atlasia DevOps team (@atlasia-devops)
extends_documentation_fragment:
  - atlasia.dr.vault
  - atlasia.dr.vault.token
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
attributes:
  check_mode:
    support: full
    details:
      - O(state=saved) checks that Vault answers, is unsealed, uses raft storage and that the token may read
        snapshots, then reports the path it would write; it writes nothing.
      - O(state=restored) verifies the checksums and the archive, checks Vault's state and the token's
        capabilities, and reports C(changed=true) meaning "would restore"; Vault is not changed.
  diff_mode:
    support: none
  platform:
    platforms: posix
  action:
    support: none
  async:
    support: full
  bypass_host_loop:
    support: none
  action_group:
    description: Use C(group/atlasia.dr.dr) in C(module_defaults) to set the connection options once.
    support: full
    membership:
      - atlasia.dr.dr
options:
  state:
    description:
      - V(saved) takes a snapshot into O(dest).
      - V(restored) replaces the whole content of Vault with the snapshot O(src).
    type: str
    default: saved
    choices: [saved, restored]
  dest:
    description:
      - Directory receiving the snapshot, its sidecars and its manifest; created (mode 0700) when missing.
      - Required with O(state=saved).
    type: path
  src:
    description:
      - Snapshot file to restore, normally written by this module with O(state=saved).
      - Required with O(state=restored).
    type: path
  prefix:
    description:
      - First part of the file name.
    type: str
    default: vault
  timestamp:
    description:
      - Timestamp to name the file with, C(YYYYMMDD_HHMMSS) in UTC. Defaults to now. Lets every artifact of
        one backup set share one timestamp.
    type: str
  mode:
    description:
      - Permissions of the snapshot file. The snapshot is encrypted by Vault's barrier but still holds every
        secret; keep it private.
    type: raw
    default: '0600'
  force:
    description:
      - Restore through C(sys/storage/raft/snapshot-force), which skips the check that the snapshot was taken
        with the same unseal keys as the running cluster.
      - Needed to restore into a freshly initialised cluster (disaster recovery on a new host). Vault then
        seals itself; unseal it with the B(original) cluster's unseal keys, and use the original cluster's
        tokens.
    type: bool
    default: false
  require_checksum:
    description:
      - With O(state=restored), refuse a snapshot that has neither a C(.sha256) nor a C(.md5) sidecar.
      - A sidecar that exists is always checked, whatever this option says.
    type: bool
    default: true
  wait_timeout:
    description:
      - With O(state=restored), seconds to wait after the restore until Vault answers steadily again.
    type: int
    default: 120
notes:
  - The token needs C(read) on C(sys/storage/raft/snapshot) to save, and C(update) on
    C(sys/storage/raft/snapshot) or C(sys/storage/raft/snapshot-force) to restore (HashiCorp Vault may also
    want C(sudo) there); in practice an operator or root token.
  - A restore replaces B(everything) in Vault, tokens included; the token used for the restore may not exist
    afterwards.
  - Restoring into the same cluster (same unseal keys) keeps it unsealed. Restoring with O(force=true) into
    a freshly initialised cluster leaves it B(sealed); the unseal keys and root token of the freshly
    initialised cluster no longer apply, the ORIGINAL cluster's unseal keys and tokens do. Keep the original
    unseal keys with the snapshots.
  - Only integrated storage (raft) has snapshots; a Vault on another storage backend fails with
    C(error_kind=not_raft).
  - Works with HashiCorp Vault and OpenBao (same API).
seealso:
  - name: Vault raft snapshot API
    description: The C(sys/storage/raft/snapshot) endpoints.
    link: https://developer.hashicorp.com/vault/api-docs/system/storage/raft#take-a-snapshot-of-the-raft-cluster
  - name: Vault standard procedure for restoring a cluster
    description: HashiCorp's restore runbook.
    link: https://developer.hashicorp.com/vault/tutorials/archive/sop-restore
"""

EXAMPLES = r"""
- name: Nightly Vault snapshot (token from VAULT_TOKEN, address from VAULT_ADDR)
  atlasia.dr.vault_snapshot:
    dest: /srv/atlasia/backups/daily

- name: Snapshot with explicit connection settings, sharing the timestamp of the backup set
  atlasia.dr.vault_snapshot:
    url: https://vault.internal.example:8200
    token_file: /root/.vault-token
    ca_cert: /etc/atlasia/tls/ca.pem
    dest: /srv/atlasia/backups/daily
    timestamp: "{{ backup_timestamp }}"
  register: vault_backup

- name: Connection settings once for every atlasia.dr module
  module_defaults:
    group/atlasia.dr.dr:
      url: https://vault.internal.example:8200
      token: "{{ vault_operator_token }}"
  block:
    - name: Restore the snapshot into the same cluster
      atlasia.dr.vault_snapshot:
        state: restored
        src: /srv/atlasia/backups/daily/vault_20261126_020000.snap

- name: Disaster recovery into a freshly initialised cluster
  atlasia.dr.vault_snapshot:
    state: restored
    src: /srv/atlasia/backups/daily/vault_20261126_020000.snap
    force: true
    url: http://127.0.0.1:8200
    token: "{{ new_cluster_root_token }}"
  register: restored

- name: Unseal with the ORIGINAL cluster's key
  ansible.builtin.command:
    cmd: vault operator unseal -
    stdin: "{{ original_unseal_key }}"
  environment:
    VAULT_ADDR: http://127.0.0.1:8200
  when: restored.sealed
  changed_when: true

- name: Check that a snapshot is restorable without touching Vault
  atlasia.dr.vault_snapshot:
    state: restored
    src: /srv/atlasia/backups/daily/vault_20261126_020000.snap
  check_mode: true
"""

RETURN = r"""
path:
  description: Path of the snapshot (written, would be written in check mode, or restored).
  returned: always
  type: str
  sample: /srv/atlasia/backups/daily/vault_20261126_020000.snap
size:
  description: Size of the snapshot in bytes; 0 when O(state=saved) in check mode.
  returned: always
  type: int
  sample: 19481
md5:
  description: MD5 of the snapshot file, as in the C(.md5) sidecar.
  returned: success, except O(state=saved) in check mode
  type: str
  sample: 35c307fcd76019fcdf2d3729db389360
sha256:
  description: SHA-256 of the snapshot file, as in the C(.sha256) sidecar.
  returned: success, except O(state=saved) in check mode
  type: str
  sample: c8c9aa19ace539d22de9675eac2ac74c8f8c116a8bb5986ebaabe8c55c7bd7eb
duration:
  description: Seconds the task took (download and validation, or validation, restore and wait).
  returned: always
  type: float
  sample: 1.52
manifest:
  description:
    - Path of the JSON manifest (O(state=saved)); for O(state=restored), the manifest next to O(src) when it
      exists, else V(null).
  returned: always
  type: str
  sample: /srv/atlasia/backups/daily/vault_20261126_020000.json
manifest_data:
  description: Content of the manifest.
  returned: success and a manifest was written or found
  type: dict
  sample: {"type": "vault_raft_snapshot", "server_version": "2.7.2", "size": 19481, "raft": {"index": 35, "term": 3}}
server_version:
  description: Version of the Vault server (from C(sys/seal-status)).
  returned: when Vault answered
  type: str
  sample: 2.7.2
snapshot:
  description: What the archive holds.
  returned: success, except O(state=saved) in check mode
  type: dict
  contains:
    index:
      description: Raft index of the snapshot (from C(meta.json)).
      type: int
      sample: 35
    term:
      description: Raft term of the snapshot.
      type: int
      sample: 3
    members:
      description: Archive members with size and SHA-256.
      type: list
      elements: dict
      sample: [{"name": "meta.json", "size": 186, "sha256": "2cf2...6fd1"}]
    sha256sums:
      description: V(verified) when the archive's C(SHA256SUMS) was checked, V(absent) when it has none.
      type: str
      sample: verified
checksums:
  description: Sidecar check of O(src) per algorithm, V(ok) or V(missing).
  returned: O(state=restored)
  type: dict
  sample: {"md5": "ok", "sha256": "ok"}
endpoint:
  description: API path the snapshot was (or would be) posted to.
  returned: O(state=restored)
  type: str
  sample: sys/storage/raft/snapshot-force
sealed:
  description:
    - Whether Vault is sealed once it answers again after the restore (V(true) after O(force=true) into
      another cluster; unseal it with the original cluster's keys). In check mode, the current state.
  returned: O(state=restored)
  type: bool
  sample: false
error_kind:
  description:
    - Classification of a failure, for handlers and runbooks.
    - V(sealed), V(not_initialized), V(permission_denied), V(invalid_token), V(missing_token), V(not_raft),
      V(unreachable), V(tls), V(standby), V(seal_mismatch), V(invalid_snapshot), V(checksum), V(exists),
      V(io), V(disk_full), V(invalid_argument), V(bad_response), V(http_error).
  returned: failure
  type: str
  sample: sealed
"""

import errno
import json
import os
import platform
import time

from ansible_collections.atlasia.dr.plugins.module_utils import atomic, naming
from ansible_collections.atlasia.dr.plugins.module_utils.checksum import (
    ChecksumError,
    sidecar_text,
    verify_sidecars,
    write_sidecars,
)
from ansible_collections.atlasia.dr.plugins.module_utils.common import DRModule
from ansible_collections.atlasia.dr.plugins.module_utils.vault import (
    INVALID_ARGUMENT,
    IO,
    MISSING_TOKEN,
    SNAPSHOT_FORCE_PATH,
    SNAPSHOT_PATH,
    VAULT_MUTUALLY_EXCLUSIVE,
    VAULT_REQUIRED_TOGETHER,
    SnapshotError,
    VaultClient,
    VaultError,
    inspect_snapshot,
    resolve_token,
    vault_argument_spec,
)

SNAPSHOT_EXT = "snap"


def _fail(module, message, kind, **extra):
    module.fail_json(msg=message, error_kind=kind, **extra)


def _fail_vault(module, exc, prefix="", **extra):
    details = {}
    if exc.status:
        details["status"] = exc.status
    if exc.errors:
        details["vault_errors"] = exc.errors
    details.update(extra)
    _fail(module, prefix + str(exc), exc.kind, **details)


def _file_mode(module, value):
    try:
        mode = value if isinstance(value, int) else int(str(value), 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o7777:
        _fail(module, "mode %r is not an octal file mode such as '0600'" % (value,), INVALID_ARGUMENT)
    return mode


def _snapshot_summary(info):
    meta = info.get("meta") or {}
    return dict(index=meta.get("index"), term=meta.get("term"), members=info["members"],
                sha256sums=info["sha256sums"])


def _remove_leftovers(path, manifest_path):
    """After a failure: sidecars and manifest must not outlive a snapshot that never took its name."""
    if os.path.exists(path):
        return
    for sidecar in naming.sidecar_names(os.path.basename(path)).values():
        atomic.remove_path(os.path.join(os.path.dirname(path), sidecar))
    atomic.remove_path(manifest_path)


def save(module, client, t0):
    params = module.params
    dest = params["dest"]
    mode = _file_mode(module, params["mode"])
    try:
        moment = naming.parse_timestamp(params["timestamp"]) if params["timestamp"] else naming.utc_now()
        stem = naming.backup_stem(params["prefix"], moment)
    except ValueError as exc:
        _fail(module, "invalid timestamp or prefix: %s (timestamp format: YYYYMMDD_HHMMSS)" % exc, INVALID_ARGUMENT)
    name = naming.backup_name(params["prefix"], moment, SNAPSHOT_EXT)
    path = os.path.join(dest, name)
    manifest_path = os.path.join(dest, naming.manifest_name(stem))
    if os.path.lexists(path):
        _fail(module, "%s already exists; a snapshot is never overwritten (pass another timestamp or prefix)" % path,
              "exists", path=path)
    if os.path.exists(dest) and not os.path.isdir(dest):
        _fail(module, "dest %s exists and is not a directory" % dest, INVALID_ARGUMENT, path=path)

    try:
        status = client.preflight()
        if module.check_mode:
            client.check_capabilities(SNAPSHOT_PATH, ["read"])
    except VaultError as exc:
        _fail_vault(module, exc, "no snapshot taken: ", path=path)
    if module.check_mode:
        module.exit_json(changed=True, path=path, manifest=manifest_path, size=0,
                         duration=round(time.time() - t0, 3), server_version=status.get("version"))

    started = naming.utc_now()
    try:
        if not os.path.isdir(dest):
            os.makedirs(dest, 0o700)
        atomic.cleanup_stale_temps(dest)
        with atomic.atomic_file(path, mode=mode) as handle:
            info = client.save_snapshot(handle)
            raft = client.raft_state()
            finished = naming.utc_now()
            manifest = _manifest(client, status, raft, info, name, started, finished, t0)
            texts = dict((algo, sidecar_text(digest, name)) for algo, digest in info["digests"].items())
            write_sidecars(path, texts)
            atomic.write_json(manifest_path, manifest, mode=0o644)
    except VaultError as exc:
        _remove_leftovers(path, manifest_path)
        _fail_vault(module, exc, "snapshot failed and nothing was written: ", path=path)
    except FileExistsError:
        _remove_leftovers(path, manifest_path)
        _fail(module, "%s appeared while the snapshot was taken; it was left alone" % path, "exists", path=path)
    except OSError as exc:
        _remove_leftovers(path, manifest_path)
        _fail(module, "snapshot failed and nothing was written: cannot write under %s: %s" % (dest, exc),
              "disk_full" if exc.errno == errno.ENOSPC else IO, path=path)
    except BaseException:
        _remove_leftovers(path, manifest_path)
        raise
    warnings = []
    if info["unknown_members"]:
        warnings.append("the snapshot holds members this module does not know: %s" % ", ".join(info["unknown_members"]))
    if info["sha256sums"] != "verified":
        warnings.append("the snapshot has no SHA256SUMS member: only its gzip CRC and tar structure were checked")
    for warning in warnings:
        module.warn(warning)
    module.exit_json(changed=True, path=path, size=info["size"], md5=info["digests"]["md5"],
                     sha256=info["digests"]["sha256"], duration=manifest["duration"], manifest=manifest_path,
                     manifest_data=manifest, server_version=status.get("version"), snapshot=_snapshot_summary(info))


def _manifest(client, status, raft, info, name, started, finished, t0):
    meta = info.get("meta") or {}
    return dict(
        artifact=name,
        type="vault_raft_snapshot",
        server_version=status.get("version"),
        cluster_name=status.get("cluster_name"),
        cluster_id=status.get("cluster_id"),
        storage_type=status.get("storage_type") or "raft",
        url=client.url,
        raft=dict(
            index=meta.get("index"),
            term=meta.get("term"),
            configuration_index=meta.get("configuration_index"),
            servers=meta.get("servers") or [],
            leader=raft.get("leader"),
        ),
        members=info["members"],
        sha256sums=info["sha256sums"],
        size=info["size"],
        uncompressed_size=info["uncompressed_size"],
        md5=info["digests"]["md5"],
        sha256=info["digests"]["sha256"],
        started=started.isoformat(),
        finished=finished.isoformat(),
        duration=round(time.time() - t0, 3),
        host=platform.node(),
        tool="atlasia.dr.vault_snapshot",
    )


def _read_manifest(src):
    path = naming.manifest_path_for(src)
    if path is None:
        return None, None
    try:
        with open(path, "r") as handle:
            return path, json.load(handle)
    except (OSError, ValueError):
        return path, None


def restore(module, client, t0):
    params = module.params
    src = params["src"]
    endpoint = SNAPSHOT_FORCE_PATH if params["force"] else SNAPSHOT_PATH
    if not os.path.isfile(src):
        _fail(module, "src %s does not exist or is not a file" % src, INVALID_ARGUMENT, path=src)
    refused = "snapshot %s refused, Vault was not touched: " % src
    try:
        sidecars, dummy = verify_sidecars(src, required=params["require_checksum"])
    except ChecksumError as exc:
        _fail(module, refused + str(exc), "checksum", path=src)
    except OSError as exc:
        _fail(module, refused + "cannot read it: %s" % exc, IO, path=src)
    manifest_path, manifest = _read_manifest(src)

    try:
        handle = open(src, "rb")
    except OSError as exc:
        _fail(module, refused + "cannot read it: %s" % exc, IO, path=src)
    with handle:
        try:
            info = inspect_snapshot(handle)
        except SnapshotError as exc:
            _fail(module, refused + str(exc), exc.kind, path=src, checksums=sidecars)
        except VaultError as exc:
            _fail(module, refused + str(exc), IO, path=src)
        size = os.fstat(handle.fileno()).st_size
        if size != info["size"]:
            _fail(module, refused + "the file changed while it was checked", IO, path=src)
        result = dict(path=src, size=size, md5=info["digests"]["md5"], sha256=info["digests"]["sha256"],
                      manifest=manifest_path, snapshot=_snapshot_summary(info), checksums=sidecars,
                      endpoint=endpoint)
        if manifest is not None:
            result["manifest_data"] = manifest
        try:
            status = client.preflight()
            result["server_version"] = status.get("version")
            client.check_capabilities(endpoint, ["update"])
        except VaultError as exc:
            _fail_vault(module, exc, "no restore done: ", path=src)
        if module.check_mode:
            module.exit_json(changed=True, sealed=bool(status.get("sealed")), duration=round(time.time() - t0, 3),
                             **result)
        handle.seek(0)
        try:
            client.restore_snapshot(handle, size, force=params["force"])
        except VaultError as exc:
            _fail_vault(module, exc, "restore of %s failed: " % src, path=src, endpoint=endpoint)
    try:
        after = client.wait_until_answering(params["wait_timeout"])
    except VaultError as exc:
        _fail_vault(module, exc, "the snapshot was sent and accepted, but: ", path=src, endpoint=endpoint)
    sealed = bool(after.get("sealed"))
    if sealed:
        module.warn("Vault is sealed after the restore: unseal it with the unseal keys of the cluster the snapshot "
                    "was taken from (the keys of a freshly initialised cluster no longer apply)")
    module.exit_json(changed=True, sealed=sealed, duration=round(time.time() - t0, 3), **result)


def main():
    argument_spec = vault_argument_spec()
    argument_spec.update(
        state=dict(type="str", default="saved", choices=["saved", "restored"]),
        dest=dict(type="path"),
        src=dict(type="path"),
        prefix=dict(type="str", default="vault"),
        timestamp=dict(type="str"),
        mode=dict(type="raw", default="0600"),
        force=dict(type="bool", default=False),
        require_checksum=dict(type="bool", default=True),
        wait_timeout=dict(type="int", default=120),
    )
    module = DRModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        mutually_exclusive=VAULT_MUTUALLY_EXCLUSIVE,
        required_together=VAULT_REQUIRED_TOGETHER,
        required_if=[("state", "saved", ["dest"]), ("state", "restored", ["src"])],
    )
    t0 = time.time()
    if module.params["timeout"] <= 0 or module.params["wait_timeout"] <= 0:
        _fail(module, "timeout and wait_timeout must be positive", INVALID_ARGUMENT)
    try:
        token = resolve_token(module.params)
    except VaultError as exc:
        _fail_vault(module, exc)
    if not token:
        _fail(module, "no Vault token: set token or token_file, or VAULT_TOKEN in the environment", MISSING_TOKEN)
    module.no_log_values.add(token)
    try:
        client = VaultClient.from_params(module.params, token=token)
    except VaultError as exc:
        _fail_vault(module, exc)
    if module.params["state"] == "saved":
        save(module, client, t0)
    else:
        restore(module, client, t0)


if __name__ == "__main__":
    main()
