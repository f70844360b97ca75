# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Retention of the copies a restore leaves: safety dumps and snapshots on disk, replaced databases."""

from __future__ import annotations

import json
import os

from ansible_collections.atlasia.dr.plugins.module_utils import retention, safety


def _copy(directory, stamp, database="appdb", prefix="prerestore", ext=".sql.gz"):
    name = "%s_%s%s" % (prefix, stamp, ext)
    for suffix in ("", ".md5", ".sha256"):
        (directory / (name + suffix)).write_text("x")
    if database is not False:
        (directory / ("%s_%s.json" % (prefix, stamp))).write_text(json.dumps(dict(database=database)))
    return name


def test_keep_newest():
    items = [("a", 1), ("b", 3), ("c", 2)]
    import datetime
    items = [(k, datetime.datetime(2026, 1, v, tzinfo=datetime.timezone.utc)) for k, v in items]
    assert sorted(retention.keep_newest(items, 2)[0]) == ["b", "c"] and retention.keep_newest(items, 2)[1] == ["a"]
    assert retention.keep_newest(items, 0) == ({}, ["b", "c", "a"])
    assert retention.keep_newest(items, -1)[1] == []


def test_prune_files_keeps_the_protected_copy_and_the_newest_of_the_database(tmp_path):
    names = [_copy(tmp_path, "2026110%d_031500" % day) for day in range(1, 6)]
    other = _copy(tmp_path, "20261001_031500", database="otherdb")
    unknown = _copy(tmp_path, "20261002_031500", database=False)  # no manifest: not attributable, left alone
    series = _copy(tmp_path, "20261003_031500", prefix="backup")
    # the copy just made is the oldest by name (a clock set back): still kept, and counted
    removed = safety.prune_files(str(tmp_path), "prerestore", 2, protect="prerestore_20261101_031500", database="appdb")
    assert removed == [names[3], names[2], names[1]]
    left = sorted(os.listdir(str(tmp_path)))
    for kept in (names[0], names[4], other, unknown, series):
        assert kept in left and kept + ".sha256" in left
    for gone in names[1:4]:
        assert not [n for n in left if n.startswith(gone.split(".")[0])]


def test_prune_files_check_mode_and_keep_all(tmp_path):
    names = [_copy(tmp_path, "2026110%d_031500" % day) for day in range(1, 4)]
    before = sorted(os.listdir(str(tmp_path)))
    assert safety.prune_files(str(tmp_path), "prerestore", 1, database="appdb", check_mode=True) == [names[1], names[0]]
    assert safety.prune_files(str(tmp_path), "prerestore", -1, database="appdb") == []
    assert sorted(os.listdir(str(tmp_path))) == before
    assert safety.prune_files(str(tmp_path / "missing"), "prerestore", 1) == []


def test_previous_to_drop():
    names = ["appdb", "appdb_previous_20261101_031500", "appdb_previous_20261102_031500",
             "appdb_previous_20261103_031500", "appdb_restore_20261103_031500", "appdb2_previous_20261101_031500"]
    assert safety.previous_to_drop(names, "appdb", 2, protect="appdb_previous_20261103_031500") == [
        "appdb_previous_20261101_031500"]
    assert safety.previous_to_drop(names, "appdb", 1, protect="appdb_previous_20261101_031500") == [
        "appdb_previous_20261103_031500", "appdb_previous_20261102_031500"]
    assert safety.previous_to_drop(names, "appdb", -1) == []
