# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of pg_scratch_db: ``main()`` with the catalogue faked behind ``PostgresClient.query``.

The real server is exercised by the restore tests (tests/integration/test_verify.py).
"""

from __future__ import annotations

import re

import pytest

from tests.support.modules import run_module
from ansible_collections.atlasia.dr.plugins.module_utils.postgres import PostgresClient, PostgresError
from ansible_collections.atlasia.dr.plugins.modules import pg_scratch_db

SCRATCH = "aiteam_3f9a1c_verify_20261126_031500"
EARLIER = "aiteam_3f9a1c_verify_20261119_031500"
OTHER_HOST = "aiteam_77aa00_verify_20261119_031500"


@pytest.fixture
def catalogue(monkeypatch):
    state = dict(databases=["postgres", "aiteam", SCRATCH, EARLIER, OTHER_HOST, "aiteam_drill_20261101_040000"],
                 statements=[], fail=None)

    def query(self, sql, db=None):
        state["statements"].append((sql, db))
        if state["fail"]:
            raise PostgresError("psql failed (exit status 2): could not connect", kind="unreachable")
        if sql.startswith("SELECT datname"):
            return [[name] for name in state["databases"]]
        match = re.match(r'DROP DATABASE IF EXISTS "(.+)" WITH \(FORCE\)$', sql)
        assert match, sql
        state["databases"].remove(match.group(1))
        return []

    monkeypatch.setattr(PostgresClient, "query", query)
    return state


def run_main(args, capsys, check_mode=False):
    args = dict(dict(login_host="127.0.0.1", login_password="unit-test-pw"), **args)
    return run_module(pg_scratch_db.main, args, capsys, check_mode=check_mode)


def test_drops_the_scratch_database(catalogue, capsys):
    result = run_main(dict(db=SCRATCH), capsys)
    assert result["changed"] is True
    assert result["dropped"] == [SCRATCH]
    assert result["existed"] is True
    assert result["stem"] == "aiteam_3f9a1c_verify"
    assert SCRATCH not in catalogue["databases"] and EARLIER in catalogue["databases"]
    assert all(db == "postgres" for sql, db in catalogue["statements"])


def test_previous_runs_of_the_same_stem_only(catalogue, capsys):
    result = run_main(dict(db=SCRATCH, previous_runs=True), capsys)
    assert result["dropped"] == [EARLIER, SCRATCH]
    assert OTHER_HOST in catalogue["databases"] and "aiteam" in catalogue["databases"]


def test_nothing_to_drop_is_not_a_change(catalogue, capsys):
    name = "aiteam_3f9a1c_verify_20261203_031500"
    result = run_main(dict(db=name), capsys)
    assert result == dict(result, changed=False, dropped=[], existed=False)
    assert not [sql for sql, db in catalogue["statements"] if sql.startswith("DROP")]


def test_check_mode_drops_nothing(catalogue, capsys):
    result = run_main(dict(db=SCRATCH, previous_runs=True), capsys, check_mode=True)
    assert result["changed"] is True
    assert result["dropped"] == [EARLIER, SCRATCH]
    assert SCRATCH in catalogue["databases"] and EARLIER in catalogue["databases"]


@pytest.mark.parametrize("name", ["aiteam", "aiteam_prod", "postgres", "aiteam_restore_20261126_031500",
                                  "aiteam_verify_2026112_031500", "aiteam_verify_20261399_031500", "_verify_20261126_031500"])
def test_refuses_anything_but_a_scratch_name(catalogue, capsys, name):
    result = run_main(dict(db=name), capsys)
    assert result["failed"] is True
    assert result["msg"].startswith("refusing to drop %r" % name)
    assert catalogue["statements"] == []


def test_kinds_widen_what_is_accepted(catalogue, capsys):
    result = run_main(dict(db="aiteam_drill_20261101_040000", kinds=["drill"]), capsys)
    assert result["dropped"] == ["aiteam_drill_20261101_040000"]
    result = run_main(dict(db="aiteam_drill_20261101_040000", kinds=["verify"]), capsys)
    assert result["failed"] is True


def test_server_errors_are_reported(catalogue, capsys):
    catalogue["fail"] = True
    result = run_main(dict(db=SCRATCH), capsys)
    assert result["failed"] is True
    assert result["error_kind"] == "unreachable"
    assert result["msg"].startswith("cannot drop the scratch database %s: psql failed" % SCRATCH)


@pytest.mark.parametrize("name, parsed", [
    (SCRATCH, ("aiteam_3f9a1c_verify", "2026-11-26T03:15:00+00:00")),
    ("a_b_c_drill_20260101_000000", ("a_b_c_drill", "2026-01-01T00:00:00+00:00")),
    ("aiteam_verify", None),
    ("", None),
])
def test_parse_scratch(name, parsed):
    result = pg_scratch_db.parse_scratch(name, ["verify", "drill"])
    assert (result and (result[0], result[1].isoformat())) == (parsed or None)
