# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Unit tests of atlasia.dr.pg_copy_rows: the SQL it builds and its decisions, with a fake PostgreSQL client.

Real copies against PostgreSQL 15 (deletions, newer rows, tables without a primary key, a bad where) are in
tests/integration/test_recover_data.py.
"""

from __future__ import annotations

import pytest

from tests.support.modules import run_module
from ansible_collections.atlasia.dr.plugins.module_utils.postgres import FIELD_SEP, PostgresError
from ansible_collections.atlasia.dr.plugins.modules import pg_copy_rows


class FakeClient(object):
    """Answers the catalogue queries of pg_copy_rows and records the two psql runs."""

    def __init__(self, module, params=None):
        self.module = module
        self.container = None
        self.tables = FakeClient.tables
        self.scripts = []
        self.exports = []
        FakeClient.last = self

    def databases(self, maintenance_db):
        return ["postgres", "aiteam", "aiteam_recover_20261126_030000"]

    def server_version(self, db=None):
        return 150000

    def query(self, sql, db=None):
        table = self.tables.get(db)
        if "to_regclass" in sql:
            return [["public", "workflow_runs", "16400"]] if table is not None else []
        if "pg_attribute a WHERE" in sql:
            return [[c] for c in table["columns"]]
        if "indisprimary" in sql:
            return [[c] for c in table["pk"]]
        raise AssertionError(sql)

    def stage(self, name, args, env_extra=None, interactive=True):
        return (name, [name] + list(args)), {}

    def pipeline(self, stages, sink=None, stdin_path=None, env_extra=None):
        argv = stages[0][1]
        if stdin_path is None:  # the export from the source database
            self.exports.append((argv, env_extra))
            sink(b"1\tqueued\n2\tfailed\n")
            return
        with open(stdin_path, "rb") as handle:
            self.scripts.append(handle.read().decode("utf-8"))
        sink(FakeClient.answer.encode("utf-8"))


FakeClient.tables = {}
FakeClient.answer = ""


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setattr(pg_copy_rows, "PostgresClient", FakeClient)
    FakeClient.tables = {
        "aiteam": dict(columns=["id", "status", "added_later"], pk=["id"]),
        "aiteam_recover_20261126_030000": dict(columns=["id", "status"], pk=["id"]),
    }
    FakeClient.answer = "selected%s2\ncopied%s1\nmissing%s0\n" % (FIELD_SEP, FIELD_SEP, FIELD_SEP)
    return FakeClient


def run(args, capsys, check_mode=False):
    base = dict(db="aiteam", source_db="aiteam_recover_20261126_030000", table="workflow_runs")
    base.update(args)
    return run_module(pg_copy_rows.main, base, capsys, check_mode=check_mode)


def test_rows_are_copied_with_on_conflict_on_the_primary_key(fake, capsys):
    result = run(dict(where="id < 3"), capsys)
    assert result["changed"] is True
    assert (result["selected"], result["copied"], result["already_present"], result["missing_after"]) == (2, 1, 1, 0)
    assert result["columns"] == ["id", "status"]
    assert result["skipped_columns"] == ["added_later"]
    assert result["primary_key"] == ["id"]
    client = fake.last
    export_argv, env = client.exports[0]
    assert 'COPY (SELECT "id", "status" FROM "public"."workflow_runs" WHERE (id < 3)) TO STDOUT' in export_argv
    assert env == {"PGOPTIONS": "-c default_transaction_read_only=on"}  # the where clause runs read-only
    script = client.scripts[0]
    assert script.startswith("BEGIN;\n")
    assert 'ON CONFLICT ("id") DO NOTHING' in script
    assert "1\tqueued\n2\tfailed\n\\.\n" in script  # the rows sit between COPY ... FROM STDIN and \.
    assert script.rstrip().endswith("COMMIT;")


def test_check_mode_rolls_the_copy_back(fake, capsys):
    result = run(dict(), capsys, check_mode=True)
    assert result["copied"] == 1
    assert fake.last.scripts[0].rstrip().endswith("ROLLBACK;")
    assert " WHERE " not in fake.last.exports[0][0][-1]  # no where: every row is a candidate


def test_nothing_copied_is_no_change(fake, capsys):
    fake.answer = "selected%s3\ncopied%s0\nmissing%s0\n" % (FIELD_SEP, FIELD_SEP, FIELD_SEP)
    result = run(dict(), capsys)
    assert result["changed"] is False
    assert result["already_present"] == 3


def test_a_table_without_primary_key_is_refused(fake, capsys):
    fake.tables["aiteam"]["pk"] = []
    result = run(dict(), capsys)
    assert result["failed"] is True
    assert "no primary key" in result["msg"]
    assert fake.last.scripts == []


def test_without_primary_key_when_allowed_whole_rows_are_compared(fake, capsys):
    fake.tables["aiteam"]["pk"] = []
    result = run(dict(allow_no_primary_key=True), capsys)
    assert result["changed"] is True
    script = fake.last.scripts[0]
    assert "EXCEPT ALL" in script
    assert "ON CONFLICT" not in script


def test_triggers_can_be_disabled(fake, capsys):
    run(dict(disable_triggers=True), capsys)
    assert "SET LOCAL session_replication_role = replica;" in fake.last.scripts[0]


@pytest.mark.parametrize("change, message", [
    (dict(source_db="aiteam_recover_19990101_000000"), "does not exist"),
    (dict(source_db="aiteam"), "the same database"),
])
def test_bad_source(fake, capsys, change, message):
    result = run(change, capsys)
    assert result["failed"] is True
    assert message in result["msg"]


def test_missing_table(fake, capsys):
    fake.tables["aiteam"] = None
    result = run(dict(), capsys)
    assert "does not exist in database aiteam" in result["msg"]


def test_a_primary_key_column_missing_from_the_backup(fake, capsys):
    fake.tables["aiteam"]["pk"] = ["id", "added_later"]
    result = run(dict(), capsys)
    assert "lacks primary-key column(s) added_later" in result["msg"]


def test_rows_still_missing_after_the_copy_fail_the_task(fake, capsys):
    fake.answer = "selected%s3\ncopied%s1\nmissing%s2\n" % (FIELD_SEP, FIELD_SEP, FIELD_SEP)
    result = run(dict(), capsys)
    assert result["failed"] is True
    assert "still missing" in result["msg"]


def test_a_psql_failure_is_reported_as_rolled_back(fake, capsys, monkeypatch):
    def failing(self, stages, sink=None, stdin_path=None, env_extra=None):
        raise PostgresError("psql failed (exit status 3): ERROR: duplicate key value violates unique constraint "
                            "\"users_email_key\"", stderr="ERROR: duplicate key")

    monkeypatch.setattr(FakeClient, "pipeline", failing)
    result = run(dict(), capsys)
    assert result["failed"] is True
    assert "rolled back" in result["msg"]


def test_build_script_quotes_every_identifier():
    header, trailer = pg_copy_rows.build_script('"odd""schema"."t"', ['we"ird', "id"], ["id"], False, True)
    assert b'"we""ird"' in header
    assert b'ON CONFLICT ("id")' in trailer


@pytest.mark.parametrize("text", ["", "selected\x1f1\ncopied\x1f1\n", "garbage"])
def test_parse_counts_refuses_incomplete_answers(text):
    with pytest.raises(pg_copy_rows.CopyError):
        pg_copy_rows.parse_counts(text)
