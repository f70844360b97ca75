# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the pgbackrest module: ``main()`` with ``patch_module_args`` and a fake pgBackRest.

``run_command`` is replaced by :class:`FakeCli`, which answers ``info``/``repo-ls``/``backup``... from a small
in-memory repository and records every argv and environment, so the tests can assert what would run, that
secrets only travel in the environment, and that check mode runs nothing that changes anything. The real
pgBackRest is exercised by tests/integration/test_pgbackrest.py.
"""

from __future__ import annotations

import json
import os

import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common import warnings as ansible_warnings

from tests.support.modules import run_module
from ansible_collections.atlasia.dr.plugins.modules import pgbackrest

SECRET = "s3-secret-never-in-argv"


def info_entry(labels, missing=False):
    code = 1 if missing else (0 if labels else 2)
    return [{
        "name": "atlasia",
        "status": {"code": code, "message": "missing stanza path" if missing else "ok"},
        "repo": [{"key": 1, "cipher": "none", "status": {"code": code, "message": "x"}}],
        "archive": [] if missing else [{"database": {"repo-key": 1}, "id": "15-1",
                                        "min": "000000010000000000000001", "max": "000000010000000000000005"}],
        "backup": [{"label": label, "type": "full", "database": {"repo-key": 1}, "error": False,
                    "timestamp": {"start": 1795658400 + i, "stop": 1795658401 + i}, "info": {"size": 1}}
                   for i, label in enumerate(labels)],
    }]


class FakeCli(object):
    def __init__(self, labels=None, missing=False, fail=None):
        self.labels = list(labels or [])
        self.missing = missing
        self.fail = fail or {}
        self.calls = []

    def command_of(self, argv):
        for arg in argv:
            if arg in ("info", "repo-ls", "stanza-create", "check", "backup", "expire", "verify", "restore"):
                return arg
        raise AssertionError(argv)

    def __call__(self, module, argv, environ_update=None, cwd=None, check_rc=False, **kwargs):
        command = self.command_of(argv)
        self.calls.append(dict(command=command, argv=list(argv), env=dict(environ_update or {})))
        if command in self.fail:
            return self.fail[command]
        if command == "info":
            return 0, json.dumps(info_entry(self.labels, self.missing)), ""
        if command == "repo-ls":
            return 0, json.dumps({"000000010000000000000005-abc.zst": {"type": "file", "time": 1795660000}}), ""
        if command == "stanza-create":
            self.missing = False
            return 0, "INFO: stanza-create command end: completed successfully", ""
        if command == "backup":
            self.labels.append("20261126-0%d0000F" % (len(self.labels) + 1))
            return 0, "INFO: new backup label = %s" % self.labels[-1], ""
        if command == "expire":
            if "--dry-run" in argv:
                return 0, "P00 INFO: [DRY-RUN] repo1: expire full backup set 20261126-010000F", ""
            self.labels = self.labels[1:]
            return 0, "", ""
        if command == "restore":
            return 0, "P00 INFO: repo1: restore backup set 20261126-010000F, recovery will start at x", ""
        return 0, "ok", ""

    def run_command(self, argv, **kwargs):
        """Stands in for AnsibleModule.run_command (set on the class, so called without the module)."""
        return self(None, argv, **kwargs)

    def names(self):
        return [c["command"] for c in self.calls]


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(ansible_warnings, "_global_warnings", {})


@pytest.fixture
def cli(monkeypatch):
    fake = FakeCli()
    monkeypatch.setattr(AnsibleModule, "run_command", fake.run_command)
    monkeypatch.setattr(AnsibleModule, "get_bin_path",
                        lambda self, name, required=False, opt_dirs=None: "/usr/bin/%s" % name)
    return fake


def run(args, capsys, check_mode=False):
    args = dict({"stanza": "atlasia", "config": "/etc/pgbackrest/pgbackrest.conf"}, **args)
    return run_module(pgbackrest.main, args, capsys, check_mode=check_mode)


def test_info_returns_backups_archive_and_wal_times(cli, capsys):
    cli.labels = ["20261126-010000F"]
    result = run({"command": "info"}, capsys)
    assert result["changed"] is False
    assert result["newest_backup"]["label"] == "20261126-010000F"
    assert result["archive"][0]["max_archived"] == 1795660000
    assert result["newest_archived_time"] == "2026-11-26T02:26:40+00:00"
    assert cli.names() == ["info", "repo-ls"]
    ls = cli.calls[1]["argv"]
    assert "archive/atlasia/15-1/0000000100000000" in ls and "--filter=^000000010000000000000005" in ls


def test_secrets_travel_in_the_environment_only(cli, capsys):
    result = run({"command": "check", "secrets": {"repo2-s3-key-secret": SECRET},
                  "options": {"io-timeout": 30}}, capsys)
    assert not result.get("failed"), result
    call = cli.calls[0]
    assert SECRET not in " ".join(call["argv"])
    assert call["env"]["PGBACKREST_REPO2_S3_KEY_SECRET"] == SECRET
    assert call["env"]["PGBACKREST_IO_TIMEOUT"] == "30"
    assert SECRET not in json.dumps(result)
    assert result["environment"] == {"PGBACKREST_IO_TIMEOUT": "30"}


def test_secret_in_options_is_refused(cli, capsys):
    result = run({"command": "info", "options": {"repo1-cipher-pass": "x"}}, capsys)
    assert result["failed"] and "secrets" in result["msg"]
    assert cli.calls == []


@pytest.mark.parametrize("check_mode", [False, True])
def test_stanza_create_when_missing(cli, capsys, check_mode):
    cli.missing = True
    result = run({"command": "stanza-create"}, capsys, check_mode=check_mode)
    assert result["changed"] is True
    assert ("stanza-create" in cli.names()) is (not check_mode)


def test_stanza_create_is_idempotent(cli, capsys):
    result = run({"command": "stanza-create"}, capsys)
    assert result["changed"] is False and cli.names() == ["info"]


def test_backup_returns_the_new_backup(cli, capsys):
    cli.labels = ["20261126-010000F"]
    result = run({"command": "backup", "backup_type": "full", "repo": 1}, capsys)
    assert result["changed"] is True
    assert result["backup"]["label"] == "20261126-020000F"
    argv = [c for c in cli.calls if c["command"] == "backup"][0]["argv"]
    assert argv[-2:] == ["backup", "--type=full"] and "--repo=1" in argv


def test_backup_in_check_mode_runs_nothing(cli, capsys):
    result = run({"command": "backup"}, capsys, check_mode=True)
    assert result["changed"] is True and cli.calls == []
    assert result["argv"][-1] == "--type=incr"


def test_expire(cli, capsys):
    cli.labels = ["20261126-010000F", "20261126-020000F"]
    result = run({"command": "expire"}, capsys)
    assert result["changed"] is True and result["expired"] == ["20261126-010000F"]


def test_expire_in_check_mode_is_a_dry_run(cli, capsys):
    cli.labels = ["20261126-010000F", "20261126-020000F"]
    result = run({"command": "expire"}, capsys, check_mode=True)
    assert result["changed"] is True and len(result["expired"]) == 1
    assert cli.names() == ["expire"] and "--dry-run" in cli.calls[0]["argv"]
    assert cli.labels == ["20261126-010000F", "20261126-020000F"]


def test_restore_point_in_time(cli, capsys, tmp_path):
    target = tmp_path / "main.pitr"
    result = run({"command": "restore", "pg_path": str(target), "target": "2026-11-26 10:41:00+00"}, capsys)
    assert result["changed"] is True
    argv = cli.calls[0]["argv"]
    assert "--pg1-path=%s" % target in argv
    assert argv[argv.index("restore") + 1:] == ["--type=time", "--target=2026-11-26 10:41:00+00",
                                                "--target-action=promote"]
    assert result["restore"]["set_used"] == "20261126-010000F" and result["restore"]["repo_used"] == 1


def test_restore_refuses_a_non_empty_directory(cli, capsys, tmp_path):
    (tmp_path / "PG_VERSION").write_text("15\n")
    result = run({"command": "restore", "pg_path": str(tmp_path)}, capsys)
    assert result["failed"] and "not empty" in result["msg"] and cli.calls == []


def test_restore_refuses_a_time_without_offset(cli, capsys, tmp_path):
    result = run({"command": "restore", "pg_path": str(tmp_path / "x"), "target": "2026-11-26 10:41:00"}, capsys)
    assert result["failed"] and "UTC offset" in result["msg"]


def test_restore_test_without_archiving(cli, capsys, tmp_path):
    run({"command": "restore", "pg_path": str(tmp_path / "x"), "target": "immediate", "archive_mode": "off",
         "set": "20261126-010000F"}, capsys)
    argv = cli.calls[0]["argv"]
    assert argv[argv.index("restore") + 1:] == ["--type=immediate", "--target-action=promote",
                                                "--set=20261126-010000F", "--archive-mode=off"]


def test_restore_in_check_mode_runs_nothing(cli, capsys, tmp_path):
    result = run({"command": "restore", "pg_path": str(tmp_path / "x")}, capsys, check_mode=True)
    assert result["changed"] is True and cli.calls == []


def test_info_does_not_get_pg_path_or_process_max(cli, capsys):
    run({"command": "info", "pg_path": "/x", "process_max": 4, "wal_times": False}, capsys)
    argv = cli.calls[0]["argv"]
    assert not [a for a in argv if a.startswith("--pg1-path") or a.startswith("--process-max")]


def test_failure_carries_code_and_hint(cli, capsys):
    cli.fail["check"] = (56, "", "ERROR: [056]: unable to find primary cluster - cannot proceed\n")
    result = run({"command": "check"}, capsys)
    assert result["failed"] and result["error_code"] == 56
    assert "PostgreSQL cannot be reached" in result["msg"]


def test_container(cli, capsys):
    run({"command": "check", "container": "aiteam_db_prod", "os_user": "postgres",
         "secrets": {"repo1-cipher-pass": "p"}, "pg_password": "pw"}, capsys)
    argv = cli.calls[0]["argv"]
    assert argv[:4] == ["/usr/bin/docker", "exec", "-u", "postgres"]
    assert argv[4:9] == ["-e", "PGBACKREST_REPO1_CIPHER_PASS", "-e", "PGPASSWORD", "aiteam_db_prod"]
    assert argv[9] == "pgbackrest"
    assert cli.calls[0]["env"]["PGPASSWORD"] == "pw"


def test_runuser_when_root(cli, capsys, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(pgbackrest.Runner, "current_user", staticmethod(lambda: "root"))
    run({"command": "check", "os_user": "postgres"}, capsys)
    assert cli.calls[0]["argv"][:4] == ["/usr/bin/runuser", "-u", "postgres", "--"]


@pytest.mark.parametrize("target,problem", [
    ("latest", None),
    ("1795659000.5", None),
    ("1795658000", "the oldest backup ended at 2026-11-26T02:00:01+00:00, after the target"),
    ("1795661000", "the newest WAL in the repository was archived at 2026-11-26T02:26:40+00:00, before the target: "
                   "restore to target=latest (up to then) or to an earlier time"),
    ("1795670000", "the target is in the future"),
])
def test_info_says_whether_the_repository_covers_a_target(cli, capsys, target, problem):
    cli.labels = ["20261126-010000F"]
    result = run({"command": "info", "pitr_target": target, "pitr_requested_at": 1795665000.0}, capsys)
    assert not result.get("failed"), result
    assert result["pitr_problem"] == problem


def test_info_of_an_empty_repository_has_no_backup_for_any_target(cli, capsys):
    result = run({"command": "info", "pitr_target": "latest"}, capsys)
    assert result["pitr_problem"].startswith("the repository has no backup")
    assert "pitr_problem" not in run({"command": "info"}, capsys)


def test_info_refuses_a_target_that_is_no_time(cli, capsys):
    cli.labels = ["20261126-010000F"]
    result = run({"command": "info", "pitr_target": "yesterday"}, capsys)
    assert result["failed"] and "epoch seconds" in result["msg"]
