"""backup_rotate with ``tiers``: the plan's daily/weekly/monthly tiers rotated in one call, each by its own rule."""

from __future__ import annotations

import pytest

from tests.support.modules import run_module
from ansible_collections.atlasia.dr.plugins.modules import backup_rotate


def run(args, capsys, check_mode=False):
    return run_module(backup_rotate.main, args, capsys, check_mode=check_mode)


def make(tier_dir, days):
    tier_dir.mkdir(parents=True, exist_ok=True)
    for day in days:
        (tier_dir / ("backup_202611%02d_020000.sql.gz" % day)).write_bytes(b"x")


def names(tier_dir):
    return sorted(p.name for p in tier_dir.iterdir())


def test_each_tier_keeps_by_its_own_rule(tmp_path, capsys):
    make(tmp_path / "daily", range(1, 11))
    make(tmp_path / "weekly", [1, 8, 15, 22])
    tiers = dict(daily=dict(keep_last=2, keep_daily=3), weekly=dict(keep_weekly=2), monthly=dict(keep_monthly=12))
    result = run(dict(path=str(tmp_path), tiers=tiers), capsys)
    assert not result.get("failed"), result
    assert names(tmp_path / "daily") == ["backup_20261108_020000.sql.gz", "backup_20261109_020000.sql.gz",
                                         "backup_20261110_020000.sql.gz"]
    assert names(tmp_path / "weekly") == ["backup_20261115_020000.sql.gz", "backup_20261122_020000.sql.gz"]
    assert result["missing_tiers"] == ["monthly"]
    assert result["changed"] is True
    assert any(key.startswith("daily/") for key in result["reasons"])


def test_check_mode_deletes_nothing(tmp_path, capsys):
    make(tmp_path / "daily", range(1, 6))
    result = run(dict(path=str(tmp_path), tiers=dict(daily=dict(keep_last=1))), capsys, check_mode=True)
    assert result["changed"] is True and len(result["deleted"]) == 4
    assert len(names(tmp_path / "daily")) == 5


@pytest.mark.parametrize("tiers, message", [
    (dict(daily=dict(keep_hourly=2)), "unknown rule"),
    (dict(daily=dict(keep_last="many")), "must be an integer"),
    (dict(daily=[1, 2]), "must be a dict"),
    ({"../etc": dict(keep_last=1)}, "not a plain sub-directory name"),
])
def test_bad_tiers_are_refused_before_anything_is_deleted(tmp_path, capsys, tiers, message):
    make(tmp_path / "daily", range(1, 6))
    result = run(dict(path=str(tmp_path), tiers=tiers), capsys)
    assert result["failed"] and message in result["msg"]
    assert len(names(tmp_path / "daily")) == 5


def test_tiers_and_recurse_exclude_each_other(tmp_path, capsys):
    result = run(dict(path=str(tmp_path), tiers=dict(daily=dict(keep_last=1)), recurse=True), capsys)
    assert result["failed"] and "mutually exclusive" in result["msg"]


def test_orphans_of_sets_go_first_then_whole_sets_rotate(tmp_path, capsys):
    daily = tmp_path / "daily"
    make(daily, [1, 2, 3])
    for day in (1, 2, 3):
        (daily / ("set_202611%02d_020000.json" % day)).write_text("{}")
    make(daily, [4])  # a run killed before it recorded its set: newest, but no set names it
    (daily / "backup_20261104_020000.sql.gz.md5").write_text("x  backup_20261104_020000.sql.gz\n")
    (daily / "notes.txt").write_text("never touched")
    result = run(dict(path=str(tmp_path), orphans=True, tiers=dict(daily=dict(keep_last=2))), capsys)
    assert not result.get("failed"), result
    assert names(daily) == ["backup_20261102_020000.sql.gz", "backup_20261103_020000.sql.gz", "notes.txt",
                            "set_20261102_020000.json", "set_20261103_020000.json"]
    assert str(daily / "backup_20261104_020000.sql.gz.md5") in result["deleted"]


def test_without_orphans_an_unrecorded_artifact_counts_as_a_backup(tmp_path, capsys):
    daily = tmp_path / "daily"
    make(daily, [1, 2, 3])
    for day in (1, 2, 3):
        (daily / ("set_202611%02d_020000.json" % day)).write_text("{}")
    make(daily, [4])
    run(dict(path=str(tmp_path), tiers=dict(daily=dict(keep_last=2))), capsys)
    assert "backup_20261104_020000.sql.gz" in names(daily)
    assert "backup_20261102_020000.sql.gz" not in names(daily)  # pushed out by the unrecorded one
