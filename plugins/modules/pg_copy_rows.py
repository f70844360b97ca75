#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pg_copy_rows
short_description: Copy rows back from a restored copy of a PostgreSQL database without overwriting newer rows
version_added: 0.1.0
description:
  - The plan's Scenario 4 (accidental deletion) restores a backup into a temporary database
    (M(atlasia.dr.pg_restore_db) with C(mode=new)); this module copies the rows selected by O(where) from that
    database (O(source_db)) back into the same table of O(db).
  - Rows are streamed out of O(source_db) with C(COPY (SELECT ...) TO STDOUT) in a B(read-only) session, loaded into a
    temporary table of O(db), then inserted with C(INSERT ... ON CONFLICT (<primary key>) DO NOTHING) in one
    transaction. A row whose primary key still exists in O(db) is never overwritten, so rows changed or re-created
    since the backup keep their current content; the task reports how many rows came back (RV(copied)) and how many
    were already there.
  - A table without a primary key is refused unless O(allow_no_primary_key=true); then a selected row is inserted
    only when no identical row exists (C(EXCEPT ALL)).
  - Only the columns present in both tables are copied (a column added since the backup keeps its default);
    generated columns are left to the database.
  - Any error (another unique constraint, a foreign key, a bad O(where)) rolls the whole copy back; nothing is
    half-copied.
author:
  - atlasia DevOps team (@atlasia-devops)
extends_documentation_fragment:
  - atlasia.dr.postgres
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Runs the whole copy in a transaction that is rolled back, so the counts are exact and nothing changes.
  diff_mode:
    support: none
  platform:
    support: full
    platforms: posix
    details: Needs the PostgreSQL client program C(psql) on the host, or in O(container).
options:
  source_db:
    description:
      - Database to copy the rows from (the temporary database a backup was restored into), on the same server as
        O(db).
    type: str
    required: true
  table:
    description:
      - Table to copy rows of, V(table) or V(schema.table), resolved like in SQL (quote mixed-case names, for
        example V('"Users"')). It must exist in both databases.
    type: str
    required: true
  where:
    description:
      - SQL condition selecting the rows to copy in O(source_db), for example
        V(created_at >= '2026-11-25' AND user_id = 42). It runs in a read-only session of O(source_db) only.
      - Omitted, every row of the table is a candidate (rows whose key still exists are skipped anyway).
    type: str
  allow_no_primary_key:
    description:
      - Copy into a table that has no primary key. Duplicates are then judged on whole rows, which needs every
        column type to support equality (no C(json) columns).
    type: bool
    default: false
  disable_triggers:
    description:
      - Insert with C(session_replication_role = replica), so triggers (and foreign-key checks) do not fire for the
        copied rows. Needs a superuser. By default triggers fire as for any insert.
    type: bool
    default: false
  maintenance_db:
    description:
      - Database used to check that O(source_db) exists.
    type: str
    default: postgres
notes:
  - The rows of one table are copied per task; copy parent tables before children (users before their
    workflow runs) so foreign keys hold.
  - Sequences are not changed; copied rows keep their original keys, which are below the sequences' current values.
seealso:
  - module: atlasia.dr.pg_restore_db
  - name: PostgreSQL INSERT ... ON CONFLICT
    description: How conflicting rows are skipped.
    link: https://www.postgresql.org/docs/current/sql-insert.html#SQL-ON-CONFLICT
"""

EXAMPLES = r"""
- name: Bring back the workflow runs deleted yesterday, from the backup restored into aiteam_recover
  atlasia.dr.pg_copy_rows:
    db: aiteam_prod
    source_db: aiteam_recover
    table: public.workflow_runs
    where: "created_at >= '2026-11-25' AND created_at < '2026-11-26'"
    container: aiteam_db_prod
    login_user: aiteam_prod_user
    login_password: "{{ vault_db_password }}"
  register: copied

- name: How many rows would come back, without changing anything
  atlasia.dr.pg_copy_rows:
    db: aiteam_prod
    source_db: aiteam_recover
    table: users
    where: "id IN (17, 18)"
  check_mode: true
"""

RETURN = r"""
table:
  description: The table, schema-qualified.
  returned: always
  type: str
  sample: public.workflow_runs
selected:
  description: Rows of O(source_db) matching O(where).
  returned: success
  type: int
  sample: 120
copied:
  description: Rows inserted into O(db) (that would be, in check mode).
  returned: success
  type: int
  sample: 117
already_present:
  description: Selected rows skipped because their key (or the identical row) exists in O(db).
  returned: success
  type: int
  sample: 3
missing_after:
  description: Selected rows whose key is still absent from O(db) after the copy (0 on success).
  returned: success
  type: int
  sample: 0
primary_key:
  description: Columns of the primary key used for the conflict check (empty without one).
  returned: success
  type: list
  elements: str
  sample: [id]
columns:
  description: Columns copied.
  returned: success
  type: list
  elements: str
  sample: [id, user_id, status, created_at]
skipped_columns:
  description: Columns of O(db)'s table that O(source_db)'s table lacks (they get their defaults).
  returned: success
  type: list
  elements: str
  sample: []
duration:
  description: Seconds the task took.
  returned: always
  type: float
  sample: 0.84
"""

import os
import tempfile
import time

from ansible_collections.atlasia.dr.plugins.module_utils.common import DRModule
from ansible_collections.atlasia.dr.plugins.module_utils.postgres import (
    FIELD_SEP,
    PostgresClient,
    PostgresError,
    fail_postgres,
    postgres_argument_spec,
    quote_ident,
    quote_literal,
)

STAGING = "atlasia_dr_copy_rows"
READ_ONLY = {"PGOPTIONS": "-c default_transaction_read_only=on"}


class CopyError(Exception):
    """The copy cannot be done as asked (missing table, no primary key, no common column...)."""


def table_facts(client, db, table):
    """``(schema, name, oid, columns, primary_key)`` of ``table`` in ``db``; CopyError when it does not exist."""
    rows = client.query(
        "SELECT n.nspname, c.relname, c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.oid = to_regclass(%s) AND c.relkind IN ('r', 'p')" % quote_literal(table), db=db)
    if not rows:
        raise CopyError("table %s does not exist in database %s" % (table, db))
    schema, name, oid = rows[0]
    generated = "AND a.attgenerated = '' " if client.server_version(db=db) >= 120000 else ""
    columns = [r[0] for r in client.query(
        "SELECT a.attname FROM pg_attribute a WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped %s"
        "ORDER BY a.attnum" % (oid, generated), db=db)]
    primary_key = [r[0] for r in client.query(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
        "AND a.attnum = ANY(i.indkey::int2[]) WHERE i.indrelid = %s AND i.indisprimary "
        "ORDER BY array_position(i.indkey::int2[], a.attnum)" % oid, db=db)]
    return schema, name, oid, columns, primary_key


def build_script(qualified, columns, primary_key, disable_triggers, commit):
    """Header and trailer of the psql script run in the target database around the COPY data."""
    cols = ", ".join(quote_ident(c) for c in columns)
    header = ["BEGIN;"]
    if disable_triggers:
        header.append("SET LOCAL session_replication_role = replica;")
    header += [
        "CREATE TEMP TABLE %s ON COMMIT DROP AS SELECT %s FROM %s WITH NO DATA;" % (STAGING, cols, qualified),
        "COPY %s (%s) FROM STDIN;" % (STAGING, cols),
    ]
    if primary_key:
        keys = ", ".join(quote_ident(c) for c in primary_key)
        insert = ("WITH ins AS (INSERT INTO %s (%s) SELECT %s FROM %s ON CONFLICT (%s) DO NOTHING RETURNING 1) "
                  "SELECT 'copied' || chr(31) || count(*) FROM ins;" % (qualified, cols, cols, STAGING, keys))
        match = " AND ".join("t.%s = s.%s" % (quote_ident(c), quote_ident(c)) for c in primary_key)
        missing = ("SELECT 'missing' || chr(31) || count(*) FROM %s s WHERE NOT EXISTS (SELECT 1 FROM %s t WHERE %s);"
                   % (STAGING, qualified, match))
    else:
        insert = ("WITH ins AS (INSERT INTO %s (%s) SELECT %s FROM %s EXCEPT ALL SELECT %s FROM %s RETURNING 1) "
                  "SELECT 'copied' || chr(31) || count(*) FROM ins;" % (qualified, cols, cols, STAGING, cols, qualified))
        missing = ("SELECT 'missing' || chr(31) || count(*) FROM (SELECT %s FROM %s EXCEPT ALL SELECT %s FROM %s) d;"
                   % (cols, STAGING, cols, qualified))
    trailer = [
        "\\.",
        "SELECT 'selected' || chr(31) || count(*) FROM %s;" % STAGING,
        insert,
        missing,
        "COMMIT;" if commit else "ROLLBACK;",
    ]
    return ("\n".join(header) + "\n").encode("utf-8"), ("\n".join(trailer) + "\n").encode("utf-8")


def parse_counts(output):
    counts = {}
    for line in output.splitlines():
        parts = line.strip().split(FIELD_SEP)
        if len(parts) == 2 and parts[0] in ("selected", "copied", "missing"):
            counts[parts[0]] = int(parts[1])
    if set(counts) != {"selected", "copied", "missing"}:
        raise CopyError("unexpected answer from psql: %r" % output[-500:])
    return counts


def run(module, client):
    p = module.params
    db, source = p["db"], p["source_db"]
    if db == source:
        raise CopyError("source_db and db are the same database")
    if source not in client.databases(p["maintenance_db"]):
        raise CopyError("source database %s does not exist (restore the backup into it first)" % source)
    schema, name, oid, target_cols, primary_key = table_facts(client, db, p["table"])
    qualified = "%s.%s" % (quote_ident(schema), quote_ident(name))
    src_schema, src_name, src_oid, source_cols, dummy = table_facts(client, source, qualified)
    columns = [c for c in target_cols if c in source_cols]
    skipped = [c for c in target_cols if c not in source_cols]
    result = dict(table="%s.%s" % (schema, name), primary_key=primary_key, columns=columns, skipped_columns=skipped)
    if not primary_key and not p["allow_no_primary_key"]:
        raise CopyError("table %s has no primary key, so rows that still exist cannot be told apart safely; set "
                        "allow_no_primary_key to compare whole rows instead" % result["table"])
    if not columns:
        raise CopyError("tables %s of %s and %s have no column in common" % (result["table"], db, source))
    lost_keys = [c for c in primary_key if c not in columns]
    if lost_keys:
        raise CopyError("the backup's table %s lacks primary-key column(s) %s" % (result["table"], ", ".join(lost_keys)))

    cols = ", ".join(quote_ident(c) for c in columns)
    select = "SELECT %s FROM %s" % (cols, qualified)
    if p["where"] and p["where"].strip():
        select += " WHERE (%s)" % p["where"]
    header, trailer = build_script(qualified, columns, primary_key, p["disable_triggers"], not module.check_mode)
    fd, script_path = tempfile.mkstemp(prefix="pg_copy_rows-", suffix=".sql", dir=module.tmpdir)
    try:
        with os.fdopen(fd, "wb") as script:
            script.write(header)
            stage, dummy = client.stage("psql", ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", source,
                                                 "-c", "COPY (%s) TO STDOUT" % select], READ_ONLY)
            client.pipeline([stage], sink=script.write, env_extra=READ_ONLY)
            script.write(trailer)
        output = []
        stage, dummy = client.stage("psql", ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", db])
        client.pipeline([stage], sink=output.append, stdin_path=script_path)
    finally:
        os.unlink(script_path)
    counts = parse_counts(b"".join(output).decode("utf-8", "replace"))
    result.update(selected=counts["selected"], copied=counts["copied"],
                  already_present=counts["selected"] - counts["copied"], missing_after=counts["missing"],
                  changed=counts["copied"] > 0)
    if counts["missing"] and not module.check_mode:
        raise CopyError("%d selected row(s) are still missing from %s after the copy" % (counts["missing"], db))
    return result


def main():
    argument_spec = postgres_argument_spec()
    argument_spec.update(
        source_db=dict(type="str", required=True),
        table=dict(type="str", required=True),
        where=dict(type="str"),
        allow_no_primary_key=dict(type="bool", default=False),
        disable_triggers=dict(type="bool", default=False),
        maintenance_db=dict(type="str", default="postgres"),
    )
    module = DRModule(argument_spec=argument_spec, supports_check_mode=True)
    t0 = time.time()
    client = PostgresClient(module)
    try:
        result = run(module, client)
    except CopyError as exc:
        module.fail_json(msg="no row was copied: %s" % exc, table=module.params["table"],
                         duration=round(time.time() - t0, 3))
    except PostgresError as exc:
        fail_postgres(module, exc, prefix="no row was copied (the copy was rolled back): ", table=module.params["table"],
                      duration=round(time.time() - t0, 3))
    except OSError as exc:
        module.fail_json(msg="no row was copied: %s" % exc, table=module.params["table"],
                         duration=round(time.time() - t0, 3))
    result["duration"] = round(time.time() - t0, 3)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
