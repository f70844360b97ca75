#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: s3_rotate
short_description: Apply a daily/weekly/monthly retention policy to backups in an S3 bucket
version_added: 0.1.0
description:
  - Lists the backups directly under O(prefix) in O(bucket), decides with a C(restic forget)-style policy which
    ones to keep, and deletes the others together with their checksum sidecars and manifest.
  - Backups are recognised by their key names C(<prefix>_<YYYYMMDD>_<HHMMSS>[.<ext>]); the policy is evaluated
    on these timestamps, never on the current date or on the objects' modification times.
  - Directory artifacts uploaded by M(atlasia.dr.s3_backup_transfer) (C(<name>/<files>)) are rotated as one backup.
  - Objects and sub-folders outside the naming convention are never deleted.
  - Deletions are batched (C(DeleteObjects), at most 1000 keys per request); keys the endpoint refuses to delete
    are reported one by one in RV(errors) and the module fails.
author:
  - atlasia DevOps team (@atlasia-devops)
options:
  prefix:
    description:
      - Key prefix ("folder") holding the backups, for example V(atlasia-backups/daily). A trailing C(/) is added
        when missing; empty means the root of the bucket.
      - Only the keys directly under this folder are considered (sub-folders are other sets of backups).
    type: str
    default: ""
  delete_old_versions:
    description:
      - On a versioned bucket, deleting a key only adds a delete marker and the data stays (and is billed).
        With V(true), the noncurrent versions and delete markers of the keys deleted by this run are deleted too,
        which makes the deletion permanent.
      - Versions of keys deleted by earlier runs are left alone; use a lifecycle rule
        (C(NoncurrentVersionExpiration)) for those.
    type: bool
    default: false
extends_documentation_fragment:
  - atlasia.dr.s3
  - atlasia.dr.retention
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Lists and plans as usual, deletes nothing, and returns what would be deleted.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: The list of backup keys before and after rotation.
seealso:
  - module: atlasia.dr.backup_rotate
  - module: atlasia.dr.s3_backup_transfer
  - name: restic forget policy
    description: The retention semantics this module follows.
    link: https://restic.readthedocs.io/en/stable/060_forget.html
"""

EXAMPLES = r"""
- name: Keep 7 daily, 4 weekly and every monthly backup in s3://atlasia-backups/atlasia-backups/
  atlasia.dr.s3_rotate:
    bucket: atlasia-backups
    prefix: atlasia-backups
    keep_daily: 7
    keep_weekly: 4
    keep_monthly: -1

- name: Preview a stricter policy for the database dumps only on a MinIO endpoint
  atlasia.dr.s3_rotate:
    bucket: dr
    prefix: prod/postgres
    endpoint_url: https://minio.example.org
    access_key: "{{ vault_s3_access_key }}"
    secret_key: "{{ vault_s3_secret_key }}"
    series: [backup, schema]
    keep_last: 3
    keep_daily: 7
    keep_weekly: 0
    keep_monthly: 12
  check_mode: true
  register: preview

- name: Rotate a versioned bucket and purge the old versions of what is deleted
  atlasia.dr.s3_rotate:
    bucket: atlasia-backups
    prefix: vault
    keep_daily: 14
    delete_old_versions: true
"""

RETURN = r"""
prefix:
  description: The normalised key prefix that was rotated.
  returned: always
  type: str
  sample: atlasia-backups/
kept:
  description: Keys kept (directory artifacts end with C(/)), including sidecars and manifests.
  returned: success
  type: list
  elements: str
  sample: [atlasia-backups/backup_20261125_020000.sql.gz, atlasia-backups/backup_20261125_020000.sql.gz.sha256]
deleted:
  description:
    - Keys deleted (in check mode, that would be deleted), sidecars and manifests included.
    - Directory artifacts are listed once, ending with C(/); RV(deleted_objects) has their files.
  returned: success
  type: list
  elements: str
  sample: [atlasia-backups/backup_20261001_020000.sql.gz, atlasia-backups/backup_20261001_020000.sql.gz.md5]
deleted_objects:
  description: Every object key deleted (or that would be), the files of directory artifacts included.
  returned: success
  type: list
  elements: str
  sample: [atlasia-backups/backup_20261001_020000.dir/toc.dat]
deleted_versions:
  description: Noncurrent versions and delete markers deleted because of O(delete_old_versions).
  returned: when O(delete_old_versions=true)
  type: list
  elements: dict
  sample: [{key: atlasia-backups/backup_20261001_020000.sql.gz, version_id: 3HL4kqtJlcpXroDTDmjVBH40Nrjfkd, delete_marker: true}]
ignored:
  description: Keys and sub-folders outside the naming convention; never deleted.
  returned: success
  type: list
  elements: str
  sample: [atlasia-backups/README.txt, atlasia-backups/weekly/]
reasons:
  description: For each kept backup (by stem), the rules that keep it.
  returned: success
  type: dict
  sample: {backup_20261125_020000: [last, daily 2026-11-25, weekly 2026-W48, monthly 2026-11]}
errors:
  description: One entry per key the endpoint refused to delete (the module then fails).
  returned: on partial failure
  type: list
  elements: dict
  sample: [{key: atlasia-backups/backup_20261001_020000.sql.gz, version_id: null, code: AccessDenied, message: Access Denied}]
duration:
  description: Seconds the module ran.
  returned: always
  type: float
  sample: 0.42
"""

import time

from ansible_collections.atlasia.dr.plugins.module_utils.common import DRModule
from ansible_collections.atlasia.dr.plugins.module_utils.naming import parse_backup_name
from ansible_collections.atlasia.dr.plugins.module_utils.retention import (
    PolicyError,
    plan,
    retention_argument_spec,
    validate_policy,
)
from ansible_collections.atlasia.dr.plugins.module_utils.s3 import (
    Boto3Error,
    BotoCoreError,
    ClientError,
    delete_batch,
    drop_empty_folders,
    ensure_boto3,
    fail_json_aws,
    get_s3_client,
    list_level,
    list_tree,
    list_versions,
    normalize_prefix,
    s3_argument_spec,
    s3_module_kwargs,
    s3_url,
)


def argument_spec():
    spec = s3_argument_spec()
    spec.update(retention_argument_spec())
    spec.update(
        prefix=dict(type="str", default=""),
        series=dict(type="list", elements="str"),
        delete_old_versions=dict(type="bool", default=False),
    )
    return spec


def plan_rotation(object_keys, folders, policy, series=None):
    """Plan over one folder level: object keys plus folder prefixes (directory artifacts end with ``/``)."""
    return plan(list(object_keys) + list(folders), prefixes=series, **policy)


def expand_deleted(client, bucket, deleted):
    """Object keys behind the deleted names: a directory artifact (``.../name/``) stands for every key below it."""
    keys = []
    for name in deleted:
        if name.endswith("/"):
            keys.extend(obj["key"] for obj in list_tree(client, bucket, name))
        else:
            keys.append(name)
    return keys


def run(module, client, result):
    params = module.params
    bucket = params["bucket"]
    prefix = result["prefix"]
    policy = dict((name, params[name]) for name in ("keep_last", "keep_daily", "keep_weekly", "keep_monthly"))

    objects, folders = list_level(client, bucket, prefix)
    folders = drop_empty_folders(client, bucket, folders, only=parse_backup_name)
    decision = plan_rotation([obj["key"] for obj in objects], folders, policy, params["series"])
    result.update(kept=decision["kept"], deleted=decision["deleted"], ignored=decision["ignored"],
                  reasons=decision["reasons"])
    doomed = expand_deleted(client, bucket, decision["deleted"])
    result["deleted_objects"] = doomed
    if module._diff:
        before = sorted(decision["kept"] + decision["deleted"])
        result["diff"] = dict(before_header=s3_url(bucket, prefix), after_header=s3_url(bucket, prefix),
                              before="".join(k + "\n" for k in before),
                              after="".join(k + "\n" for k in sorted(decision["kept"])))
    if params["delete_old_versions"]:
        result["deleted_versions"] = []
    if not doomed:
        return []

    result["changed"] = True
    if module.check_mode:
        if params["delete_old_versions"]:
            result["deleted_versions"] = [
                dict(key=v["Key"], version_id=v["VersionId"], delete_marker=v["DeleteMarker"])
                for v in list_versions(client, bucket, prefix, keys=set(doomed)) if not v["IsLatest"]]
        return []

    done, errors = delete_batch(client, bucket, [dict(Key=key) for key in doomed])
    done_keys = set(obj["Key"] for obj in done)
    if params["delete_old_versions"] and done_keys:
        versions = list_versions(client, bucket, prefix, keys=done_keys)
        purged, version_errors = delete_batch(client, bucket, versions)
        markers = set((v["Key"], v["VersionId"]) for v in versions if v["DeleteMarker"])
        result["deleted_versions"] = [
            dict(key=v["Key"], version_id=v.get("VersionId"), delete_marker=(v["Key"], v.get("VersionId")) in markers)
            for v in purged]
        errors.extend(version_errors)
    if errors:
        result["changed"] = bool(done_keys)
        failed = set(err["key"] for err in errors)
        result["deleted_objects"] = [key for key in doomed if key not in failed]
        result["errors"] = errors
    return errors


def main():
    module = DRModule(argument_spec=argument_spec(), supports_check_mode=True, **s3_module_kwargs())
    started = time.monotonic()
    result = dict(changed=False, prefix=normalize_prefix(module.params["prefix"]))
    try:
        validate_policy(module.params["keep_last"], module.params["keep_daily"], module.params["keep_weekly"],
                        module.params["keep_monthly"])
    except PolicyError as exc:
        module.fail_json(msg=str(exc), **result)
    ensure_boto3(module)
    client = get_s3_client(module)
    where = s3_url(module.params["bucket"], result["prefix"])
    errors = []
    try:
        errors = run(module, client, result)
    except (ClientError, BotoCoreError, Boto3Error) as exc:
        result["duration"] = round(time.monotonic() - started, 3)
        fail_json_aws(module, exc, msg="rotation of %s failed" % where, **result)
    result["duration"] = round(time.monotonic() - started, 3)
    if errors:
        first = errors[0]
        module.fail_json(msg="%d deletion(s) failed in %s (first: %s: %s: %s)" % (
            len(errors), where, first["key"], first["code"], first["message"]), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
