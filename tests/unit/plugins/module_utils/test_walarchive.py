# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of module_utils/walarchive.py: WAL positions, the age of the archive against the RPO target,
failing archiving, repositories behind the server; and of the module pg_wal_archive's ``main()``."""

from __future__ import annotations

import pytest

from tests.support.modules import run_module
from ansible_collections.atlasia.dr.plugins.module_utils import walarchive
from ansible_collections.atlasia.dr.plugins.module_utils.postgres import PostgresClient, PostgresError
from ansible_collections.atlasia.dr.plugins.modules import pg_wal_archive

SEG = 16 * 1024 * 1024
NOW = 1_800_000_000.0


def stats(**overrides):
    """A healthy server: segment ...0A archived 20 s ago, the WAL position 100 bytes into ...0B."""
    base = dict(archived_count=10, last_archived_wal="00000001000000000000000A", last_archived=NOW - 20,
                failed_count=0, last_failed_wal=None, last_failed=None, archive_mode="on", archive_timeout=60,
                in_recovery=False, current_lsn=0x0B * SEG + 100, wal_segment_size=SEG, now=NOW)
    base.update(overrides)
    return base


@pytest.mark.parametrize("text, value", [
    ("0/0", 0), ("0/B000064", 0x0B * SEG + 100), ("16/B374D848", (0x16 << 32) + 0xB374D848), ("", None),
    (None, None)])
def test_parse_lsn(text, value):
    assert walarchive.parse_lsn(text) == value


def test_parse_lsn_refuses_garbage():
    with pytest.raises(ValueError):
        walarchive.parse_lsn("not/a/lsn")


@pytest.mark.parametrize("name, end", [
    ("00000001000000000000000A", 0x0B * SEG),
    ("000000020000000100000003", ((1 << 32) // SEG + 3 + 1) * SEG),
    ("00000001000000000000000A.00000028.backup", 0x0A * SEG),  # the segment itself is not proven complete
    ("00000001000000000000000A.partial", 0x0A * SEG),
    ("00000002.history", None),
    ("", None),
    (None, None)])
def test_segment_end(name, end):
    assert walarchive.segment_end(name, SEG) == end


def test_parse_stats_reads_psql_fields_with_nulls_empty():
    row = ["10", "00000001000000000000000A", "1799999980.5", "0", "", "", "on", "60", "f", "0/B000064",
           "16777216", "1800000000.25"]
    parsed = walarchive.parse_stats(row)
    assert parsed == stats(last_archived=1799999980.5, now=1800000000.25)


def test_parse_stats_refuses_a_short_row():
    with pytest.raises(ValueError):
        walarchive.parse_stats(["1", "2"])


def test_a_healthy_archive_is_ok():
    result = walarchive.assess(stats(), 300)
    assert result["ok"] and result["problems"] == []
    assert result["age_seconds"] == 20 and result["unarchived_bytes"] == 100 and result["at_risk_seconds"] == 20
    assert result["failing"] is False


@pytest.mark.parametrize("age, target, alert", [(299, 300, False), (300, 300, False), (301, 300, True),
                                                (61, 60, True), (3600, 7200, False)])
def test_the_age_against_the_target_while_wal_waits(age, target, alert):
    result = walarchive.assess(stats(last_archived=NOW - age), target)
    assert result["age_seconds"] == age
    assert (not result["ok"]) is alert
    if alert:
        assert "more than the RPO target" in result["problems"][0] and "dr_rpo_target" in result["problems"][0]


def test_a_quiet_database_with_nothing_waiting_is_not_a_problem_however_old_the_archive():
    result = walarchive.assess(stats(last_archived=NOW - 86400, current_lsn=0x0B * SEG), 300)
    assert result["ok"], result["problems"]
    assert result["unarchived_bytes"] == 0 and result["at_risk_seconds"] == 0 and result["age_seconds"] == 86400


def test_an_unknown_position_counts_as_waiting():
    result = walarchive.assess(stats(last_archived=NOW - 900, current_lsn=None, in_recovery=True), 300)
    assert result["unarchived_bytes"] is None and not result["ok"]
    assert "an unknown amount" in result["problems"][0]


def test_failing_archiving_is_a_problem_even_before_the_target_is_missed():
    result = walarchive.assess(stats(failed_count=3, last_failed_wal="00000001000000000000000B",
                                     last_failed=NOW - 5), 300)
    assert result["failing"] and not result["ok"]
    assert len(result["problems"]) == 1 and "WAL archiving fails" in result["problems"][0]
    assert "00000001000000000000000B" in result["problems"][0] and "3 failures" in result["problems"][0]


def test_an_old_failure_followed_by_success_is_not_failing():
    result = walarchive.assess(stats(failed_count=3, last_failed_wal="000000010000000000000009",
                                     last_failed=NOW - 600), 300)
    assert not result["failing"] and result["ok"]


def test_failing_and_too_old_gives_both_problems():
    result = walarchive.assess(stats(last_archived=NOW - 1000, failed_count=40, last_failed=NOW - 2), 300)
    assert len(result["problems"]) == 2
    assert result["at_risk_seconds"] == 1000


def test_archive_mode_off():
    result = walarchive.assess(stats(archive_mode="off", archived_count=0, last_archived_wal=None,
                                     last_archived=None), 300)
    assert len(result["problems"]) == 1 and "archive_mode=off" in result["problems"][0]


def test_nothing_ever_archived_while_wal_waits():
    result = walarchive.assess(stats(archived_count=0, last_archived_wal=None, last_archived=None), 300)
    assert result["newest_archived"] is None and "no WAL segment was archived yet" in result["problems"][0]


def test_reset_statistics_fall_back_on_the_repositories():
    repos = [dict(repo=1, max="00000001000000000000000A", max_archived=NOW - 30),
             dict(repo=2, max="00000001000000000000000A", max_archived=NOW - 31)]
    result = walarchive.assess(stats(last_archived_wal=None, last_archived=None, archived_count=0), 300, repos)
    assert result["newest_archived"] == NOW - 30 and result["ok"], result["problems"]
    assert [r["age_seconds"] for r in result["repos"]] == [30, 31]


def test_a_repository_behind_the_server_and_older_than_the_target():
    repos = [dict(repo=1, max="00000001000000000000000A", max_archived=NOW - 20),
             dict(repo=2, max="000000010000000000000004", max_archived=NOW - 4000)]
    result = walarchive.assess(stats(), 300, repos)
    assert len(result["problems"]) == 1 and result["problems"][0].startswith("repo2's newest WAL segment")


def test_a_repository_whose_newest_segment_is_old_but_current_is_fine():
    repos = [dict(repo=1, max="00000001000000000000000A", max_archived=NOW - 4000)]
    assert walarchive.assess(stats(last_archived=NOW - 4000, current_lsn=0x0B * SEG), 300, repos)["ok"]


def test_a_repository_without_wal():
    result = walarchive.assess(stats(), 300, [dict(repo=2, max=None, max_archived=None)])
    assert result["problems"] == ["repo2 holds no archived WAL: check the repository (pgbackrest check)"]


# -- the module --------------------------------------------------------------------------------------------------
@pytest.fixture
def archiver(monkeypatch):
    state = dict(row=["10", "00000001000000000000000A", str(NOW - 400), "2", "00000001000000000000000B",
                      str(NOW - 1), "on", "60", "f", "0/B000064", str(SEG), str(NOW)], fail=False, sql=[])

    def query(self, sql, db=None):
        state["sql"].append(sql)
        if state["fail"]:
            raise PostgresError("psql failed (exit status 2): could not connect", kind="unreachable")
        return [state["row"]]

    monkeypatch.setattr(PostgresClient, "query", query)
    return state


def test_module_reports_the_problems_without_failing(archiver, capsys):
    result = run_module(pg_wal_archive.main, dict(db="postgres", rpo_target=300), capsys)
    assert not result.get("failed") and result["changed"] is False
    assert result["ok"] is False and result["failing"] is True and len(result["problems"]) == 2
    assert result["archiver"]["failed_count"] == 2 and result["age_seconds"] == 400
    assert archiver["sql"] == [walarchive.STATS_SQL]


def test_module_in_check_mode_reads_the_same(archiver, capsys):
    result = run_module(pg_wal_archive.main, dict(db="postgres", rpo_target=600), capsys, check_mode=True)
    assert result["failing"] is True and result["age_seconds"] == 400


def test_module_fails_when_the_server_cannot_be_read(archiver, capsys):
    archiver["fail"] = True
    result = run_module(pg_wal_archive.main, dict(db="postgres"), capsys)
    assert result["failed"] and result["msg"].startswith("cannot read pg_stat_archiver: ")


def test_module_refuses_a_non_positive_target(archiver, capsys):
    result = run_module(pg_wal_archive.main, dict(db="postgres", rpo_target=0), capsys)
    assert result["failed"] and "rpo_target" in result["msg"]
