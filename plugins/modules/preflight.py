#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: preflight
short_description: Check every dependency of a backup or restore at once, and say how to fix what is missing
version_added: 0.2.0
description:
  - Runs every check it is given, whatever the others answer, and returns one table of what is ready and what
    is not, with the fix for each; then fails when one is not ready (O(fail_on_problems)).
  - C(python) and C(tools) on the host; the database login (through the container when O(postgres.container) is
    set); the Vault token (Vault answers, unsealed, raft storage, the token may read snapshots); the S3 bucket and
    credentials (the bucket answers, keys under O(s3_prefix) can be listed, and a probe object can be written
    with the server-side encryption the backups use, then deleted); the encryption key (given where required,
    by the encryption or by the file repository, and the key the newest set was made with, checked against that
    set's authentication code); free space and write access of folders.
  - Reads only, apart from the S3 probe object (not written in check mode).
author:
  - atlasia DevOps team (@atlasia-devops)
extends_documentation_fragment:
  - atlasia.dr.connections
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: The same checks, without the S3 write probe.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  python:
    description: Python modules the host needs (imported here, with the interpreter Ansible uses on the host).
    type: list
    elements: str
    default: []
  tools:
    description: Programs the host needs on its C(PATH).
    type: list
    elements: str
    default: []
  s3_prefix:
    description: Key prefix of the backups in the bucket; the probe object is written beneath it.
    type: str
    default: ''
  s3_encryption:
    description: Server-side encryption the uploads ask for (as C(dr_s3_encryption)); the probe uses it too.
    type: str
    default: none
    choices: [none, AES256, 'aws:kms']
  s3_write_probe:
    description: Write and delete a probe object (an upload needs C(s3:PutObject), rotation C(s3:DeleteObject)).
    type: bool
    default: true
  encryption_key:
    description: The environment's passphrase (C(dr_encryption_key)), checked against the newest set under O(root).
    type: str
  encryption_required:
    description: The environment encrypts its backups, so a key must be given.
    type: bool
    default: false
  file_repository:
    description:
      - The file data goes to the environment's restic repository (C(dr_backup_files_store=repository) with file
        sets), whose password is derived from the key, so a key must be given. Give C(restic) in O(tools) too.
    type: bool
    default: false
  root:
    description: Backup root (C(daily), C(weekly), C(monthly)) whose newest set the key is checked against.
    type: path
  paths:
    description:
      - Folders that need free space or write access; a folder that does not exist yet is judged by its nearest
        parent.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: The folder.
        type: path
        required: true
      min_free_bytes:
        description: Free space the filesystem of O(paths[].path) must have.
        type: int
        default: 0
      writable:
        description: The folder (or its nearest existing parent) must be writable by the user the module runs as.
        type: bool
        default: true
  fail_on_problems:
    description: Fail the task when a check is not ready (after running all of them).
    type: bool
    default: true
notes:
  - The passwords, the token and the secret key in O(postgres), O(vault) and O(s3) are never shown or returned.
seealso:
  - module: atlasia.dr.pg_dump_backup
  - module: atlasia.dr.vault_snapshot
  - module: atlasia.dr.s3_backup_transfer
"""

EXAMPLES = r"""
- name: Everything a backup of prod needs, checked at once
  atlasia.dr.preflight:
    python: [boto3, cryptography]
    tools: [docker, gzip, zstd]
    postgres:
      db: aiteam_prod
      container: aiteam_db_prod
      login_user: aiteam_prod_user
      login_password: "{{ vault_db_password }}"
    vault:
      url: http://127.0.0.1:8200
      token: "{{ vault_dr_vault_token }}"
    s3:
      bucket: atlasia-backups
      access_key: "{{ vault_dr_s3_access_key }}"
      secret_key: "{{ vault_dr_s3_secret_key }}"
    s3_prefix: atlasia/prod/
    s3_encryption: AES256
    encryption_key: "{{ vault_dr_encryption_key }}"
    encryption_required: true
    root: /srv/atlasia/backups
    paths:
      - path: /srv/atlasia/backups
        min_free_bytes: 10737418240
  register: preflight
"""

RETURN = r"""
ready:
  description: Whether every check is ready.
  returned: always
  type: bool
  sample: false
checks:
  description: One entry per check, in the order they ran.
  returned: always
  type: list
  elements: dict
  contains:
    check:
      description: What was checked (C(python), C(tool), C(postgres), C(vault), C(s3), C(key), C(space)).
      type: str
    target:
      description: What it was checked on (a module, a program, a database, a URL, a bucket, a folder).
      type: str
    ready:
      description: Whether it is ready.
      type: bool
    detail:
      description: What was found.
      type: str
    fix:
      description: What to do when it is not ready (empty when ready).
      type: str
  sample:
    - {"check": "s3", "target": "s3://atlasia-backups/atlasia/prod/", "ready": false,
       "detail": "AccessDenied on PutObject", "fix": "grant s3:PutObject and s3:DeleteObject on the prefix"}
table:
  description: The checks as a Markdown table (what the preflight playbook prints).
  returned: always
  type: str
problems:
  description: Number of checks that are not ready.
  returned: always
  type: int
  sample: 1
duration:
  description: Seconds the checks took.
  returned: always
  type: float
  sample: 1.7
"""

import importlib
import os
import platform
import time

from ansible_collections.atlasia.dr.plugins.module_utils import backupset, crypto, s3, setauth
from ansible_collections.atlasia.dr.plugins.module_utils.common import DRModule
from ansible_collections.atlasia.dr.plugins.module_utils.postgres import (
    PostgresClient,
    PostgresError,
    postgres_argument_spec,
)
from ansible_collections.atlasia.dr.plugins.module_utils.vault import (
    VAULT_MUTUALLY_EXCLUSIVE,
    VaultClient,
    VaultError,
    obtain_token,
    vault_argument_spec,
)

#: the Debian package that provides a program, named in the fix
PACKAGES = {
    "pg_dump": "postgresql-client-15", "pg_restore": "postgresql-client-15", "psql": "postgresql-client-15",
    "docker": "docker.io", "gzip": "gzip", "zstd": "zstd", "pigz": "pigz", "tar": "tar",
    "pgbackrest": "pgbackrest", "restic": "restic", "rsync": "rsync",
}
PYTHON_PACKAGES = {"boto3": "python3-boto3", "botocore": "python3-botocore", "cryptography": "python3-cryptography",
                   "psycopg2": "python3-psycopg2", "yaml": "python3-yaml"}
VAULT_SNAPSHOT_PATH = "sys/storage/raft/snapshot"


class _Checks(object):
    def __init__(self):
        self.rows = []

    def add(self, check, target, ready, detail, fix=""):
        self.rows.append(dict(check=check, target=target, ready=bool(ready), detail=detail, fix="" if ready else fix))

    def table(self):
        lines = ["| Check | On | Ready | Found | Fix |", "|---|---|---|---|---|"]
        for row in self.rows:
            cells = [row["check"], row["target"], "yes" if row["ready"] else "**NO**", row["detail"], row["fix"]]
            lines.append("| %s |" % " | ".join(str(cell).replace("|", "\\|").replace("\n", " ") for cell in cells))
        return "\n".join(lines)


def check_python(module, checks):
    for name in module.params["python"]:
        try:
            importlib.import_module(name)
            checks.add("python", name, True, "importable by %s" % platform.python_version())
        except ImportError as exc:
            checks.add("python", name, False, "cannot be imported: %s" % exc,
                       "apt-get install %s (or pip install %s for the interpreter Ansible uses on %s)" % (
                           PYTHON_PACKAGES.get(name, "python3-" + name), name, platform.node()))


def check_tools(module, checks):
    for name in module.params["tools"]:
        path = module.get_bin_path(name)
        if path:
            checks.add("tool", name, True, path)
        else:
            checks.add("tool", name, False, "not on PATH",
                       "apt-get install %s on %s" % (PACKAGES.get(name, name), platform.node()))


def check_postgres(module, checks):
    params = module.params["postgres"]
    target = "database %s%s" % (params["db"], " in container %s" % params["container"] if params.get("container") else "")
    try:
        client = PostgresClient(module, params=params)
        user, version = client.query("SELECT current_user, current_setting('server_version')", db=params["db"])[0]
        checks.add("postgres", target, True, "logged in as %s, PostgreSQL %s" % (user, version))
    except PostgresError as exc:
        fixes = dict(auth="check dr_db_user and dr_db_password (the database login)",
                     unreachable="start PostgreSQL, or check dr_db_host / dr_db_port / dr_db_socket",
                     no_database="check dr_db_name: the database does not exist on this server",
                     no_container="start the database container, or check dr_db_container (docker ps -a)")
        checks.add("postgres", target, False, str(exc).splitlines()[0][:300],
                   fixes.get(exc.kind, "read the error; check the dr_db_* variables"))


def check_vault(module, checks):
    params = module.params["vault"]
    target = params.get("url") or "Vault"
    try:
        client = VaultClient.from_params(params)
        token = obtain_token(params, client)
        if not token:
            checks.add("vault", target, False, "no token",
                       "set dr_vault_token, or dr_vault_role_id and dr_vault_secret_id (in the environment's vault.yml)")
            return
        client.token = token
        status = client.preflight()
        allowed = client.check_capabilities(VAULT_SNAPSHOT_PATH, ["read"])
        detail = "unsealed, raft storage, version %s" % status.get("version", "?")
        if allowed is None:
            detail += "; the token may not list its own capabilities (not judged)"
        checks.add("vault", target, True, detail)
    except VaultError as exc:
        fixes = dict(sealed="unseal Vault (playbooks/vault_recover.yml -e mode=unseal, or bao operator unseal)",
                     permission_denied="give the token read on sys/storage/raft/snapshot (an operator policy)",
                     invalid_token="the token is unknown or expired: set a valid dr_vault_token",
                     unreachable="start Vault, or check dr_vault_url")
        fix = fixes.get(exc.kind, "read the error; check dr_vault_url and dr_vault_token")
        checks.add("vault", target, False, str(exc)[:300], fix)


class _S3SetupError(Exception):
    """The S3 client could not be made (reported as a check, not as the module's failure)."""


class _Shim(object):
    """What module_utils.s3 expects of a module, for a connection given as a sub-option."""

    def __init__(self, module, params):
        self.params = params
        self._module = module

    def fail_json(self, **kwargs):
        raise _S3SetupError(kwargs.get("msg"))


def check_s3(module, checks):
    params = module.params["s3"]
    prefix = module.params["s3_prefix"]
    target = "s3://%s/%s" % (params.get("bucket"), prefix)
    if not s3.HAS_BOTO3:
        checks.add("s3", target, False, "boto3 cannot be imported on this host",
                   "apt-get install python3-boto3 (or pip install boto3)")
        return
    step = "HeadBucket"
    try:
        client = s3.get_s3_client(_Shim(module, params))
        client.head_bucket(Bucket=params["bucket"])
        step = "ListObjectsV2"
        listed = client.list_objects_v2(Bucket=params["bucket"], Prefix=prefix, MaxKeys=1)
        detail = "bucket answers, %s under the prefix" % ("objects" if listed.get("KeyCount") else "no object yet")
        if module.params["s3_write_probe"] and not module.check_mode:
            step = "PutObject"
            key = "%s.atlasia-dr-preflight-%s-%d" % (prefix, platform.node(), os.getpid())
            extra = {}
            if module.params["s3_encryption"] != "none":
                extra["ServerSideEncryption"] = module.params["s3_encryption"]
            client.put_object(Bucket=params["bucket"], Key=key, Body=b"atlasia.dr preflight\n", **extra)
            step = "DeleteObject"
            client.delete_object(Bucket=params["bucket"], Key=key)
            detail += "; a probe object was written%s and deleted" % (
                " with %s server-side encryption" % module.params["s3_encryption"] if extra else "")
        checks.add("s3", target, True, detail)
    except Exception as exc:  # botocore raises many unrelated classes; each is reported, none is fatal here
        code, hint = s3.describe_error(exc, params.get("bucket"), params.get("endpoint_url"))
        fix = hint or "check dr_s3_bucket, dr_s3_endpoint_url and the S3 credentials"
        if step == "PutObject" and module.params["s3_encryption"] != "none" and code in (
                "InternalError", "NotImplemented", "InvalidArgument", "InvalidRequest", "InvalidEncryptionAlgorithmError"):
            fix = ("the server refused server-side encryption %s: set dr_s3_encryption: none if it does not support it "
                   "(with dr_encryption_key the backups are encrypted before they leave the host anyway)"
                   % module.params["s3_encryption"])
        elif step in ("PutObject", "DeleteObject") and code in ("AccessDenied", "Forbidden"):
            fix = "grant s3:PutObject and s3:DeleteObject on %s (uploads and rotation need them)" % target
        checks.add("s3", target, False, "%s on %s: %s" % (code, step, str(exc).splitlines()[0][:200]), fix)


def check_key(module, checks):
    key = module.params["encryption_key"]
    root = module.params["root"]
    if not key:
        if module.params["encryption_required"]:
            checks.add("key", "dr_encryption_key", False, "no key given although this environment encrypts its backups",
                       "set dr_encryption_key (in the environment's ansible-vault file)")
        elif module.params["file_repository"]:
            checks.add("key", "dr_encryption_key", False,
                       "no key given although the file sets go to the restic repository, whose password is derived "
                       "from it (dr_backup_files_store=repository, the default)",
                       "set dr_encryption_key (in the environment's ansible-vault file), or dr_backup_files_store: "
                       "archive to keep the file data as tarballs in every set")
        return
    kid = crypto.key_id(key).hex()
    manifests = backupset.discover([os.path.join(root, tier) for tier in backupset.TIERS]) if root else []
    for path in manifests:
        try:
            data = backupset.load(path)
        except (backupset.SetError, OSError, ValueError):
            continue
        if not isinstance(data.get("auth"), dict):
            continue
        try:
            setauth.check(data, key, kid)
            checks.add("key", "dr_encryption_key", True, "key id %s; the newest authenticated set (%s) was made with it"
                       % (kid, data.get("set_id")))
        except setauth.AuthError as exc:
            checks.add("key", "dr_encryption_key", False, str(exc)[:300],
                       "give the key the sets were made with; after a key rotation (playbooks/rekey.yml) the new one"
                       if exc.kind == "key" else "the newest set's manifest was changed: run playbooks/verify.yml")
        return
    checks.add("key", "dr_encryption_key", True, "key id %s; no authenticated set yet to check it against" % kid)


def check_paths(module, checks):
    for entry in module.params["paths"]:
        path = entry.get("path")
        need = int(entry.get("min_free_bytes") or 0)
        probe = os.path.abspath(path)
        while not os.path.isdir(probe) and os.path.dirname(probe) != probe:
            probe = os.path.dirname(probe)
        free, total = backupset.disk_space(probe)
        problems = []
        if entry.get("writable", True) and not os.access(probe, os.W_OK | os.X_OK):
            problems.append("%s is not writable by %s" % (probe, os.geteuid()))
        if free < need:
            problems.append("%.1f GiB free, %.1f GiB needed" % (free / 1024.0 ** 3, need / 1024.0 ** 3))
        detail = "; ".join(problems) or "%.1f GiB free%s" % (free / 1024.0 ** 3, " (needs %.1f GiB)" % (
            need / 1024.0 ** 3) if need else "")
        checks.add("space", path, not problems, detail,
                   "free space on the filesystem of %s or grow it; fix its owner or mode" % path)


def main():
    module = DRModule(
        argument_spec=dict(
            python=dict(type="list", elements="str", default=[]),
            tools=dict(type="list", elements="str", default=[]),
            postgres=dict(type="dict", options=postgres_argument_spec()),
            vault=dict(type="dict", options=vault_argument_spec(), mutually_exclusive=VAULT_MUTUALLY_EXCLUSIVE),
            s3=dict(type="dict", options=s3.s3_argument_spec(), **s3.s3_module_kwargs()),
            s3_prefix=dict(type="str", default=""),
            s3_encryption=dict(type="str", default="none", choices=["none", "AES256", "aws:kms"]),
            s3_write_probe=dict(type="bool", default=True),
            encryption_key=dict(type="str", no_log=True),
            encryption_required=dict(type="bool", default=False),
            file_repository=dict(type="bool", default=False),
            root=dict(type="path"),
            paths=dict(type="list", elements="dict", default=[], options=dict(
                path=dict(type="path", required=True), min_free_bytes=dict(type="int", default=0),
                writable=dict(type="bool", default=True))),
            fail_on_problems=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    t0 = time.time()
    checks = _Checks()
    check_python(module, checks)
    check_tools(module, checks)
    if module.params["postgres"]:
        check_postgres(module, checks)
    if module.params["vault"]:
        check_vault(module, checks)
    if module.params["s3"]:
        check_s3(module, checks)
    check_key(module, checks)
    check_paths(module, checks)
    problems = [row for row in checks.rows if not row["ready"]]
    result = dict(changed=False, ready=not problems, checks=checks.rows, table=checks.table(), problems=len(problems),
                  duration=round(time.time() - t0, 3))
    if problems and module.params["fail_on_problems"]:
        module.fail_json(msg="%d of %d preflight checks are not ready: %s" % (
            len(problems), len(checks.rows), "; ".join("%s %s: %s -> %s" % (
                row["check"], row["target"], row["detail"], row["fix"]) for row in problems)), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
