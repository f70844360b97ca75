"""atlasia.dr.pg_verify against a real PostgreSQL 15, through real Ansible: every check on an empty database and
on empty tables.

A restore target can legitimately be empty (a fresh database before the restore, a table that held nothing at
backup time): each check must then report what it found (``missing``, ``0 rows``, ``no rows``, ``got NULL``)
and pass or fail on its own terms, never crash, also with ``fail_on_problems=false``.
"""

from __future__ import annotations

import pytest

from tests.integration import pg_helpers as h
from tests.support.ansible_run import run_module

pytestmark = pytest.mark.integration

SCHEMA = """
CREATE TABLE events (id bigint PRIMARY KEY, created_at timestamptz);
CREATE SCHEMA audit;
CREATE TABLE audit."Log" (id bigint, at timestamp);
"""


def verify(db, check=False, **args):
    return run_module("pg_verify", h.conn_args(db.server, db.name, **args), check=check)


def by_name(result):
    return dict((c["name"], c) for c in result["checks"])


@pytest.fixture
def empty_tables(pg_empty_db):
    """A database whose tables exist and hold no row."""
    pg_empty_db.psql(SCHEMA)
    return pg_empty_db


@pytest.mark.parametrize("check_mode", [False, True])
def test_every_check_on_an_empty_database(pg_empty_db, check_mode):
    result = verify(pg_empty_db, check=check_mode, fail_on_problems=False,
                    tables=["events"], expected_rows={"events": 0}, min_rows={"public.events": 0},
                    timestamp_columns={"events": "created_at"},
                    assertions=[dict(name="no user table", expect="0",
                                     sql="SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"),
                                dict(name="newest event", sql="SELECT max(created_at) FROM events"),
                                dict(name="null", sql="SELECT NULL")])
    assert not result.get("failed"), result.get("msg") or result.get("module_stderr")
    assert result["changed"] is False and result["ok"] is False
    assert result["rows"] == {} and result["newest"] == {}
    checks = by_name(result)
    assert checks["connectivity"]["ok"] and pg_empty_db.name in checks["connectivity"]["detail"]
    assert checks["table public.events present"] == dict(
        name="table public.events present", ok=False, detail="missing")
    assert not checks["row count public.events"]["ok"]
    assert checks["row count public.events"]["detail"] == "None rows, expected 0"
    assert not checks["at least 0 rows in public.events"]["ok"]
    assert checks["newest public.events.created_at"] == dict(name="newest public.events.created_at", ok=False,
                                                             detail="table missing")
    assert checks["no user table"]["ok"] and checks["no user table"]["detail"] == "got 0, expected 0"
    assert not checks["newest event"]["ok"] and checks["newest event"]["detail"].startswith("error: ")
    assert checks["null"] == dict(name="null", ok=False, detail="got NULL")
    assert len(checks) == len(result["checks"]) == 8


def test_an_empty_database_without_expectations_passes(pg_empty_db):
    empty = "SELECT count(*) = 0 FROM pg_tables WHERE schemaname = 'public'"
    result = verify(pg_empty_db, assertions=[dict(name="empty", sql=empty)])
    assert not result.get("failed"), result.get("msg") or result.get("module_stderr")
    assert result["ok"] is True and result["rows"] == {}
    assert [c["name"] for c in result["checks"]] == ["connectivity", "empty"]


def test_the_problems_of_an_empty_database_fail_the_task(pg_empty_db):
    result = verify(pg_empty_db, tables=["events"], timestamp_columns={"events": "created_at"})
    assert result["failed"] and result["ok"] is False
    assert result["msg"] == ("database %s failed 2 check(s): table public.events present (missing); "
                             "newest public.events.created_at (table missing)" % pg_empty_db.name)


@pytest.mark.parametrize("check_mode", [False, True])
def test_empty_tables_are_reported_as_no_rows(empty_tables, check_mode):
    result = verify(empty_tables, check=check_mode,
                    tables=["events", "audit.Log"], expected_rows={"events": 0, "audit.Log": 0},
                    min_rows={"events": 0}, timestamp_columns={"events": "created_at", "audit.Log": "at"},
                    assertions=[dict(name="no events", sql="SELECT count(*) = 0 FROM events"),
                                dict(name="count", sql="SELECT count(*) FROM audit.\"Log\"", expect="0")])
    assert not result.get("failed"), result.get("msg") or result.get("module_stderr")
    assert result["ok"] is True and result["changed"] is False
    assert result["rows"] == {"public.events": 0, "audit.Log": 0}
    assert result["newest"] == {"public.events": None, "audit.Log": None}
    checks = by_name(result)
    assert checks["table public.events present"]["detail"] == "0 rows"
    assert checks["table audit.Log present"]["detail"] == "0 rows"
    assert checks["row count public.events"] == dict(name="row count public.events", ok=True,
                                                     detail="0 rows, expected 0")
    assert checks["at least 0 rows in public.events"]["ok"]
    assert checks["newest public.events.created_at"] == dict(name="newest public.events.created_at", ok=True,
                                                             detail="no rows")
    assert checks["newest audit.Log.at"] == dict(name="newest audit.Log.at", ok=True, detail="no rows")
    assert checks["no events"]["ok"] and checks["count"]["ok"]
    assert all(c["ok"] for c in result["checks"]) and len(result["checks"]) == 10


def test_an_empty_table_where_rows_are_expected_fails(empty_tables):
    result = verify(empty_tables, fail_on_problems=False, expected_rows={"events": 3},
                    timestamp_columns={"events": "created_at"},
                    assertions=[dict(name="recent", sql="SELECT max(created_at) > now() - interval '1 day' "
                                                        "FROM events")])
    assert not result.get("failed"), result.get("msg") or result.get("module_stderr")
    checks = by_name(result)
    assert result["ok"] is False
    assert checks["row count public.events"] == dict(name="row count public.events", ok=False,
                                                     detail="0 rows, expected 3")
    assert checks["newest public.events.created_at"] == dict(name="newest public.events.created_at", ok=False,
                                                             detail="no rows, expected 3")
    assert checks["recent"] == dict(name="recent", ok=False, detail="got NULL")


def test_rows_without_a_timestamp_and_rows_with_one(empty_tables):
    empty_tables.psql("INSERT INTO events VALUES (1, NULL), (2, NULL); "
                      "INSERT INTO audit.\"Log\" VALUES (1, '2026-11-26 01:59:58')")
    result = verify(empty_tables, fail_on_problems=False,
                    timestamp_columns={"events": "created_at", "audit.Log": "at", "audit.Log2": "at"},
                    min_rows={"events": 1})
    assert not result.get("failed"), result.get("msg") or result.get("module_stderr")
    checks = by_name(result)
    assert checks["newest public.events.created_at"] == dict(name="newest public.events.created_at", ok=False,
                                                             detail="created_at is NULL in all 2 rows")
    assert checks["newest audit.Log.at"] == dict(name="newest audit.Log.at", ok=True, detail="2026-11-26 01:59:58")
    assert checks["newest audit.Log2.at"]["detail"] == "table missing"
    assert checks["at least 1 rows in public.events"]["ok"]
    assert result["newest"] == {"public.events": None, "audit.Log": "2026-11-26 01:59:58"}


def test_an_unknown_column_fails_its_check_and_the_others_still_run(empty_tables):
    result = verify(empty_tables, fail_on_problems=False, timestamp_columns={"events": "nope"},
                    assertions=[dict(name="one", sql="SELECT 1")])
    assert not result.get("failed"), result.get("msg") or result.get("module_stderr")
    checks = by_name(result)
    assert not checks["newest public.events.nope"]["ok"]
    assert "nope" in checks["newest public.events.nope"]["detail"]
    assert checks["one"] == dict(name="one", ok=True, detail="got 1")
