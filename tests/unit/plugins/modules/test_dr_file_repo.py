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
import os

import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common import warnings as ansible_warnings

from tests.support.modules import run_module, warning_texts
from ansible_collections.atlasia.dr.plugins.module_utils import restic
from ansible_collections.atlasia.dr.plugins.modules import dr_file_repo

KEY = "environment-secret-never-in-argv"
S3_SECRET = "s3-secret-never-in-argv"
COMMANDS = ("cat", "init", "snapshots", "backup", "ls", "restore", "forget", "prune", "check", "stats", "unlock")


class FakeRestic(object):
    def __init__(self):
        self.exists = True
        self.snaps = []
        self.fail = {}
        self.calls = []
        self.missing = set()  # repositories (--repo) that do not exist

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
        if command != "init" and (not self.exists or argv[argv.index("--repo") + 1] in self.missing):
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
            folder = argv[argv.index("--repo") + 1]
            if "--dry-run" not in argv and os.path.isdir(folder):  # a local repository on disk, as restic lays it out
                for sub, name, size in (("snapshots", sid, 10), (os.path.join("data", sid[:2]), sid, 250)):
                    os.makedirs(os.path.join(folder, sub), exist_ok=True)
                    with open(os.path.join(folder, sub, name), "wb") as handle:
                        handle.write(b"p" * size)
            summary = {"message_type": "summary", "files_new": 1, "files_changed": 2, "data_added": 300,
                       "total_files_processed": 3, "total_bytes_processed": 3000, "snapshot_id": sid[:8]}
            return 0, json.dumps(summary) + "\n", ""
        if command == "ls":
            nodes = [{"struct_type": "node", "type": "file", "size": 7, "path": "/srv/u/2026/%s.pdf" % name}
                     for name in ("a", "c")] + [{"struct_type": "node", "type": "dir", "path": "/srv/u/2026"}]
            return 0, "\n".join(json.dumps(n) for n in nodes), ""
        if command == "forget":
            ids = argv[argv.index("forget") + 2:]
            self.snaps = [s for s in self.snaps if s["id"] not in ids]
            return 0, "", ""
        if command == "restore":  # what restic writes: the snapshot's absolute paths under --target
            target = argv[argv.index("--target") + 1]
            folder = os.path.join(target, "srv", "u", "2026")
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, "a.pdf"), "w") as handle:
                handle.write("restored a")
            with open(os.path.join(target, "srv", "u", "b.png"), "w") as handle:
                handle.write("restored b")
            for path in (os.path.join(folder, "a.pdf"), os.path.join(target, "srv", "u", "b.png"), folder):
                os.utime(path, (1764640800, 1764640800))  # restic restores the times it backed up
            return 0, "", ""
        if command == "stats":
            return 0, json.dumps({"total_size": 1000 * len(self.snaps)}), ""
        return 0, "no errors were found\n", ""

    def names(self):
        return [c["command"] for c in self.calls]


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(ansible_warnings, "_global_warnings", {})


class NoKeys(object):
    """The key files of a repository the fake restic stands for: none to lighten (no S3 request is made)."""

    def list(self):
        return []


@pytest.fixture
def cli(monkeypatch):
    fake = FakeRestic()
    monkeypatch.setattr(dr_file_repo, "key_store", lambda module, repo: NoKeys())
    real = AnsibleModule.run_command
    monkeypatch.setattr(AnsibleModule, "run_command", lambda self, argv, **kw: fake.run_command(argv, **kw)
                        if argv[0].endswith("/restic") else real(self, argv, **kw))  # tar is the real one
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
    assert cli.names() == ["init", "backup", "snapshots", "stats"]  # a local repository without its config file
    backup = cli.calls[1]["argv"]
    assert backup[-1] == str(uploads)
    assert "set=20261202_020000" in backup and "component=uploads" in backup


def test_a_local_backup_opens_the_repository_once(cli, uploads, capsys, tmp_path):
    """In a local repository restic picks the parent; the new snapshot's full id and the stored bytes are read
    from the repository's folder: the backup is the only restic run."""
    folder = tmp_path / "files"
    (folder / "data" / "ab").mkdir(parents=True)
    (folder / "config").write_bytes(b"c")
    (folder / "data" / "ab" / ("ab" * 32)).write_bytes(b"x" * 1000)
    (folder / "snapshots").mkdir()
    (folder / "snapshots" / ("01" * 31 + "99")).write_bytes(b"s")  # an older snapshot sharing a prefix of the id
    older = cli.add("20261201_020000")
    result = run(dict(backup_args(uploads), repository=str(folder)), capsys)
    assert not result.get("failed"), result
    assert cli.names() == ["backup"] and "--parent" not in cli.calls[0]["argv"]
    assert older != cli.snaps[-1]["id"] and result["snapshot_id"] == cli.snaps[-1]["id"]
    assert not result["created"] and result["total_bytes"] == 1000 + 250
    (folder / "snapshots" / ("03" * 31 + "77")).write_bytes(b"s")  # two ids share the short one: restic decides
    cli.calls = []
    result = run(dict(backup_args(uploads), repository=str(folder), timestamp="20261203_020000"), capsys)
    assert not result.get("failed"), result
    assert cli.names() == ["backup", "snapshots"] and result["snapshot_id"] == cli.snaps[-1]["id"]


def test_a_backup_into_s3_is_the_backup_run_and_the_full_id_lookup(cli, uploads, capsys):
    """In S3 restic picks the parent too and the backup itself tells a missing repository: a night into an existing
    repository is the backup and the lookup of the new snapshot's full id; the size only when asked."""
    cli.add("20261201_020000")
    s3 = dict(s3=True, bucket="b", prefix="env/files")
    result = run(dict(backup_args(uploads), **s3), capsys)
    assert not result.get("failed"), result
    assert cli.names() == ["backup", "snapshots"] and "--parent" not in cli.calls[0]["argv"]
    assert result["snapshot_id"] == cli.snaps[-1]["id"] and not result["created"]
    assert result["total_bytes"] is None and result["manifest_entry"]["total_bytes"] is None
    cli.calls = []
    result = run(dict(backup_args(uploads), timestamp="20261203_020000", repository_size=True, **s3), capsys)
    assert cli.names() == ["backup", "snapshots", "stats"] and result["total_bytes"] == 3000


def test_a_backup_into_a_missing_s3_repository_creates_it_only_with_init(cli, uploads, capsys):
    s3 = dict(s3=True, bucket="b", prefix="env/files")
    cli.exists = False
    result = run(dict(backup_args(uploads), init=False, **s3), capsys)
    assert result["failed"] and result["error_kind"] == "missing" and cli.names() == ["backup"]
    assert not cli.snaps
    cli.calls = []
    result = run(dict(backup_args(uploads), **s3), capsys)
    assert not result.get("failed"), result
    assert cli.names() == ["backup", "init", "backup", "snapshots"] and result["created"]
    assert result["snapshot_id"] == cli.snaps[-1]["id"] and len(cli.snaps) == 1


def test_a_filtered_backup_takes_the_latest_snapshot_of_the_component_as_parent(cli, uploads, capsys):
    """With an age filter restic backs a list of files up, whose paths change: the parent is named."""
    cli.add("20261130_020000", component="logs")
    older = cli.add("20261201_020000")
    result = run(dict(backup_args(uploads), max_age_days=7), capsys)
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


def test_check_mode_backup_writes_nothing(cli, uploads, capsys, tmp_path):
    folder = tmp_path / "files"
    folder.mkdir()
    (folder / "config").write_bytes(b"c")
    result = run(dict(backup_args(uploads), repository=str(folder)), capsys, check_mode=True)
    assert result["changed"] and result["snapshot_id"] == ""
    assert result["bytes_added"] == 300
    backup = [c for c in cli.calls if c["command"] == "backup"]
    assert len(backup) == 1 and "--dry-run" in backup[0]["argv"]
    assert cli.snaps == []
    cli.exists = False
    cli.calls = []
    result = run(backup_args(uploads), capsys, check_mode=True)  # no repository in that folder: nothing runs
    assert result["created"] and result["files"] == 2 and result["bytes"] == 150
    assert cli.names() == []
    result = run(dict(backup_args(uploads), s3=True, bucket="b"), capsys, check_mode=True)
    assert result["created"] and cli.names() == ["snapshots"]  # in S3, restic says whether the repository exists


def test_check_mode_reads_without_restic_s_lock(cli, uploads, capsys, tmp_path):
    # a lock file written and removed is still a write into the repository: check mode runs with --no-lock
    folder = tmp_path / "files"
    folder.mkdir()
    (folder / "config").write_bytes(b"c")
    cli.add("20261201_020000")
    for args in (dict(backup_args(uploads, max_age_days=7), repository=str(folder)),  # snapshots, backup --dry-run
                 dict(backup_args(uploads), s3=True, bucket="b"),
                 {"state": "forget", "timestamp": "20261201_020000"}):
        cli.calls = []
        result = run(args, capsys, check_mode=True)
        assert not result.get("failed"), result
        assert cli.calls and all(c["argv"].index("--no-lock") < c["argv"].index(c["command"]) for c in cli.calls)
    cli.calls = []
    result = run(dict(backup_args(uploads), s3=True, bucket="b"), capsys)  # a real run's backup locks as restic does
    writes = [c for c in cli.calls if c["command"] in ("backup", "forget", "prune", "init", "restore", "check")]
    assert not result.get("failed") and writes and not any("--no-lock" in c["argv"] for c in writes)


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
        # restic writes into a private folder, never into dest itself; only the included tree is copied
        staging = argv[argv.index("--target") + 1]
        assert staging != str(dest) and os.path.basename(staging).startswith(".dr-file-restore-")
        assert argv[argv.index("--include") + 1] == "/srv/u/2026"
        assert (dest / "srv/u/2026/a.pdf").read_text() == "restored a"
        assert not (dest / "srv/u/b.png").exists()  # outside the include: not copied
        assert not os.path.exists(staging) and result["written"] == 2  # the directory 2026 and a.pdf
        again = run({"state": "restore", "snapshot": sid[:8], "dest": str(dest), "include": ["/srv/u/2026"]}, capsys)
        assert not again["changed"] and again["written"] == 0  # nothing differs the second time


def test_restore_never_writes_through_a_link_out_of_dest(cli, capsys, tmp_path):
    sid = cli.add("20261201_020000")
    dest, outside = tmp_path / "restore", tmp_path / "outside"
    (dest / "srv").mkdir(parents=True)
    outside.mkdir()
    os.symlink(str(outside), str(dest / "srv" / "u"))
    result = run({"state": "restore", "snapshot": sid, "dest": str(dest)}, capsys)
    assert result["failed"] and result["error_kind"] == "unsafe_member", result
    assert "srv/u" in result["msg"] and "nothing was changed" in result["msg"]
    assert os.listdir(str(outside)) == [] and sorted(os.listdir(str(dest / "srv"))) == ["u"]
    assert not os.path.exists(result["staging_dir"])


def test_restore_of_a_set_prefers_the_local_repository_then_s3(cli, capsys, tmp_path):
    local_id, s3_id = cli.add("20261201_020000"), cli.add("20261201_020000")
    entries = [dict(name="uploads", component="files", store="repository", repository="/srv/backups/files",
                    snapshot_id=local_id),
               dict(name="uploads", component="files", store="repository", repository="s3:http://s3/b/p",
                    snapshot_id=s3_id)]
    args = {"state": "restore", "set_snapshots": entries, "component": "uploads", "dest": str(tmp_path / "d"),
            "bucket": "b", "prefix": "p", "endpoint_url": "http://s3", "access_key": "AKIDUNITTEST", "secret_key": S3_SECRET}
    result = run(args, capsys)
    assert not result.get("failed"), result
    assert (result["source"], result["snapshot_id"], result["passed_over"]) == ("local", local_id, [])
    cli.missing.add("/srv/backups/files")
    result = run(args, capsys)
    assert (result["source"], result["snapshot_id"]) == ("s3", s3_id), result
    assert "/srv/backups/files" in result["passed_over"][0]
    assert (tmp_path / "d/srv/u/b.png").read_text() == "restored b"
    result = run(dict(args, component="plugins"), capsys)
    assert result["failed"] and result["error_kind"] == "not_found" and "uploads" in result["msg"]
    cli.fail["snapshots"] = (1, "", "Fatal: wrong password or no key found")
    cli.missing.clear()
    result = run(args, capsys)
    assert result["failed"] and result["error_kind"] == "password"  # never a silent fall back on a wrong key
    result = run(dict(args, snapshot="latest"), capsys)
    assert result["failed"] and result["error_kind"] == "request"


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
    assert cli.names() == ["snapshots", "unlock", "snapshots"]  # stale locks removed once, a live one stays


def test_repository_or_bucket(cli, capsys):
    result = run({"state": "snapshots", "repository": None}, capsys)
    assert result["failed"] and "repository" in result["msg"]
    result = run({"state": "snapshots", "s3": True}, capsys)
    assert result["failed"] and "bucket" in result["msg"]
    result = run({"state": "snapshots", "bucket": "b"}, capsys)  # a bucket from the s3 group defaults
    assert result["repository"] == "/srv/backups/files"


def test_forget_the_snapshots_of_sets_no_longer_kept(cli, capsys):
    old = cli.add("20261101_020000")
    kept = cli.add("20261201_020000")
    untagged = cli.add("20261202_020000")
    cli.snaps[-1]["tags"] = ["component=uploads"]  # not made by a backup set: never forgotten by keep_sets
    listing = ["/b/daily/set_20261201_020000.json", "/b/daily/backup_20261201_020000.sql.gz",
               "/b/weekly/backup_20261101_020000.sql.gz.sha256", "p/set_20261201_020000.json"]
    result = run({"state": "forget", "keep_sets": listing}, capsys, check_mode=True)
    assert result["forgotten"] == [old] and result["kept_sets"] == ["20261201_020000"]
    assert len(cli.snaps) == 3  # check mode
    result = run({"state": "forget", "keep_sets": listing, "prune": True}, capsys)
    assert result["forgotten"] == [old] and "prune" in cli.names()
    assert [s["id"] for s in cli.snaps] == [kept, untagged]
    again = run({"state": "forget", "keep_sets": ["20261201_020000"]}, capsys)
    assert again["forgotten"] == [] and not again["changed"]


def test_forget_refuses_a_keep_list_naming_no_set(cli, capsys):
    cli.add("20261101_020000")
    for listing in ([], ["/b/daily/backup_20261101_020000.sql.gz", "README"]):
        result = run({"state": "forget", "keep_sets": listing}, capsys)
        assert result["failed"] and result["error_kind"] == "request" and "names no set" in result["msg"]
    assert len(cli.snaps) == 1 and "forget" not in cli.names()


@pytest.mark.parametrize("text, expected", [
    ("2026-12-01T02:00:00Z", 1796090400 * 10 ** 9),
    ("2026-12-01T03:00:00.5+01:00", 1796090400 * 10 ** 9 + 500000000),
    ("2026-12-01T02:00:00.123456789-00:00", 1796090400 * 10 ** 9 + 123456789),
    ("yesterday", None)])
def test_rfc3339_ns(text, expected):
    assert dr_file_repo.rfc3339_ns(text) == expected


def test_check_with_a_sample_restored_and_compared(cli, capsys, tmp_path, monkeypatch):
    sid = cli.add("20261201_020000")
    listing = [{"struct_type": "node", "type": "file", "path": "/srv/u/2026/a.pdf", "size": len("restored a"),
                "mode": 0o644, "mtime": "2025-12-02T02:00:00Z"},
               {"struct_type": "node", "type": "file", "path": "/srv/u/b.png", "size": len("restored b"),
                "mode": 0o644, "mtime": "2025-12-02T02:00:00Z"}]
    original = cli.run_command

    def run_command(argv, **kw):
        if "ls" in argv:
            return 0, "\n".join(json.dumps(n) for n in listing), ""
        return original(argv, **kw)
    monkeypatch.setattr(cli, "run_command", run_command)
    os.umask(0o022)
    args = {"state": "check", "sample_files": 5, "snapshots": [sid[:8]], "staging_dir": str(tmp_path)}
    result = run(args, capsys)
    assert not result.get("failed"), result
    assert sorted(s["path"] for s in result["sampled"]) == ["/srv/u/2026/a.pdf", "/srv/u/b.png"]
    assert result["sample_problems"] == [] and os.listdir(str(tmp_path)) == []
    listing[1]["size"] = 999  # the listing says otherwise: the sample fails the check
    result = run(args, capsys)
    assert result["failed"] and result["error_kind"] == "damaged" and "/srv/u/b.png" in result["msg"]


class KeyedRestic(FakeRestic):
    """A repository whose keys open it by password (RESTIC_PASSWORD), with key list/add/remove."""

    def __init__(self, password):
        super(KeyedRestic, self).__init__()
        self.keys = {"k1": password}

    def run_command(self, argv, environ_update=None, cwd=None, check_rc=False, data=None, **kwargs):
        password = (environ_update or {}).get("RESTIC_PASSWORD")
        if password not in self.keys.values():
            self.calls.append(dict(command="denied", argv=list(argv), env=dict(environ_update or {})))
            return 1, "", "Fatal: wrong password or no key found"
        if "key" in argv:
            self.calls.append(dict(command="key", argv=list(argv), env=dict(environ_update or {}), data=data))
            action = next(arg for arg in argv[argv.index("key") + 1:] if arg in ("list", "add", "remove"))
            if action == "list":
                return 0, json.dumps([dict(id=k, current=v == password) for k, v in sorted(self.keys.items())]), ""
            if action == "add":
                self.keys["k%d" % (len(self.keys) + 1)] = data
                return 0, "saved new key\n", ""
            self.keys.pop(argv[argv.index("remove") + 1])
            return 0, "removed\n", ""
        return super(KeyedRestic, self).run_command(argv, environ_update, cwd, check_rc, **kwargs)


def test_rekeyed_adds_the_new_key_removes_the_old_one_and_resumes(monkeypatch, capsys):
    old_password, new_password = restic.repository_password(KEY), restic.repository_password("the new secret")
    fake = KeyedRestic(old_password)
    monkeypatch.setattr(AnsibleModule, "run_command", lambda self, argv, **kw: fake.run_command(argv, **kw))
    monkeypatch.setattr(AnsibleModule, "get_bin_path",
                        lambda self, name, required=False, opt_dirs=None: "/usr/bin/%s" % name)
    args = {"state": "rekeyed", "new_key": "the new secret"}
    result = run(args, capsys, check_mode=True)
    assert result["changed"] and result["added"] and result["removed"] == ["k1"] and fake.keys == {"k1": old_password}
    result = run(args, capsys)
    assert not result.get("failed"), result
    assert result["added"] and result["removed"] == ["k1"] and list(fake.keys.values()) == [new_password]
    for call in fake.calls:  # the passwords travel in the environment and on stdin, never in argv
        assert not any(secret in arg for arg in call["argv"] for secret in (KEY, "the new secret", new_password))
    again = run(args, capsys)
    assert not again["changed"] and "already" in again["msg"]
    # killed after the key was added: both open, the next run removes the old one only
    fake.keys = {"k1": old_password, "k2": new_password}
    result = run(args, capsys)
    assert not result["added"] and result["removed"] == ["k1"] and fake.keys == {"k2": new_password}
    fake.keys = {"k9": "another"}
    result = run(args, capsys)
    assert result["failed"] and result["error_kind"] == "password"
