# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Retention policy (module_utils/retention.py) against an independent brute-force oracle.

The oracle decides each backup on its own ("is it the newest of its day, and are fewer than N days with
backups newer than its day?"), where retention.py scans a sorted list once per rule: the two only agree
when both implement restic's semantics.
"""

from __future__ import annotations

import datetime
import random

import pytest

from ansible_collections.atlasia.dr.plugins.module_utils.retention import PolicyError, plan, select, validate_policy

UTC = datetime.timezone.utc


# -- synthetic history ------------------------------------------------------------------------------------


def synthetic_history(seed, start=datetime.date(2026, 1, 1), days=180, prefix="backup"):
    """Daily 02:00 backups over ``days`` days with random gaps, a long pause, and extra runs on some days.

    Returns a list of ``(stem, aware datetime)``.
    """
    rng = random.Random(seed)
    pause_start = rng.randrange(20, days - 40)
    pause = range(pause_start, pause_start + rng.randrange(9, 25))  # a pause of 9-24 days
    runs = []
    for offset in range(days):
        day = start + datetime.timedelta(days=offset)
        if offset in pause or rng.random() < 0.12:
            continue
        times = [datetime.time(2, 0, 0)]
        if rng.random() < 0.2:  # manual runs the same day, some before the nightly one
            times += [datetime.time(rng.randrange(0, 24), rng.randrange(60), rng.randrange(60))
                      for dummy in range(rng.randrange(1, 3))]
        for moment in set(times):
            stamp = datetime.datetime.combine(day, moment, tzinfo=UTC)
            runs.append(("%s_%s" % (prefix, stamp.strftime("%Y%m%d_%H%M%S")), stamp))
    rng.shuffle(runs)
    return runs


# -- the oracle -------------------------------------------------------------------------------------------


def _period(rule, moment):
    if rule == "daily":
        return (moment.year, moment.month, moment.day)
    if rule == "weekly":
        iso = moment.isocalendar()
        return (iso[0], iso[1])
    return (moment.year, moment.month)


def expected_keep(items, keep_last, keep_daily, keep_weekly, keep_monthly):
    """Brute force: every backup is checked against every other one; O(n^2) and obviously right."""
    kept = set()
    for stem, moment in items:
        newer = [m for s, m in items if (m, s) > (moment, stem)]
        if keep_last == -1 or (keep_last > 0 and len(newer) < keep_last):
            kept.add(stem)
        for rule, limit in (("daily", keep_daily), ("weekly", keep_weekly), ("monthly", keep_monthly)):
            if limit == 0:
                continue
            mine = _period(rule, moment)
            newest_of_period = not any(_period(rule, m) == mine for m in newer)
            newer_periods = set(_period(rule, m) for m in newer if _period(rule, m) != mine)
            if newest_of_period and (limit == -1 or len(newer_periods) < limit):
                kept.add(stem)
    return kept


POLICIES = [
    # keep_last, keep_daily, keep_weekly, keep_monthly
    (0, 7, 4, -1),   # the DR plan: 7 days, 4 weeks, every month
    (0, 7, 0, 0),
    (0, 0, 4, 0),
    (0, 0, 0, 3),
    (0, 0, 0, -1),
    (3, 0, 0, 0),
    (-1, 0, 0, 0),
    (2, 3, 2, 1),
    (1, 1, 1, 1),
    (0, 30, 10, 12),
    (5, 14, 0, 6),
    (0, 400, 0, 0),  # more days than there are backups
]


@pytest.mark.parametrize("seed", [1, 2, 3, 20261125])
@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: "last%d-d%d-w%d-m%d" % p)
def test_select_matches_brute_force(seed, policy):
    items = synthetic_history(seed)
    keep, forget = select(items, *policy)
    expected = expected_keep(items, *policy)
    assert set(keep) == expected
    assert set(forget) == set(stem for stem, moment in items) - expected
    assert not set(keep) & set(forget)
    assert forget or policy[0] == -1  # the history is rich enough that every other policy deletes something


@pytest.mark.parametrize("seed", [5, 6])
@pytest.mark.parametrize("policy", [(0, 7, 4, -1), (2, 3, 2, 1)], ids=str)
def test_plan_with_sidecars_matches_brute_force(seed, policy):
    """plan() over full file names: each backup with its sidecars and manifest shares one fate."""
    items = synthetic_history(seed)
    names = []
    for stem, moment in items:
        names += [stem + ".sql.gz", stem + ".sql.gz.md5", stem + ".sql.gz.sha256", stem + ".json"]
    names += ["README.txt", ".backup_20260301_020000.sql.gz.tmp-123-0a1b2c3d", "backup_20261399_020000.sql.gz",
              "notes_latest.txt"]
    result = plan(names, *policy)
    expected = expected_keep(items, *policy)

    def stem_of(name):
        return name.split(".", 1)[0]

    assert set(stem_of(n) for n in result["deleted"]) == set(s for s, m in items) - expected
    assert set(stem_of(n) for n in result["kept"]) == expected
    # every kept or deleted stem has its four files in the same list
    for bucket in ("kept", "deleted"):
        stems = set(stem_of(n) for n in result[bucket])
        assert len(result[bucket]) == 4 * len(stems)
    assert result["ignored"] == sorted(["README.txt", ".backup_20260301_020000.sql.gz.tmp-123-0a1b2c3d",
                                        "backup_20261399_020000.sql.gz", "notes_latest.txt"])
    assert set(result["reasons"]) == expected


# -- semantics worth stating on their own -----------------------------------------------------------------


def _items(*stamps, prefix="backup"):
    out = []
    for text in stamps:
        moment = datetime.datetime.strptime(text, "%Y%m%d_%H%M%S").replace(tzinfo=UTC)
        out.append(("%s_%s" % (prefix, text), moment))
    return out


def test_a_pause_never_deletes_the_last_backups():
    """Backups stopped three months ago: keep_daily=7 still keeps the 7 newest days, not nothing."""
    items = _items(*["202601%02d_020000" % day for day in range(1, 21)])
    keep, forget = select(items, keep_last=0, keep_daily=7, keep_weekly=0, keep_monthly=0)
    assert sorted(keep) == ["backup_202601%02d_020000" % day for day in range(14, 21)]
    assert len(forget) == 13


def test_the_newest_run_of_a_day_is_the_one_kept():
    items = _items("20260105_020000", "20260105_143000", "20260105_090000", "20260104_020000")
    keep, forget = select(items, keep_last=0, keep_daily=2, keep_weekly=0, keep_monthly=0)
    assert set(keep) == {"backup_20260105_143000", "backup_20260104_020000"}
    assert forget == ["backup_20260105_090000", "backup_20260105_020000"]  # newest first


def test_weekly_uses_iso_weeks_across_new_year():
    # 2026-01-01 (Thu) and 2025-12-29 (Mon) are both in ISO week 2026-W01; 2025-12-28 (Sun) is 2025-W52.
    items = _items("20260101_020000", "20251229_020000", "20251228_020000")
    keep, forget = select(items, keep_last=0, keep_daily=0, keep_weekly=2, keep_monthly=0)
    assert keep == {"backup_20260101_020000": ["weekly 2026-W01"], "backup_20251228_020000": ["weekly 2025-W52"]}
    assert forget == ["backup_20251229_020000"]


def test_reasons_name_every_rule():
    items = _items("20261125_020000", "20261124_020000")
    keep, forget = select(items, keep_last=1, keep_daily=7, keep_weekly=4, keep_monthly=-1)
    assert keep["backup_20261125_020000"] == ["last", "daily 2026-11-25", "weekly 2026-W48", "monthly 2026-11"]
    assert keep["backup_20261124_020000"] == ["daily 2026-11-24"]
    assert forget == []


def test_series_are_rotated_independently_and_restricted():
    names = [n + ".sql.gz" for n, m in _items("20260101_020000", "20260102_020000", "20260103_020000")]
    names += [n + ".sql" for n, m in _items("20260101_020000", "20260102_020000", "20260103_020000", prefix="schema")]
    names += [n + ".snap" for n, m in _items("20260101_020000", "20260102_020000", prefix="vault")]
    result = plan(names, keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0)
    assert sorted(result["kept"]) == ["backup_20260103_020000.sql.gz", "schema_20260103_020000.sql",
                                      "vault_20260102_020000.snap"]
    only = plan(names, keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0, prefixes=["schema"])
    assert sorted(only["deleted"]) == ["schema_20260101_020000.sql", "schema_20260102_020000.sql"]
    assert "backup_20260101_020000.sql.gz" in only["kept"]  # other series: untouched, reported as kept


def test_keys_keep_their_folder_and_directory_artifacts_group():
    names = ["dr/prod/backup_20260101_020000.dir/", "dr/prod/backup_20260101_020000.dir.sha256",
             "dr/prod/backup_20260102_020000.dir/", "dr/prod/backup_20260102_020000.json", "dr/prod/weekly/"]
    result = plan(names, keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0)
    assert result["deleted"] == ["dr/prod/backup_20260101_020000.dir.sha256", "dr/prod/backup_20260101_020000.dir/"]
    assert result["kept"] == ["dr/prod/backup_20260102_020000.dir/", "dr/prod/backup_20260102_020000.json"]
    assert result["ignored"] == ["dr/prod/weekly/"]


@pytest.mark.parametrize("policy", [
    dict(keep_last=0, keep_daily=0, keep_weekly=0, keep_monthly=0),
    dict(keep_last=0, keep_daily=-2, keep_weekly=0, keep_monthly=1),
    dict(keep_last=None, keep_daily=7, keep_weekly=4, keep_monthly=-1),
])
def test_bad_policies_are_refused(policy):
    with pytest.raises(PolicyError):
        validate_policy(**policy)
    with pytest.raises(PolicyError):
        plan(["backup_20260101_020000.sql.gz"], **policy)
