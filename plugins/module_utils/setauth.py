# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Authentication of backup sets: an HMAC-SHA256 over what a set is, under a key derived from the secret.

A set manifest (``set_<ts>.json``) names every artifact with its size and checksums; the sidecars and the S3
object metadata repeat them. Anyone who can write to the backup folder or the bucket can rewrite all three
consistently, so checksums prove integrity, not origin. When the environment has a secret (the encryption
passphrase), the manifest also carries::

    "auth": {"alg": "HMAC-SHA256", "key_id": "<hex>", "mac": "<hex>", "version": 1}

The MAC covers the set id, the environment, the database and, for each artifact, its name, component,
size, SHA-256 and MD5 (:func:`payload`); for a set whose file data went to the file repository, also each of
its snapshots (``file_snapshots``: component, repository, snapshot id, paths, files, bytes), so a snapshot id
cannot be swapped or dropped without the set failing its check. A set without ``file_snapshots`` (every set
made before them, and every set of the ``archive`` store) has the same payload as before, so older sets keep
verifying under their MAC. Everything else in the manifest (the restore-test result, the
offsite flag, notes) may change after the backup without invalidating the set.

The MAC key is derived from the passphrase with scrypt and its own salt, so it is independent of the
encryption keys (which use a per-file salt) and of the public key id (another fixed salt). ``key_id`` is the
public key id of :func:`crypto.key_id`, so a set made under another key is named as such.
"""

from __future__ import annotations

import hashlib
import hmac
import json

from ansible_collections.atlasia.dr.plugins.module_utils import crypto

ALGORITHM = "HMAC-SHA256"
VERSION = 1
_SALT = b"atlasia.dr set authentication v1"
_FIELDS = ("name", "component", "size", "sha256", "md5")
_SNAPSHOT_FIELDS = ("name", "component", "store", "repository", "snapshot_id", "paths", "files", "bytes")


class AuthError(Exception):
    """A set that is not authentic: no MAC, a MAC under another key, or a MAC that does not match.

    ``kind`` is ``key`` when the set names another key (the wrong key was given, or the set predates a key
    rotation), else ``unauthentic``.
    """

    def __init__(self, message, kind="unauthentic"):
        super(AuthError, self).__init__(message)
        self.kind = kind


def mac_key(passphrase):
    """32-byte HMAC key derived from the passphrase (scrypt, a salt of its own)."""
    return hashlib.scrypt(passphrase.encode("utf-8"), salt=_SALT, n=2 ** 14, r=8, p=1, dklen=32)


def set_database(data):
    """Database a set belongs to: the set manifest's own ``database``, else the one its database dump records."""
    if data.get("database"):
        return data["database"]
    for entry in data.get("artifacts") or []:
        if entry.get("component") == "database" and entry.get("database"):
            return entry["database"]
    return None


def payload(data):
    """The bytes the MAC covers: canonical JSON of the set's identity and its artifacts."""
    artifacts = sorted(
        (dict((field, entry.get(field)) for field in _FIELDS) for entry in data.get("artifacts") or []),
        key=lambda entry: entry["name"] or "")
    body = dict(version=VERSION, set_id=data.get("set_id"), environment=data.get("environment"),
                database=set_database(data), artifacts=artifacts)
    if "file_snapshots" in data:  # absent from older sets, whose payload stays what it was when they were signed
        body["file_snapshots"] = sorted(
            (dict((field, entry.get(field)) for field in _SNAPSHOT_FIELDS)
             for entry in data.get("file_snapshots") or [] if isinstance(entry, dict)),
            key=lambda entry: (str(entry["name"]), str(entry["repository"]), str(entry["snapshot_id"])))
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")


def sign(data, passphrase):
    """The ``auth`` entry of a set manifest for ``data`` under ``passphrase``."""
    mac = hmac.new(mac_key(passphrase), payload(data), hashlib.sha256).hexdigest()
    return dict(alg=ALGORITHM, version=VERSION, key_id=crypto.key_id(passphrase).hex(), mac=mac)


def check(data, passphrase, key_id_hex=None):
    """Raise :class:`AuthError` unless the set's ``auth`` entry is a valid MAC under ``passphrase``.

    ``key_id_hex`` (the passphrase's key id) may be passed to avoid deriving it again.
    """
    name = data.get("set_id") or "?"
    auth = data.get("auth")
    if not isinstance(auth, dict) or not auth.get("mac"):
        raise AuthError("set %s carries no authentication code (MAC): it was not written by a backup of this "
                        "environment with its key, or was made before sets were authenticated" % name)
    if auth.get("alg") != ALGORITHM:
        raise AuthError("set %s is authenticated with %r, expected %s" % (name, auth.get("alg"), ALGORITHM))
    ours = key_id_hex or crypto.key_id(passphrase).hex()
    if auth.get("key_id") != ours:
        raise AuthError("set %s was made with another key (key id %s, the given key has id %s): use the key this set "
                        "was made with (dr_encryption_key)" % (name, auth.get("key_id"), ours), kind="key")
    expected = hmac.new(mac_key(passphrase), payload(data), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, str(auth.get("mac"))):
        raise AuthError("set %s does not match its authentication code: its manifest (artifact names, sizes, "
                        "checksums, file snapshots, environment or database) was changed after the backup" % name)
