#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pg_globals
short_description: Back up and replay the cluster roles and tablespaces a database uses
version_added: 0.2.0
description:
  - A database dump names roles (owners, grantees, row-level security policies, C(IN DATABASE) settings) and
    tablespaces that belong to the cluster, not to the database; on a fresh server its load fails at the first
    one missing. This module keeps them as an artifact of their own and creates them again before a restore.
  - O(state=dumped) writes C(globals_<YYYYMMDD>_<HHMMSS>.sql) in O(dest), with C(.md5)/C(.sha256) sidecars and a
    JSON manifest, atomically like M(atlasia.dr.pg_dump_backup). It holds the roles O(db) uses - its owner,
    every role the catalog records for the database or its objects (owners, grantees, policy roles), the roles
    with C(IN DATABASE) settings, the roles they are members of and their members - with their attributes,
    password hashes (when O(login_user) may read C(pg_authid), that is a superuser; otherwise without them and
    RV(passwords=false)), role-wide settings, comments and memberships, and the tablespaces the database uses.
  - The file is a C(psql) script in which every item is created only when missing, so the manual path is
    C(psql -X -v ON_ERROR_STOP=1 -d postgres -f globals_<timestamp>.sql).
  - O(state=restored) replays such a file. It creates the missing roles, memberships and tablespaces and never
    changes an existing role (not its password, not its attributes - above all not those of the restoring
    superuser) nor an existing tablespace; it reports what it created and what already existed.
author:
  - atlasia DevOps team (@atlasia-devops)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - atlasia.dr.postgres
attributes:
  check_mode:
    support: full
    details: O(state=dumped) reports the path it would write; O(state=restored) reports what it would create.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  state:
    description:
      - V(dumped) writes the globals of O(db) into O(dest); V(restored) replays O(src).
    type: str
    required: true
    choices: [dumped, restored]
  dest:
    description:
      - Directory receiving the artifact (created with mode 0700 when missing). Required with O(state=dumped).
    type: path
  timestamp:
    description:
      - Timestamp to name the file with, C(YYYYMMDD_HHMMSS) in UTC (the backup set's). Defaults to now.
    type: str
  mode:
    description:
      - Permissions of the artifact (it holds password hashes).
    type: raw
    default: '0600'
  src:
    description:
      - Globals script written by O(state=dumped). Required with O(state=restored).
    type: path
  maintenance_db:
    description:
      - Database to connect to for the replay (O(db) is only reported then; it may not exist yet).
    type: str
    default: postgres
  require_checksum:
    description:
      - Refuse a O(src) that has no C(.md5) or C(.sha256) sidecar (with O(state=restored)).
    type: bool
    default: false
notes:
  - The replay needs a superuser (creating roles with their password hashes, and superuser roles).
  - A tablespace is created with its original location, which must exist on the server, be empty and belong
    to the PostgreSQL system user; otherwise the replay fails and says so.
seealso:
  - module: atlasia.dr.pg_dump_backup
  - module: atlasia.dr.pg_restore_db
"""

EXAMPLES = r"""
- name: Write the cluster globals of the production database beside its dump
  atlasia.dr.pg_globals:
    state: dumped
    db: aiteam_prod
    container: aiteam_db_prod
    login_user: postgres
    dest: /srv/atlasia/backups/daily
    timestamp: "{{ backup_timestamp }}"

- name: Create the missing roles and tablespaces on a fresh server, before restoring the database
  atlasia.dr.pg_globals:
    state: restored
    src: /srv/atlasia/backups/daily/globals_20261126_020000.sql
    db: aiteam_prod
    login_host: 127.0.0.1
    login_password: "{{ vault_postgres_password }}"
  register: globals

- name: Say what was created
  ansible.builtin.debug:
    msg: "created roles {{ globals.created.roles }}, tablespaces {{ globals.created.tablespaces }}"
"""

RETURN = r"""
path:
  description: Path of the artifact written (O(state=dumped)).
  returned: state=dumped
  type: str
  sample: /srv/atlasia/backups/daily/globals_20261126_020000.sql
manifest:
  description: Path of its JSON manifest.
  returned: state=dumped
  type: str
  sample: /srv/atlasia/backups/daily/globals_20261126_020000.json
manifest_data:
  description: Content of the manifest.
  returned: state=dumped and not check mode
  type: dict
size:
  description: Size of the artifact in bytes.
  returned: state=dumped
  type: int
  sample: 2048
sha256:
  description: SHA-256 of the artifact.
  returned: state=dumped and not check mode
  type: str
md5:
  description: MD5 of the artifact.
  returned: state=dumped and not check mode
  type: str
duration:
  description: Seconds the task took.
  returned: always
  type: float
roles:
  description: Roles written (O(state=dumped)) or held by the script (O(state=restored)).
  returned: success
  type: list
  elements: str
  sample: [gis_owner, gis_reader, gis_app]
tablespaces:
  description: Tablespaces written or held by the script.
  returned: success
  type: list
  elements: str
  sample: []
passwords:
  description: Whether the role definitions carry their password hashes.
  returned: success
  type: bool
created:
  description:
    - What the replay created (in check mode, would create) - C(roles), C(memberships) (pairs C([role, member]))
      and C(tablespaces).
  returned: state=restored
  type: dict
  sample: {"roles": ["gis_owner"], "memberships": [["gis_reader", "gis_app"]], "tablespaces": []}
existing:
  description: Roles and tablespaces of the script that already existed and were left exactly as they were.
  returned: state=restored
  type: dict
  sample: {"roles": ["postgres"], "tablespaces": []}
"""

import os
import time

from ansible_collections.atlasia.dr.plugins.module_utils import checksum, naming, pgglobals
from ansible_collections.atlasia.dr.plugins.module_utils.common import DRModule
from ansible_collections.atlasia.dr.plugins.module_utils.postgres import (
    PostgresClient,
    PostgresError,
    fail_postgres,
    postgres_argument_spec,
)


def _mode(value):
    return value if isinstance(value, int) else int(str(value), 8)


def dumped(module, client):
    p = module.params
    try:
        moment = naming.parse_timestamp(p["timestamp"]) if p["timestamp"] else naming.utc_now()
        mode = _mode(p["mode"])
    except ValueError as exc:
        module.fail_json(msg="invalid timestamp or mode: %s" % exc)
    if module.check_mode:
        stem = naming.backup_stem(pgglobals.PREFIX, moment)
        return dict(changed=True, path=os.path.join(p["dest"], naming.backup_name(pgglobals.PREFIX, moment,
                                                                                  pgglobals.EXTENSION)),
                    manifest=os.path.join(p["dest"], naming.manifest_name(stem)), size=0)
    try:
        result = pgglobals.write_artifact(client, p["db"], p["dest"], naming.format_timestamp(moment), mode)
    except OSError as exc:
        module.fail_json(msg="the globals of %s were not written: %s" % (p["db"], exc),
                         error_kind="disk_full" if exc.errno == 28 else "io")
    result["changed"] = True
    return result


def restored(module, client):
    p = module.params
    src = p["src"]
    try:
        checksum.verify_sidecars(src, required=p["require_checksum"])
        summary = pgglobals.read_summary(src)
    except (checksum.ChecksumError, ValueError, OSError) as exc:
        module.fail_json(msg="globals refused, nothing was changed: %s" % exc, error_kind="bad_backup")
    outcome = pgglobals.replay(client, src, p["maintenance_db"], check_mode=module.check_mode)
    changed = any(outcome["created"].values())
    return dict(changed=changed, created=outcome["created"], existing=outcome["existing"], roles=summary["roles"],
                tablespaces=summary["tablespaces"], passwords=summary.get("passwords", True))


def main():
    argument_spec = postgres_argument_spec()
    argument_spec.update(
        state=dict(type="str", required=True, choices=["dumped", "restored"]),
        dest=dict(type="path"),
        timestamp=dict(type="str"),
        mode=dict(type="raw", default="0600"),
        src=dict(type="path"),
        maintenance_db=dict(type="str", default="postgres"),
        require_checksum=dict(type="bool", default=False),
    )
    module = DRModule(argument_spec=argument_spec, supports_check_mode=True,
                      required_if=[("state", "dumped", ["dest"]), ("state", "restored", ["src"])])
    t0 = time.time()
    client = PostgresClient(module)
    try:
        result = dumped(module, client) if module.params["state"] == "dumped" else restored(module, client)
    except PostgresError as exc:
        what = "dump" if module.params["state"] == "dumped" else "replay"
        fail_postgres(module, exc, prefix="%s of the cluster globals of %s failed: " % (what, module.params["db"]))
    result["duration"] = round(time.time() - t0, 3)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
