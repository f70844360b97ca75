# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of module_utils/pgbackrest.py: argument lists, secrets, targets, info summaries, error hints."""

from __future__ import annotations

import pytest

from ansible_collections.atlasia.dr.plugins.module_utils import pgbackrest as pgbr

INFO_ENTRY = {
    "name": "atlasia",
    "status": {"code": 0, "message": "ok"},
    "repo": [{"key": 1, "cipher": "none", "status": {"code": 0, "message": "ok"}},
             {"key": 2, "cipher": "aes-256-cbc", "status": {"code": 0, "message": "ok"}}],
    "archive": [{"database": {"id": 1, "repo-key": 1}, "id": "15-1", "min": "000000010000000000000001",
                 "max": "000000010000000000000009"},
                {"database": {"id": 1, "repo-key": 2}, "id": "15-1", "min": "000000010000000000000002",
                 "max": "000000010000000000000008"}],
    "backup": [
        {"label": "20261126-020001F", "type": "full", "database": {"repo-key": 1}, "error": False,
         "timestamp": {"start": 1795658401, "stop": 1795658409},
         "archive": {"start": "000000010000000000000004", "stop": "000000010000000000000004"},
         "info": {"size": 100, "repository": {"size": 10}}, "prior": None},
        {"label": "20261126-030001F", "type": "full", "database": {"repo-key": 2}, "error": False,
         "timestamp": {"start": 1795662001, "stop": 1795662009}, "archive": {}, "info": {"size": 100}},
        {"label": "20261126-040001F_20261126-050001D", "type": "diff", "database": {"repo-key": 1},
         "error": True, "timestamp": {"start": 1795669201, "stop": 1795669209}, "info": {}},
    ],
}


@pytest.mark.parametrize("options, expected", [
    ({}, []),
    ({"start-fast": True, "archive-check": False}, ["--no-archive-check", "--start-fast"]),
    ({"io-timeout": 120, "skip": None}, ["--io-timeout=120"]),
    ({"db-include": ["a", "b"]}, ["--db-include=a", "--db-include=b"]),
])
def test_option_args(options, expected):
    assert pgbr.option_args(options) == expected


def test_option_env_and_secret_env():
    assert pgbr.option_env({"start-fast": True, "repo1-retention-full": 4, "db-include": ["a", "b"],
                            "x": None}) == {
        "PGBACKREST_START_FAST": "y", "PGBACKREST_REPO1_RETENTION_FULL": "4", "PGBACKREST_DB_INCLUDE": "a:b"}
    assert pgbr.secret_env({"repo2-s3-key-secret": "s3cr3t", "repo1-cipher-pass": "", "repo2-s3-key": None}) == {
        "PGBACKREST_REPO2_S3_KEY_SECRET": "s3cr3t"}


@pytest.mark.parametrize("name", ["repo2-s3-key", "repo2-s3-key-secret", "repo1-cipher-pass", "repo3-azure-key",
                                  "repo1-gcs-key", "repo2-s3-token"])
def test_secret_options_are_refused_on_the_command_line(name):
    problems = pgbr.check_option_names({name: "x"}, {})
    assert problems and "secrets" in problems[0]
    assert pgbr.check_option_names({}, {name: "x"}) == []


def test_bad_option_names():
    assert pgbr.check_option_names({"Start Fast": 1}, {}) and pgbr.check_option_names({}, {"--x": 1})
    assert pgbr.check_option_names({"repo2-s3-key-type": "auto", "start-fast": True}, {}) == []


@pytest.mark.parametrize("target, expected", [
    ("latest", ["--type=default"]),
    ("immediate", ["--type=immediate", "--target-action=promote"]),
    ("2026-11-26 10:41:00+00", ["--type=time", "--target=2026-11-26 10:41:00+00", "--target-action=promote"]),
    ("2026-11-26T10:41:00.123456+01:00", ["--type=time", "--target=2026-11-26T10:41:00.123456+01:00",
                                          "--target-action=promote"]),
    ("2026-11-26 10:41:00Z", ["--type=time", "--target=2026-11-26 10:41:00Z", "--target-action=promote"]),
])
def test_restore_target_args(target, expected):
    assert pgbr.restore_target_args(target) == expected


@pytest.mark.parametrize("target", ["2026-11-26 10:41:00", "2026-11-26", "yesterday", "10:41", "latest; rm -rf /"])
def test_restore_target_needs_a_time_with_an_offset(target):
    with pytest.raises(ValueError):
        pgbr.restore_target_args(target)


def test_exclusive_and_action():
    assert pgbr.restore_target_args("2026-11-26 10:41:00+00", "pause", True)[-2:] == [
        "--target-action=pause", "--target-exclusive"]


def test_build_argv_order():
    argv = pgbr.build_argv("/usr/bin/pgbackrest", "backup", stanza="atlasia", config="/etc/pgbackrest/p.conf",
                           repo=2, options={"log-level-console": "info"}, command_args=["--type=full"])
    assert argv == ["/usr/bin/pgbackrest", "--config=/etc/pgbackrest/p.conf", "--stanza=atlasia", "--repo=2",
                    "--log-level-console=info", "backup", "--type=full"]


def test_wrap_host_and_container():
    argv = ["pgbackrest", "info"]
    assert pgbr.wrap(argv, os_user="postgres", current_user="postgres") == argv
    assert pgbr.wrap(argv) == argv
    assert pgbr.wrap(argv, os_user="postgres", runuser="/usr/sbin/runuser", current_user="root", is_root=True) == [
        "/usr/sbin/runuser", "-u", "postgres", "--", "pgbackrest", "info"]
    with pytest.raises(ValueError):
        pgbr.wrap(argv, os_user="postgres", current_user="deploy", is_root=False)
    assert pgbr.wrap(argv, env_names=["PGBACKREST_REPO2_S3_KEY_SECRET", "PGBACKREST_A"], os_user="postgres",
                     container="aiteam_db_prod", docker="/usr/bin/docker") == [
        "/usr/bin/docker", "exec", "-u", "postgres", "-e", "PGBACKREST_A", "-e", "PGBACKREST_REPO2_S3_KEY_SECRET",
        "aiteam_db_prod", "pgbackrest", "info"]


def test_summarize():
    summary = pgbr.summarize(INFO_ENTRY)
    assert summary["status_code"] == 0 and summary["backup_count"] == 3
    assert [b["label"] for b in summary["backups"]] == ["20261126-020001F", "20261126-030001F",
                                                        "20261126-040001F_20261126-050001D"]
    assert summary["newest_backup"]["label"] == "20261126-030001F"  # the newest has an error
    assert summary["oldest_backup"]["stop_time"] == "2026-11-26T02:00:09+00:00"
    assert summary["newest_backup"]["repo"] == 2
    only1 = pgbr.summarize(INFO_ENTRY, repo=1)
    assert [a["repo"] for a in only1["archive"]] == [1] and only1["newest_backup"]["label"] == "20261126-020001F"
    assert pgbr.summarize(None)["backups"] == []


@pytest.mark.parametrize("codes, missing", [([0, 0], False), ([2, 2], False), ([0, 1], True), ([3, 0], True)])
def test_stanza_missing(codes, missing):
    entry = {"repo": [{"key": i + 1, "status": {"code": c}} for i, c in enumerate(codes)]}
    assert pgbr.stanza_missing(entry) is missing


def test_stanza_missing_without_repo_list():
    assert pgbr.stanza_missing(None) is True
    assert pgbr.stanza_missing({"status": {"code": 1}}) is True
    assert pgbr.stanza_missing({"status": {"code": 0}}) is False


def test_wal_paths_and_times():
    assert pgbr.wal_dir("atlasia", "15-1", "000000010000000000000009") == "archive/atlasia/15-1/0000000100000000"
    listing = {"000000010000000000000008-aa.zst": {"type": "file", "time": 10},
               "000000010000000000000009-bb.zst": {"type": "file", "time": 20},
               "000000010000000000000009.00000028.backup": {"type": "file", "time": 30},
               "x": {"type": "path"}}
    assert pgbr.newest_file_time(listing, "000000010000000000000009") == 30
    assert pgbr.newest_file_time({}, "000000010000000000000009") is None


def test_restored_set():
    out = "P00   INFO: repo2: restore backup set 20261126-025921F, recovery will start at 2026-11-26 02:59:21"
    assert pgbr.restored_set(out) == {"set_used": "20261126-025921F", "repo_used": 2}
    assert pgbr.restored_set("INFO: restore backup set 20261126-025921F_20261126-030000D, recovery") == {
        "set_used": "20261126-025921F_20261126-030000D", "repo_used": None}
    assert pgbr.restored_set("nothing") == {}


@pytest.mark.parametrize("stderr, code, words", [
    ("ERROR: [056]: unable to find primary cluster - cannot proceed", 56, "PostgreSQL cannot be reached"),
    ("ERROR: [055]: unable to load info file ... HINT: has a stanza-create been performed?", 55, "stanza-create"),
    ("ERROR: [095]: unable to load info file: CryptoError: unable to find hostname '127.0.0.1' in certificate",
     95, "TLS"),
    ("ERROR: [082]: WAL segment 000000010000000000000004 was not archived before the 60000ms timeout", 82,
     "archive_command"),
    ("ERROR: [040]: unable to restore to path '/x' because it contains files", 40, "empty"),
    ("ERROR: [038]: unable to acquire lock on file '/tmp/pgbackrest/atlasia-backup.lock'", 38, "lock"),
])
def test_explain(stderr, code, words):
    msg = pgbr.explain("backup", 56, "", stderr)
    assert pgbr.error_code(stderr) == code
    assert msg.startswith("pgbackrest backup failed (exit status 56): ERROR: [%03d]" % code)
    assert words in msg


def test_iso_time():
    assert pgbr.iso_time(0) == "1970-01-01T00:00:00+00:00"
    assert pgbr.iso_time(None) is None


@pytest.mark.parametrize("text, tls", [
    ("ERROR: [095]: unable to load info file: certificate verify failed", True),
    ("P00 ERROR: [039]: SSL routines::wrong version number", True),
    ("P00 ERROR: [056]: unable to find primary cluster - cannot proceed\n"
     "    repo2-storage-ca-file=/etc/ssl/certs/atlasia-ca.pem", False),
])
def test_tls_hint_only_for_tls_failures(text, tls):
    advice = pgbr.hint(text)
    assert (advice is not None and advice.startswith("TLS")) is tls


# -- does a repository cover a point-in-time target? --------------------------------------------------------------
OLDEST = dict(stop=1000, stop_time="1970-01-01T00:16:40+00:00")
NEWEST = dict(stop=1500)


@pytest.mark.parametrize("newest,oldest,archived,target,now,problem", [
    (NEWEST, OLDEST, 2000, "latest", 3000, None),
    (NEWEST, OLDEST, 2000, "1000", 3000, None),
    (NEWEST, OLDEST, 2000, "2000.0", 2000, None),
    (NEWEST, OLDEST, 2000, 1500.25, 3000, None),
    (None, None, None, "latest", 3000, "the repository has no backup (take one: the backup role with "
                                       "dr_backup_physical)"),
    (None, None, 2000, "1500", 3000, "the repository has no backup"),
    (NEWEST, OLDEST, None, "latest", 3000, "no WAL was archived yet"),
    (NEWEST, OLDEST, None, "1500", 3000, "no WAL was archived yet"),
    (NEWEST, OLDEST, 2000, "3000.5", 3000, "the target is in the future"),
    (NEWEST, OLDEST, 2000, "999.9", 3000, "the oldest backup ended at 1970-01-01T00:16:40+00:00, after the target"),
    (NEWEST, OLDEST, 2000, "2500", 3000, "the newest WAL in the repository was archived at T, before the target: "
                                         "restore to target=latest (up to then) or to an earlier time"),
])
def test_coverage_problem_says_why_a_target_cannot_be_reached(newest, oldest, archived, target, now, problem):
    found = pgbr.coverage_problem(newest, oldest, archived, "T", target, now)
    if problem is None:
        assert found is None
    else:
        assert found is not None and found.startswith(problem)


def test_coverage_problem_refuses_a_target_that_is_no_time():
    with pytest.raises(ValueError):
        pgbr.coverage_problem(NEWEST, OLDEST, 2000, "T", "yesterday", 3000)


# --- progress -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ('{"execId":"11623-8a6d5ca8","pctCplt":3412,"pid":11623,"sz":9439150710,"szCplt":3221225472}',
     (3221225472, 9439150710)),
    ('{"execId":"1-2","percentComplete":2500}', (0.25, None)),
    ('{"execId":"1-2"}', None),
    ("", None),
    ("[]", None),
    ('{"sz":0,"szCplt":0}', None),
])
def test_backup_lock_progress(text, expected):
    assert pgbr.backup_lock_progress(text) == expected


def test_backup_progress_from_the_lock_file(tmp_path):
    measure = pgbr.BackupProgress(str(tmp_path), "main", estimate=1000)
    assert measure() == (0, 1000)  # no lock yet
    lock = tmp_path / "main-backup.lock"
    lock.write_text('{"execId":"1-2","percentComplete":4000}')
    assert measure() == (400, 1000)  # a percentage applied to the estimate
    lock.write_text('{"execId":"1-2","sz":5000,"szCplt":1250}')
    assert measure() == (1250, 5000)  # pgBackRest's own byte counts win
    assert pgbr.BackupProgress(str(tmp_path), "other")() == (0, None)


def test_lock_path(tmp_path):
    conf = tmp_path / "pgbackrest.conf"
    conf.write_text("[global]\nrepo1-path=/x\nlock-path = /run/pgbackrest\n\n[main]\npg1-path=/data\n")
    assert pgbr.lock_path({}, str(conf)) == "/run/pgbackrest"
    assert pgbr.lock_path({"lock-path": "/opt/lock"}, str(conf)) == "/opt/lock"
    assert pgbr.lock_path({}, str(tmp_path / "missing.conf")) == pgbr.DEFAULT_LOCK_PATH


def test_tree_size_counts_regular_files_only(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "1").write_bytes(b"x" * 100)
    (tmp_path / "PG_VERSION").write_bytes(b"15\n")
    (tmp_path / "link").symlink_to(tmp_path / "base" / "1")
    assert pgbr.tree_size(str(tmp_path)) == 103
    assert pgbr.tree_size(str(tmp_path / "missing")) == 0
