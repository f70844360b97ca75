#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: dr_crypt
short_description: Encrypt, decrypt or re-key backup artifacts (age v1 with a passphrase, streamed)
version_added: 0.1.0
description:
  - O(state=encrypted) turns an artifact into C(<artifact>.enc), a standard age v1 file
    (U(https://age-encryption.org/v1)) with a passphrase (scrypt) recipient that Debian's C(age) tool opens
    (C(age -d)), authenticated in 64 KiB chunks (constant memory), with C(.md5)/C(.sha256) sidecars over the ciphertext (so a set can be
    verified without the key) and the artifact's manifest updated to describe the encrypted artifact and the
    key id. The plaintext is removed afterwards unless O(keep_plaintext=true).
  - O(state=decrypted) reads age files and the collection's earlier format (AES-256-GCM), so older sets stay
    readable; it checks the ciphertext's sidecars and the key first (a wrong key is a clear error
    before anything is written), then writes the plaintext next to it or into O(dest), verified against the
    manifest's plaintext checksum, with its own sidecars.
  - O(state=rotated) re-encrypts one artifact under O(new_key) without writing the plaintext to disk. An artifact
    already under O(new_key) (a rotation that was interrupted) is finished (sidecars, manifest), not
    refused.
  - O(state=rekeyed) re-encrypts every copy of every set in every tier of O(root) (C(daily), C(weekly),
    C(monthly)) under O(new_key). Hard-linked copies are re-encrypted once and the new file is hard-linked over
    the copy of every tier, then its sidecars and artifact manifest (written once, linked likewise); each tier's
    set manifest is then refreshed and signed with O(new_key) (a set that carried no MAC is left unsigned and
    reported). A set manifest whose MAC does not check under O(key) or O(new_key) is not touched. Incomplete
    tier copies are repaired first (see M(atlasia.dr.backup_set) O(atlasia.dr.backup_set#module:repair_tiers)).
  - O(state=rekeyed) is resumable. The new ciphertext is renamed over the old name first, then its sidecars and
    manifest are rewritten, so a run killed in between leaves a file under the new key whose
    sidecars describe the old ciphertext. The next run recognises such a file because O(new_key) opens it,
    authenticates it by decrypting it with O(new_key), and finishes it; sets already complete under O(new_key)
    are skipped. Run it under the backup lock (M(atlasia.dr.dr_lock)), as C(playbooks/rekey.yml) does.
  - With O(state=rekeyed) and O(s3=true), every set in S3 (the set manifests directly under O(prefix) in O(bucket))
    is then brought under O(new_key) too, whether or not a local copy records it as copied offsite (a weekly or
    monthly copy does not, since it was linked before the upload), and whether or not a local copy is still kept
    (S3 may keep sets longer than the host). A set whose S3 manifest is signed with O(new_key) is complete and
    skipped; one with a local copy complete under O(new_key) gets that copy uploaded again; one with no local
    copy is downloaded into O(staging_dir), verified, re-keyed there and uploaded again. Artifacts (with their
    sidecars and manifests) go first, the set manifest last, replacing the objects under the old key; a run
    killed part-way is run again and finishes (an artifact already under O(new_key) is recognised by its
    header, even beside the sidecars of its old ciphertext when the run was killed between the two uploads; it
    is then downloaded against its checksum metadata and kept only when every chunk authenticates under
    O(new_key) and the plaintext matches its manifest's checksum). Until it ends without error, do not destroy the old key, since S3 copies may still need it.
  - Every output is written under a temporary name and renamed when complete.
  - Run through the collection's action plugin, a long run prints a progress line every C(dr_progress_interval)
    seconds, such as C(1.2 GiB of 3.4 GiB decrypted, 150 MiB/s, about 15 s left) after the task's name and host;
    the bytes are those of O(src) read so far against its size; with O(state=rekeyed), the bytes of the local C(.enc) files under
    O(root) read so far against their total size (each file counted once, hard links included; the S3 part is
    not measured).
  - The key never leaves the controller's variables; keep it in an Ansible Vault-encrypted variable or file,
    never beside the backups or in S3.
author:
  - atlasia DevOps team (@atlasia-devops)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - atlasia.dr.s3
  - atlasia.dr.progress
attributes:
  check_mode:
    support: full
    details: >-
      Checks the input (and the key) and reports the path it would write; O(state=rekeyed) reports the sets it
      would re-key. With O(state=encrypted), a missing
      O(src) is taken as the artifact an earlier task of the same check-mode run would have written: the
      module reports the path it would write instead of failing.
  diff_mode:
    support: none
  platform:
    platforms: posix
requirements:
  - cryptography
options:
  state:
    description: What to do.
    type: str
    default: encrypted
    choices: [encrypted, decrypted, rotated, rekeyed]
  src:
    description:
      - Artifact to encrypt, or C(.enc) artifact to decrypt or re-key. Required unless O(state=rekeyed).
    type: path
  root:
    description: Backup root whose tiers O(state=rekeyed) re-keys.
    type: path
    version_added: 0.2.0
  dest:
    description: Directory of the output; defaults to the directory of O(src).
    type: path
  key:
    description: Passphrase (the current key).
    type: str
    required: true
  new_key:
    description: Passphrase to re-encrypt under (O(state=rotated), O(state=rekeyed)).
    type: str
  keep_plaintext:
    description: With O(state=encrypted), keep the plaintext artifact and its sidecars.
    type: bool
    default: false
  chunk_size_mb:
    description:
      - Ignored since artifacts are written in the age format, whose chunks are 64 KiB; kept so existing plays
        still run.
    type: int
    default: 4
  s3:
    description:
      - With O(state=rekeyed), also re-key every set in S3 under O(prefix) of O(bucket) (see the description).
    type: bool
    default: false
    version_added: 0.2.0
  bucket:
    description: Bucket of the environment's sets (with O(s3=true)).
    type: str
    required: false
  prefix:
    description: Key prefix of the environment's sets in O(bucket).
    type: str
    default: ""
    version_added: 0.2.0
  staging_dir:
    description:
      - Private folder (mode 0700) receiving the S3 sets that have no local copy while they are re-keyed; each set's
        folder is removed once it is uploaded again. Defaults to C(<root>/rekey-staging).
    type: path
    version_added: 0.2.0
  storage_class:
    description: Storage class of the objects uploaded again (with O(s3=true)).
    type: str
    default: STANDARD_IA
    choices: [STANDARD, REDUCED_REDUNDANCY, STANDARD_IA, ONEZONE_IA, INTELLIGENT_TIERING, GLACIER, GLACIER_IR, DEEP_ARCHIVE]
    version_added: 0.2.0
  server_side_encryption:
    description: Server-side encryption of the objects uploaded again (with O(s3=true)); V(aws:kms) uses the bucket's KMS key.
    type: str
    default: AES256
    choices: [AES256, aws:kms, none]
    version_added: 0.2.0
"""

EXAMPLES = r"""
- name: Encrypt tonight's dump
  atlasia.dr.dr_crypt:
    src: /srv/atlasia/backups/daily/backup_20261126_020000.sql.gz
    key: "{{ vault_dr_encryption_key }}"

- name: Decrypt it for a restore
  atlasia.dr.dr_crypt:
    state: decrypted
    src: /srv/atlasia/backups/daily/backup_20261126_020000.sql.gz.enc
    dest: /srv/atlasia/backups/restore-staging/20261126_020000
    key: "{{ vault_dr_encryption_key }}"

- name: Re-key a set after a key rotation
  atlasia.dr.dr_crypt:
    state: rotated
    src: "{{ item }}"
    key: "{{ vault_dr_encryption_key_old }}"
    new_key: "{{ vault_dr_encryption_key }}"
  loop: "{{ encrypted_artifacts }}"

- name: Re-key every set of every tier (under the backup lock)
  atlasia.dr.dr_crypt:
    state: rekeyed
    root: /srv/atlasia/backups
    key: "{{ vault_dr_encryption_key_old }}"
    new_key: "{{ vault_dr_encryption_key }}"

- name: Re-key every set of every tier and every set in S3
  atlasia.dr.dr_crypt:
    state: rekeyed
    root: /srv/atlasia/backups
    key: "{{ vault_dr_encryption_key_old }}"
    new_key: "{{ vault_dr_encryption_key }}"
    s3: true
    bucket: atlasia-backups
    prefix: atlasia-backups/
"""

RETURN = r"""
path:
  description: The file written (or that would be written).
  returned: always
  type: str
  sample: /srv/atlasia/backups/daily/backup_20261126_020000.sql.gz.enc
size:
  description: Its size in bytes.
  returned: success and not check mode
  type: int
sha256:
  description: Its SHA-256.
  returned: success and not check mode
  type: str
md5:
  description: Its MD5.
  returned: success and not check mode
  type: str
key_id:
  description: Identifier of the key the output is encrypted with (or the input was, for decryption).
  returned: always
  type: str
  sample: 3f0c9e5a1b2d4c6e8f00112233445566
sets:
  description:
    - With O(state=rekeyed), one entry per set, with C(set_id), C(tiers), C(action) (V(rekeyed), V(unchanged),
      V(failed), V(would_rekey) in check mode), C(done) (what was written), C(problems) (why it failed), C(notes)
      (a set manifest left unsigned because it carried no MAC, also a warning), C(manifest) and
      C(directory) (its copy in the first tier that holds it, C(daily) first), C(artifacts) (their names) and
      C(offsite) (the set manifest's record of its S3 copy).
  returned: state=rekeyed
  type: list
  elements: dict
rekeyed:
  description: Set ids re-keyed (or finished) by this run.
  returned: state=rekeyed
  type: list
  elements: str
unchanged:
  description: Set ids already complete under O(new_key).
  returned: state=rekeyed
  type: list
  elements: str
failed_sets:
  description: Set ids that could not be re-keyed (the task fails, after re-keying the others).
  returned: state=rekeyed
  type: list
  elements: str
repairs:
  description: Incomplete tier copies completed or removed first (see M(atlasia.dr.backup_set)).
  returned: state=rekeyed
  type: list
  elements: dict
s3_sets:
  description:
    - With O(s3=true), one entry per set in S3, with C(set_id), C(key) (of its set manifest), C(action)
      (V(rekeyed), V(unchanged), V(failed), V(would_rekey) in check mode), C(source) (V(local) when its local copy
      was uploaded again, V(s3) when it was downloaded and re-keyed in O(staging_dir)) and C(problems).
  returned: state=rekeyed and s3=true
  type: list
  elements: dict
duration:
  description: Seconds the task took.
  returned: always
  type: float
"""

import functools
import hashlib
import json
import os
import shutil
import threading
import time
import types

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.atlasia.dr.plugins.module_utils import (
    artifact,
    atomic,
    backupset,
    checksum,
    crypto,
    naming,
    progress,
    setauth,
)
from ansible_collections.atlasia.dr.plugins.module_utils.common import DRModule
from ansible_collections.atlasia.dr.plugins.module_utils.s3 import (
    Boto3Error,
    BotoCoreError,
    STORAGE_CLASSES,
    ClientError,
    ensure_boto3,
    get_s3_client,
    list_level,
    normalize_prefix,
    s3_argument_spec,
    s3_module_kwargs,
)
from ansible_collections.atlasia.dr.plugins.module_utils.s3_transfer import BackupTransfer, TransferError, sidecar_keys


def _encrypted_path(src, dest_dir):
    return os.path.join(dest_dir, os.path.basename(src) + crypto.EXTENSION)


def _manifest_path(path):
    parsed = naming.parse_backup_name(os.path.basename(path))
    if parsed is None:
        return None
    return os.path.join(os.path.dirname(path), naming.manifest_name(parsed.stem))


def _load(path):
    if path and os.path.exists(path):
        with open(path) as handle:
            return json.load(handle)
    return None


def encrypt(module, src, dest_dir, key, chunk):
    if os.path.isdir(src):
        module.fail_json(msg="%s is a directory; encrypt single-file artifacts (use format custom or plain for "
                             "the database dump)" % src)
    if crypto.is_encrypted(src):
        module.exit_json(changed=False, path=src, key_id=crypto.check_key(src, key), msg="already encrypted")
    checksum.verify_sidecars(src)
    out = _encrypted_path(src, dest_dir)
    if module.check_mode:
        return dict(changed=True, path=out, key_id=crypto.key_id(key).hex())
    plain_digests, plain_size = checksum.file_digests(src)
    with open(src, "rb") as source:
        digests, size, dummy = artifact.write_stream(out, lambda sink: crypto.encrypt_stream(source, sink, key, chunk))
    manifest_path = _manifest_path(src)
    manifest = _load(manifest_path)
    kid = crypto.key_id(key).hex()
    if manifest is not None:
        manifest.update(artifact=os.path.basename(out), size=size, md5=digests["md5"], sha256=digests["sha256"],
                        encryption=crypto.manifest_entry(key, os.path.basename(src), plain_size, plain_digests, chunk))
        atomic.write_json(manifest_path, manifest, mode=0o644)
    if not module.params["keep_plaintext"]:
        artifact.remove(src)
    return dict(changed=True, path=out, size=size, sha256=digests["sha256"], md5=digests["md5"], key_id=kid)


def decrypt(module, src, dest_dir, key):
    checksum.verify_sidecars(src)
    kid = crypto.check_key(src, key)
    name = os.path.basename(src)
    out = os.path.join(dest_dir, name[: -len(crypto.EXTENSION)] if name.endswith(crypto.EXTENSION) else name + ".plain")
    if module.check_mode:
        return dict(changed=True, path=out, key_id=kid)
    manifest = _load(_manifest_path(src)) or {}
    expected = ((manifest.get("encryption") or {}).get("plaintext") or {}).get("sha256")
    if not os.path.isdir(dest_dir):
        os.makedirs(dest_dir, 0o700)
    digests, size, dummy = crypto.decrypt_file(src, out, key, expected)
    return dict(changed=True, path=out, size=size, sha256=digests["sha256"], md5=digests["md5"], key_id=kid)


def rotate(module, src, key, new_key, chunk):
    """Re-key one artifact (and its manifest), resumably: a file already under ``new_key`` is finished, not refused."""
    new_kid = _kid(new_key)
    resumed = crypto.is_encrypted(src) and _header_kid(src, new_key) == new_kid
    if not resumed:
        checksum.verify_sidecars(src)
        crypto.check_key(src, key)
    if module.check_mode:
        return dict(changed=not resumed or not _sidecars_match(src), path=src, key_id=new_kid)
    done, digests, size = rekey_artifact(os.path.basename(src), [os.path.dirname(os.path.abspath(src))], key,
                                         new_key, chunk)
    return dict(changed=bool(done), path=src, size=size, sha256=digests["sha256"], md5=digests["md5"],
                key_id=new_kid, done=done)

# --- Re-keying every set of a backup root (state=rekeyed) -------------------------------------------------------
#
# Order for one encrypted artifact, shared by its hard-linked copies in every tier:
#   1. the new ciphertext is written under a hidden temporary name next to one copy, fsynced;
#   2. it is renamed over that copy: the final name holds a complete file under the new key at every instant;
#   3. it is hard-linked over the copy of every other tier (link to a temporary name, rename over);
#   4. its sidecars, then its artifact manifest, are written once and linked into the same tiers;
#   5. once every artifact of the set is done, each tier's set manifest is refreshed and signed with the new key.
# A run killed between 2 and 4 leaves a file under the new key while its sidecars still describe
# the old ciphertext: verification fails ("resume needed") until rekey runs again, which recognises the file by
# the new key opening it (file key unwrapped), authenticates it by decrypting it with that key (every chunk's tag), and finishes
# steps 3-5. The other order (sidecars first) would leave the OLD file failing NEW sidecars, which no key id can
# explain; there is no atomic swap of two names, so the window is closed by the rerun, under the lock.


@functools.lru_cache(maxsize=4)
def _kid(passphrase):
    """Key id (hex) of a passphrase, derived once per run (scrypt is deliberately slow)."""
    return crypto.key_id(passphrase).hex()


class RekeyError(Exception):
    """A set or artifact that cannot be re-keyed safely (not authentic, third key, damaged)."""


def _header_kid(path, *keys):
    """Key id of the key ``path`` is under: named in an earlier-format header, or (age) the first of ``keys``
    that unwraps its file key; None when none does."""
    return crypto.file_key_id(path, keys)


def _authenticate(path, key, expected_plain_sha256=None):
    """Decrypt ``path`` to nowhere: every chunk's tag checks under ``key`` (or :class:`crypto.CryptoError`) and the
    plaintext matches the checksum recorded at backup time when one is known (or :class:`RekeyError`)."""
    plain = hashlib.sha256()
    with open(path, "rb") as source:
        crypto.decrypt_stream(source, plain.update, key)
    if expected_plain_sha256 and plain.hexdigest() != expected_plain_sha256:
        raise RekeyError("%s decrypts to content that differs from the checksum recorded at backup time" % path)


def _sidecars_match(path):
    try:
        checksum.verify_sidecars(path, required=True)
    except checksum.ChecksumError:
        return False
    return True


def _same_file(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _replace_with_link(source, target):
    """Make ``target`` a hard link of ``source``, atomically (link under a temporary name, rename over)."""
    temp = atomic.temp_path_for(target)
    os.link(source, temp)
    try:
        os.rename(temp, target)
    except BaseException:
        atomic.remove_path(temp)
        raise
    atomic.fsync_dir(os.path.dirname(os.path.abspath(target)))


def _publish(paths, text=None, data=None):
    """Give every path of ``paths`` the same content (one inode, hard-linked); False when it already had it."""
    body = text if text is not None else json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
    first = paths[0]
    current = None
    if os.path.exists(first):
        with open(first) as handle:
            current = handle.read()
    same = current is not None and (current == body if text is not None else json.loads(current) == data)
    if same and all(_same_file(first, other) for other in paths[1:]):
        return False
    if not same:
        atomic.write_text(first, body, mode=0o644)
    for other in paths[1:]:
        if not _same_file(first, other):
            _replace_with_link(first, other)
    return True


def _reencrypt(src, key, new_key, chunk, expected_plain_sha256):
    """Replace ``src`` by its re-encryption under ``new_key`` (temporary name, rename over); ``(digests, size)``.

    Its sidecars are left alone: they are published afterwards, into every tier at once.
    """
    plain = hashlib.sha256()
    errors = []

    def produce(write_fd):
        try:
            with open(src, "rb") as source, os.fdopen(write_fd, "wb") as pipe:
                def out(block):
                    plain.update(block)
                    pipe.write(block)
                crypto.decrypt_stream(source, out, key)
        except BaseException as exc:  # reported after the consumer stops
            errors.append(exc)

    def verify(out):
        if expected_plain_sha256 and plain.hexdigest() != expected_plain_sha256:
            raise RekeyError("%s decrypts to content that differs from the checksum recorded at backup time" % src)

    with artifact.Writer(src, mode=os.stat(src).st_mode & 0o777, overwrite=True, sidecars=False,
                         verify=verify) as written:
        read_fd, write_fd = os.pipe()
        worker = threading.Thread(target=produce, args=(write_fd,), daemon=True)
        worker.start()
        try:
            with os.fdopen(read_fd, "rb") as pipe:
                crypto.encrypt_stream(pipe, written.write, new_key, chunk)
        finally:
            worker.join()
        if errors:
            raise errors[0]
    return written.digests, written.size


def rekey_artifact(name, dirs, key, new_key, chunk, dry_run=False):
    """Bring every copy of the artifact ``name`` in ``dirs`` under ``new_key``.

    Returns ``(what was done, digests, size)`` of the new ciphertext (a list of sentences, empty when every copy,
    sidecar and manifest already was under the new key).
    """
    old_kid, new_kid = _kid(key), _kid(new_key)
    paths = [os.path.join(d, name) for d in dirs if os.path.lexists(os.path.join(d, name))]
    if not paths:
        return [], None, None
    kids = {}
    for path in paths:
        if os.path.isdir(path) or not crypto.is_encrypted(path):
            raise RekeyError("%s is named as encrypted but holds no encryption header" % path)
        kids[path] = _header_kid(path, new_key, key)
        if kids[path] not in (old_kid, new_kid):
            raise RekeyError("%s is encrypted under a third key (key id %s; the old key has id %s, the new one %s)"
                             % (path, kids[path] or "unknown: neither key opens it", old_kid, new_kid))
    done = []
    rekeyed = [path for path in paths if kids[path] == new_kid]
    parsed = naming.parse_backup_name(name)
    manifest_name = naming.manifest_name(parsed.stem) if parsed else None
    manifests = [os.path.join(os.path.dirname(path), manifest_name) for path in paths
                 if manifest_name and os.path.exists(os.path.join(os.path.dirname(path), manifest_name))]
    manifest = _load(manifests[0]) if manifests else None
    if dry_run:
        return (["would re-encrypt %s" % name] if not rekeyed else ["would finish %s" % name]), None, None
    expected = (((manifest or {}).get("encryption") or {}).get("plaintext") or {}).get("sha256")
    if rekeyed:
        primary = rekeyed[0]
        _authenticate(primary, new_key, expected)  # written by an earlier, interrupted run: prove it before signing it
        digests, size = checksum.file_digests(primary)
    else:
        primary = paths[0]
        digests, size = _reencrypt(primary, key, new_key, chunk, expected)
        done.append("re-encrypted %s" % primary)
    for path in paths:
        if path != primary and not _same_file(primary, path):
            _replace_with_link(primary, path)
            done.append("linked %s" % path)
    for algo, side in naming.sidecar_names(name).items():
        if _publish([os.path.join(os.path.dirname(path), side) for path in paths],
                    text=checksum.sidecar_text(digests[algo], name)):
            done.append("wrote %s" % side)
    if manifest is not None:
        wanted = json.loads(json.dumps(manifest))
        wanted.update(size=size, md5=digests["md5"], sha256=digests["sha256"])
        encryption = wanted.setdefault("encryption", {})
        if encryption.get("key_id") != new_kid or manifest.get("sha256") != digests["sha256"]:
            encryption.update(key_id=new_kid, rotated=naming.utc_now().isoformat())
        if _publish(manifests, data=wanted):
            done.append("wrote %s" % manifest_name)
    return done, digests, size


def _set_done(directory, data, new_key, new_kid):
    """True when this tier's copy of a set is complete under the new key (signed, verified, every header)."""
    auth = data.get("auth")
    if auth and auth.get("key_id") != new_kid:
        return False
    if backupset.verify(directory, data):
        return False
    for entry in data["artifacts"]:
        path = os.path.join(directory, entry["name"])
        if entry["name"].endswith(crypto.EXTENSION) and _header_kid(path, new_key) != new_kid:
            return False
    if auth:
        try:
            setauth.check(data, new_key, new_kid)
        except setauth.AuthError:
            return False
    return True


def rekey_set(set_id, manifests, dirs, key, new_key, chunk, dry_run=False):
    """Re-key one set: every artifact copy in ``dirs``, then each tier's set manifest (``{tier: path}``)."""
    old_kid, new_kid = _kid(key), _kid(new_key)
    home = next(manifests[tier] for tier in backupset.TIERS if tier in manifests)  # daily first: upload source
    report = dict(set_id=set_id, tiers=sorted(manifests), action="unchanged", done=[], problems=[], notes=[], manifest=home,
                  directory=os.path.dirname(home), artifacts=[])
    datas = {}
    for tier, path in sorted(manifests.items()):
        data = backupset.load(path)
        auth = data.get("auth")
        if auth:
            signer = {old_kid: key, new_kid: new_key}.get(auth.get("key_id"))
            if signer is None:
                raise RekeyError("%s is signed with a third key (key id %s)" % (path, auth.get("key_id")))
            try:
                setauth.check(data, signer, auth.get("key_id"))
            except setauth.AuthError as exc:
                raise RekeyError("%s: %s; it is not re-signed under the new key" % (path, exc))
        datas[tier] = data
    home_data = backupset.load(home)
    report["artifacts"] = [entry["name"] for entry in home_data["artifacts"]]
    report["offsite"] = home_data.get("offsite")
    if all(_set_done(os.path.dirname(manifests[tier]), data, new_key, new_kid) for tier, data in datas.items()):
        return report
    names = sorted(set(entry["name"] for data in datas.values() for entry in data["artifacts"]
                       if entry["name"].endswith(crypto.EXTENSION)))
    for name in names:
        report["done"].extend(rekey_artifact(name, dirs, key, new_key, chunk, dry_run=dry_run)[0])
    report["action"] = "would_rekey" if dry_run else "rekeyed"
    if dry_run:
        return report
    for tier, data in sorted(datas.items()):
        directory = os.path.dirname(manifests[tier])
        refreshed = backupset.refresh(directory, set_id, auth_key=new_key if data.get("auth") else None)
        if not data.get("auth"):
            report["notes"].append("%s/%s carried no MAC: it is left unsigned" % (
                tier, backupset.set_manifest_name(set_id)))
        report["problems"].extend("%s: %s" % (tier, problem) for problem in backupset.verify(directory, refreshed))
        report["done"].append("signed %s/%s" % (tier, backupset.set_manifest_name(set_id)))
    return report


def rekey_root(root, key, new_key, chunk, dry_run=False):
    """Re-key every set of every tier of ``root``; ``(sets, repairs, failed)``."""
    dirs = [os.path.join(root, tier) for tier in backupset.TIERS if os.path.isdir(os.path.join(root, tier))]
    if not dry_run:
        for directory in dirs:
            atomic.cleanup_stale_temps(directory)
    repairs = backupset.repair_tiers(root, dry_run=dry_run)
    by_set = {}
    for directory in dirs:
        for name in sorted(os.listdir(directory)):
            parsed = naming.parse_backup_name(name)
            if backupset.is_set_manifest(parsed):
                by_set.setdefault(naming.format_timestamp(parsed.timestamp), {})[
                    os.path.basename(directory)] = os.path.join(directory, name)
    sets, failed = [], []
    for set_id in sorted(by_set):
        try:
            report = rekey_set(set_id, by_set[set_id], dirs, key, new_key, chunk, dry_run=dry_run)
        except (RekeyError, backupset.SetError, crypto.CryptoError, checksum.ChecksumError) as exc:
            report = dict(set_id=set_id, tiers=sorted(by_set[set_id]), action="failed", done=[], problems=[str(exc)],
                          notes=[])
        if report["action"] == "failed" or report["problems"]:
            failed.append(report)
        sets.append(report)
    return sets, repairs, failed


# --- Re-keying the sets in S3 (state=rekeyed, s3=true) -------------------------------------------------------------
#
# The copies in S3 are not only those a local set manifest records as uploaded: a weekly or monthly copy was linked
# before the upload (its manifest says offsite.s3 false), and S3's retention may keep sets the host no longer has.
# So the bucket is the list: every set manifest under the prefix whose MAC is not under the new key is made again
# from a local copy complete under the new key, or else downloaded, re-keyed in a private staging folder and
# uploaded again. Artifacts (sidecars and manifests with them) first, the set manifest last: a set whose manifest in
# the bucket is signed with the new key is complete. A run killed in between leaves artifacts under the new key
# beside the old set manifest, and one of them maybe beside its old sidecars (killed between the two uploads); the
# next run downloads them too (_stage_interrupted) and rekey_set finishes them (recognised by header, authenticated).


class _Engine(object):
    """The options of s3_backup_transfer for one call of the S3 engine."""

    def __init__(self, module, client):
        self.module = module
        self.client = client

    def __call__(self, mode, **params):
        p = self.module.params
        options = dict(bucket=p["bucket"], mode=mode, key=None, prefix=None, dest=None, src=None, srcs=None,
                       series=None, with_sidecars=True, overwrite="different", require_checksum=True, metadata=None,
                       part_size_mb=64, concurrency=1, verify="metadata", storage_class=p["storage_class"],
                       encryption=p["server_side_encryption"], kms_key_id=None)
        options.update(params)
        return BackupTransfer(types.SimpleNamespace(params=options, check_mode=self.module.check_mode), self.client)


def _remote_manifest(engine, key):
    data = engine("download").get_small(key)
    if data is None:
        raise TransferError("%s disappeared while it was read" % key)
    try:
        manifest = json.loads(data.decode("utf-8"))
    except ValueError as exc:
        raise backupset.SetError("set manifest %s in the bucket is unreadable: %s" % (key, exc))
    if not isinstance(manifest, dict) or "artifacts" not in manifest or "set_id" not in manifest:
        raise backupset.SetError("%s in the bucket is not a backup-set manifest" % key)
    return manifest


def _stage_interrupted(engine, key, staging, new_key, refused):
    """Stage the artifact ``key`` whose sidecars in the bucket refused it, if an interrupted rekey explains that.

    The engine uploads an artifact, then its sidecars, then its manifest: a rekey killed in between leaves the new
    ciphertext (with its own checksum metadata) beside the old sidecars. Such an object is downloaded against its
    metadata alone and kept only when the new key opens it, every chunk authenticates and the plaintext matches the
    checksum its artifact manifest recorded at backup time; rekey_artifact then writes its sidecars and manifest.
    Anything else (old key, third key, damaged) is refused with the download's own error, ``refused``.
    """
    name = key.rsplit("/", 1)[-1]
    if not name.endswith(crypto.EXTENSION):
        raise refused
    engine("download", key=key, dest=staging + "/", with_sidecars=False, require_checksum=False).download()
    path = os.path.join(staging, name)
    manifest = None
    manifest_key = sidecar_keys(key)["manifest"]
    if manifest_key:
        body = engine("download").get_small(manifest_key)
        if body is not None:
            atomic.write_text(os.path.join(staging, manifest_key.rsplit("/", 1)[-1]), body.decode("utf-8"), mode=0o644)
            try:
                manifest = json.loads(body.decode("utf-8"))
            except ValueError as exc:
                atomic.remove_path(path)
                raise TransferError("%s; its manifest %s is unreadable: %s" % (refused, manifest_key, exc))
    expected = ((((manifest if isinstance(manifest, dict) else {}).get("encryption") or {}).get("plaintext") or {})
                .get("sha256"))
    try:
        if _header_kid(path, new_key) != _kid(new_key):
            raise refused
        _authenticate(path, new_key, expected)
    except (crypto.CryptoError, RekeyError) as exc:
        atomic.remove_path(path)
        raise TransferError("%s; under the new key it does not authenticate either: %s" % (refused, exc))
    except TransferError:
        atomic.remove_path(path)
        raise


def _stage_remote_set(engine, key, data, staging, new_key):
    """Download every artifact of a set (with sidecars and manifests, each verified) and then its set manifest."""
    if os.path.lexists(staging):
        shutil.rmtree(staging)  # what a killed run left: downloaded again, never trusted
    os.makedirs(staging, 0o700)
    folder = key.rsplit("/", 1)[0] + "/" if "/" in key else ""
    for entry in data["artifacts"]:
        try:
            engine("download", key=folder + entry["name"], dest=staging + "/").download()
        except TransferError as exc:
            _stage_interrupted(engine, folder + entry["name"], staging, new_key, exc)
    engine("download", key=key, dest=staging + "/").download()
    return os.path.join(staging, key.rsplit("/", 1)[-1])


def rekey_s3(module, client, local_sets, key, new_key, chunk):
    """Bring every set in S3 under ``new_key``; returns ``(reports, failed)``."""
    p = module.params
    engine = _Engine(module, client)
    prefix = normalize_prefix(p["prefix"])
    old_kid, new_kid = _kid(key), _kid(new_key)
    staging_dir = p["staging_dir"] or os.path.join(p["root"], "rekey-staging")
    local = dict((r["set_id"], r) for r in local_sets if r["action"] in ("rekeyed", "unchanged") and not r["problems"])
    objects, dummy = list_level(client, p["bucket"], prefix)
    keys = sorted((obj["key"] for obj in objects
                   if backupset.is_set_manifest(naming.parse_backup_name(obj["key"].rsplit("/", 1)[-1]))), reverse=True)
    reports, failed = [], []
    for manifest_key in keys:
        set_id = naming.format_timestamp(naming.parse_backup_name(manifest_key.rsplit("/", 1)[-1]).timestamp)
        report = dict(set_id=set_id, key=manifest_key, action="unchanged", source=None, problems=[])
        reports.append(report)
        try:
            data = _remote_manifest(engine, manifest_key)
            auth = data.get("auth") or {}
            if auth.get("key_id") == new_kid:
                setauth.check(data, new_key, new_kid)
                continue
            if auth and auth.get("key_id") != old_kid:
                raise RekeyError("%s is signed with a third key (key id %s)" % (manifest_key, auth.get("key_id")))
            if auth:
                setauth.check(data, key, old_kid)
            if module.check_mode:
                report.update(action="would_rekey", source="local" if set_id in local else "s3")
                continue
            staging = None
            if set_id in local:
                source = local[set_id]
                directory, names, manifest = source["directory"], source["artifacts"], source["manifest"]
                report["source"] = "local"
            else:
                if not os.path.isdir(staging_dir):
                    os.makedirs(staging_dir, 0o700)
                staging = os.path.join(staging_dir, set_id)
                manifest = _stage_remote_set(engine, manifest_key, data, staging, new_key)
                staged = rekey_set(set_id, {"daily": manifest}, [staging], key, new_key, chunk)
                if staged["problems"]:
                    raise RekeyError("; ".join(staged["problems"]))
                directory, names = staging, staged["artifacts"]
                report["source"] = "s3"
            target = dict(prefix=manifest_key[:len(manifest_key) - len(manifest_key.rsplit("/", 1)[-1])])
            engine("upload", srcs=[os.path.join(directory, name) for name in names], **target).upload()
            engine("upload", src=manifest, **target).upload()
            if staging:
                shutil.rmtree(staging)
            report["action"] = "rekeyed"
        except (RekeyError, backupset.SetError, crypto.CryptoError, checksum.ChecksumError, setauth.AuthError,
                TransferError, ClientError, BotoCoreError, Boto3Error, OSError) as exc:
            report.update(action="failed", problems=[str(exc)])
            failed.append(report)
    return reports, failed


def rekey(module, chunk):
    p = module.params
    if _kid(p["key"]) == _kid(p["new_key"]):
        module.fail_json(msg="new_key is the current key: nothing to re-key to", error_kind="request")
    sets, repairs, failed = rekey_root(p["root"], p["key"], p["new_key"], chunk, dry_run=module.check_mode)
    for report in repairs:
        module.warn(backupset.describe_repair(report))
    for report in sets:
        for note in report["notes"]:
            module.warn("set %s: %s" % (report["set_id"], note))
    result = dict(changed=bool(repairs) or any(r["action"] in ("rekeyed", "would_rekey") for r in sets),
                  path=p["root"], sets=sets, repairs=repairs, key_id=_kid(p["new_key"]),
                  rekeyed=[r["set_id"] for r in sets if r["action"] in ("rekeyed", "would_rekey")],
                  unchanged=[r["set_id"] for r in sets if r["action"] == "unchanged"],
                  failed_sets=[r["set_id"] for r in failed])
    if p["s3"]:
        if not p["bucket"]:
            module.fail_json(msg="s3=true needs bucket (dr_s3_bucket)", error_kind="request", **result)
        ensure_boto3(module)
        try:
            s3_sets, s3_failed = rekey_s3(module, get_s3_client(module), sets, p["key"], p["new_key"], chunk)
        except (ClientError, BotoCoreError, Boto3Error) as exc:
            module.fail_json(msg="cannot list the sets in s3://%s/%s: %s. Run the rekey again once fixed: it resumes" % (
                p["bucket"], normalize_prefix(p["prefix"]), exc), error_kind="s3", **result)
        result["s3_sets"] = s3_sets
        result["changed"] = result["changed"] or any(r["action"] in ("rekeyed", "would_rekey") for r in s3_sets)
        failed = failed + [dict(r, set_id="s3://%s/%s" % (p["bucket"], r["key"])) for r in s3_failed]
    if failed:
        module.fail_json(msg="%d set(s) could not be re-keyed (the others were): %s. Fix the cause and run the rekey "
                             "again: sets already under the new key are recognised and skipped." % (
                                 len(failed), "; ".join("%s: %s" % (r["set_id"], "; ".join(r["problems"]))
                                                        for r in failed)), error_kind="rekey", **result)
    return result


_VERBS = dict(encrypted="encrypted", decrypted="decrypted", rotated="re-encrypted", rekeyed="re-encrypted")


def _encrypted_files(root):
    """The ``.enc`` files under ``root`` (every tier): what a rekey reads, for its progress."""
    found = []
    for folder, dummy, files in os.walk(root):
        found.extend(os.path.join(folder, name) for name in files if name.endswith(crypto.EXTENSION))
    return found


def main():
    spec = s3_argument_spec()
    spec.update(
        bucket=dict(type="str"),
        state=dict(type="str", default="encrypted", choices=["encrypted", "decrypted", "rotated", "rekeyed"]),
        src=dict(type="path"),
        root=dict(type="path"),
        dest=dict(type="path"),
        key=dict(type="str", required=True, no_log=True),
        new_key=dict(type="str", no_log=True),
        keep_plaintext=dict(type="bool", default=False),
        chunk_size_mb=dict(type="int", default=4),
        s3=dict(type="bool", default=False),
        prefix=dict(type="str", default=""),
        staging_dir=dict(type="path"),
        storage_class=dict(type="str", default="STANDARD_IA", choices=STORAGE_CLASSES),
        server_side_encryption=dict(type="str", default="AES256", choices=["AES256", "aws:kms", "none"]),
    )
    spec.update(progress.progress_argument_spec())
    module = DRModule(
        argument_spec=spec,
        **s3_module_kwargs(),
        required_if=[("state", "rotated", ("new_key",)), ("state", "rekeyed", ("new_key", "root")),
                     ("state", "encrypted", ("src",)), ("state", "decrypted", ("src",)),
                     ("state", "rotated", ("src",))],
        supports_check_mode=True,
    )
    if not crypto.HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib("cryptography"), exception=str(crypto.CRYPTOGRAPHY_IMPORT_ERROR))
    p = module.params
    t0 = time.time()
    chunk = max(1, p["chunk_size_mb"]) * 1024 * 1024
    report = progress.Reporter.from_module(module, verb=_VERBS[p["state"]])
    if p["state"] == "rekeyed":
        if not os.path.isdir(p["root"]):
            module.fail_json(msg="%s is not a backup root (no such directory)" % p["root"], error_kind="request")
        try:
            reads = progress.FileReads(_encrypted_files(p["root"])) if report.enabled else None
            report.set_total(reads.total if reads is not None else None)
            with progress.Watch(report, reads):
                result = rekey(module, chunk)
        except OSError as exc:
            module.fail_json(msg="cannot re-key the sets under %s: %s. Run the rekey again once fixed: it resumes"
                             % (p["root"], exc), error_kind="io")
        result["duration"] = round(time.time() - t0, 3)
        module.exit_json(**result)
    src = p["src"]
    dest_dir = p["dest"] or os.path.dirname(os.path.abspath(src))
    if not os.path.exists(src):
        if module.check_mode and p["state"] == "encrypted":  # not written yet: an earlier task ran in check mode
            module.exit_json(changed=True, path=_encrypted_path(src, dest_dir), key_id=crypto.key_id(p["key"]).hex(),
                             duration=round(time.time() - t0, 3),
                             msg="%s does not exist yet; it would be encrypted once written" % src)
        module.fail_json(msg="%s does not exist" % src)
    try:
        reads = progress.FileReads([src]) if report.enabled else None
        report.set_total(reads.total if reads is not None else None)
        with progress.Watch(report, reads):
            if p["state"] == "encrypted":
                result = encrypt(module, src, dest_dir, p["key"], chunk)
            elif p["state"] == "decrypted":
                result = decrypt(module, src, dest_dir, p["key"])
            else:
                result = rotate(module, src, p["key"], p["new_key"], chunk)
    except crypto.CryptoError as exc:
        module.fail_json(msg="%s: %s. Nothing was changed." % (src, exc), error_kind="crypto")
    except checksum.ChecksumError as exc:
        module.fail_json(msg="%s. Nothing was changed." % exc, error_kind="checksum")
    except RekeyError as exc:
        module.fail_json(msg="%s. Nothing was changed." % exc, error_kind="crypto")
    except OSError as exc:
        module.fail_json(msg="cannot process %s: %s" % (src, exc), error_kind="io")
    result["duration"] = round(time.time() - t0, 3)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
