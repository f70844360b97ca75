# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""atlasia.dr.backup_rotate through real Ansible on a temporary directory.

Months of synthetic backups (gaps, a pause, extra runs the same day, sidecars, manifests, directory-format
dumps, foreign and temporary files); what is left is compared with an expected set computed here
independently of module_utils/retention.py.
"""

from __future__ import annotations

import datetime
import os
import random

import pytest

from tests.support.ansible_run import run_module

UTC = datetime.timezone.utc
FOREIGN = ["README", "notes_latest.txt", "backup_20261399_020000.sql.gz", ".backup_20260702_020000.sql.gz.tmp-42-0a1b2c3d"]


def history(seed, days=120, start=datetime.date(2026, 6, 1)):
    rng = random.Random(seed)
    pause = set(range(40, 52))
    stems = []
    for offset in range(days):
        day = start + datetime.timedelta(days=offset)
        if offset in pause or rng.random() < 0.1:
            continue
        times = {datetime.time(2, 0)}
        if rng.random() < 0.25:
            times.add(datetime.time(rng.randrange(24), rng.randrange(60), 11))
        for moment in times:
            stems.append(datetime.datetime.combine(day, moment, tzinfo=UTC))
    return stems


def expected_kept(moments, keep_last, keep_daily, keep_weekly, keep_monthly):
    """Newest ``keep_last``, plus each of the newest N periods' newest backup, per rule (one series)."""
    ordered = sorted(moments, reverse=True)
    kept = set(ordered if keep_last == -1 else ordered[:keep_last])
    for limit, period in ((keep_daily, lambda m: m.date()), (keep_weekly, lambda m: m.isocalendar()[:2]),
                          (keep_monthly, lambda m: (m.year, m.month))):
        newest = {}
        for moment in ordered:
            newest.setdefault(period(moment), moment)
        ranked = sorted(newest.values(), reverse=True)
        kept.update(ranked if limit == -1 else ranked[:limit])
    return kept


def populate(directory, moments, seed=0):
    """Files per backup: a .sql.gz (or a .dir dump) with .md5/.sha256 sidecars and a manifest."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    layout = {}
    for moment in moments:
        stem = "backup_" + moment.strftime("%Y%m%d_%H%M%S")
        if rng.random() < 0.15:
            artifact = directory / (stem + ".dir")
            (artifact / "blobs").mkdir(parents=True)
            (artifact / "toc.dat").write_bytes(b"toc")
            (artifact / "blobs" / "blob_1.dat").write_bytes(b"blob")
        else:
            artifact = directory / (stem + ".sql.gz")
            artifact.write_bytes(stem.encode())
        names = [artifact.name, artifact.name + ".md5", artifact.name + ".sha256", stem + ".json"]
        for name in names[1:]:
            (directory / name).write_text("x\n")
        layout[moment] = names
    for name in FOREIGN:
        (directory / name).write_text("keep me\n")
    (directory / "archive").mkdir()
    (directory / "archive" / "backup_20260601_020000.sql.gz").write_bytes(b"in a sub-folder")
    return layout


@pytest.mark.parametrize("policy", [
    dict(keep_last=0, keep_daily=7, keep_weekly=4, keep_monthly=-1),
    dict(keep_last=3, keep_daily=5, keep_weekly=0, keep_monthly=2),
    dict(keep_last=0, keep_daily=0, keep_weekly=4, keep_monthly=0),
], ids=["dr-plan", "mixed", "weekly-folder"])
def test_rotation_matches_the_expected_set(tmp_path, policy):
    moments = history(seed=len(str(policy)))
    root = tmp_path / "daily"
    layout = populate(root, moments)
    kept = expected_kept(moments, **policy)
    assert 0 < len(kept) < len(moments)
    expected_left = sorted(set(os.listdir(root)) - set(n for m in moments if m not in kept for n in layout[m]))

    preview = run_module("backup_rotate", dict(path=str(root), **policy), check=True, diff=True)
    assert preview.get("failed") is not True, preview.get("msg")
    assert preview["changed"] is True
    assert len(os.listdir(root)) == 4 * len(moments) + len(FOREIGN) + 1  # nothing deleted

    result = run_module("backup_rotate", dict(path=str(root), **policy))
    assert result.get("failed") is not True, result.get("msg")
    assert result["changed"] is True
    assert sorted(os.listdir(root)) == expected_left
    assert sorted(result["deleted"]) == sorted(preview["deleted"])
    assert sorted(os.path.basename(p) for p in result["deleted"]) == sorted(
        n for m in moments if m not in kept for n in layout[m])
    assert set(result["reasons"]) == set("backup_" + m.strftime("%Y%m%d_%H%M%S") for m in kept)
    assert sorted(result["ignored"]) == sorted(str(root / n) for n in FOREIGN + ["archive"])
    assert (root / "archive" / "backup_20260601_020000.sql.gz").exists()  # not recursed into

    again = run_module("backup_rotate", dict(path=str(root), **policy))
    assert again["changed"] is False and again["deleted"] == []
    assert sorted(os.listdir(root)) == expected_left


def test_recurse_rotates_each_folder_on_its_own(tmp_path):
    root = tmp_path / "backups"
    for folder in ("daily", "weekly"):
        for day in range(1, 6):
            path = root / folder / ("backup_202601%02d_020000.sql.gz" % day)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x")
    (root / "backup_20260101_020000.dir").mkdir()  # a directory artifact at the top is a backup, not a folder
    (root / "backup_20260101_020000.dir" / "toc.dat").write_bytes(b"x")
    policy = dict(keep_last=2, keep_daily=0, keep_weekly=0, keep_monthly=0)
    result = run_module("backup_rotate", dict(path=str(root), recurse=True, **policy))
    assert result.get("failed") is not True, result.get("msg")
    for folder in ("daily", "weekly"):
        assert sorted(os.listdir(root / folder)) == ["backup_20260104_020000.sql.gz", "backup_20260105_020000.sql.gz"]
    assert (root / "backup_20260101_020000.dir" / "toc.dat").exists()
    assert set(result["reasons"]) == {"backup_20260101_020000", "daily/backup_20260104_020000",
                                      "daily/backup_20260105_020000", "weekly/backup_20260104_020000",
                                      "weekly/backup_20260105_020000"}


def test_series_and_refusals(tmp_path):
    root = tmp_path / "monthly"
    root.mkdir()
    for prefix in ("backup", "schema"):
        for month in range(1, 5):
            (root / ("%s_2026%02d01_020000.sql" % (prefix, month))).write_bytes(b"x")
    result = run_module("backup_rotate", dict(path=str(root), series=["schema"], keep_last=0, keep_daily=0,
                                              keep_weekly=0, keep_monthly=1))
    assert sorted(os.listdir(root)) == ["backup_20260101_020000.sql", "backup_20260201_020000.sql",
                                        "backup_20260301_020000.sql", "backup_20260401_020000.sql",
                                        "schema_20260401_020000.sql"]
    assert result["changed"] is True

    zeros = run_module("backup_rotate", dict(path=str(root), keep_last=0, keep_daily=0, keep_weekly=0, keep_monthly=0))
    assert zeros["failed"] is True and "would delete every backup" in zeros["msg"]
    missing = run_module("backup_rotate", dict(path=str(tmp_path / "nope")))
    assert missing["failed"] is True and "not a directory" in missing["msg"]
    assert len(os.listdir(root)) == 5


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_undeletable_files_are_reported(tmp_path):
    root = tmp_path / "daily"
    root.mkdir()
    for day in range(1, 4):
        (root / ("backup_202601%02d_020000.sql.gz" % day)).write_bytes(b"x")
    os.chmod(root, 0o555)
    try:
        result = run_module("backup_rotate", dict(path=str(root), keep_last=1, keep_daily=0, keep_weekly=0,
                                                  keep_monthly=0))
    finally:
        os.chmod(root, 0o755)
    assert result["failed"] is True
    assert len(result["errors"]) == 2
    assert "Permission denied" in result["errors"][0]["message"]
