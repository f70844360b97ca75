# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of dr_file_repo: ``main()`` with ``patch_module_args`` and a fake restic.

``run_command`` is replaced by :class:`FakeRestic`, a small in-memory repository answering ``cat``, ``init``,
``snapshots``, ``backup``, ``ls``, ``restore``, ``forget``, ``prune``, ``check`` and ``stats``, which records every
argv and environment: the tests assert what would run, that secrets only travel in the environment, and that
check mode changes nothing. The real restic is exercised by tests/integration/test_file_repo.py.
"""

from __future__ import annotations

import json

import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common import warnings as ansible_warnings

from tests.support.modules import run_module, warning_texts
from ansible_collections.atlasia.dr.plugins.module_utils import restic
from ansible_collections.atlasia.dr.plugins.modules import dr_file_repo

KEY = "environment-secret-never-in-argv"
S3_SECRET = "s3-secret-never-in-argv"
COMMANDS = ("cat", "init", "snapshots", "backup", "ls", "restore", "forget", "prune", "check", "stats")


class FakeRestic(object):
    def __init__(self):
        self.exists = True
        self.snaps = []
        self.fail = {}
        self.calls = []

    def add(self, timestamp, component="uploads"):
        sid = ("%02d" % (len(self.snaps) + 1)) * 32
        self.snaps.append({"time": "2026-12-%sT02:00:00Z" % timestamp[6:8], "id": sid, "short_id": sid[:8],
                           "paths": ["/srv/u"], "hostname": "h",
                           "tags": ["set=" + timestamp, "component=" + component]})
        return sid

    def run_command(self, argv, environ_update=None, cwd=None, check_rc=False, **kwargs):
        command = next(arg for arg in argv[3:] if arg in COMMANDS)
        self.calls.append(dict(command=command, argv=list(argv), env=dict(environ_update or {})))
        if command in self.fail:
            return self.fail[command]
        if command != "init" and not self.exists:
            return 1, "", "Fatal: unable to open config file: no such file\nIs there a repository at the following location?"
        if command == "init":
            self.exists = True
            return 0, "{}", ""
        if command == "snapshots":
            found = self.snaps
            if "--tag" in argv:
                tags = set(argv[argv.index("--tag") + 1].split(","))
                found = [s for s in found if tags <= set(s["tags"])]
            return 0, json.dumps(found), ""
        if command == "backup":
            ts = argv[argv.index("--tag") + 1][len("set="):]
            sid = "f" * 64 if "--dry-run" in argv else self.add(ts)
            summary = {"message_type": "summary", "files_new": 1, "files_changed": 2, "data_added": 300,
                       "total_files_processed": 3, "total_bytes_processed": 3000, "snapshot_id": sid[:8]}
            return 0, json.dumps(summary) + "\n", ""
        if command == "ls":
            nodes = [{"struct_type": "node", "type": "file", "size": 7}] * 2
            return 0, "\n".join(json.dumps(n) for n in nodes), ""
        if command == "forget":
            ids = argv[argv.index("forget") + 2:]
            self.snaps = [s for s in self.snaps if s["id"] not in ids]
            return 0, "", ""
        if command == "stats":
            return 0, json.dumps({"total_size": 1000 * len(self.snaps)}), ""
        return 0, "no errors were found\n", ""

    def names(self):
        return [c["command"] for c in self.calls]


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(ansible_warnings, "_global_warnings", {})


@pytest.fixture
def cli(monkeypatch):
    fake = FakeRestic()
    monkeypatch.setattr(AnsibleModule, "run_command", lambda self, argv, **kw: fake.run_command(argv, **kw))
    monkeypatch.setattr(AnsibleModule, "get_bin_path",
                        lambda self, name, required=False, opt_dirs=None: "/usr/bin/%s" % name)
    return fake


@pytest.fixture
def uploads(tmp_path):
    folder = tmp_path / "uploads"
    (folder / "2026").mkdir(parents=True)
    (folder / "2026" / "a.pdf").write_bytes(b"a" * 100)
    (folder / "b.png").write_bytes(b"b" * 50)
    return folder


def run(args, capsys, check_mode=False):
    args = dict({"repository": "/srv/backups/files", "key": KEY}, **args)
    args = dict((name, value) for name, value in args.items() if value is not None)
    return run_module(dr_file_repo.main, args, capsys, check_mode=check_mode)


def backup_args(folder, **extra):
    return dict({"paths": [str(folder)], "component": "uploads", "timestamp": "20261202_020000"}, **extra)


def test_backup_creates_the_repository_and_tags_the_snapshot(cli, uploads, capsys):
    cli.exists = False
    result = run(backup_args(uploads), capsys)
    assert not result.get("failed"), result
    assert result["changed"] and result["created"]
    assert result["snapshot_id"] == cli.snaps[0]["id"] and result["short_id"] == cli.snaps[0]["id"][:8]
    assert (result["files"], result["bytes_added"], result["files_new"]) == (3, 300, 1)
    assert result["total_bytes"] == 1000 and result["parent"] is None
    entry = result["manifest_entry"]
    assert entry["snapshot_id"] == result["snapshot_id"] and entry["name"] == "uploads"
    assert (entry["component"], entry["store"], entry["files"], entry["bytes_added"]) == ("files", "repository", 3, 300)
    assert cli.names() == ["snapshots", "init", "backup", "snapshots", "stats"]
    backup = cli.calls[2]["argv"]
    assert backup[-1] == str(uploads)
    assert "set=20261202_020000" in backup and "component=uploads" in backup


def test_backup_takes_the_latest_snapshot_of_the_component_as_parent(cli, uploads, capsys):
    cli.add("20261130_020000", component="logs")
    older = cli.add("20261201_020000")
    result = run(backup_args(uploads), capsys)
    assert result["parent"] == older
    argv = [c for c in cli.calls if c["command"] == "backup"][0]["argv"]
    assert argv[argv.index("--parent") + 1] == older


def test_secrets_never_reach_the_command_line_nor_the_result(cli, uploads, capsys):
    result = run(dict(backup_args(uploads), s3=True, bucket="b", prefix="env/files",
                      endpoint_url="http://127.0.0.1:8333", access_key="AK", secret_key=S3_SECRET), capsys)
    assert not result.get("failed"), result
    assert result["repository"] == "s3:http://127.0.0.1:8333/b/env/files"
    password = restic.repository_password(KEY)
    for call in cli.calls:
        joined = " ".join(call["argv"])
        assert KEY not in joined and S3_SECRET not in joined and password not in joined
        assert call["env"]["RESTIC_PASSWORD"] == password
        assert call["env"]["AWS_SECRET_ACCESS_KEY"] == S3_SECRET
    assert KEY not in json.dumps(result) and S3_SECRET not in json.dumps(result)


def test_check_mode_backup_writes_nothing(cli, uploads, capsys):
    result = run(backup_args(uploads), capsys, check_mode=True)
    assert result["changed"] and result["snapshot_id"] == ""
    assert result["bytes_added"] == 300
    backup = [c for c in cli.calls if c["command"] == "backup"]
    assert len(backup) == 1 and "--dry-run" in backup[0]["argv"]
    assert cli.snaps == []
    cli.exists = False
    cli.calls = []
    result = run(backup_args(uploads), capsys, check_mode=True)
    assert result["created"] and result["files"] == 2 and result["bytes"] == 150
    assert cli.names() == ["snapshots"]


def test_backup_with_an_age_filter_passes_the_selected_files(cli, uploads, capsys, tmp_path):
    seen = {}
    original = cli.run_command

    def capture(argv, **kwargs):
        if "--files-from-verbatim" in argv:
            with open(argv[argv.index("--files-from-verbatim") + 1]) as handle:
                seen["list"] = handle.read().split()
        return original(argv, **kwargs)

    cli.run_command = capture
    result = run(backup_args(uploads, max_age_days=7, component="uploads"), capsys)
    assert not result.get("failed"), result
    assert sorted(seen["list"]) == sorted([str(uploads / "2026" / "a.pdf"), str(uploads / "b.png")])
    assert not list(tmp_path.glob(".dr-file-repo-*"))


def test_missing_paths_warn_or_fail(cli, uploads, capsys, tmp_path):
    gone = str(tmp_path / "gone")
    result = run(backup_args(uploads, paths=[str(uploads), gone]), capsys)
    assert result["skipped_missing"] == [gone]
    assert any(gone in text for text in warning_texts(result))
    result = run(backup_args(uploads, paths=[str(uploads), gone], missing="fail"), capsys)
    assert result["failed"] and result["error_kind"] == "request"
    result = run(backup_args(uploads, paths=[gone], missing="ignore"), capsys)
    assert result["failed"] and "nothing to back up" in result["msg"]


def test_wrong_key_is_named(cli, uploads, capsys):
    cli.fail["snapshots"] = (1, "", "Fatal: wrong password or no key found\n")
    result = run(backup_args(uploads), capsys)
    assert result["failed"] and result["error_kind"] == "password"
    assert "dr_encryption_key" in result["msg"]


def test_backup_without_init_on_a_missing_repository(cli, uploads, capsys):
    cli.exists = False
    result = run(backup_args(uploads, init=False), capsys)
    assert result["failed"] and result["error_kind"] == "missing"
    assert "init" not in cli.names()


@pytest.mark.parametrize("check_mode", [False, True])
def test_restore_include_into_dest(cli, capsys, tmp_path, check_mode):
    sid = cli.add("20261201_020000")
    dest = tmp_path / "restore"
    result = run({"state": "restore", "snapshot": sid[:8], "dest": str(dest), "include": ["/srv/u/2026"]}, capsys,
                 check_mode=check_mode)
    assert not result.get("failed"), result
    assert result["snapshot_id"] == sid and (result["files"], result["bytes"]) == (2, 14)
    assert result["snapshot"]["set"] == "20261201_020000"
    assert ("restore" in cli.names()) is (not check_mode)
    assert dest.is_dir() is (not check_mode)
    if not check_mode:
        argv = [c for c in cli.calls if c["command"] == "restore"][0]["argv"]
        assert argv[argv.index("--target") + 1] == str(dest) and argv[argv.index("--include") + 1] == "/srv/u/2026"


def test_restore_latest_needs_a_component_and_unknown_ids_fail(cli, capsys, tmp_path):
    cli.add("20261201_020000")
    newest = cli.add("20261202_020000")
    result = run({"state": "restore", "snapshot": "latest", "dest": str(tmp_path)}, capsys)
    assert result["failed"] and "component" in result["msg"]
    result = run({"state": "restore", "snapshot": "latest", "component": "uploads", "dest": str(tmp_path)}, capsys)
    assert result["snapshot_id"] == newest
    result = run({"state": "restore", "snapshot": "deadbeef", "dest": str(tmp_path)}, capsys)
    assert result["failed"] and result["error_kind"] == "not_found"
    result = run({"state": "restore", "snapshot": newest, "dest": "relative"}, capsys)
    assert result["failed"] and result["error_kind"] == "request"


def test_forget_by_set_and_by_id_then_prune(cli, capsys):
    first = cli.add("20261201_020000")
    cli.add("20261201_020000", component="plugins")
    kept = cli.add("20261202_020000")
    result = run({"state": "forget", "timestamp": "20261201_020000"}, capsys, check_mode=True)
    assert result["changed"] and len(result["forgotten"]) == 2 and len(cli.snaps) == 3
    result = run({"state": "forget", "timestamp": "20261201_020000", "prune": True}, capsys)
    assert len(result["forgotten"]) == 2 and [s["id"] for s in cli.snaps] == [kept]
    assert "prune" in cli.names() and result["total_bytes"] == 1000
    cli.calls = []
    result = run({"state": "forget", "snapshots": [first]}, capsys)  # already gone: nothing to do
    assert result["changed"] is False and result["forgotten"] == [] and "forget" not in cli.names()
    result = run({"state": "forget"}, capsys)
    assert result["failed"]


def test_check_damage_fails_with_its_kind(cli, capsys):
    result = run({"state": "check", "read_data_subset": "1/10"}, capsys, check_mode=True)
    assert not result.get("failed") and result["changed"] is False and "no errors" in result["output"]
    cli.fail["check"] = (1, "", "Pack ID does not match, want 1, got 2\nFatal: repository contains errors\n")
    result = run({"state": "check", "read_data_subset": "100%"}, capsys)
    assert result["failed"] and result["error_kind"] == "damaged" and "Pack ID" in result["msg"]
    result = run({"state": "check", "read_data_subset": "lots"}, capsys)
    assert result["failed"] and result["error_kind"] == "request"


def test_prune_check_mode_is_a_dry_run(cli, capsys):
    result = run({"state": "prune"}, capsys, check_mode=True)
    assert result["changed"] is False
    assert [c for c in cli.calls if c["command"] == "prune"][0]["argv"][-1] == "--dry-run"


def test_snapshots_of_a_set(cli, capsys):
    cli.add("20261201_020000")
    cli.add("20261202_020000")
    result = run({"state": "snapshots", "timestamp": "20261202_020000"}, capsys)
    assert [s["set"] for s in result["snapshots"]] == ["20261202_020000"]
    assert result["snapshots"][0]["component"] == "uploads"


def test_locked_repository(cli, capsys):
    cli.fail["snapshots"] = (1, "", "unable to create lock in backend: repository is already locked by PID 9\n")
    result = run({"state": "snapshots"}, capsys)
    assert result["failed"] and result["error_kind"] == "locked" and "unlock" in result["msg"]


def test_repository_or_bucket(cli, capsys):
    result = run({"state": "snapshots", "repository": None}, capsys)
    assert result["failed"] and "repository" in result["msg"]
    result = run({"state": "snapshots", "s3": True}, capsys)
    assert result["failed"] and "bucket" in result["msg"]
    result = run({"state": "snapshots", "bucket": "b"}, capsys)  # a bucket from the s3 group defaults
    assert result["repository"] == "/srv/backups/files"
