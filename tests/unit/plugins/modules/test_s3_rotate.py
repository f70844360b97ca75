# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""s3_rotate: key grouping under a prefix, and main() driven against an in-memory S3 (paginated listing,
DeleteObjects batches of at most 1000, per-key errors, check mode)."""

from __future__ import annotations

import datetime

import pytest

from tests.support.fakes3 import FakeS3
from tests.support.modules import run_module
from ansible_collections.atlasia.dr.plugins.modules import s3_rotate


def run_main(monkeypatch, capsys, client, args, check=False):
    monkeypatch.setattr(s3_rotate, "get_s3_client", lambda module: client)
    monkeypatch.setattr(s3_rotate, "ensure_boto3", lambda module: None)
    params = dict(bucket="b", endpoint_url="http://127.0.0.1:9", access_key="test-access", secret_key="test-secret")
    params.update(args)
    return run_module(s3_rotate.main, params, capsys, check_mode=check)


def daily_keys(prefix, days, start=datetime.date(2026, 1, 1), sidecars=True):
    keys = []
    for offset in range(days):
        stem = "backup_%s_020000" % (start + datetime.timedelta(days=offset)).strftime("%Y%m%d")
        keys.append(prefix + stem + ".sql.gz")
        if sidecars:
            keys += [prefix + stem + ".sql.gz.sha256", prefix + stem + ".json"]
    return keys


# -- grouping -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("keys,folders,deleted,kept,ignored", [
    # sidecars and manifest follow their artifact, keys keep their folder
    (["p/backup_20260101_020000.sql.gz", "p/backup_20260101_020000.sql.gz.md5", "p/backup_20260101_020000.json",
      "p/backup_20260102_020000.sql.gz"], [],
     ["p/backup_20260101_020000.json", "p/backup_20260101_020000.sql.gz", "p/backup_20260101_020000.sql.gz.md5"],
     ["p/backup_20260102_020000.sql.gz"], []),
    # directory artifacts are folders; other folders and foreign keys are ignored
    (["p/backup_20260102_020000.dir.sha256", "p/README"], ["p/backup_20260101_020000.dir/", "p/backup_20260102_020000.dir/",
                                                           "p/weekly/"],
     ["p/backup_20260101_020000.dir/"], ["p/backup_20260102_020000.dir.sha256", "p/backup_20260102_020000.dir/"],
     ["p/README", "p/weekly/"]),
    # a timestamp that is not a date is not ours
    (["p/backup_20261340_020000.sql.gz", "p/backup_20260101_020000.sql.gz"], [], [], ["p/backup_20260101_020000.sql.gz"],
     ["p/backup_20261340_020000.sql.gz"]),
])
def test_plan_rotation_groups_keys(keys, folders, deleted, kept, ignored):
    policy = dict(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0)
    result = s3_rotate.plan_rotation(keys, folders, policy)
    assert result["deleted"] == deleted
    assert result["kept"] == kept
    assert result["ignored"] == ignored


def test_expand_deleted_lists_directory_artifacts():
    client = FakeS3(["p/backup_20260101_020000.dir/toc.dat", "p/backup_20260101_020000.dir/3001.dat.gz",
                     "p/backup_20260101_020000.dir.sha256"])
    keys = s3_rotate.expand_deleted(client, "b", ["p/backup_20260101_020000.dir/", "p/backup_20260101_020000.dir.sha256"])
    assert sorted(keys) == ["p/backup_20260101_020000.dir.sha256", "p/backup_20260101_020000.dir/3001.dat.gz",
                            "p/backup_20260101_020000.dir/toc.dat"]


# -- main() -------------------------------------------------------------------------------------------------


def test_main_deletes_in_batches_of_1000_across_pages(monkeypatch, capsys):
    keys = daily_keys("dr/", 1200)  # 3600 objects, listed in pages of 500
    client = FakeS3(keys + ["dr/other/x", "dr/README"], page_size=500)
    result = run_main(monkeypatch, capsys, client, dict(prefix="dr", keep_daily=3, keep_weekly=0, keep_monthly=0))
    assert result["changed"] is True
    assert result["prefix"] == "dr/"
    assert len(result["deleted"]) == 3 * 1197
    assert [len(call) for call in client.delete_calls] == [1000, 1000, 1000, 591]
    assert sorted(client.objects) == sorted(result["kept"] + ["dr/other/x", "dr/README"])
    assert len(result["kept"]) == 9
    assert result["ignored"] == ["dr/README", "dr/other/"]
    assert ("list_objects_v2", "dr/", "/") in client.calls


def test_main_check_mode_deletes_nothing(monkeypatch, capsys):
    keys = daily_keys("", 10)
    client = FakeS3(keys)
    result = run_main(monkeypatch, capsys, client, dict(keep_daily=2, keep_weekly=0, keep_monthly=0), check=True)
    assert result["changed"] is True
    assert len(result["deleted"]) == 24
    assert client.delete_calls == []
    assert sorted(client.objects) == sorted(keys)


def test_main_nothing_to_delete_is_not_a_change(monkeypatch, capsys):
    client = FakeS3(daily_keys("", 3))
    result = run_main(monkeypatch, capsys, client, dict())
    assert result["changed"] is False
    assert result["deleted"] == []
    assert client.delete_calls == []


def test_main_reports_each_refused_key(monkeypatch, capsys):
    keys = daily_keys("", 5)
    refused = ["backup_20260101_020000.sql.gz", "backup_20260102_020000.json"]
    client = FakeS3(keys, refuse=refused)
    result = run_main(monkeypatch, capsys, client, dict(keep_last=2, keep_daily=0, keep_weekly=0, keep_monthly=0))
    assert result["failed"] is True
    assert sorted(err["key"] for err in result["errors"]) == sorted(refused)
    assert all(err["code"] == "AccessDenied" for err in result["errors"])
    assert "2 deletion(s) failed" in result["msg"]
    assert result["changed"] is True  # the other deletions happened
    assert set(refused) <= set(client.objects)
    assert not set(result["deleted_objects"]) & set(refused)


def test_main_refuses_a_policy_of_zeros(monkeypatch, capsys):
    client = FakeS3(daily_keys("", 3))
    result = run_main(monkeypatch, capsys, client, dict(keep_last=0, keep_daily=0, keep_weekly=0, keep_monthly=0))
    assert result["failed"] is True
    assert "would delete every backup" in result["msg"]
    assert client.calls == []


def test_main_series_restricts_rotation(monkeypatch, capsys):
    keys = daily_keys("", 4, sidecars=False) + ["schema_2026010%d_020000.sql" % d for d in range(1, 5)]
    client = FakeS3(keys)
    result = run_main(monkeypatch, capsys, client, dict(series=["schema"], keep_last=1, keep_daily=0, keep_weekly=0,
                                                        keep_monthly=0))
    assert result["deleted"] == ["schema_20260101_020000.sql", "schema_20260102_020000.sql", "schema_20260103_020000.sql"]
    assert all(k in client.objects for k in daily_keys("", 4, sidecars=False))


def test_main_ignores_emptied_directory_artifacts(monkeypatch, capsys):
    """An emptied folder still listed (SeaweedFS) is no backup: it takes no retention slot and is not "deleted"."""
    keys = ["backup_20260103_020000.dir/toc.dat", "backup_20260101_020000.sql.gz"]
    client = FakeS3(keys, ghosts=["backup_20260104_020000.dir/", "backup_20260102_020000.dir/"])
    result = run_main(monkeypatch, capsys, client, dict(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0))
    assert result["kept"] == ["backup_20260103_020000.dir/"]
    assert result["deleted"] == ["backup_20260101_020000.sql.gz"]
    again = FakeS3(["backup_20260103_020000.dir/toc.dat"], ghosts=["backup_20260101_020000.dir/"])
    result = run_main(monkeypatch, capsys, again, dict(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0))
    assert result["changed"] is False and result["deleted"] == []
