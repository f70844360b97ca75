#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pg_wal_archive
short_description: Check WAL archiving against the RPO target
version_added: 0.1.0
description:
  - Reads C(pg_stat_archiver) and the WAL position of the server and reports how old the newest archived WAL
    segment is, how much WAL waits to be archived, and whether archiving fails. This is the RPO of continuous
    archiving (pgBackRest), the writes a loss of the server would lose.
  - A problem is listed when the newest archived WAL is older than O(rpo_target) while WAL waits to be archived
    (a quiet database archives nothing and loses nothing), when the last archiving attempt failed
    (C(last_failed_time) newer than C(last_archived_time)), when C(archive_mode) is off, and, with O(repos),
    when a repository's newest segment is behind the server's and older than O(rpo_target).
  - Read-only. The result never fails on a problem; the caller decides (the role C(atlasia.dr.dr_monitor) alerts).
author:
  - atlasia DevOps team (@atlasia-devops)
extends_documentation_fragment:
  - atlasia.dr.postgres
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Only reads; runs the same in check mode.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  rpo_target:
    description:
      - Oldest acceptable age, in seconds, of the newest archived WAL while WAL waits to be archived.
      - Choose it above the server's C(archive_timeout) plus the time to push a segment.
    type: int
    default: 300
  repos:
    description:
      - The C(archive) list returned by M(atlasia.dr.pgbackrest) C(command=info) with
        C(wal_times=true) (C(repo), C(max), C(max_archived)), to check each repository too.
    type: list
    elements: dict
    default: []
seealso:
  - module: atlasia.dr.pgbackrest
  - module: atlasia.dr.backup_age
"""

EXAMPLES = r"""
- name: Read the archive of every repository
  atlasia.dr.pgbackrest:
    command: info
    stanza: atlasia
    wal_times: true
    container: aiteam_db_prod
  register: archive_info

- name: Check the newest archived WAL against an RPO of 5 minutes
  atlasia.dr.pg_wal_archive:
    db: postgres
    container: aiteam_db_prod
    login_user: aiteam_prod_user
    rpo_target: 300
    repos: "{{ archive_info.archive }}"
  register: wal

- name: Alert
  ansible.builtin.debug:
    msg: "{{ wal.problems }}"
  when: not wal.ok
"""

RETURN = r"""
ok:
  description: True when no problem was found.
  returned: success
  type: bool
  sample: true
problems:
  description: What is wrong, each with what to check.
  returned: success
  type: list
  elements: str
  sample: ["WAL archiving fails: PostgreSQL could not archive 000000010000000000000012 ..."]
age_seconds:
  description: Age of the newest archived WAL segment (null when none was archived).
  returned: success
  type: float
  sample: 42.5
newest_archived:
  description: When the newest WAL segment was archived (epoch seconds), from C(pg_stat_archiver) or, when its
    statistics were reset, the repositories.
  returned: success
  type: float
unarchived_bytes:
  description: WAL written after the end of the last archived segment (0 when nothing waits; null when unknown,
    e.g. on a standby or after a timeline history file).
  returned: success
  type: int
  sample: 8192
at_risk_seconds:
  description: The RPO right now, at most the age of the oldest write a loss of the server would lose
    (RV(age_seconds) while WAL waits, 0 when nothing waits).
  returned: success
  type: float
failing:
  description: True when the last archiving attempt failed (C(last_failed_time) newer than C(last_archived_time)).
  returned: success
  type: bool
failed_count:
  description: C(pg_stat_archiver.failed_count), failed attempts since the statistics were reset.
  returned: success
  type: int
repos:
  description: Per repository of O(repos), C(repo), C(max) (newest segment), C(max_archived) and C(age_seconds).
  returned: success
  type: list
  elements: dict
rpo_target:
  description: O(rpo_target).
  returned: success
  type: int
archiver:
  description: The C(pg_stat_archiver) row and settings read (C(archived_count), C(last_archived_wal),
    C(last_archived), C(failed_count), C(last_failed_wal), C(last_failed), C(archive_mode), C(archive_timeout),
    C(in_recovery), C(current_lsn), C(wal_segment_size), C(now)).
  returned: success
  type: dict
"""

from ansible_collections.atlasia.dr.plugins.module_utils import walarchive
from ansible_collections.atlasia.dr.plugins.module_utils.common import DRModule
from ansible_collections.atlasia.dr.plugins.module_utils.postgres import (
    PostgresClient,
    PostgresError,
    fail_postgres,
    postgres_argument_spec,
)


def main():
    argument_spec = postgres_argument_spec()
    argument_spec.update(
        rpo_target=dict(type="int", default=300),
        repos=dict(type="list", elements="dict", default=[]),
    )
    module = DRModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    if p["rpo_target"] <= 0:
        module.fail_json(msg="rpo_target must be a positive number of seconds (got %s)" % p["rpo_target"])
    client = PostgresClient(module)
    try:
        rows = client.query(walarchive.STATS_SQL)
    except PostgresError as exc:
        fail_postgres(module, exc, prefix="cannot read pg_stat_archiver: ")
    try:
        stats = walarchive.parse_stats(rows[0] if rows else [])
    except ValueError as exc:
        module.fail_json(msg="unexpected answer from pg_stat_archiver: %s" % exc, rows=rows)
    result = walarchive.assess(stats, p["rpo_target"], p["repos"])
    result.update(changed=False, archiver=stats)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
