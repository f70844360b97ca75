#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: dr_crypt
short_description: Encrypt, decrypt or re-key backup artifacts (AES-256-GCM, streamed)
version_added: 0.1.0
description:
  - O(state=encrypted) turns an artifact into C(<artifact>.enc), authenticated encryption in chunks of
    O(chunk_size_mb) (constant memory), with C(.md5)/C(.sha256) sidecars over the ciphertext (so a set can be
    verified without the key) and the artifact's manifest updated to describe the encrypted artifact and the
    key id. The plaintext is removed afterwards unless O(keep_plaintext=true).
  - O(state=decrypted) checks the ciphertext's sidecars and the key id first (a wrong key is a clear error
    before anything is written), then writes the plaintext next to it or into O(dest), verified against the
    manifest's plaintext checksum, with its own sidecars.
  - O(state=rotated) re-encrypts an artifact under O(new_key) without writing the plaintext to disk.
  - Every output is written under a temporary name and renamed when complete.
  - The key never leaves the controller's variables; keep it in an Ansible Vault-encrypted variable or file,
    never beside the backups or in S3.
author:
  - atlasia DevOps team (@atlasia-devops)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: >-
      Checks the input (and the key) and reports the path it would write. With O(state=encrypted), a missing
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
    choices: [encrypted, decrypted, rotated]
  src:
    description: Artifact to encrypt, or C(.enc) artifact to decrypt or re-key.
    type: path
    required: true
  dest:
    description: Directory of the output; defaults to the directory of O(src).
    type: path
  key:
    description: Passphrase (the current key).
    type: str
    required: true
  new_key:
    description: Passphrase to re-encrypt under (O(state=rotated)).
    type: str
  keep_plaintext:
    description: With O(state=encrypted), keep the plaintext artifact and its sidecars.
    type: bool
    default: false
  chunk_size_mb:
    description: Size of the authenticated chunks.
    type: int
    default: 4
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
duration:
  description: Seconds the task took.
  returned: always
  type: float
"""

import json
import os
import threading
import time

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.atlasia.dr.plugins.module_utils import atomic, checksum, crypto, naming
from ansible_collections.atlasia.dr.plugins.module_utils.common import DRModule


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


def _write_artifact(final_path, producer):
    """Run ``producer(sink)`` into an atomic file; returns digests and size. Sidecars go first, rename last."""
    return checksum.write_with_sidecars(final_path, producer)


def _remove_with_sidecars(path):
    atomic.remove_path(path)
    for side in naming.sidecar_names(os.path.basename(path)).values():
        atomic.remove_path(os.path.join(os.path.dirname(path), side))


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
        digests, size, dummy = _write_artifact(out, lambda sink: crypto.encrypt_stream(source, sink, key, chunk))
    manifest_path = _manifest_path(src)
    manifest = _load(manifest_path)
    kid = crypto.key_id(key).hex()
    if manifest is not None:
        manifest.update(artifact=os.path.basename(out), size=size, md5=digests["md5"], sha256=digests["sha256"],
                        encryption=dict(algorithm=crypto.ALGORITHM, key_id=kid, chunk_size=chunk,
                                        plaintext=dict(name=os.path.basename(src), size=plain_size,
                                                       sha256=plain_digests["sha256"], md5=plain_digests["md5"])))
        atomic.write_json(manifest_path, manifest, mode=0o644)
    if not module.params["keep_plaintext"]:
        _remove_with_sidecars(src)
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
    checksum.verify_sidecars(src)
    old_kid = crypto.check_key(src, key)
    new_kid = crypto.key_id(new_key).hex()
    if old_kid == new_kid:
        return dict(changed=False, path=src, key_id=new_kid)
    if module.check_mode:
        return dict(changed=True, path=src, key_id=new_kid)
    read_fd, write_fd = os.pipe()
    errors = []

    def produce():
        try:
            with open(src, "rb") as source, os.fdopen(write_fd, "wb") as pipe:
                crypto.decrypt_stream(source, pipe.write, key)
        except BaseException as exc:  # reported after the consumer stops
            errors.append(exc)

    worker = threading.Thread(target=produce, daemon=True)
    worker.start()
    try:
        with os.fdopen(read_fd, "rb") as pipe:
            digests, size, dummy = _write_artifact(src, lambda sink: crypto.encrypt_stream(pipe, sink, new_key, chunk))
    finally:
        worker.join()
    if errors:
        raise errors[0]
    manifest_path = _manifest_path(src)
    manifest = _load(manifest_path)
    if manifest is not None:
        manifest.update(size=size, md5=digests["md5"], sha256=digests["sha256"])
        manifest.setdefault("encryption", {}).update(key_id=new_kid, rotated=naming.utc_now().isoformat())
        atomic.write_json(manifest_path, manifest, mode=0o644)
    return dict(changed=True, path=src, size=size, sha256=digests["sha256"], md5=digests["md5"], key_id=new_kid)


def main():
    module = DRModule(
        argument_spec=dict(
            state=dict(type="str", default="encrypted", choices=["encrypted", "decrypted", "rotated"]),
            src=dict(type="path", required=True),
            dest=dict(type="path"),
            key=dict(type="str", required=True, no_log=True),
            new_key=dict(type="str", no_log=True),
            keep_plaintext=dict(type="bool", default=False),
            chunk_size_mb=dict(type="int", default=4),
        ),
        required_if=[("state", "rotated", ("new_key",))],
        supports_check_mode=True,
    )
    if not crypto.HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib("cryptography"), exception=str(crypto.CRYPTOGRAPHY_IMPORT_ERROR))
    p = module.params
    t0 = time.time()
    src = p["src"]
    dest_dir = p["dest"] or os.path.dirname(os.path.abspath(src))
    if not os.path.exists(src):
        if module.check_mode and p["state"] == "encrypted":  # not written yet: an earlier task ran in check mode
            module.exit_json(changed=True, path=_encrypted_path(src, dest_dir), key_id=crypto.key_id(p["key"]).hex(),
                             duration=round(time.time() - t0, 3),
                             msg="%s does not exist yet; it would be encrypted once written" % src)
        module.fail_json(msg="%s does not exist" % src)
    chunk = max(1, p["chunk_size_mb"]) * 1024 * 1024
    try:
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
    except OSError as exc:
        module.fail_json(msg="cannot process %s: %s" % (src, exc), error_kind="io")
    result["duration"] = round(time.time() - t0, 3)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
