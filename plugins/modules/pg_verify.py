#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pg_verify
short_description: Integrity checks of a restored PostgreSQL database
version_added: 0.1.0
description:
  - Runs the plan's data-integrity checks against a database and reports each one (connectivity, key
    tables present, row counts (exact, optionally against expected counts), the newest timestamp of
    chosen columns, and user-supplied SQL assertions).
  - Read-only; never changes anything.
author:
  - atlasia DevOps team (@atlasia-devops)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - atlasia.dr.postgres
attributes:
  check_mode:
    support: full
    details: Runs the same read-only queries.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  tables:
    description: Tables that must exist (C(name) or C(schema.name); the schema defaults to C(public)).
    type: list
    elements: str
    default: []
  expected_rows:
    description: Expected row count per table (C(schema.name) or C(name)).
    type: dict
    default: {}
  tolerance:
    description:
      - Allowed relative difference, in percent, between counted and expected rows (planner estimates
        recorded at backup time are approximate; use V(0) with exact expectations).
    type: float
    default: 0
  min_rows:
    description: Minimum row count per table.
    type: dict
    default: {}
  timestamp_columns:
    description:
      - Per table (C(schema.name) or C(name)), a column whose newest value is reported.
      - The check fails when the table is missing, or when it has rows but the column is NULL in all of them.
      - An empty table is reported as C(no rows); that check passes unless O(expected_rows) expects rows in it.
    type: dict
    default: {}
  assertions:
    description:
      - SQL assertions, each a dict with C(name), C(sql) (returning one value) and optional C(expect) (the
        value as text). Without C(expect) the value must be true, or a number other than 0.
      - A query that returns no row or NULL (for example C(max()) over an empty table) fails the assertion,
        reported as C(got NULL).
    type: list
    elements: dict
    default: []
  fail_on_problems:
    description: Fail the task when a check fails.
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: The plan's integrity checks after a restore
  atlasia.dr.pg_verify:
    db: aiteam_prod
    container: aiteam_db_prod
    login_user: aiteam_prod_user
    tables: [users, personas, workflow_runs]
    timestamp_columns:
      workflow_runs: created_at
    assertions:
      - name: every workflow run has a user
        sql: SELECT count(*) = 0 FROM workflow_runs r LEFT JOIN users u ON u.id = r.user_id WHERE u.id IS NULL
"""

RETURN = r"""
checks:
  description: Every check with C(name), C(ok) and C(detail).
  returned: always
  type: list
  elements: dict
  sample: [{"name": "connectivity", "ok": true, "detail": "PostgreSQL 15.8"}]
rows:
  description: Exact row count per table.
  returned: when connected
  type: dict
  sample: {"public.users": 120}
newest:
  description: Newest value per table of O(timestamp_columns); V(null) for an empty table (or only NULL values).
  returned: when connected
  type: dict
  sample: {"public.workflow_runs": "2026-11-26 01:59:58+00"}
ok:
  description: True when every check passed.
  returned: always
  type: bool
"""

from ansible_collections.atlasia.dr.plugins.module_utils.common import DRModule
from ansible_collections.atlasia.dr.plugins.module_utils.postgres import (
    PostgresClient,
    PostgresError,
    postgres_argument_spec,
    quote_ident,
)


def _qualified(name):
    return name if "." in name else "public." + name


def _single_value(rows):
    """The first column of the first row of a query's result; ``None`` for SQL NULL or no row.

    psql prints NULL as an empty line, which :meth:`PostgresClient.query` drops: the result is then empty.
    """
    return rows[0][0] if rows and rows[0] and rows[0][0] != "" else None


def _truthy(value):
    if value is None:
        return False
    value = value.strip().lower()
    if value in ("t", "true", "yes", "on"):
        return True
    try:
        return float(value) != 0
    except ValueError:
        return False


def main():
    argument_spec = postgres_argument_spec()
    argument_spec.update(
        tables=dict(type="list", elements="str", default=[]),
        expected_rows=dict(type="dict", default={}),
        tolerance=dict(type="float", default=0),
        min_rows=dict(type="dict", default={}),
        timestamp_columns=dict(type="dict", default={}),
        assertions=dict(type="list", elements="dict", default=[]),
        fail_on_problems=dict(type="bool", default=True),
    )
    module = DRModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    client = PostgresClient(module)
    checks = []
    result = dict(changed=False, checks=checks, rows={}, newest={}, ok=False)

    def check(name, ok, detail):
        checks.append(dict(name=name, ok=bool(ok), detail=detail))

    try:
        check("connectivity", True, "PostgreSQL %s, database %s" % (client.server_version_text(), p["db"]))
    except PostgresError as exc:
        check("connectivity", False, str(exc))
        result["msg"] = "cannot connect to database %s: %s" % (p["db"], exc)
        if p["fail_on_problems"]:
            module.fail_json(**result)
        module.exit_json(**result)
    try:
        rows = client.exact_counts(p["db"])
        result["rows"] = rows
        for table in p["tables"]:
            name = _qualified(table)
            check("table %s present" % name, name in rows, "%s rows" % rows[name] if name in rows else "missing")
        for table, expected in sorted(p["expected_rows"].items()):
            name = _qualified(table)
            count = rows.get(name)
            expected = int(expected)
            allowed = abs(expected) * p["tolerance"] / 100.0
            ok = count is not None and abs(count - expected) <= allowed
            check("row count %s" % name, ok, "%s rows, expected %d%s" % (
                count, expected, (" +/- %g%%" % p["tolerance"]) if p["tolerance"] else ""))
        for table, minimum in sorted(p["min_rows"].items()):
            name = _qualified(table)
            count = rows.get(name)
            check("at least %s rows in %s" % (minimum, name), count is not None and count >= int(minimum),
                  "%s rows" % count)
        expected_counts = dict((_qualified(table), int(count)) for table, count in p["expected_rows"].items())
        for table, column in sorted(p["timestamp_columns"].items()):
            name = _qualified(table)
            label = "newest %s.%s" % (name, column)
            if name not in rows:
                check(label, False, "table missing")
                continue
            schema, rel = name.split(".", 1)
            sql = "SELECT max(%s)::text FROM %s.%s" % (quote_ident(column), quote_ident(schema), quote_ident(rel))
            try:
                value = _single_value(client.query(sql))
            except PostgresError as exc:
                check(label, False, "error: %s" % exc)
                continue
            result["newest"][name] = value
            if value is not None:
                check(label, True, value)
            elif rows[name] == 0:
                # an empty table has no newest value: right when no rows are expected
                expected = expected_counts.get(name)
                check(label, not expected, "no rows" if not expected else "no rows, expected %d" % expected)
            else:
                check(label, False, "%s is NULL in all %d rows" % (column, rows[name]))
        for assertion in p["assertions"]:
            label = assertion.get("name") or assertion.get("sql")
            try:
                value = _single_value(client.query(assertion["sql"]))
            except (PostgresError, KeyError) as exc:
                check(label, False, "error: %s" % exc)
                continue
            if "expect" in assertion and assertion["expect"] is not None:
                check(label, value == str(assertion["expect"]), "got %s, expected %s" % (
                    "NULL" if value is None else value, assertion["expect"]))
            else:
                check(label, _truthy(value), "got %s" % ("NULL" if value is None else value))
    except PostgresError as exc:
        check("queries", False, str(exc))
    result["ok"] = all(c["ok"] for c in checks)
    if not result["ok"] and p["fail_on_problems"]:
        result["msg"] = "database %s failed %d check(s): %s" % (
            p["db"], sum(1 for c in checks if not c["ok"]),
            "; ".join("%s (%s)" % (c["name"], c["detail"]) for c in checks if not c["ok"]))
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
