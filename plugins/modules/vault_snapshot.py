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
    Vault accepts the snapshot at once and installs it afterwards (the node stops answering meanwhile); the wait
    ends when the node reports a new activation time in C(sys/leader) (installing a snapshot re-runs it), or,
    for a sealed node, a standby or a server that does not report it, once the node answered the same way for
    two seconds.
  - Before a restore replaces anything, the B(current) content of Vault is saved (O(safety_snapshot=true), the
    default) into O(safety_dir) as C(vault-prerestore_<YYYYMMDD>_<HHMMSS>.snap), or C(.snap.enc) encrypted with
    O(encryption_key). It is written like any other snapshot (streamed under a temporary name, validated,
    C(.md5)/C(.sha256) sidecars, its own manifest, fsync and rename), then read back whole (decrypted on the fly
    when encrypted) and checked against what was downloaded. Only then is the restore sent; when the safety
    snapshot fails, the module fails and Vault is not touched. A wrong snapshot restored by mistake is undone
    by restoring the safety snapshot (decrypt it first with M(atlasia.dr.dr_crypt)).
  - A sealed or uninitialised Vault cannot be read, so nothing can be saved; the restore then goes on only
    with O(force=true) or O(safety_snapshot=false), and C(safety_snapshot_reason) says why nothing was saved.
  - Failures carry an C(error_kind) (V(sealed), V(permission_denied), V(invalid_token), V(missing_token),
    V(not_raft), V(unreachable), V(tls), V(seal_mismatch), V(invalid_snapshot), V(checksum), ...) and a
    message saying what to do.
author:
  - atlasia DevOps team (@atlasia-devops)
requirements:
  - cryptography (only with O(encryption_key))
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
        capabilities (C(update) on the restore endpoint, C(read) on C(sys/storage/raft/snapshot) for the safety
        snapshot), and reports C(changed=true) meaning "would restore" and in C(safety_snapshot) the path it would
        save the current content to; Vault is not changed and nothing is written (O(safety_dir) is not created).
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
    description:
      - Use C(group/atlasia.dr.vault) in C(module_defaults) to set the Vault connection options once for this
        module, M(atlasia.dr.vault_init) and M(atlasia.dr.vault_unseal). O(token) and O(token_file) are options
        of this module only, since the other two take no token; set them in the defaults of
        C(atlasia.dr.vault_snapshot) itself.
    support: full
    membership:
      - atlasia.dr.dr
      - atlasia.dr.vault
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
      - With O(state=restored), seconds to wait after the restore until Vault has installed the snapshot and
        answers again.
    type: int
    default: 120
  safety_snapshot:
    description:
      - With O(state=restored), save the current content of Vault into O(safety_dir) before it is replaced, and
        restore only once that snapshot is written and verified.
      - When Vault is sealed or not initialised nothing can be saved; the restore then needs O(force=true) or
        V(false) here.
      - Set V(false) only when the content of the target does not matter (a throwaway or freshly built Vault).
    type: bool
    default: true
    version_added: 0.2.0
  safety_dir:
    description:
      - Directory receiving the safety snapshot C(vault-prerestore_<YYYYMMDD>_<HHMMSS>.snap[.enc]), its sidecars
        and its manifest; created (mode 0700) when missing.
      - Required with O(state=restored) when O(safety_snapshot=true) and Vault answers unsealed.
    type: path
    version_added: 0.2.0
  encryption_key:
    description:
      - With O(state=restored), passphrase the safety snapshot is encrypted with (age v1 with a passphrase, the C(.enc) format
        of M(atlasia.dr.dr_crypt), streamed, so the plaintext never reaches the disk). The manifest records the key id.
      - Leave it out for a plain C(.snap) (Vault's barrier still encrypts the data inside; keep the file private).
      - Not accepted with O(state=saved); encrypt saved snapshots with M(atlasia.dr.dr_crypt).
    type: str
    version_added: 0.2.0
  safety_retention:
    description:
      - With O(state=restored), how many safety snapshots to keep in O(safety_dir) once the restore succeeded,
        newest first, the one just taken included (always kept). V(-1) keeps them all.
      - Only C(vault-prerestore_*) files (with their sidecars and manifest) are removed.
    type: int
    default: 3
notes:
  - The token needs C(read) on C(sys/storage/raft/snapshot) to save, and C(update) on
    C(sys/storage/raft/snapshot) or C(sys/storage/raft/snapshot-force) to restore (HashiCorp Vault may also
    want C(sudo) there); in practice an operator or root token.
  - A restore replaces B(everything) in Vault, tokens included; the token used for the restore may not exist
    afterwards.
  - The safety snapshot needs C(read) on C(sys/storage/raft/snapshot) too; it is checked before anything is written.
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

- name: Connection settings once for the Vault modules
  module_defaults:
    group/atlasia.dr.vault:
      url: https://vault.internal.example:8200
      ca_cert: /etc/atlasia/tls/ca.pem
    atlasia.dr.vault_snapshot:
      token: "{{ vault_operator_token }}"
  block:
    - name: Restore the snapshot into the same cluster, saving the current content first
      atlasia.dr.vault_snapshot:
        state: restored
        src: /srv/atlasia/backups/daily/vault_20261126_020000.snap
        safety_dir: /srv/atlasia/backups/safety
        encryption_key: "{{ vault_dr_encryption_key }}"
      register: vault_restore

    - name: Say where the previous content went
      ansible.builtin.debug:
        msg: "Vault before the restore: {{ vault_restore.safety_snapshot }}"

- name: Disaster recovery into a freshly initialised cluster
  atlasia.dr.vault_snapshot:
    state: restored
    src: /srv/atlasia/backups/daily/vault_20261126_020000.snap
    force: true
    safety_snapshot: false  # the fresh cluster holds nothing worth saving
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
    safety_dir: /srv/atlasia/backups/safety
  check_mode: true

- name: Undo a wrong restore - decrypt the safety snapshot...
  atlasia.dr.dr_crypt:
    state: decrypted
    src: "{{ vault_restore.safety_snapshot }}"
    dest: /srv/atlasia/restore-staging
    key: "{{ vault_dr_encryption_key }}"
  register: previous

- name: ...and restore it
  atlasia.dr.vault_snapshot:
    state: restored
    src: "{{ previous.path }}"
    safety_dir: /srv/atlasia/backups/safety
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
wait_ended:
  description:
    - With O(state=restored), what ended the wait after the restore. V(activation) when the node reported a new
      activation time (the snapshot is installed), V(steady) when the node answered the same way for two
      seconds (a sealed node, a standby, or a server that does not report its activation).
  returned: when O(state=restored) and the restore was sent
  type: str
  choices: [activation, steady]
  sample: activation
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
safety_snapshot:
  description:
    - Path of the safety snapshot of the current content of Vault, written and verified before the restore
      (in check mode, the path it would be written to); V(null) when nothing was saved (see
      RV(safety_snapshot_reason)).
    - In a failed result, the restore failed after the safety snapshot was taken when it is set.
  returned: O(state=restored), once Vault's state was read
  type: str
  sample: /srv/atlasia/backups/safety/vault-prerestore_20261126_031500.snap.enc
  version_added: 0.2.0
removed_safety_snapshots:
  description: Older safety snapshots removed from O(safety_dir) by O(safety_retention) (file names).
  returned: O(state=restored), success
  type: list
  elements: str
  sample: [vault-prerestore_20261120_031500.snap.enc]
safety_snapshot_reason:
  description:
    - Why the safety snapshot was, would be, or was not taken (Vault sealed, O(safety_snapshot=false), failure).
  returned: O(state=restored), once Vault's state was read
  type: str
  sample: >-
    the current content of Vault was saved to /srv/atlasia/backups/safety/vault-prerestore_20261126_031500.snap.enc
    and verified before the restore
  version_added: 0.2.0
safety_snapshot_data:
  description: What the safety snapshot holds and how it was checked.
  returned: O(state=restored) when a safety snapshot was written
  type: dict
  version_added: 0.2.0
  contains:
    path:
      description: Its path.
      type: str
    size:
      description: Size of the file in bytes (ciphertext when encrypted).
      type: int
    sha256:
      description: SHA-256 of the file, as in its C(.sha256) sidecar.
      type: str
    md5:
      description: MD5 of the file, as in its C(.md5) sidecar.
      type: str
    manifest:
      description: Path of its JSON manifest.
      type: str
    checksums:
      description: Sidecar check once written, per algorithm.
      type: dict
    encrypted:
      description: Whether it is encrypted with O(encryption_key).
      type: bool
    key_id:
      description: Identifier of the key it is encrypted with (as recorded by M(atlasia.dr.dr_crypt)), else V(null).
      type: str
    raft_index:
      description: Raft index of the saved content.
      type: int
  sample: {"path": "/srv/atlasia/backups/safety/vault-prerestore_20261126_031500.snap", "size": 19481,
           "checksums": {"md5": "ok", "sha256": "ok"}, "encrypted": false, "key_id": null, "raft_index": 52}
error_kind:
  description:
    - Classification of a failure, for handlers and runbooks.
    - V(sealed), V(not_initialized), V(permission_denied), V(invalid_token), V(missing_token), V(not_raft),
      V(unreachable), V(tls), V(standby), V(seal_mismatch), V(invalid_snapshot), V(checksum), V(exists),
      V(io), V(disk_full), V(invalid_argument), V(bad_response), V(http_error), V(crypto).
    - A failed safety snapshot reports the kind of its cause, with a message saying the restore did not start.
  returned: failure
  type: str
  sample: sealed
"""

import errno
import json
import os
import time

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.atlasia.dr.plugins.module_utils import artifact, atomic, crypto, naming, safety
from ansible_collections.atlasia.dr.plugins.module_utils.checksum import ChecksumError, verify_sidecars
from ansible_collections.atlasia.dr.plugins.module_utils.common import DRModule
from ansible_collections.atlasia.dr.plugins.module_utils.vault import (
    INVALID_ARGUMENT,
    IO,
    MISSING_TOKEN,
    NOT_INITIALIZED,
    SEALED,
    SNAPSHOT_FORCE_PATH,
    SNAPSHOT_PATH,
    VAULT_MUTUALLY_EXCLUSIVE,
    VAULT_REQUIRED_TOGETHER,
    SnapshotError,
    VaultClient,
    VaultError,
    inspect_snapshot,
    read_back_snapshot,
    obtain_token,
    vault_argument_spec,
    write_snapshot,
)

SNAPSHOT_EXT = "snap"
SAFETY_PREFIX = "vault-prerestore"
SAFETY_FAILED = "safety_snapshot"


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
        return atomic.parse_mode(value)
    except ValueError as exc:
        return _fail(module, str(exc), INVALID_ARGUMENT)


def _snapshot_summary(info):
    meta = info.get("meta") or {}
    return dict(index=meta.get("index"), term=meta.get("term"), members=info["members"],
                sha256sums=info["sha256sums"])


def _artifact_paths(dest, prefix, moment, passphrase=None):
    """``(path, manifest_path)`` of a snapshot artifact; ``ValueError`` for a prefix the naming rules refuse."""
    stem = naming.backup_stem(prefix, moment)
    name = naming.backup_name(prefix, moment, SNAPSHOT_EXT) + (crypto.EXTENSION if passphrase else "")
    return os.path.join(dest, name), os.path.join(dest, naming.manifest_name(stem))


def _write_artifact(client, status, path, manifest_path, mode, t0, passphrase=None, read_back=False, extra=None):
    """One snapshot artifact, for O(state=saved) and for the safety snapshot alike.

    Streamed under a temporary name (validated while it streams, encrypted on the way with ``passphrase``),
    optionally read back whole before it is kept, then its sidecars and manifest, then the final name (fsync
    and rename). Raises VaultError, SnapshotError, crypto.CryptoError, FileExistsError or OSError, and then
    leaves nothing behind. Returns ``(info, written, manifest)``.
    """
    started = naming.utc_now()
    artifact.prepare(os.path.dirname(path))
    snapshot = {}

    def verify(out):
        if read_back:
            _check_read_back(out.temp_path, passphrase, snapshot["info"], snapshot["written"])

    def manifest(out):
        data = _manifest(client, status, client.raft_state(), snapshot["info"], out, started, t0)
        if passphrase:
            data["encryption"] = crypto.manifest_entry(passphrase, out.name[: -len(crypto.EXTENSION)],
                                                       snapshot["info"]["size"], snapshot["info"]["digests"])
        data.update(extra or {})
        return data

    with artifact.Writer(path, mode=mode, manifest_path=manifest_path, verify=verify, manifest=manifest) as out:
        snapshot["info"], snapshot["written"] = write_snapshot(client, out.handle, passphrase)
        out.record(snapshot["written"]["digests"], snapshot["written"]["size"])
    return snapshot["info"], snapshot["written"], out.manifest


def _check_read_back(temp_path, passphrase, info, written):
    """The file on disk is exactly what was streamed, and (decrypted) a valid snapshot with the same digests."""
    again, digests = read_back_snapshot(temp_path, passphrase)
    if digests != written["digests"]:
        raise SnapshotError("the file read back differs from the bytes written (sha256 %s, written %s): the disk "
                            "did not keep it" % (digests.get("sha256"), written["digests"].get("sha256")))
    if again["digests"]["sha256"] != info["digests"]["sha256"] or again["size"] != info["size"]:
        raise SnapshotError("the snapshot read back (%s) is not the one downloaded (%s)"
                            % (again["digests"]["sha256"], info["digests"]["sha256"]))


def _warn_about(module, info):
    if info["unknown_members"]:
        module.warn("the snapshot holds members this module does not know: %s" % ", ".join(info["unknown_members"]))
    if info["sha256sums"] != "verified":
        module.warn("the snapshot has no SHA256SUMS member: only its gzip CRC and tar structure were checked")


def save(module, client, t0):
    params = module.params
    dest = params["dest"]
    mode = _file_mode(module, params["mode"])
    if params["encryption_key"] is not None:
        _fail(module, "encryption_key applies to state=restored (the safety snapshot); encrypt a saved snapshot "
                      "with atlasia.dr.dr_crypt", INVALID_ARGUMENT)
    try:
        moment = naming.parse_timestamp(params["timestamp"]) if params["timestamp"] else naming.utc_now()
        path, manifest_path = _artifact_paths(dest, params["prefix"], moment)
    except ValueError as exc:
        _fail(module, "invalid timestamp or prefix: %s (timestamp format: YYYYMMDD_HHMMSS)" % exc, INVALID_ARGUMENT)
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

    try:
        info, written, manifest = _write_artifact(client, status, path, manifest_path, mode, t0)
    except VaultError as exc:
        _fail_vault(module, exc, "snapshot failed and nothing was written: ", path=path)
    except FileExistsError:
        _fail(module, "%s appeared while the snapshot was taken; it was left alone" % path, "exists", path=path)
    except OSError as exc:
        _fail(module, "snapshot failed and nothing was written: cannot write under %s: %s" % (dest, exc),
              "disk_full" if exc.errno == errno.ENOSPC else IO, path=path)
    _warn_about(module, info)
    module.exit_json(changed=True, path=path, size=info["size"], md5=info["digests"]["md5"],
                     sha256=info["digests"]["sha256"], duration=manifest["duration"], manifest=manifest_path,
                     manifest_data=manifest, server_version=status.get("version"), snapshot=_snapshot_summary(info))


def _manifest(client, status, raft, info, out, started, t0):
    meta = info.get("meta") or {}
    return artifact.base_manifest(
        out.name, "vault_raft_snapshot", "atlasia.dr.vault_snapshot", out.size, out.digests, started, t0,
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
        uncompressed_size=info["uncompressed_size"],
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


def _nearest_existing_dir(path):
    """``(directory, problem)``: the folder ``path`` would be created in, or what stands in the way."""
    current = os.path.abspath(path)
    while not os.path.lexists(current):
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    if not os.path.isdir(current):
        return current, "%s is not a directory" % current
    if not os.access(current, os.W_OK | os.X_OK):
        return current, "%s is not writable" % current
    return current, None


class SafetyPlan(object):
    """Whether, and where, the current content of Vault is saved before it is replaced.

    ``path`` is the safety snapshot to write (``None`` when nothing will be saved); ``reason`` says why, in a
    sentence for the result. The decision needs Vault's seal status: a sealed or uninitialised Vault cannot
    be read, and is replaced only when the caller accepted that (O(force=true) or O(safety_snapshot=false)).
    """

    def __init__(self, path=None, manifest_path=None, reason=None):
        self.path = path
        self.manifest_path = manifest_path
        self.reason = reason

    def result(self):
        return dict(safety_snapshot=self.path, safety_snapshot_reason=self.reason)


def plan_safety(module, client, status):
    """Decide the safety snapshot from the seal status; fails the module when the restore must not start."""
    params = module.params
    if not params["safety_snapshot"]:
        return SafetyPlan(reason="safety_snapshot=false: the current content of Vault was not saved before the "
                                 "restore")
    state = None
    if not status.get("initialized", True):
        state, kind = "not initialized", NOT_INITIALIZED
    elif status.get("sealed"):
        state, kind = "sealed", SEALED
    if state is not None:
        reason = ("Vault at %s is %s: its current content cannot be read, so no safety snapshot was taken"
                  % (client.url, state))
        if not params["force"]:
            _fail(module, "no restore done: %s. Unseal it first to keep its current content, or pass force=true "
                          "(or safety_snapshot=false) to replace it without a safety snapshot" % reason, kind,
                  path=params["src"], safety_snapshot=None, safety_snapshot_reason=reason)
        return SafetyPlan(reason=reason + " (force=true)")
    safety_dir = params["safety_dir"]
    if not safety_dir:
        _fail(module, "safety_dir is required: Vault is unsealed and safety_snapshot=true, so its current content is "
                      "saved before the restore (set safety_dir, or safety_snapshot=false to skip that)",
              INVALID_ARGUMENT, path=params["src"], safety_snapshot=None, safety_snapshot_reason="no safety_dir")
    where, problem = _nearest_existing_dir(safety_dir)
    if problem:
        reason = "the safety snapshot cannot be written under safety_dir %s: %s" % (safety_dir, problem)
        _fail(module, "no restore done, Vault was not touched: %s" % reason, IO, path=params["src"],
              safety_snapshot=None, safety_snapshot_reason=reason)
    path, manifest_path = _artifact_paths(safety_dir, SAFETY_PREFIX, naming.utc_now(), params["encryption_key"])
    if os.path.lexists(path):
        reason = "%s already exists (a safety snapshot is never overwritten); retry in a second" % path
        _fail(module, "no restore done, Vault was not touched: the safety snapshot cannot be taken: %s" % reason,
              "exists", path=params["src"], safety_snapshot=None, safety_snapshot_reason=reason)
    if module.check_mode:
        reason = "check mode: the current content of Vault would be saved to %s before the restore" % path
    else:
        reason = "the current content of Vault was saved to %s and verified before the restore" % path
    return SafetyPlan(path=path, manifest_path=manifest_path, reason=reason)


def take_safety_snapshot(module, client, status, plan, src, t0):
    """Write and verify the safety snapshot of ``plan``; any failure fails the module, Vault untouched."""
    params = module.params
    refused = "no restore done, Vault was not touched: the safety snapshot of its current content failed: "
    extra = dict(purpose="pre-restore safety snapshot", restore_of=os.path.abspath(src),
                 restore_endpoint=SNAPSHOT_FORCE_PATH if params["force"] else SNAPSHOT_PATH)
    failed = dict(path=src, safety_snapshot=None)
    try:
        info, written, manifest = _write_artifact(client, status, plan.path, plan.manifest_path,
                                                  _file_mode(module, params["mode"]), t0,
                                                  passphrase=params["encryption_key"], read_back=True, extra=extra)
        checked, dummy = verify_sidecars(plan.path, required=True)
    except SnapshotError as exc:
        failed["safety_snapshot_reason"] = str(exc)
        _fail(module, refused + str(exc), exc.kind, **failed)
    except VaultError as exc:
        failed["safety_snapshot_reason"] = str(exc)
        _fail_vault(module, exc, refused, **failed)
    except crypto.CryptoError as exc:
        failed["safety_snapshot_reason"] = str(exc)
        _fail(module, refused + "it does not decrypt back: %s" % exc, "crypto", **failed)
    except ChecksumError as exc:
        artifact.remove(plan.path, plan.manifest_path)
        failed["safety_snapshot_reason"] = str(exc)
        _fail(module, refused + str(exc), "checksum", **failed)
    except FileExistsError:
        failed["safety_snapshot_reason"] = "%s appeared meanwhile" % plan.path
        _fail(module, refused + "%s appeared while it was taken; it was left alone" % plan.path, "exists", **failed)
    except OSError as exc:
        failed["safety_snapshot_reason"] = str(exc)
        _fail(module, refused + "cannot write under %s: %s" % (os.path.dirname(plan.path), exc),
              "disk_full" if exc.errno == errno.ENOSPC else IO, **failed)
    _warn_about(module, info)
    return dict(path=plan.path, size=written["size"], sha256=written["digests"]["sha256"],
                md5=written["digests"]["md5"], manifest=plan.manifest_path, checksums=checked,
                encrypted=bool(params["encryption_key"]), key_id=(manifest.get("encryption") or {}).get("key_id"),
                raft_index=(manifest.get("raft") or {}).get("index"))


def restore(module, client, t0):
    params = module.params
    src = params["src"]
    endpoint = SNAPSHOT_FORCE_PATH if params["force"] else SNAPSHOT_PATH
    if params["safety_retention"] == 0 or params["safety_retention"] < -1:
        _fail(module, "safety_retention must be -1 (keep all) or at least 1 (the snapshot this restore takes is always "
                      "kept), got %d" % params["safety_retention"], INVALID_ARGUMENT)
    if params["encryption_key"] is not None:
        if not params["encryption_key"]:
            _fail(module, "encryption_key is empty: give the key, or leave the option out for a plain safety snapshot",
                  INVALID_ARGUMENT)
        if not crypto.HAS_CRYPTOGRAPHY:
            module.fail_json(msg=missing_required_lib("cryptography"),
                             exception=str(crypto.CRYPTOGRAPHY_IMPORT_ERROR), error_kind=INVALID_ARGUMENT)
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
            seal = client.seal_status()
        except VaultError as exc:
            _fail_vault(module, exc, "no restore done: ", path=src)
        plan = plan_safety(module, client, seal)
        result.update(plan.result())
        try:
            status = client.preflight()
            result["server_version"] = status.get("version")
            client.check_capabilities(endpoint, ["update"])
            if plan.path:
                client.check_capabilities(SNAPSHOT_PATH, ["read"])
        except VaultError as exc:
            _fail_vault(module, exc, "no restore done: ", path=src, safety_snapshot=None,
                        safety_snapshot_reason=plan.reason if not plan.path else
                        "not taken: %s" % exc)
        if module.check_mode:
            module.exit_json(changed=True, sealed=bool(status.get("sealed")), duration=round(time.time() - t0, 3),
                             **result)
        if plan.path:
            result["safety_snapshot_data"] = take_safety_snapshot(module, client, status, plan, src, t0)
        handle.seek(0)
        before = client.activation()
        try:
            client.restore_snapshot(handle, size, force=params["force"])
        except VaultError as exc:
            result["path"] = src
            _fail_vault(module, exc, "restore of %s failed: " % src, **result)
    try:
        after, result["wait_ended"] = client.wait_until_answering(params["wait_timeout"], before=before)
    except VaultError as exc:
        result["path"] = src
        _fail_vault(module, exc, "the snapshot was sent and accepted, but: ", **result)
    sealed = bool(after.get("sealed"))
    result["removed_safety_snapshots"] = []
    if plan.path:
        try:
            made = naming.parse_backup_name(os.path.basename(plan.path))
            result["removed_safety_snapshots"] = safety.prune_files(
                os.path.dirname(plan.path), SAFETY_PREFIX, params["safety_retention"], protect=made.stem)
        except OSError as exc:
            module.warn("the restore succeeded, but removing older safety snapshots failed: %s" % exc)
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
        safety_snapshot=dict(type="bool", default=True),
        safety_dir=dict(type="path"),
        encryption_key=dict(type="str", no_log=True),
        safety_retention=dict(type="int", default=3),
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
        client = VaultClient.from_params(module.params)
        token = obtain_token(module.params, client)
    except VaultError as exc:
        _fail_vault(module, exc)
    if not token:
        _fail(module, "no Vault token: set token or token_file, role_id and secret_id (AppRole), or VAULT_TOKEN in "
              "the environment", MISSING_TOKEN)
    module.no_log_values.add(token)
    client.token = token
    if module.params["state"] == "saved":
        save(module, client, t0)
    else:
        restore(module, client, t0)


if __name__ == "__main__":
    main()
