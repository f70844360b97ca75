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
  - atlasia.dr.progress
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

import time

from ansible.module_utils.common.text.converters import to_native

from ansible_collections.atlasia.dr.plugins.module_utils.checksum import ChecksumError
from ansible_collections.atlasia.dr.plugins.module_utils.common import DRModule
from ansible_collections.atlasia.dr.plugins.module_utils.s3 import (
    Boto3Error,
    BotoCoreError,
    ClientError,
    ensure_boto3,
    fail_json_aws,
    get_s3_client,
)
from ansible_collections.atlasia.dr.plugins.module_utils.progress import progress_argument_spec
from ansible_collections.atlasia.dr.plugins.module_utils.s3_transfer import (
    BackupTransfer,
    TransferError,
    transfer_argument_spec,
    transfer_module_kwargs,
)


def main():
    argument_spec = transfer_argument_spec()
    argument_spec.update(progress_argument_spec())
    module = DRModule(argument_spec=argument_spec, supports_check_mode=True, **transfer_module_kwargs())
    started = time.monotonic()
    ensure_boto3(module)
    transfer = BackupTransfer(module, get_s3_client(module))
    try:
        transfer.run()
    except TransferError as exc:
        module.fail_json(msg=str(exc), **transfer.finish(started))
    except (ClientError, BotoCoreError, Boto3Error) as exc:
        fail_json_aws(module, exc, msg="%s failed" % transfer.what(), **transfer.finish(started))
    except (OSError, ChecksumError) as exc:
        module.fail_json(msg="%s failed: %s" % (transfer.what(), to_native(exc)), **transfer.finish(started))
    module.exit_json(**transfer.finish(started))


if __name__ == "__main__":
    main()
