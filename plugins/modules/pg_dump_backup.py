#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pg_dump_backup
short_description: Back up one PostgreSQL database to a verified, checksummed file
version_added: 0.1.0
description:
  - Streams C(pg_dump) of one database through a compressor into a file named
    C(<prefix>_<YYYYMMDD>_<HHMMSS>.<ext>) (UTC), with constant memory whatever the database size.
  - Every stage of the pipeline is checked; a C(pg_dump) that dies mid-stream fails the task even when the
    compressor closed cleanly.
  - The file is written under a hidden temporary name and verified while it is written, on the very bytes
    written (full decompression test and pg_dump's completion trailer for plain dumps, C(pg_restore) reading
    the whole archive for the custom format), so the check costs no second pass; the file is then read back
    once and must have the SHA-256 of those bytes, fsynced, and only then renamed. A directory dump is read
    whole by C(pg_restore) while its checksums are computed. A killed run never leaves a file with a final
    name.
  - Beside each backup it writes C(<file>.md5) (C(md5sum -c) format), C(<file>.sha256) and a JSON manifest
    C(<prefix>_<YYYYMMDD>_<HHMMSS>.json) (database, server version, format, compression, size, checksums,
    start and end time, duration, tables with row estimates, and the database-level properties C(pg_dump)
    leaves out under C(database_properties) - owner, encoding, locale provider and locales, tablespace,
    connection limit, comment, grants on the database, C(ALTER DATABASE ... SET) and C(ALTER ROLE ... IN
    DATABASE ... SET) settings - which M(atlasia.dr.pg_restore_db) gives the restored database).
  - A plain gzip backup stays usable with the usual manual commands (C(gunzip -t), C(zcat ... | psql)).
author:
  - atlasia DevOps team (@atlasia-devops)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - atlasia.dr.postgres
  - atlasia.dr.compression
  - atlasia.dr.progress
attributes:
  check_mode:
    support: full
    details: Connects to read the server version and reports the path it would write; writes nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  dest:
    description:
      - Directory receiving the backup; created (mode 0700) when missing.
    type: path
    required: true
  prefix:
    description:
      - First part of the file name. Defaults to V(backup), or V(schema) with O(kind=schema).
      - The plan also uses V(prerestore) and V(prerollback).
    type: str
  kind:
    description:
      - V(full) dumps schema and data; V(schema) dumps the schema only (documentation copies).
    type: str
    default: full
    choices: [full, schema]
  format:
    description:
      - V(plain) is SQL text (restorable with C(psql)); V(custom) is pg_dump's archive (selective and
        reordered restores with C(pg_restore)); V(directory) is one file per table and allows parallel dump
        and restore with O(jobs).
    type: str
    default: plain
    choices: [plain, custom, directory]
  compression:
    description:
      - V(gzip) is produced by C(pigz) when installed (parallel, gzip-compatible), else C(gzip).
      - V(zstd) compresses faster at a similar ratio; not available with O(format=directory).
      - Defaults to V(gzip), or V(none) with O(kind=schema) (the plan keeps C(schema_*.sql) readable).
    type: str
    choices: [gzip, zstd, none]
  jobs:
    description:
      - Parallel dump jobs; requires O(format=directory).
    type: int
    default: 1
  timestamp:
    description:
      - Timestamp to name the file with, C(YYYYMMDD_HHMMSS) in UTC. Defaults to now. Lets every artifact of
        one backup set share one timestamp.
    type: str
  dump_options:
    description:
      - Extra C(pg_dump) arguments, each one list element (for example V(--exclude-table-data=audit_log)).
    type: list
    elements: str
    default: []
  mode:
    description:
      - Permissions of the backup file (dumps hold every row of the database).
    type: raw
    default: '0600'
notes:
  - Restore such a backup with M(atlasia.dr.pg_restore_db), which checks the sidecars first.
  - O(format=directory) cannot be used together with O(container).
seealso:
  - module: atlasia.dr.pg_restore_db
  - name: pg_dump documentation
    description: Options and formats of pg_dump.
    link: https://www.postgresql.org/docs/current/app-pgdump.html
"""

EXAMPLES = r"""
- name: Nightly full backup of the production database, through its container
  atlasia.dr.pg_dump_backup:
    db: aiteam_prod
    login_user: aiteam_prod_user
    login_password: "{{ vault_db_password }}"
    container: aiteam_db_prod
    dest: /srv/atlasia/backups/daily

- name: Schema-only copy for documentation (schema_<timestamp>.sql)
  atlasia.dr.pg_dump_backup:
    db: aiteam_prod
    kind: schema
    dest: /srv/atlasia/backups/daily

- name: Fast parallel dump in directory format
  atlasia.dr.pg_dump_backup:
    db: aiteam_prod
    login_host: 127.0.0.1
    login_password: "{{ vault_db_password }}"
    format: directory
    jobs: 4
    dest: /srv/atlasia/backups/daily

- name: zstd-compressed archive, sharing the timestamp of the backup set
  atlasia.dr.pg_dump_backup:
    db: aiteam_prod
    format: custom
    compression: zstd
    timestamp: "{{ backup_timestamp }}"
    dest: /srv/atlasia/backups/daily
  register: dump
"""

RETURN = r"""
path:
  description: Path of the backup (a directory with O(format=directory)).
  returned: always
  type: str
  sample: /srv/atlasia/backups/daily/backup_20261126_020000.sql.gz
size:
  description: Size in bytes (sum of the files for a directory); 0 in check mode.
  returned: always
  type: int
  sample: 73400320
md5:
  description: MD5 of the file (of the per-file listing for a directory), as in the C(.md5) sidecar.
  returned: success and not check mode
  type: str
  sample: 9e107d9d372bb6826bd81d3542a419d6
sha256:
  description: SHA-256 of the file (of the per-file listing for a directory).
  returned: success and not check mode
  type: str
  sample: d7a8fbb307d7809469ca9abcb0082e4f8d5651e46d3cdb762d02d0bf37c9e592
duration:
  description: Seconds the backup took, verification included.
  returned: always
  type: float
  sample: 12.5
manifest:
  description: Path of the JSON manifest.
  returned: always
  type: str
  sample: /srv/atlasia/backups/daily/backup_20261126_020000.json
manifest_data:
  description: Content of the manifest.
  returned: success and not check mode
  type: dict
  sample: {"database": "aiteam_prod", "format": "plain", "compression": "gzip", "size": 73400320}
server_version:
  description: Version of the database server.
  returned: always
  type: str
  sample: "15.8"
"""

import time

from ansible_collections.atlasia.dr.plugins.module_utils import pgdump, progress
from ansible_collections.atlasia.dr.plugins.module_utils.common import DRModule
from ansible_collections.atlasia.dr.plugins.module_utils.postgres import (
    PostgresClient,
    PostgresError,
    fail_postgres,
    postgres_argument_spec,
)


def main():
    argument_spec = postgres_argument_spec()
    argument_spec.update(pgdump.dump_argument_spec())
    argument_spec.update(progress.progress_argument_spec())
    module = DRModule(argument_spec=argument_spec, supports_check_mode=True)
    t0 = time.time()
    try:
        opts = pgdump.resolve(module.params)
    except ValueError as exc:  # a malformed timestamp, prefix or mode
        module.fail_json(msg="invalid prefix, timestamp or mode: %s" % exc)
    client = PostgresClient(module)
    problem = pgdump.check_options(opts, client)
    if problem:
        module.fail_json(msg=problem)
    if module.check_mode:
        try:
            version = client.server_version_text()
        except PostgresError as exc:
            fail_postgres(module, exc)
        module.exit_json(changed=True, path=opts["path"], manifest=opts["manifest_path"], size=0,
                         duration=round(time.time() - t0, 3), server_version=version)
    try:
        result = pgdump.write_dump(module, client, opts)
    except PostgresError as exc:
        fail_postgres(module, exc, prefix="backup of %s failed and nothing was written: " % opts["db"],
                      path=opts["path"])
    except pgdump.ArtifactError as exc:
        module.fail_json(msg="backup of %s failed and nothing was written: %s" % (opts["db"], exc),
                         error_kind="verification", path=opts["path"])
    except OSError as exc:
        module.fail_json(msg="backup of %s failed and nothing was written: cannot write under %s: %s" % (
            opts["db"], opts["dest"], exc), error_kind="disk_full" if exc.errno == 28 else "io", path=opts["path"])
    result["server_version"] = result["manifest_data"]["server_version"]
    module.exit_json(changed=True, **result)


if __name__ == "__main__":
    main()
