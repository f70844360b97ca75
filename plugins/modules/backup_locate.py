#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: backup_locate
short_description: Turn a backup= value into a verified, authenticated, decrypted backup set ready to restore
version_added: 0.2.0
description:
  - The one way every restore path (restore, restore test, Vault recovery, row recovery, rebuild) goes from what
    the operator typed to the files it restores. Nothing is restored here; a refused set leaves everything as it was.
  - Accepted forms of O(backup) - V(latest) (the newest set that can be used, local copies first, then S3); a set
    id C(YYYYMMDD_HHMMSS) (local, else S3); the absolute path of a set manifest C(set_YYYYMMDD_HHMMSS.json) or of a
    folder of sets; the absolute path of a single database dump or Vault snapshot (or its C(.enc) form); an
    C(s3://bucket/key) URL of a set manifest or of a single dump or snapshot.
  - Anything else fails with the accepted forms and the newest sets found, never a fallback.
  - Every candidate set is checked before it is used, the cheap checks first, before anything is downloaded in
    bulk or decrypted. It must belong to O(environment) and O(database) (unless O(allow_foreign_set)); with
    O(encryption_key), its manifest must carry a valid HMAC-SHA256 under a key derived from it (unless
    O(allow_unauthenticated_set) and the set carries no MAC at all); with O(encryption_required), every artifact
    must be encrypted under that key; every artifact must match its sidecars and the set manifest.
  - With O(backup=latest) a set that fails a check is passed over, and the newer sets passed over are returned with
    the reason (RV(passed_over)). A set named explicitly (id, path, URL) that fails a check is an error.
  - A set from S3 is downloaded into O(staging_dir)/<set id> (each object verified against its checksums before it
    takes its final name). Encrypted artifacts are decrypted into the private folder O(staging_dir)/<set id>.plain
    (mode 0700), which the caller removes once done (RV(plain_dir)).
  - Run through the collection's action plugin, a long download or decryption prints a progress line every
    C(dr_progress_interval) seconds, such as C(1.2 GiB of 3.4 GiB downloaded, 85 MiB/s, about 26 s left) after
    the task's name and host, then the same with C(decrypted); the bytes are those of the objects downloaded
    against their size, then those of the encrypted artifacts read by the decryption against their size. The checks of a local set are
    not measured.
author:
  - atlasia DevOps team (@atlasia-devops)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - atlasia.dr.s3
  - atlasia.dr.progress
attributes:
  check_mode:
    support: full
    details:
      - Local sets are checked completely (reading only). Sets in S3 are checked from their manifest; nothing is
        downloaded and nothing is decrypted; RV(paths) name where the files would be.
  diff_mode:
    support: none
  platform:
    platforms: posix
requirements:
  - boto3 (with O(s3=true))
  - cryptography (for encrypted sets)
options:
  backup:
    description: What to restore, in one of the accepted forms above.
    type: str
    default: latest
  root:
    description: Backup root holding the C(daily), C(weekly) and C(monthly) tiers, searched for V(latest) and set ids.
    type: path
  staging_dir:
    description: Folder for sets downloaded from S3 and for decrypted copies (created with mode 0700).
    type: path
    required: true
  environment:
    description: Environment of the target; a set of another environment is refused unless O(allow_foreign_set).
    type: str
  database:
    description: Database of the target; a set of another database is refused unless O(allow_foreign_set).
    type: str
  encryption_key:
    description:
      - The environment's secret (the encryption passphrase). With it, sets must be authenticated and encrypted
        artifacts are decrypted.
    type: str
  encryption_required:
    description: Refuse any plaintext artifact (the environment encrypts its backups). Needs O(encryption_key).
    type: bool
    default: false
  allow_foreign_set:
    description: Accept a set of another environment or database (for example production's set into staging).
    type: bool
    default: false
  allow_unauthenticated_set:
    description:
      - Accept a set that carries no MAC (made before sets were authenticated) or a plaintext single dump while
        O(encryption_key) is set. A MAC that is present must still be valid; O(encryption_required) still applies.
    type: bool
    default: false
  components:
    description:
      - Components wanted (fetched, verified and decrypted); by default every component of the set.
    type: list
    elements: str
    choices: [database, globals, schema, vault, config, files, images]
  required_components:
    description: Components the set must hold; a set without one of them is an error (naming what it holds).
    type: list
    elements: str
    choices: [database, globals, schema, vault, config, files, images]
    default: []
  fall_back:
    description:
      - With O(backup=latest), pass over a set that fails a check and use the next older one (listed in
        RV(passed_over)). V(false) takes the newest set, its first copy (local, else S3), and fails when it does not
        pass (a restore test reports on the newest set as it lies, not on another copy or an older set).
    type: bool
    default: true
  decrypt:
    description: Decrypt the wanted encrypted artifacts into the staging folder.
    type: bool
    default: true
  s3:
    description: Also look for sets in S3 (O(bucket), O(prefix) and the connection options).
    type: bool
    default: false
  bucket:
    description: Bucket of the environment's sets (with O(s3=true)).
    type: str
    required: false
  prefix:
    description: Key prefix of the environment's sets in O(bucket).
    type: str
    default: ""
seealso:
  - module: atlasia.dr.backup_set
  - module: atlasia.dr.pg_restore_db
"""

EXAMPLES = r"""
- name: Find, verify and decrypt what the operator asked for
  atlasia.dr.backup_locate:
    backup: "{{ backup | default('latest') }}"
    root: /srv/atlasia/backups
    staging_dir: /srv/atlasia/backups/restore-staging
    environment: prod
    database: aiteam_prod
    encryption_key: "{{ dr_encryption_key }}"
    encryption_required: true
    required_components: [database]
    s3: true
    bucket: atlasia-backups
    prefix: atlasia-backups/
  register: located

- name: Restore its database dump
  atlasia.dr.pg_restore_db:
    src: "{{ located.paths.database[0] }}"
    db: aiteam_prod
"""

RETURN = r"""
set_id:
  description: Id of the set (C(YYYYMMDD_HHMMSS)), or the timestamp of a single dump, or null.
  returned: success
  type: str
  sample: "20261126_020000"
source:
  description: Where the set came from, V(local) (the tiers of O(root)), V(path) (a path given) or V(s3).
  returned: success
  type: str
  sample: local
location:
  description: The set manifest (or single dump) used, as a path or an s3:// URL.
  returned: success
  type: str
  sample: /srv/atlasia/backups/daily/set_20261126_020000.json
manifest:
  description: Path of the set manifest on this host, or null for a single dump.
  returned: success
  type: str
directory:
  description: Folder holding the set's files as checked (the tier folder, or the staging folder of a download).
  returned: success
  type: str
backup_set:
  description: Content of the set manifest (for a single dump, a set of one database artifact).
  returned: success
  type: dict
artifacts:
  description: The wanted artifacts, each with C(name), C(component), C(path) (its usable, plaintext form) and
    C(encrypted).
  returned: success
  type: list
  elements: dict
paths:
  description: Usable paths by component, a list for each (C(database), C(vault), C(files)...).
  returned: success
  type: dict
plain_dir:
  description: Private folder of the decrypted copies, to remove once the restore is done (null when nothing was decrypted).
  returned: success
  type: str
authenticated:
  description: Whether the set's MAC was checked and valid (a single encrypted dump counts, by the MACs of its encryption, age or the earlier AES-GCM format).
  returned: success
  type: bool
encrypted:
  description: Whether the wanted artifacts are encrypted.
  returned: success
  type: bool
error_kind:
  description:
    - On failure, whose fault it is - V(damaged) (an artifact is missing or altered), V(unauthentic) (no or a wrong
      MAC, plaintext where the environment encrypts), V(foreign) (another environment or database), V(key) (encrypted
      under another key, or no key given), V(unreadable), V(not_found), V(request) (the value of O(backup) or the
      settings), V(unavailable) (S3 or the disk could not be read).
  returned: failure
  type: str
  sample: damaged
passed_over:
  description: Newer sets passed over (with O(backup=latest)), each with C(set_id), C(where), C(reason) and C(kind).
  returned: always
  type: list
  elements: dict
sets_seen:
  description: The newest sets found (up to five), each with C(set_id) and C(where).
  returned: always
  type: list
  elements: dict
downloaded:
  description: S3 keys downloaded by this call.
  returned: success
  type: list
  elements: str
free_bytes:
  description: Free space on the filesystem of O(root) (else O(staging_dir)).
  returned: success
  type: int
database_properties:
  description:
    - Database-level properties (owner, encoding, locales, connection limit, comment, grants, settings) recorded
      with the set's database dump, for M(atlasia.dr.pg_restore_db)'s O(atlasia.dr.pg_restore_db#module:database_properties);
      null for a backup taken before they were recorded.
  returned: success
  type: dict
summary:
  description: One sentence saying which set is used, from where, and what was passed over.
  returned: success
  type: str
"""

import os
import types

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.atlasia.dr.plugins.module_utils import backupset, checksum, crypto, locate, naming, progress
from ansible_collections.atlasia.dr.plugins.module_utils.common import DRModule
from ansible_collections.atlasia.dr.plugins.module_utils.s3 import (
    Boto3Error,
    BotoCoreError,
    ClientError,
    get_s3_client,
    normalize_prefix,
    s3_argument_spec,
    s3_module_kwargs,
)
from ansible_collections.atlasia.dr.plugins.module_utils.s3_transfer import BackupTransfer, TransferError

COMPONENTS = ["database", "globals", "schema", "vault", "config", "files", "images"]


def argument_spec():
    spec = s3_argument_spec()
    spec["bucket"] = dict(type="str")
    spec.update(
        backup=dict(type="str", default="latest"),
        root=dict(type="path"),
        staging_dir=dict(type="path", required=True),
        environment=dict(type="str"),
        database=dict(type="str"),
        encryption_key=dict(type="str", no_log=True),
        encryption_required=dict(type="bool", default=False),
        allow_foreign_set=dict(type="bool", default=False),
        allow_unauthenticated_set=dict(type="bool", default=False),
        components=dict(type="list", elements="str", choices=COMPONENTS),
        required_components=dict(type="list", elements="str", choices=COMPONENTS, default=[]),
        fall_back=dict(type="bool", default=True),
        decrypt=dict(type="bool", default=True),
        s3=dict(type="bool", default=False),
        prefix=dict(type="str", default=""),
    )
    spec.update(progress.progress_argument_spec())
    return spec


def s3_transfer_function(module):
    """``transfer(mode, **params)`` over the S3 engine, or ``None`` without S3."""
    p = module.params
    if not p["s3"]:
        return None
    client = get_s3_client(module)

    def transfer(mode, bucket, key=None, prefix=None, dest=None, series=None):
        params = dict(bucket=bucket, mode="list" if mode == "list" else "download", key=key, prefix=prefix,
                      dest=dest, series=series, with_sidecars=True, overwrite="different", require_checksum=True,
                      src=None, srcs=None, metadata=None, part_size_mb=64, concurrency=4, verify="metadata",
                      storage_class="STANDARD", encryption="none", kms_key_id=None,
                      progress_file=p.get("progress_file"))
        engine = BackupTransfer(types.SimpleNamespace(params=params, check_mode=module.check_mode), client)
        if mode == "read":
            data = engine.get_small(key)
            if data is None:
                raise TransferError("s3://%s/%s does not exist" % (bucket, key))
            return dict(content=data.decode("utf-8", "replace"))
        if mode == "list":
            engine.listing()
        else:
            engine.download()
        return engine.result

    return transfer


def _artifacts(data, paths):
    rows = []
    for entry in data["artifacts"]:
        if entry["name"] in paths:
            rows.append(dict(name=entry["name"], component=entry.get("component"), path=paths[entry["name"]],
                             encrypted=entry["name"].endswith(crypto.EXTENSION)))
    return rows


def run(module):
    p = module.params
    if p["encryption_required"] and not p["encryption_key"]:
        module.fail_json(msg="this environment encrypts its backups (dr_encryption_enabled) but no key was given: "
                             "set dr_encryption_key (an Ansible Vault-encrypted variable). Nothing was changed.")
    if p["s3"] and not p["bucket"]:
        module.fail_json(msg="s3=true needs bucket (dr_s3_bucket)")
    policy = locate.Policy(key=p["encryption_key"], encryption_required=p["encryption_required"],
                           environment=p["environment"], database=p["database"],
                           allow_foreign=p["allow_foreign_set"], allow_unauthenticated=p["allow_unauthenticated_set"])
    roots = [os.path.join(p["root"], tier) for tier in backupset.TIERS] if p["root"] else []
    transfer = s3_transfer_function(module)
    locator = locate.Locator(policy, roots=roots, staging_dir=p["staging_dir"], transfer=transfer, bucket=p["bucket"],
                             prefix=normalize_prefix(p["prefix"]) if p["prefix"] else "",
                             components=p["components"], check_mode=module.check_mode, fall_back=p["fall_back"])
    try:
        spec = locate.parse(p["backup"])
    except locate.LocateError as exc:
        seen = locator.newest(locator.local_sets(), locator.s3_sets())
        module.fail_json(msg="%s. Accepted forms: %s. Found here: %s. Nothing was changed." % (
                         exc, locate.accepted_forms(), locator.describe_newest(seen)),
                         passed_over=[], sets_seen=seen, error_kind="request")
    try:
        path, data, source = locator.locate(spec)
    except locate.LocateError as exc:
        module.fail_json(msg="%s. Nothing was changed." % exc, passed_over=locator.passed_over, sets_seen=locator.seen,
                         error_kind=exc.kind)
    if data is None:  # a single dump
        name = os.path.basename(path.rstrip("/"))
        parsed = naming.parse_backup_name(name)
        data = dict(set_id=None, timestamp=parsed.timestamp.isoformat() if parsed else None, environment=None,
                    artifacts=[dict(name=name, component=locate.single_component(name))])
        set_id = naming.format_timestamp(parsed.timestamp) if parsed else None
        manifest = None
        authenticated = name.endswith(crypto.EXTENSION) and bool(p["encryption_key"])
    else:
        set_id = data["set_id"]
        manifest = path
        authenticated = bool(p["encryption_key"]) and bool(data.get("auth"))
    directory = os.path.dirname(path.rstrip("/"))
    held = sorted(set(e.get("component") for e in data["artifacts"] if e.get("component")))
    missing = [c for c in p["required_components"] if c not in held]
    if missing:
        module.fail_json(msg="set %s holds no %s artifact (it holds: %s). Nothing was changed." % (
            set_id or path, " or ".join(missing), ", ".join(held) or "nothing"), passed_over=locator.passed_over,
            sets_seen=locator.seen, error_kind="request")
    if p["decrypt"]:
        report = progress.Reporter.from_module(module, verb="decrypted")
        reads = None
        if report.enabled:
            reads = progress.FileReads([os.path.join(directory, e["name"]) for e in data["artifacts"]
                                        if locator._wanted(e) and e["name"].endswith(crypto.EXTENSION)])
            report.set_total(reads.total)
        with progress.Watch(report, reads):
            plain_dir, paths = locator.stage(directory, data)
    else:
        plain_dir = None
        paths = dict((e["name"], os.path.join(directory, e["name"])) for e in data["artifacts"] if locator._wanted(e))
    artifacts = _artifacts(data, paths)
    by_component = {}
    for row in artifacts:
        by_component.setdefault(row["component"] or "other", []).append(row["path"])
    location = path
    if source == "s3":
        if spec.kind in ("s3_manifest", "s3_dump"):
            location = spec.text
        else:
            location = "s3://%s/%s%s" % (p["bucket"], locator.prefix, os.path.basename(path))
    kind = "set" if manifest else "dump"
    summary = "Using %s %s from %s (%s)." % (kind, set_id or os.path.basename(path), source, location)
    if locator.passed_over:
        summary += " Passed over: " + locator.describe_passed_over() + "."
    elif spec.kind == "latest":
        summary += " It is the newest set."
    return dict(changed=bool(locator.downloaded or (plain_dir and not module.check_mode)), set_id=set_id,
                source=source, location=location, manifest=manifest, directory=directory, backup_set=data,
                artifacts=artifacts, paths=by_component, plain_dir=plain_dir, authenticated=authenticated,
                encrypted=any(row["encrypted"] for row in artifacts), passed_over=locator.passed_over,
                sets_seen=locator.seen, downloaded=locator.downloaded, summary=summary,
                database_properties=locate.database_properties(data, directory),
                free_bytes=backupset.disk_space(p["root"] or p["staging_dir"])[0])


def main():
    kwargs = s3_module_kwargs()
    module = DRModule(argument_spec=argument_spec(), supports_check_mode=True, **kwargs)
    if module.params["encryption_key"] and not crypto.HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib("cryptography"), exception=str(crypto.CRYPTOGRAPHY_IMPORT_ERROR))
    try:
        module.exit_json(**run(module))
    except locate.LocateError as exc:
        module.fail_json(msg="%s. Nothing was changed." % exc, passed_over=[], sets_seen=[], error_kind=exc.kind)
    except (crypto.CryptoError, checksum.ChecksumError) as exc:
        module.fail_json(msg="%s. Nothing was changed." % exc, passed_over=[], sets_seen=[], error_kind="damaged")
    except backupset.SetError as exc:
        module.fail_json(msg="%s. Nothing was changed." % exc, passed_over=[], sets_seen=[], error_kind="unreadable")
    except TransferError as exc:
        kind = "damaged" if "corrupt" in str(exc) or "damaged" in str(exc) else "unavailable"
        module.fail_json(msg="%s. Nothing was changed." % exc, passed_over=[], sets_seen=[], error_kind=kind)
    except (ClientError, BotoCoreError, Boto3Error) as exc:
        module.fail_json(msg="S3 failed while looking for the backup set: %s. Nothing was changed." % exc,
                         passed_over=[], sets_seen=[], error_kind="unavailable")
    except OSError as exc:
        module.fail_json(msg="cannot read or stage the backup set: %s. Nothing was changed." % exc,
                         passed_over=[], sets_seen=[], error_kind="unavailable")


if __name__ == "__main__":
    main()
