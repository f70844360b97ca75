#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: s3_backup_transfer
short_description: Upload, download, list and check backups in S3 with end-to-end SHA-256 verification
version_added: 0.1.0
description:
  - Moves backup artifacts between a host and an S3 bucket so that a damaged copy is never taken for a good one.
  - O(mode=upload) hashes the artifact (SHA-256 and MD5) before sending it, refuses to send a file that does not
    match its local C(.md5)/C(.sha256) sidecars, stores the digests in the object metadata (C(x-amz-meta-sha256),
    C(x-amz-meta-md5)), uploads with multipart streaming, then checks the size and the metadata of the stored
    object (and, with O(verify=full), downloads it again and hashes it).
    An object that already holds the same size and SHA-256 is not sent again.
  - O(srcs) uploads several artifacts in one call, each exactly as O(src) would be. Everything is checked and
    decided for all of them (local sidecars, conflicts with the bucket) before anything is sent, so a refusal
    leaves the bucket untouched; they are then uploaded in the order given.
  - O(mode=download) streams the object to a hidden temporary file while hashing it, compares the digest with
    the object's metadata and with the C(.sha256)/C(.md5) sidecar objects, and only then gives the file its final
    name. A mismatch leaves no file behind.
  - O(mode=list) returns the backups under a prefix grouped by stem, newest first, with the newest of each series.
  - O(mode=exists) tells whether a key exists and returns its size and digests.
  - Directory artifacts (C(pg_dump --format=directory) dumps) are stored as one object per file under C(<key>/).
  - The S3 ETag is never used as a checksum (it is not an MD5 for multipart or SSE-KMS uploads).
author:
  - atlasia DevOps team (@atlasia-devops)
options:
  mode:
    description:
      - V(upload) sends O(src) (or each of O(srcs)); V(download) fetches O(key) to O(dest); V(list) lists the
        backups under O(prefix); V(exists) checks O(key).
    type: str
    required: true
    choices: [upload, download, list, exists]
  src:
    description:
      - File or directory artifact to upload. With O(mode=upload), O(src) or O(srcs) is required.
      - Mutually exclusive with O(srcs).
    type: path
  srcs:
    description:
      - File or directory artifacts to upload in one call, in this order, each with its sidecars and manifest as
        O(src) would be. Each key is O(prefix) followed by the base name of the source; O(key) cannot be used.
      - All sources are read, hashed and checked against their sidecars, and every key is compared with the
        bucket, before the first byte is sent. A conflict (O(overwrite=never)), a damaged local artifact or two
        sources naming the same key fails the task with nothing uploaded.
      - A manifest several sources share is uploaded once, after the last of them. An empty list uploads nothing.
      - Mutually exclusive with O(src).
    type: list
    elements: path
  dest:
    description:
      - Where to download to. An existing directory (or a path ending with C(/), created when missing) receives
        the object under its own name; any other path is the file name to write. Sidecars are written next to it.
      - Required with O(mode=download).
    type: path
  key:
    description:
      - Full object key of the artifact. Required with O(mode=download) and O(mode=exists).
      - With O(mode=upload), either O(key) or O(prefix) is required; with O(srcs) only O(prefix) is accepted.
    type: str
  prefix:
    description:
      - Key prefix ("folder"). With O(mode=upload) the key is O(prefix) followed by the base name of O(src)
        (of each of O(srcs)); with O(mode=list) the folder to list. A trailing C(/) is added when missing.
    type: str
  series:
    description:
      - With O(mode=list), only return backups of these name prefixes (for example V([backup])).
    type: list
    elements: str
  with_sidecars:
    description:
      - Also transfer the artifact's checksum sidecars (C(<artifact>.md5), C(<artifact>.sha256)) and its
        manifest (C(<prefix>_<YYYYMMDD>_<HHMMSS>.json)) when they exist. The manifest is uploaded last, so a set
        with a manifest in the bucket is complete.
    type: bool
    default: true
  storage_class:
    description:
      - Storage class of uploaded objects.
      - V(STANDARD_IA) is billed for at least 30 days and 128 KiB per object; V(GLACIER) and V(DEEP_ARCHIVE)
        objects must be restored before they can be downloaded (and O(verify=full) fails on them).
    type: str
    default: STANDARD_IA
    choices: [STANDARD, REDUCED_REDUNDANCY, STANDARD_IA, ONEZONE_IA, INTELLIGENT_TIERING, GLACIER, GLACIER_IR, DEEP_ARCHIVE]
  encryption:
    description:
      - Server-side encryption of uploaded objects. V(none) sends no encryption header (the bucket default applies).
    type: str
    default: AES256
    choices: [AES256, aws:kms, none]
  kms_key_id:
    description:
      - KMS key (ID, ARN or alias) with O(encryption=aws:kms); the AWS managed key C(aws/s3) when unset.
    type: str
  metadata:
    description:
      - Additional user metadata of uploaded objects. The keys C(sha256) and C(md5) are reserved.
    type: dict
  part_size_mb:
    description:
      - Multipart part size in MiB (at least 5). Files up to this size are sent in one request. Raised
        automatically when the file would need more than 10000 parts.
    type: int
    default: 64
  concurrency:
    description:
      - Parts sent in parallel.
    type: int
    default: 4
  verify:
    description:
      - Check after an upload. V(metadata) compares the stored object's size and SHA-256 metadata with the local
        file; V(full) also downloads the object again and hashes it. An object that fails the check is deleted.
    type: str
    default: metadata
    choices: [metadata, full]
  overwrite:
    description:
      - What to do when the destination (object or local file) already exists with different content.
        V(never) fails (a backup is never replaced silently); V(different) replaces it; V(always) also
        transfers identical content again.
      - Identical content (same size and SHA-256) is never transferred again unless V(always).
    type: str
    default: never
    choices: [never, different, always]
  require_checksum:
    description:
      - With O(mode=download), fail when there is nothing to verify against (no C(sha256)/C(md5) metadata and no
        C(.sha256)/C(.md5) sidecar object). Set to V(false) to fetch objects uploaded by other tools unverified.
    type: bool
    default: true
extends_documentation_fragment:
  - atlasia.dr.s3
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Reads the bucket and the local files, transfers nothing, and returns what would be transferred.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
seealso:
  - module: atlasia.dr.s3_rotate
  - module: amazon.aws.s3_object
    description: General object transfers (it neither stores nor verifies our SHA-256).
"""

EXAMPLES = r"""
- name: Upload a dump with its sidecars and manifest to s3://atlasia-backups/atlasia-backups/
  atlasia.dr.s3_backup_transfer:
    mode: upload
    src: /srv/backups/daily/backup_20261125_020000.sql.gz
    bucket: atlasia-backups
    prefix: atlasia-backups
  register: uploaded

- name: Upload the artifacts of a backup set in one call (nothing is sent if any of them cannot be)
  atlasia.dr.s3_backup_transfer:
    mode: upload
    srcs:
      - /srv/backups/daily/backup_20261125_020000.sql.gz
      - /srv/backups/daily/globals_20261125_020000.sql.gz
      - /srv/backups/daily/vault_20261125_020000.snap
    bucket: atlasia-backups
    prefix: atlasia-backups
  register: uploaded_set

- name: Upload to a MinIO endpoint with KMS encryption, verifying by reading the object back
  atlasia.dr.s3_backup_transfer:
    mode: upload
    src: /srv/backups/daily/backup_20261125_020000.dir
    bucket: dr
    key: prod/postgres/backup_20261125_020000.dir
    endpoint_url: https://minio.example.org
    access_key: "{{ vault_s3_access_key }}"
    secret_key: "{{ vault_s3_secret_key }}"
    encryption: aws:kms
    kms_key_id: alias/backups
    verify: full

- name: Find the newest database backup
  atlasia.dr.s3_backup_transfer:
    mode: list
    bucket: atlasia-backups
    prefix: atlasia-backups
    series: [backup]
  register: listing

- name: Download it, verified against its SHA-256
  atlasia.dr.s3_backup_transfer:
    mode: download
    bucket: atlasia-backups
    key: "{{ listing.latest.backup.artifacts[0].key }}"
    dest: /srv/restore/

- name: Check that last night's upload is there
  atlasia.dr.s3_backup_transfer:
    mode: exists
    bucket: atlasia-backups
    key: atlasia-backups/backup_20261125_020000.sql.gz
  register: remote
  failed_when: not remote.exists
"""

RETURN = r"""
mode:
  description: The mode that ran.
  returned: always
  type: str
  sample: upload
key:
  description: Key of the artifact (directory artifacts end without C(/)).
  returned: when O(mode) is V(download) or V(exists), or V(upload) with O(src)
  type: str
  sample: atlasia-backups/backup_20261125_020000.sql.gz
keys:
  description:
    - Every key of the set that was considered, artifact files, sidecars and manifest included.
    - With O(srcs), the keys of all sources in upload order (a manifest they share appears once).
  returned: when O(mode) is V(upload) or V(download)
  type: list
  elements: str
  sample: [atlasia-backups/backup_20261125_020000.sql.gz, atlasia-backups/backup_20261125_020000.sql.gz.sha256]
transferred:
  description: Keys uploaded or downloaded (in check mode, that would be), in order; with O(srcs), of all sources.
  returned: when O(mode) is V(upload) or V(download)
  type: list
  elements: str
  sample: [atlasia-backups/backup_20261125_020000.sql.gz]
skipped_keys:
  description:
    - Keys not transferred because the destination already holds the same size and SHA-256.
    - Named C(skipped_keys) and not C(skipped) because Ansible shows a task returning a true C(skipped) as skipped.
  returned: when O(mode) is V(upload) or V(download)
  type: list
  elements: str
  sample: [atlasia-backups/backup_20261125_020000.json]
size:
  description: Size of the artifact in bytes (the sum of its files for a directory artifact).
  returned: when O(mode) is V(download) or V(exists) and the artifact exists, or O(mode=upload) with O(src)
  type: int
  sample: 12582912
sha256:
  description:
    - SHA-256 of the artifact. For a directory artifact, the SHA-256 of its C(.sha256) listing.
    - With O(mode=exists), the C(sha256) metadata of the object (null when absent or for a directory).
  returned: when O(mode) is V(download) or V(exists) and the artifact exists, or O(mode=upload) with O(src)
  type: str
  sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
md5:
  description: MD5 of the artifact (same rules as RV(sha256)).
  returned: when O(mode) is V(download) or V(exists) and the artifact exists, or O(mode=upload) with O(src)
  type: str
  sample: 5eb63bbbe01eeed093cb22bb8f5acdc3
artifacts:
  description:
    - One entry per source, in the order of O(srcs) (one entry for O(src)).
    - With O(srcs), the only place to find each artifact's key, size and digests (RV(key), RV(size), RV(sha256)
      and RV(md5) are not returned).
  returned: when O(mode=upload)
  type: list
  elements: dict
  contains:
    src:
      description: Absolute local path of the source.
      type: str
    key:
      description: Key of the artifact (directory artifacts end without C(/)).
      type: str
    size:
      description: Size in bytes (the sum of its files for a directory artifact).
      type: int
    sha256:
      description: SHA-256 of the artifact (of its C(.sha256) listing for a directory artifact).
      type: str
    md5:
      description: MD5 of the artifact (of its C(.md5) listing for a directory artifact).
      type: str
  sample:
    - src: /srv/backups/daily/backup_20261125_020000.sql.gz
      key: atlasia-backups/backup_20261125_020000.sql.gz
      size: 12582912
      sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
      md5: 5eb63bbbe01eeed093cb22bb8f5acdc3
dest:
  description: Final local path of the downloaded artifact.
  returned: when O(mode=download)
  type: str
  sample: /srv/restore/backup_20261125_020000.sql.gz
verified:
  description: What the artifact was verified against (C(metadata), C(sidecar), C(download)).
  returned: when O(mode) is V(upload) or V(download)
  type: list
  elements: str
  sample: [metadata, sidecar]
bytes_transferred:
  description: Bytes sent or received.
  returned: when O(mode) is V(upload) or V(download)
  type: int
  sample: 12582912
exists:
  description: Whether O(key) exists (as an object or as a directory artifact).
  returned: when O(mode=exists)
  type: bool
  sample: true
directory:
  description: Whether O(key) is a directory artifact.
  returned: when O(mode=exists) and the key exists
  type: bool
  sample: false
storage_class:
  description: Storage class of the object.
  returned: when O(mode=exists) and the key is an object
  type: str
  sample: STANDARD_IA
last_modified:
  description: Modification time of the object (ISO 8601).
  returned: when O(mode=exists) and the key is an object
  type: str
  sample: "2026-11-25T02:03:11+00:00"
backups:
  description: Backups under O(prefix), newest first.
  returned: when O(mode=list)
  type: list
  elements: dict
  contains:
    stem:
      description: C(<prefix>_<YYYYMMDD>_<HHMMSS>).
      type: str
    series:
      description: The name prefix.
      type: str
    timestamp:
      description: Timestamp of the backup from its name (UTC, ISO 8601).
      type: str
    artifacts:
      description: The artifacts of the set (C(key), C(name), C(size), C(sha256), C(md5), C(storage_class), C(directory)).
      type: list
      elements: dict
    sidecars:
      description: Keys of the checksum sidecars.
      type: list
      elements: str
    manifest:
      description: Key of the manifest, null when there is none.
      type: str
    complete:
      description: Whether the manifest is present (it is uploaded last).
      type: bool
    size:
      description: Total size of the artifacts.
      type: int
  sample:
    - stem: backup_20261125_020000
      series: backup
      timestamp: "2026-11-25T02:00:00+00:00"
      artifacts: [{key: atlasia-backups/backup_20261125_020000.sql.gz, name: backup_20261125_020000.sql.gz, size: 1048576,
                   sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08, md5: 5eb63bbbe01eeed093cb22bb8f5acdc3,
                   storage_class: STANDARD_IA, directory: false}]
      sidecars: [atlasia-backups/backup_20261125_020000.sql.gz.sha256]
      manifest: atlasia-backups/backup_20261125_020000.json
      complete: true
      size: 1048576
latest:
  description: The newest backup of each series (same form as the items of RV(backups)).
  returned: when O(mode=list)
  type: dict
  sample: {backup: {stem: backup_20261125_020000, complete: true}}
ignored:
  description: Keys under O(prefix) outside the naming convention.
  returned: when O(mode=list)
  type: list
  elements: str
  sample: [atlasia-backups/README.txt]
duration:
  description: Seconds the module ran.
  returned: always
  type: float
  sample: 1.7
"""

import hashlib
import math
import os
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.atlasia.dr.plugins.module_utils.atomic import commit, remove_path, temp_path_for, write_text
from ansible_collections.atlasia.dr.plugins.module_utils.checksum import (
    ChecksumError,
    MultiHasher,
    file_digests,
    tree_listing,
)
from ansible_collections.atlasia.dr.plugins.module_utils.naming import manifest_name, parse_backup_name, sidecar_names
from ansible_collections.atlasia.dr.plugins.module_utils.retention import group_names
from ansible_collections.atlasia.dr.plugins.module_utils.s3 import (
    Boto3Error,
    BotoCoreError,
    ClientError,
    MiB,
    STORAGE_CLASSES,
    delete_batch,
    drop_empty_folders,
    ensure_boto3,
    fail_json_aws,
    get_s3_client,
    head_object,
    is_not_found,
    list_level,
    list_tree,
    normalize_prefix,
    s3_argument_spec,
    s3_module_kwargs,
    s3_url,
)

try:
    from boto3.s3.transfer import TransferConfig
except ImportError:
    pass  # ensure_boto3() reports it

CHUNK = MiB
MAX_PARTS = 10000
RESERVED_METADATA = ("sha256", "md5")


class TransferError(Exception):
    """A refusal or a verification failure, with a message for the user."""


def argument_spec():
    spec = s3_argument_spec()
    spec.update(
        mode=dict(type="str", required=True, choices=["upload", "download", "list", "exists"]),
        src=dict(type="path"),
        srcs=dict(type="list", elements="path"),
        dest=dict(type="path"),
        key=dict(type="str", no_log=False),
        prefix=dict(type="str"),
        series=dict(type="list", elements="str"),
        with_sidecars=dict(type="bool", default=True),
        storage_class=dict(type="str", default="STANDARD_IA", choices=STORAGE_CLASSES),
        encryption=dict(type="str", default="AES256", choices=["AES256", "aws:kms", "none"]),
        kms_key_id=dict(type="str", no_log=False),
        metadata=dict(type="dict"),
        part_size_mb=dict(type="int", default=64),
        concurrency=dict(type="int", default=4),
        verify=dict(type="str", default="metadata", choices=["metadata", "full"]),
        overwrite=dict(type="str", default="never", choices=["never", "different", "always"]),
        require_checksum=dict(type="bool", default=True),
    )
    return spec


def module_kwargs():
    kwargs = s3_module_kwargs()
    kwargs["mutually_exclusive"] = kwargs["mutually_exclusive"] + [["key", "prefix"], ["src", "srcs"]]
    kwargs["required_if"] = [
        ["mode", "upload", ["src", "srcs"], True],
        ["mode", "upload", ["key", "prefix"], True],
        ["mode", "download", ["key", "dest"]],
        ["mode", "exists", ["key"]],
    ]
    return kwargs


# -- pure helpers (unit tested) -----------------------------------------------------------------------


def parse_checksum_text(text):
    """``[(hexdigest, name)]`` of a ``md5sum``/``sha256sum`` file; :class:`ChecksumError` when malformed."""
    entries = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        parts = line.split(None, 1)
        if len(parts) != 2 or not all(c in "0123456789abcdefABCDEF" for c in parts[0]):
            raise ChecksumError("malformed checksum line %r" % line)
        entries.append((parts[0].lower(), parts[1].lstrip("*")))
    if not entries:
        raise ChecksumError("empty checksum file")
    return entries


def listing_entries(text):
    """Directory sidecar text as ``{relative path inside the artifact: hexdigest}`` (first component dropped)."""
    entries = {}
    for digest, path in parse_checksum_text(text):
        parts = path.split("/", 1)
        if len(parts) != 2:
            raise ChecksumError("directory checksum line %r does not name a file inside the artifact" % path)
        entries[parts[1]] = digest
    return entries


def effective_part_size(size, part_size_mb):
    """Part size in bytes: the requested one, raised so ``size`` fits in 10000 parts."""
    part = part_size_mb * MiB
    if size > part * MAX_PARTS:
        part = int(math.ceil(float(size) / (MAX_PARTS - 1) / MiB)) * MiB
    return part


def sidecar_keys(key):
    """``{'md5': key.md5, 'sha256': key.sha256, 'manifest': <folder>/<stem>.json or None}``."""
    keys = dict((algo, key + suffix) for algo, suffix in sidecar_names("").items())
    parsed = parse_backup_name(key)
    folder = key.rsplit("/", 1)[0] + "/" if "/" in key else ""
    keys["manifest"] = folder + manifest_name(parsed.stem) if parsed else None
    return keys


def safe_relative(rel):
    """Reject keys that would escape the destination directory."""
    parts = rel.split("/")
    if not rel or rel.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise TransferError("refusing the object name %r inside a directory artifact (unsafe path)" % rel)
    return os.path.join(*parts)


def group_listing(objects, folders, series=None):
    """Group a folder listing into backups: ``(backups newest first, ignored keys)``.

    ``objects`` are :func:`list_level` dicts; ``folders`` common prefixes (directory artifacts).
    """
    by_key = dict((obj["key"], obj) for obj in objects)
    names = list(by_key) + list(folders)
    groups, ignored = group_names(names)
    backups = []
    for (prefix, stem), group in groups.items():
        if series is not None and prefix not in series:
            continue
        entry = dict(stem=stem, series=prefix, timestamp=group["timestamp"].isoformat(), artifacts=[], sidecars=[],
                     manifest=None, complete=False, size=0)
        for name in sorted(group["names"]):
            parsed = parse_backup_name(name)
            if parsed.role == "manifest":
                entry["manifest"] = name
                entry["complete"] = True
            elif parsed.role in ("md5", "sha256"):
                entry["sidecars"].append(name)
            else:
                obj = by_key.get(name)
                entry["artifacts"].append(dict(
                    key=name.rstrip("/"), name=parsed.name, directory=name.endswith("/"),
                    size=obj["size"] if obj else None, storage_class=obj["storage_class"] if obj else None,
                    last_modified=obj["last_modified"] if obj else None, sha256=None, md5=None))
        backups.append(entry)
    backups.sort(key=lambda b: b["stem"])
    backups.sort(key=lambda b: b["timestamp"], reverse=True)  # newest first, ties by name
    return backups, ignored


# -- the module ---------------------------------------------------------------------------------------


class BackupTransfer(object):

    def __init__(self, module, client):
        self.module = module
        self.client = client
        self.params = module.params
        self.bucket = self.params["bucket"]
        self.result = dict(changed=False, mode=self.params["mode"])

    # S3 helpers -----------------------------------------------------------------------------------------
    def _stream_digest(self, key):
        body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        hasher = MultiHasher()
        try:
            for chunk in body.iter_chunks(CHUNK):
                hasher.update(chunk)
        finally:
            body.close()
        return hasher.hexdigests(), hasher.size

    def _get_small(self, key):
        """Content of a small object (sidecar, manifest) or ``None``; verified against its sha256 metadata."""
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if is_not_found(exc):
                return None
            raise
        data = answer["Body"].read()
        expected = (answer.get("Metadata") or {}).get("sha256")
        if expected and hashlib.sha256(data).hexdigest() != expected:
            raise TransferError("%s is damaged: its SHA-256 %s does not match its metadata %s" % (
                s3_url(self.bucket, key), hashlib.sha256(data).hexdigest(), expected))
        return data

    def _transfer_config(self, size):
        part = effective_part_size(size, self.params["part_size_mb"])
        concurrency = self.params["concurrency"]
        return TransferConfig(multipart_threshold=part, multipart_chunksize=part, max_concurrency=concurrency,
                              use_threads=concurrency > 1)

    def _extra_args(self, digests):
        metadata = dict((str(k), str(v)) for k, v in (self.params["metadata"] or {}).items())
        metadata.update(sha256=digests["sha256"], md5=digests["md5"])
        extra = dict(Metadata=metadata, StorageClass=self.params["storage_class"])
        if self.params["encryption"] != "none":
            extra["ServerSideEncryption"] = self.params["encryption"]
            if self.params["encryption"] == "aws:kms" and self.params["kms_key_id"]:
                extra["SSEKMSKeyId"] = self.params["kms_key_id"]
        return extra

    # upload -----------------------------------------------------------------------------------------------
    def _upload_items(self, src, key):
        """``[(local path, key, digests, size)]`` of the artifact (its files for a directory) and its sidecars.

        Also returns the artifact's own digests and size, and checks the local sidecars first.
        """
        name = os.path.basename(src.rstrip("/"))
        directory = os.path.dirname(src)
        items = []
        if os.path.isdir(src):
            texts, size = tree_listing(src)
            digests = dict((algo, hashlib.new(algo, texts[algo].encode("utf-8")).hexdigest()) for algo in texts)
            per_file = dict((algo, listing_entries(texts[algo])) for algo in texts)
            for rel in sorted(per_file["sha256"]):
                path = os.path.join(src, *rel.split("/"))
                items.append((path, "%s/%s" % (key, rel), dict((a, per_file[a][rel]) for a in per_file),
                              os.path.getsize(path)))
            self._check_local_sidecars(src, name, texts=texts)
        else:
            digests, size = file_digests(src)
            items.append((src, key, digests, size))
            self._check_local_sidecars(src, name, digests=digests)
        if self.params["with_sidecars"]:
            remote = sidecar_keys(key)
            local = dict((algo, os.path.join(directory, side)) for algo, side in sidecar_names(name).items())
            parsed = parse_backup_name(name)
            local["manifest"] = os.path.join(directory, manifest_name(parsed.stem)) if parsed else None
            for role in ("md5", "sha256", "manifest"):
                path = local.get(role)
                if path and remote.get(role) and os.path.isfile(path):
                    side_digests, side_size = file_digests(path)
                    items.append((path, remote[role], side_digests, side_size))
        return items, digests, size

    def _check_local_sidecars(self, src, name, digests=None, texts=None):
        directory = os.path.dirname(src)
        for algo, side in sidecar_names(name).items():
            path = os.path.join(directory, side)
            if not os.path.isfile(path):
                continue
            with open(path, "r") as handle:
                text = handle.read()
            try:
                if texts is not None:
                    ok = listing_entries(text) == listing_entries(texts[algo])
                else:
                    ok = parse_checksum_text(text)[0][0] == digests[algo]
            except ChecksumError as exc:
                raise TransferError("%s: %s" % (path, exc))
            if not ok:
                raise TransferError("%s does not match its %s sidecar %s: the local backup is damaged or incomplete; "
                                    "not uploading it" % (src, algo.upper(), path))

    def _check_upload_settings(self):
        params = self.params
        if params["srcs"] is not None and params["key"]:
            raise TransferError("key names a single object: it cannot be used with srcs, where each source is "
                                "uploaded as prefix + its base name (use prefix, or one task per key with src)")
        if params["part_size_mb"] < 5:
            raise TransferError("part_size_mb must be at least 5 (the S3 minimum part size)")
        if params["concurrency"] < 1:
            raise TransferError("concurrency must be at least 1")
        if params["kms_key_id"] and params["encryption"] != "aws:kms":
            raise TransferError("kms_key_id needs encryption=aws:kms")
        reserved = set(RESERVED_METADATA) & set(k.lower() for k in (params["metadata"] or {}))
        if reserved:
            raise TransferError("metadata keys %s are reserved for the module's checksums" % ", ".join(sorted(reserved)))

    def _upload_key(self, src):
        """Key of the artifact ``src``: ``key`` (a trailing ``/`` appends the base name), else prefix + base name."""
        name = os.path.basename(src.rstrip("/"))
        if self.params["key"]:
            key = self.params["key"].lstrip("/")
            return key + name if key.endswith("/") else key
        return normalize_prefix(self.params["prefix"]) + name

    def _plan_source(self, src):
        """What uploading one source means: its key, digests and the ``(path, key, digests, size)`` items."""
        src = os.path.abspath(src)
        if not os.path.exists(src):
            raise TransferError("src %s does not exist" % src)
        key = self._upload_key(src)
        items, digests, size = self._upload_items(src, key)
        return dict(src=src, key=key, items=items, directory=os.path.isdir(src),
                    artifact=dict(src=src, key=key, size=size, sha256=digests["sha256"], md5=digests["md5"]))

    @staticmethod
    def _merge_items(plans):
        """The items of every source in upload order, one per key.

        A key several sources share (the manifest of artifacts with the same stem) is uploaded once, at its last
        place: after every artifact that names it. Two different contents for one key are refused.
        """
        merged = {}
        owners = {}
        for plan in plans:
            for path, item_key, digests, size in plan["items"]:
                if item_key in merged:
                    if merged[item_key][2]["sha256"] != digests["sha256"] or merged[item_key][3] != size:
                        raise TransferError("%s and %s would both be uploaded to %s; not uploading anything" % (
                            owners[item_key], path, item_key))
                    del merged[item_key]  # re-inserted: moves to its last place
                merged[item_key] = (path, item_key, digests, size)
                owners[item_key] = path
        return list(merged.values())

    def upload(self):
        params = self.params
        self._check_upload_settings()
        single = params["srcs"] is None
        plans = [self._plan_source(src) for src in ([params["src"]] if single else params["srcs"])]
        artifact_keys = {}
        for plan in plans:
            if plan["key"] in artifact_keys:
                raise TransferError("srcs %s and %s would both be uploaded to %s; not uploading anything" % (
                    artifact_keys[plan["key"]], plan["src"], plan["key"]))
            artifact_keys[plan["key"]] = plan["src"]
        items = self._merge_items(plans)
        result = self.result
        result.update(keys=[item[1] for item in items], artifacts=[plan["artifact"] for plan in plans], transferred=[],
                      skipped_keys=[], bytes_transferred=0, verified=[])
        if single:
            artifact = plans[0]["artifact"]
            result.update(key=artifact["key"], size=artifact["size"], sha256=artifact["sha256"], md5=artifact["md5"])

        # decide everything, for every source, before sending anything
        todo, conflicts = [], []
        for path, item_key, item_digests, item_size in items:
            head = head_object(self.client, self.bucket, item_key)
            if head is not None:
                same = head.get("ContentLength") == item_size and \
                    (head.get("Metadata") or {}).get("sha256") == item_digests["sha256"]
                if same and params["overwrite"] != "always":
                    result["skipped_keys"].append(item_key)
                    continue
                if not same and params["overwrite"] == "never":
                    conflicts.append(item_key)
                    continue
            todo.append((path, item_key, item_digests, item_size))
        stale = []  # (artifact key, [remote files of a directory artifact no longer in it])
        wanted = set(result["keys"])
        for plan in plans:
            if plan["directory"]:
                extra = [obj["key"] for obj in list_tree(self.client, self.bucket, plan["key"] + "/")
                         if obj["key"] not in wanted]
                if extra:
                    stale.append((plan["key"], extra))
                    if params["overwrite"] == "never":
                        conflicts.extend(extra)
        if conflicts:
            where = plans[0]["key"] if len(plans) == 1 else normalize_prefix(params["prefix"])
            raise TransferError("%s already exist(s) with different content; refusing to replace a backup "
                                "(overwrite=different replaces it): %s" % (
                                    s3_url(self.bucket, where), ", ".join(conflicts[:10])))
        if self.module.check_mode:
            result["transferred"] = [item[1] for item in todo]
            result["changed"] = bool(todo or stale)
            result["bytes_transferred"] = sum(item[3] for item in todo)
            return
        for path, item_key, item_digests, item_size in todo:
            self.client.upload_file(path, self.bucket, item_key, ExtraArgs=self._extra_args(item_digests),
                                    Config=self._transfer_config(item_size))
            result["changed"] = True
            result["transferred"].append(item_key)
            result["bytes_transferred"] += item_size
            self._verify_upload(item_key, item_digests, item_size)
        for artifact_key, extra in stale:
            result["changed"] = True
            done, errors = delete_batch(self.client, self.bucket, [dict(Key=k) for k in extra])
            if errors:
                raise TransferError("cannot delete stale files of %s: %s" % (s3_url(self.bucket, artifact_key), errors[:3]))
        result["verified"] = ["metadata", "download"] if params["verify"] == "full" else ["metadata"]

    def _verify_upload(self, key, digests, size):
        head = self.client.head_object(Bucket=self.bucket, Key=key)
        problem = None
        if head.get("ContentLength") != size:
            problem = "size %s, expected %s" % (head.get("ContentLength"), size)
        elif (head.get("Metadata") or {}).get("sha256") != digests["sha256"]:
            problem = "sha256 metadata %r, expected %s" % ((head.get("Metadata") or {}).get("sha256"), digests["sha256"])
        elif self.params["verify"] == "full":
            remote, remote_size = self._stream_digest(key)
            if remote["sha256"] != digests["sha256"] or remote_size != size:
                problem = "downloaded content has SHA-256 %s (%d bytes), expected %s (%d bytes)" % (
                    remote["sha256"], remote_size, digests["sha256"], size)
        if problem:
            try:
                self.client.delete_object(Bucket=self.bucket, Key=key)
                removed = "the object was deleted"
            except (ClientError, BotoCoreError, Boto3Error) as exc:
                removed = "deleting the object failed too (%s): delete it by hand" % to_native(exc)
            raise TransferError("verification of %s after upload failed: %s; %s" % (s3_url(self.bucket, key), problem, removed))

    # download ---------------------------------------------------------------------------------------------
    def _final_path(self, key):
        dest = self.params["dest"]
        name = key.rstrip("/").rsplit("/", 1)[-1]
        if os.path.isdir(dest) or self.params["dest"].endswith("/"):
            return os.path.join(os.path.abspath(dest), name)
        return os.path.abspath(dest)

    def _references(self, key, metadata):
        """Checksums the artifact must match: ``{source: {'sha256': .., 'md5': ..}}`` plus the sidecar texts."""
        refs = {}
        meta = dict((k, v) for k, v in (metadata or {}).items() if k in RESERVED_METADATA)
        if meta:
            refs["metadata"] = meta
        texts = {}
        if self.params["with_sidecars"] or self.params["require_checksum"]:
            for algo, side_key in sidecar_keys(key).items():
                if algo == "manifest" or side_key is None:
                    continue
                data = self._get_small(side_key)
                if data is not None:
                    texts[algo] = (side_key, data.decode("utf-8", "replace"))
        return refs, texts

    def download(self):
        params = self.params
        key = params["key"].lstrip("/").rstrip("/")
        head = head_object(self.client, self.bucket, key)
        files = None
        if head is None:
            files = list_tree(self.client, self.bucket, key + "/")
            if not files:
                self.client.head_bucket(Bucket=self.bucket)  # NoSuchBucket / AccessDenied surface here
                raise TransferError("%s does not exist (NoSuchKey): check key, or list the prefix with mode=list" % (
                    s3_url(self.bucket, key)))
        final = self._final_path(key)
        result = self.result
        result.update(key=key, dest=final, keys=[], transferred=[], skipped_keys=[], bytes_transferred=0, verified=[])
        refs, texts = self._references(key, head.get("Metadata") if head else None)
        if files is None:
            self._download_file(key, head, final, refs, texts)
        else:
            self._download_tree(key, files, final, texts)
        if params["with_sidecars"]:
            self._download_sidecars(key, final, texts)

    def _check_existing(self, final, matches):
        """``True`` when ``final`` exists and ``matches()``; raises under overwrite=never when it differs."""
        if not os.path.lexists(final):
            return False
        if self.params["overwrite"] == "always":
            return False
        if matches():
            return True
        if self.params["overwrite"] == "never":
            raise TransferError("%s already exists with different content; refusing to replace it "
                                "(overwrite=different replaces it)" % final)
        return False

    def _compare_file(self, digests, size, refs, texts, expected_size):
        """Raise :class:`ChecksumError` unless ``digests`` match every reference; returns the sources checked."""
        checked = []
        if expected_size is not None and size != expected_size:
            raise ChecksumError("size %d, expected %d (incomplete transfer)" % (size, expected_size))
        for source, values in refs.items():
            for algo in sorted(values, reverse=True):  # sha256 first: it names the damage in messages
                expected = values[algo]
                if digests[algo] != expected.lower():
                    raise ChecksumError("content %s is %s, the object's %s says %s" % (
                        algo.upper(), digests[algo], source, expected))
            checked.append(source)
        for algo, (side_key, text) in texts.items():
            expected = parse_checksum_text(text)[0][0]
            if digests[algo] != expected:
                raise ChecksumError("%s is %s, the sidecar %s says %s" % (algo.upper(), digests[algo], side_key, expected))
            if "sidecar" not in checked:
                checked.append("sidecar")
        return checked

    def _download_file(self, key, head, final, refs, texts):
        result = self.result
        result["keys"].append(key)
        result["size"] = head.get("ContentLength")
        if not refs and not texts and self.params["require_checksum"]:
            raise TransferError("%s has no sha256/md5 metadata and no .sha256/.md5 sidecar object: nothing to verify "
                                "it against (require_checksum=false accepts it unverified)" % s3_url(self.bucket, key))

        def matches():
            if not os.path.isfile(final):
                return False
            digests, size = file_digests(final)
            try:
                result["verified"] = self._compare_file(digests, size, refs, texts, head.get("ContentLength"))
            except ChecksumError:
                return False
            result.update(sha256=digests["sha256"], md5=digests["md5"])
            return True

        if self._check_existing(final, matches):
            result["skipped_keys"].append(key)
            return
        if self.module.check_mode:
            result["transferred"].append(key)
            result["changed"] = True
            return
        parent = os.path.dirname(final)
        if not os.path.isdir(parent):
            os.makedirs(parent)
        temp = temp_path_for(final)
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=key)
            hasher = MultiHasher()
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                body = answer["Body"]
                try:
                    for chunk in body.iter_chunks(CHUNK):
                        handle.write(chunk)
                        hasher.update(chunk)
                finally:
                    body.close()
            result["bytes_transferred"] += hasher.size
            digests = hasher.hexdigests()
            refs = dict(refs)
            meta = dict((k, v) for k, v in (answer.get("Metadata") or {}).items() if k in RESERVED_METADATA)
            if meta:
                refs["metadata"] = meta  # what was actually served
            try:
                result["verified"] = self._compare_file(digests, hasher.size, refs, texts, answer.get("ContentLength"))
            except ChecksumError as exc:
                raise TransferError("download of %s is corrupt: %s; no file was written to %s" % (
                    s3_url(self.bucket, key), exc, final))
            commit(temp, final, overwrite=self.params["overwrite"] != "never")
        except BaseException:
            remove_path(temp)
            raise
        result["transferred"].append(key)
        result["changed"] = True
        result.update(sha256=digests["sha256"], md5=digests["md5"], size=hasher.size)

    def _download_tree(self, key, files, final, texts):
        result = self.result
        prefix = key + "/"
        entries = []
        for obj in files:
            entries.append((safe_relative(obj["key"][len(prefix):]), obj))
        result["keys"].extend(obj["key"] for rel, obj in entries)
        result["size"] = sum(obj["size"] for rel, obj in entries)
        listings = dict((algo, listing_entries(text)) for algo, (side_key, text) in texts.items())

        def matches():
            if not os.path.isdir(final):
                return False
            local_texts, local_size = tree_listing(final)
            local = listing_entries(local_texts["sha256"]) if local_texts["sha256"] else {}
            if "sha256" in listings:
                result["verified"] = ["sidecar"]
                return local == listings["sha256"]
            remote = {}
            for rel, obj in entries:
                head = self.client.head_object(Bucket=self.bucket, Key=obj["key"])
                remote[rel.replace(os.sep, "/")] = (head.get("Metadata") or {}).get("sha256")
            result["verified"] = ["metadata"]
            return local == remote

        if self._check_existing(final, matches):
            result["skipped_keys"].extend(result["keys"])
            return
        if self.module.check_mode:
            result["transferred"].extend(result["keys"])
            result["changed"] = True
            return
        parent = os.path.dirname(final)
        if not os.path.isdir(parent):
            os.makedirs(parent)
        temp = temp_path_for(final)
        old = None
        try:
            os.mkdir(temp, 0o700)
            for rel, obj in entries:
                path = os.path.join(temp, rel)
                if not os.path.isdir(os.path.dirname(path)):
                    os.makedirs(os.path.dirname(path), 0o700)
                answer = self.client.get_object(Bucket=self.bucket, Key=obj["key"])
                hasher = MultiHasher()
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as handle:
                    body = answer["Body"]
                    try:
                        for chunk in body.iter_chunks(CHUNK):
                            handle.write(chunk)
                            hasher.update(chunk)
                    finally:
                        body.close()
                result["bytes_transferred"] += hasher.size
                digests = hasher.hexdigests()
                meta = answer.get("Metadata") or {}
                rel_key = rel.replace(os.sep, "/")
                refs = {}
                if meta.get("sha256"):
                    refs["metadata"] = dict((k, v) for k, v in meta.items() if k in RESERVED_METADATA)
                for algo, listing in listings.items():
                    if rel_key not in listing:
                        raise ChecksumError("%s is not listed in the %s sidecar" % (obj["key"], algo))
                    refs.setdefault("sidecar", {})[algo] = listing[rel_key]
                if not refs and self.params["require_checksum"]:
                    raise TransferError("%s has no sha256 metadata and the artifact has no sidecar: nothing to verify "
                                        "it against (require_checksum=false accepts it unverified)" % obj["key"])
                try:
                    checked = self._compare_file(digests, hasher.size, refs, {}, answer.get("ContentLength"))
                except ChecksumError as exc:
                    raise ChecksumError("%s: %s" % (obj["key"], exc))
                for source in checked:
                    if source not in result["verified"]:
                        result["verified"].append(source)
            for algo, listing in listings.items():
                missing = set(listing) - set(rel.replace(os.sep, "/") for rel, obj in entries)
                if missing:
                    raise ChecksumError("files listed in the %s sidecar are missing in the bucket: %s" % (
                        algo, ", ".join(sorted(missing))))
            if os.path.lexists(final):
                if self.params["overwrite"] == "never":
                    raise TransferError("%s already exists" % final)
                old = temp_path_for(final)
                os.rename(final, old)
            commit(temp, final)
        except ChecksumError as exc:
            remove_path(temp)
            raise TransferError("download of %s is corrupt: %s; nothing was written to %s" % (
                s3_url(self.bucket, key), exc, final))
        except BaseException:
            remove_path(temp)
            if old and not os.path.lexists(final):
                os.rename(old, final)
                old = None
            raise
        result["transferred"].extend(result["keys"])
        result["changed"] = True
        if old:
            remove_path(old)
        texts_final, size = tree_listing(final)
        result.update(sha256=hashlib.sha256(texts_final["sha256"].encode("utf-8")).hexdigest(),
                      md5=hashlib.md5(texts_final["md5"].encode("utf-8")).hexdigest(), size=size)

    def _download_sidecars(self, key, final, texts):
        result = self.result
        remote_name = key.rsplit("/", 1)[-1]
        final_name = os.path.basename(final)
        directory = os.path.dirname(final)
        wanted = {}
        for algo, (side_key, text) in texts.items():
            if remote_name != final_name:
                text = "".join(line.replace("  " + remote_name, "  " + final_name, 1) for line in text.splitlines(True))
            wanted[side_key] = (os.path.join(directory, sidecar_names(final_name)[algo]), text.encode("utf-8"))
        manifest_key = sidecar_keys(key)["manifest"]
        if manifest_key:
            data = self._get_small(manifest_key)
            if data is not None:
                wanted[manifest_key] = (os.path.join(directory, manifest_key.rsplit("/", 1)[-1]), data)
        for side_key, (path, data) in sorted(wanted.items()):
            result["keys"].append(side_key)
            if os.path.isfile(path):
                with open(path, "rb") as handle:
                    current = handle.read()
                if current == data and self.params["overwrite"] != "always":
                    result["skipped_keys"].append(side_key)
                    continue
                if current != data and self.params["overwrite"] == "never":
                    raise TransferError("%s already exists with different content; refusing to replace it "
                                        "(overwrite=different replaces it)" % path)
            if not self.module.check_mode:
                write_text(path, data.decode("utf-8"), mode=0o644)
                result["bytes_transferred"] += len(data)
            result["transferred"].append(side_key)
            result["changed"] = True

    # list / exists ---------------------------------------------------------------------------------------
    def listing(self):
        prefix = normalize_prefix(self.params["prefix"])
        objects, folders = list_level(self.client, self.bucket, prefix)
        folders = drop_empty_folders(self.client, self.bucket, folders, only=parse_backup_name)
        backups, ignored = group_listing(objects, folders, self.params["series"])
        latest = {}
        for backup in backups:
            for artifact in backup["artifacts"]:
                if artifact["directory"]:
                    files = list_tree(self.client, self.bucket, artifact["key"] + "/")
                    artifact["size"] = sum(obj["size"] for obj in files)
                else:
                    head = self.client.head_object(Bucket=self.bucket, Key=artifact["key"])
                    meta = head.get("Metadata") or {}
                    artifact.update(sha256=meta.get("sha256"), md5=meta.get("md5"))
            backup["size"] = sum(a["size"] or 0 for a in backup["artifacts"])
            latest.setdefault(backup["series"], backup)
        self.result.update(prefix=prefix, backups=backups, latest=latest, ignored=ignored)

    def exists(self):
        key = self.params["key"].lstrip("/").rstrip("/")
        result = self.result
        result.update(key=key, exists=False)
        head = head_object(self.client, self.bucket, key)
        if head is not None:
            meta = head.get("Metadata") or {}
            modified = head.get("LastModified")
            result.update(exists=True, directory=False, size=head.get("ContentLength"), sha256=meta.get("sha256"),
                          md5=meta.get("md5"), storage_class=head.get("StorageClass", "STANDARD"),
                          last_modified=modified.isoformat() if hasattr(modified, "isoformat") else modified)
            return
        files = list_tree(self.client, self.bucket, key + "/")
        if files:
            result.update(exists=True, directory=True, size=sum(obj["size"] for obj in files), sha256=None, md5=None)
            return
        self.client.head_bucket(Bucket=self.bucket)  # a missing bucket is an error, not "exists: false"


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True, **module_kwargs())
    started = time.monotonic()
    ensure_boto3(module)
    client = get_s3_client(module)
    transfer = BackupTransfer(module, client)
    mode = module.params["mode"]
    where = s3_url(module.params["bucket"], module.params["key"] or normalize_prefix(module.params["prefix"]))
    try:
        dict(upload=transfer.upload, download=transfer.download, list=transfer.listing, exists=transfer.exists)[mode]()
    except TransferError as exc:
        transfer.result["duration"] = round(time.monotonic() - started, 3)
        module.fail_json(msg=str(exc), **transfer.result)
    except (ClientError, BotoCoreError, Boto3Error) as exc:
        transfer.result["duration"] = round(time.monotonic() - started, 3)
        fail_json_aws(module, exc, msg="%s of %s failed" % (mode, where), **transfer.result)
    except (OSError, ChecksumError) as exc:
        transfer.result["duration"] = round(time.monotonic() - started, 3)
        module.fail_json(msg="%s of %s failed: %s" % (mode, where, to_native(exc)), **transfer.result)
    transfer.result["duration"] = round(time.monotonic() - started, 3)
    module.exit_json(**transfer.result)


if __name__ == "__main__":
    main()
