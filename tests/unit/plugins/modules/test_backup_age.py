# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of backup_age: ``main()`` driven with ``patch_module_args`` over backup trees made in tmp_path.

The clock is fixed (``backup_age.utc_now``); S3 is exercised against a real S3 server by
tests/integration/test_monitor.py.
"""

from __future__ import annotations

import datetime
import json

import pytest

from tests.support.modules import run_module
from ansible_collections.atlasia.dr.plugins.modules import backup_age

NOW = datetime.datetime(2026, 11, 26, 12, 0, 0, tzinfo=datetime.timezone.utc)


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch):
    monkeypatch.setattr(backup_age, "utc_now", lambda: NOW)


def run_main(args, capsys, check_mode=False):
    return run_module(backup_age.main, args, capsys, check_mode=check_mode)


def stamp(hours_ago):
    return (NOW - datetime.timedelta(hours=hours_ago)).strftime("%Y%m%d_%H%M%S")


def make_set(root, hours_ago, components=("database", "vault"), tier="daily", verified=None, manifest=True,
             size=100):
    """A backup set taken ``hours_ago`` under ``root/tier``; returns its id."""
    ts = stamp(hours_ago)
    directory = root / tier
    directory.mkdir(parents=True, exist_ok=True)
    names = {"database": "backup_%s.sql.gz", "schema": "schema_%s.sql", "vault": "vault_%s.snap",
             "config": "config_%s.tar.gz", "files": "uploads_%s.tar.gz"}
    artifacts = []
    for component in components:
        name = names[component] % ts
        (directory / name).write_bytes(b"x" * size)
        (directory / (name + ".sha256")).write_text("0" * 64 + "  " + name + "\n")
        artifacts.append(dict(name=name, component=component, size=size))
    if manifest:
        data = dict(set_id=ts, timestamp=datetime.datetime.strptime(ts, "%Y%m%d_%H%M%S").isoformat() + "+00:00",
                    artifacts=artifacts, verified=verified)
        (directory / ("set_%s.json" % ts)).write_text(json.dumps(data))
    return ts


def test_newest_backup_per_component_and_sets(tmp_path, capsys):
    make_set(tmp_path, 50)
    newest = make_set(tmp_path, 2, components=("database", "vault", "config"))
    result = run_main(dict(root=str(tmp_path), components=["database", "vault"], min_free_percent=0), capsys)
    assert result["ok"] is True and result["problems"] == []
    database = result["components"]["database"]["local"]
    assert database["name"] == "backup_%s.sql.gz" % newest
    assert database["set_id"] == newest
    assert database["age_seconds"] == 2 * 3600
    assert database["count"] == 2
    assert database["size"] == 100
    assert result["components"]["config"]["local"]["expected"] is False
    assert result["sets"]["local"]["count"] == 2
    assert result["sets"]["local"]["newest"] == newest
    assert result["locations"] == ["local"]
    assert "s3" not in result["components"]["database"]


def test_old_and_missing_components_are_problems(tmp_path, capsys):
    make_set(tmp_path, 30, components=("database",))
    result = run_main(dict(root=str(tmp_path), components=["database", "vault"], max_age_seconds=86400,
                           min_free_percent=0), capsys)
    assert result["ok"] is False
    assert result["components"]["database"]["local"]["ok"] is False
    assert result["components"]["vault"]["local"] == dict(present=False, count=0, expected=True, ok=False)
    assert result["problems"][0].startswith("the newest database backup in local is 1 d 06 h old (backup_")
    assert result["problems"][1] == "no vault backup in local"


def test_fail_on_problems(tmp_path, capsys):
    result = run_main(dict(root=str(tmp_path), min_free_percent=0, fail_on_problems=True), capsys)
    assert result["failed"] is True
    assert result["msg"] == "1 backup monitoring problem(s): no database backup in local"


def test_artifacts_outside_sets_are_classified_by_prefix(tmp_path, capsys):
    daily = tmp_path / "daily"
    daily.mkdir()
    for name in ("backup_%s.dump" % stamp(1), "plugins_%s.tar.gz" % stamp(3), "prerestore_%s.sql.gz" % stamp(0),
                 "notes.txt", "backup_%s.dump.sha256" % stamp(1)):
        (daily / name).write_bytes(b"abc")
    (daily / "backup_dir_x").mkdir()
    result = run_main(dict(root=str(tmp_path), components=["database", "files"], min_free_percent=0), capsys)
    assert result["ok"] is True
    assert result["components"]["database"]["local"]["name"] == "backup_%s.dump" % stamp(1)
    assert result["components"]["files"]["local"]["name"] == "plugins_%s.tar.gz" % stamp(3)
    assert set(result["components"]) == {"database", "files"}  # the safety backup is not a backup of the platform
    assert result["sets"]["local"] == dict(count=0, newest=None)


def test_tiers_sharing_files_count_once(tmp_path, capsys):
    ts = make_set(tmp_path, 5, components=("database",))
    weekly = tmp_path / "weekly"
    weekly.mkdir()
    for path in (tmp_path / "daily").iterdir():
        (weekly / path.name).write_bytes(path.read_bytes())
    result = run_main(dict(root=str(tmp_path), min_free_percent=0), capsys)
    assert result["components"]["database"]["local"]["count"] == 1
    assert result["sets"]["local"]["newest"] == ts


def test_directory_artifacts_are_summed(tmp_path, capsys):
    directory = tmp_path / "daily" / ("backup_%s.dir" % stamp(1))
    directory.mkdir(parents=True)
    (directory / "toc.dat").write_bytes(b"t" * 10)
    (directory / "3001.dat.gz").write_bytes(b"d" * 32)
    result = run_main(dict(root=str(tmp_path), min_free_percent=0), capsys)
    assert result["components"]["database"]["local"]["size"] == 42


def test_restore_test_records(tmp_path, capsys):
    make_set(tmp_path, 200, verified=dict(at=(NOW - datetime.timedelta(hours=190)).isoformat(), result="passed"))
    passed = make_set(tmp_path, 30, verified=dict(at=(NOW - datetime.timedelta(hours=29)).isoformat(), result="passed"))
    make_set(tmp_path, 3, verified=dict(at=(NOW - datetime.timedelta(hours=1)).isoformat(), result="failed"))
    result = run_main(dict(root=str(tmp_path), components=["database"], min_free_percent=0,
                           verify_max_age_seconds=8 * 86400), capsys)
    verify = result["verify"]
    assert verify["present"] is True and verify["result"] == "failed"
    assert verify["age_seconds"] == 3600
    assert verify["last_passed"]["set_id"] == passed
    assert verify["last_passed"]["newest_backup_set_id"] == passed
    assert verify["last_passed"]["backup_age_seconds"] == 30 * 3600
    assert result["problems"] == ["the last restore test (%s, set %s) failed" % (verify["at"], stamp(3))]


def test_restore_test_too_old_or_never(tmp_path, capsys):
    make_set(tmp_path, 1)
    result = run_main(dict(root=str(tmp_path), min_free_percent=0, verify_max_age_seconds=3600), capsys)
    assert result["verify"] == dict(present=False, last_passed=None)
    assert result["problems"] == ["no restore test is recorded in any set manifest (run playbooks/verify.yml)"]
    make_set(tmp_path, 20, verified=dict(at=(NOW - datetime.timedelta(hours=19)).isoformat(), result="passed"))
    result = run_main(dict(root=str(tmp_path), min_free_percent=0, verify_max_age_seconds=3600), capsys)
    assert result["problems"] == ["the last successful restore test ran 19 h 00 min ago (%s), more than 1 h 00 min"
                                  % result["verify"]["last_passed"]["at"]]


def test_disk_space(tmp_path, capsys):
    make_set(tmp_path, 1)
    result = run_main(dict(root=str(tmp_path), min_free_percent=100.0), capsys)
    disk = result["disk"]
    assert disk["path"] == str(tmp_path)
    assert 0 < disk["free_bytes"] <= disk["total_bytes"]
    assert disk["free_ratio"] == pytest.approx(disk["free_bytes"] / disk["total_bytes"], abs=1e-3)
    assert disk["ok"] is False
    assert result["problems"] == ["only %.1f %% free on the filesystem of %s (less than 100 %%)" % (
        disk["free_percent"], tmp_path)]
    result = run_main(dict(root=str(tmp_path), min_free_percent=0), capsys)
    assert result["disk"]["ok"] is True and result["ok"] is True


def test_check_mode_gives_the_same_answer(tmp_path, capsys):
    make_set(tmp_path, 1)
    normal = run_main(dict(root=str(tmp_path), min_free_percent=0), capsys)
    checked = run_main(dict(root=str(tmp_path), min_free_percent=0), capsys, check_mode=True)
    assert checked["changed"] is False
    assert checked["components"] == normal["components"]


def test_unreadable_set_manifest_is_skipped(tmp_path, capsys):
    make_set(tmp_path, 1)
    (tmp_path / "daily" / ("set_%s.json" % stamp(0))).write_text("{not json")
    result = run_main(dict(root=str(tmp_path), min_free_percent=0), capsys)
    assert result["sets"]["local"]["count"] == 1


def test_paths_without_root(tmp_path, capsys):
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / ("backup_%s.sql.gz" % stamp(4))).write_bytes(b"x")
    result = run_main(dict(paths=[str(staging)]), capsys)
    assert result["components"]["database"]["local"]["age_seconds"] == 4 * 3600
    assert "disk" not in result


def test_nothing_to_examine_is_refused(capsys):
    result = run_main(dict(components=["database"]), capsys)
    assert result["failed"] is True
    assert "one of the following is required: root, paths, bucket" in result["msg"]


@pytest.mark.parametrize("prefix, component", [
    ("backup", "database"), ("schema", "schema"), ("vault", "vault"), ("config", "config"), ("uploads", "files"),
    ("logs", "files"), ("images", "files"), ("set", None), ("prerestore", None), ("prerollback", None),
])
def test_component_of(prefix, component):
    assert backup_age.component_of(prefix) == component


@pytest.mark.parametrize("seconds, text", [
    (5, "5 s"), (61, "1 min"), (3600, "1 h 00 min"), (93600, "1 d 02 h"), (-3, "0 s"),
])
def test_human(seconds, text):
    assert backup_age.human(seconds) == text


def add_file_snapshots(root, set_id, tier="daily"):
    """Record in the set's manifest the snapshots of uploads and logs, in the local and the S3 file repository
    (a set of dr_backup_files_store=repository: no file archive in the set)."""
    path = root / tier / ("set_%s.json" % set_id)
    data = json.loads(path.read_text())
    data["file_snapshots"] = [
        dict(name=name, component="files", store="repository", repository=repository,
             snapshot_id=("%s%s" % (name, set_id)).encode().hex()[:64], paths=["/srv/" + name], files=3, bytes=size)
        for name, size in (("uploads", 4096), ("logs", 512))
        for repository in (str(root / "files-repository"), "s3:http://127.0.0.1:8333/atlasia-backups/files-repository")]
    path.write_text(json.dumps(data))


def test_file_snapshots_of_a_set_are_its_files_backups(tmp_path, capsys):
    make_set(tmp_path, 50, components=("database", "files"))
    newest = make_set(tmp_path, 2, components=("database",))
    add_file_snapshots(tmp_path, newest)
    result = run_main(dict(root=str(tmp_path), components=["database", "files"], min_free_percent=0), capsys)
    assert result["ok"] is True, result["problems"]
    files = result["components"]["files"]["local"]
    assert files["set_id"] == newest and files["age_seconds"] == 2 * 3600
    assert files["name"].startswith("uploads snapshot ") and files["name"].endswith(" of set %s" % newest)
    assert files["size"] == 4096
    assert files["count"] == 3  # the older set's archive, and the newest set's two local snapshots


def test_snapshots_are_counted_where_their_repository_is():
    set_id = stamp(1)
    manifests = {set_id: dict(artifacts=[], file_snapshots=[
        dict(name="uploads", component="files", repository="/var/backups/atlasia/files-repository",
             snapshot_id="a" * 64, bytes=10),
        dict(name="uploads", component="files", repository="s3:https://s3.example.org/b/files-repository",
             snapshot_id="b" * 64, bytes=10),
        dict(name="broken", component="files", repository="/x"),  # no snapshot id: not a backup
        "not a dict"]), "not-a-set-id": dict(file_snapshots=[dict(name="x", snapshot_id="c" * 64)])}
    local, known = backup_age.snapshots_of(manifests, "local")
    assert list(local) == ["uploads snapshot aaaaaaaa of set %s" % set_id]
    assert known["uploads snapshot aaaaaaaa of set %s" % set_id] == ("files", set_id)
    s3, _known = backup_age.snapshots_of(manifests, "s3")
    assert list(s3) == ["uploads snapshot bbbbbbbb of set %s" % set_id]
    assert backup_age.snapshots_of({}, "s3") == ({}, {})
