# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""atlasia.dr.s3_rotate through real Ansible against a real SeaweedFS S3 on 127.0.0.1.

Months of synthetic backups (gaps, a long pause, extra runs the same day, sidecars, manifests, directory
artifacts, foreign keys) are put in a bucket; what is left after rotation is compared with an expected set
computed here independently of module_utils/retention.py (group by period, take each period's newest,
rank the periods).
"""

from __future__ import annotations

import datetime
import random
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.ansible_run import run_module
from tests.support.seaweedfs import SeaweedS3Server, closed_port

UTC = datetime.timezone.utc


@pytest.fixture(scope="module")
def s3_server():
    server = SeaweedS3Server()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3(s3_server):
    return s3_server.client()


@pytest.fixture
def bucket(s3_server, s3):
    name = "r-%s" % uuid.uuid4().hex[:12]
    s3.create_bucket(Bucket=name)
    return name


def rotate(server, bucket, check=False, diff=False, **args):
    params = server.module_args(bucket)
    params.update(args)
    return run_module("s3_rotate", params, check=check, diff=diff)


# -- synthetic history and the independent expected set ---------------------------------------------------------


def history(seed, days=150, start=datetime.date(2026, 6, 1)):
    """``[(series, stem, moment)]``: nightly runs with random gaps, a pause, and extra runs on some days."""
    rng = random.Random(seed)
    pause = set(range(60, 60 + 17))
    out = []
    for offset in range(days):
        day = start + datetime.timedelta(days=offset)
        if offset in pause or rng.random() < 0.1:
            continue
        moments = {datetime.datetime.combine(day, datetime.time(2, 0), tzinfo=UTC)}
        if rng.random() < 0.25:
            moments.add(datetime.datetime.combine(day, datetime.time(rng.randrange(24), rng.randrange(60), 7), tzinfo=UTC))
        for moment in moments:
            out.append(("backup", "backup_" + moment.strftime("%Y%m%d_%H%M%S"), moment))
        if offset % 7 == 0:
            schema = moment.replace(hour=3)
            out.append(("schema", "schema_" + schema.strftime("%Y%m%d_%H%M%S"), schema))
    return out


def expected_kept(runs, keep_last, keep_daily, keep_weekly, keep_monthly):
    """Per series: the newest ``keep_last``, plus each of the newest N periods' newest backup, per rule."""
    kept = set()
    for series in set(s for s, stem, m in runs):
        mine = sorted(((m, stem) for s, stem, m in runs if s == series), reverse=True)
        kept.update(stem for m, stem in (mine if keep_last == -1 else mine[:keep_last]))
        for limit, period in ((keep_daily, lambda m: m.date()), (keep_weekly, lambda m: m.isocalendar()[:2]),
                              (keep_monthly, lambda m: (m.year, m.month))):
            newest = {}
            for m, stem in mine:
                newest.setdefault(period(m), (m, stem))  # ``mine`` is newest first
            ranked = sorted(newest.values(), reverse=True)
            if limit != -1:
                ranked = ranked[:limit]
            kept.update(stem for m, stem in ranked)
    return kept


def files_of(series, stem, directory_artifact):
    if directory_artifact:
        return [stem + ".dir/toc.dat", stem + ".dir/3001.dat.gz", stem + ".dir.md5", stem + ".dir.sha256", stem + ".json"]
    ext = ".sql.gz" if series == "backup" else ".sql"
    return [stem + ext, stem + ext + ".md5", stem + ext + ".sha256", stem + ".json"]


FOREIGN = ["README.txt", "backup_latest.sql.gz", "backup_20261399_020000.sql.gz", "weekly/backup_20260601_020000.sql.gz",
           ".backup_20260602_020000.sql.gz.tmp-99-0a1b2c3d"]


def populate(s3, bucket, prefix, runs, seed=0):
    rng = random.Random(seed)
    layout = {}
    keys = []
    for series, stem, moment in runs:
        directory_artifact = series == "backup" and rng.random() < 0.1
        layout[stem] = [prefix + name for name in files_of(series, stem, directory_artifact)]
        keys += layout[stem]
    keys += [prefix + name for name in FOREIGN] + ["outside/backup_20260601_020000.sql.gz"]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda key: s3.put_object(Bucket=bucket, Key=key, Body=key.encode()), keys))
    return layout, keys


def bucket_keys(s3, bucket):
    return sorted(o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
                  for o in page.get("Contents", []))


POLICIES = [
    dict(keep_last=0, keep_daily=7, keep_weekly=4, keep_monthly=-1),
    dict(keep_last=2, keep_daily=3, keep_weekly=2, keep_monthly=2),
]


@pytest.mark.parametrize("policy", POLICIES, ids=["dr-plan", "small"])
def test_rotation_matches_the_expected_set(s3_server, s3, bucket, policy):
    prefix = "atlasia-backups/"
    runs = history(seed=sum(policy.values()) + 7)
    layout, keys = populate(s3, bucket, prefix, runs)
    kept_stems = expected_kept(runs, **policy)
    assert 0 < len(kept_stems) < len(runs)
    expected_left = sorted(set(keys) - set(k for stem in layout if stem not in kept_stems for k in layout[stem]))

    # check mode: the exact plan, nothing deleted
    preview = rotate(s3_server, bucket, check=True, diff=True, prefix="atlasia-backups", **policy)
    assert preview.get("failed") is not True, preview.get("msg")
    assert preview["changed"] is True
    assert bucket_keys(s3, bucket) == sorted(keys)
    assert sorted(preview["deleted_objects"]) == sorted(set(keys) - set(expected_left))

    result = rotate(s3_server, bucket, prefix="atlasia-backups", **policy)
    assert result.get("failed") is not True, result.get("msg")
    assert result["changed"] is True
    assert bucket_keys(s3, bucket) == expected_left
    assert sorted(result["deleted_objects"]) == sorted(preview["deleted_objects"])
    assert set(result["reasons"]) == kept_stems
    # directory artifacts are reported once, with their trailing slash
    assert all(k.endswith("/") or "/" not in k[len(prefix):] for k in result["deleted"])

    # sidecars and manifests went with their artifacts: every stem is complete or gone
    left = set(expected_left)
    for stem, stem_keys in layout.items():
        present = [k in left for k in stem_keys]
        assert all(present) or not any(present), stem

    # foreign keys, sub-folders and keys outside the prefix are untouched and reported
    for name in FOREIGN:
        assert prefix + name in left
    assert "outside/backup_20260601_020000.sql.gz" in left
    assert sorted(result["ignored"]) == sorted([prefix + "README.txt", prefix + "backup_latest.sql.gz",
                                                prefix + "backup_20261399_020000.sql.gz", prefix + "weekly/",
                                                prefix + ".backup_20260602_020000.sql.gz.tmp-99-0a1b2c3d"])

    again = rotate(s3_server, bucket, prefix="atlasia-backups", **policy)
    assert again["changed"] is False
    assert again["deleted"] == []
    assert bucket_keys(s3, bucket) == expected_left


def test_series_option_rotates_only_those(s3_server, s3, bucket):
    runs = history(seed=3, days=40)
    layout, keys = populate(s3, bucket, "", runs, seed=1)
    policy = dict(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0)
    result = rotate(s3_server, bucket, series=["schema"], **policy)
    assert result["changed"] is True
    left = set(bucket_keys(s3, bucket))
    schema = sorted(stem for s, stem, m in runs if s == "schema")
    for stem in schema[:-1]:
        assert not set(layout[stem]) & left
    assert set(layout[schema[-1]]) <= left
    for series, stem, moment in runs:
        if series == "backup":
            assert set(layout[stem]) <= left


def test_policy_of_zeros_is_refused(s3_server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="backup_20260101_020000.sql.gz", Body=b"x")
    result = rotate(s3_server, bucket, keep_last=0, keep_daily=0, keep_weekly=0, keep_monthly=0)
    assert result["failed"] is True
    assert "would delete every backup" in result["msg"]
    assert bucket_keys(s3, bucket) == ["backup_20260101_020000.sql.gz"]


def test_delete_old_versions_on_a_versioned_bucket(s3_server, s3, bucket):
    """SeaweedFS implements bucket versioning: deleted keys leave versions and markers unless purged."""
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    stems = ["backup_202601%02d_020000" % day for day in range(1, 6)]
    for stem in stems:
        for body in (b"first", b"second"):  # two versions of each artifact
            s3.put_object(Bucket=bucket, Key="v/%s.sql.gz" % stem, Body=body)
        s3.put_object(Bucket=bucket, Key="v/%s.sql.gz.sha256" % stem, Body=b"sum")
    policy = dict(keep_last=2, keep_daily=0, keep_weekly=0, keep_monthly=0)

    def versions():
        found = {}
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix="v/"):
            for kind in ("Versions", "DeleteMarkers"):
                for item in page.get(kind, []) or []:
                    found.setdefault(item["Key"], []).append(kind)
        return found

    # plain deletion on a versioned bucket: delete markers, data kept
    result = rotate(s3_server, bucket, prefix="v", keep_last=4, keep_daily=0, keep_weekly=0, keep_monthly=0)
    assert result["deleted"] == ["v/%s.sql.gz" % stems[0], "v/%s.sql.gz.sha256" % stems[0]]
    assert "deleted_versions" not in result
    assert sorted(versions()["v/%s.sql.gz" % stems[0]]) == ["DeleteMarkers", "Versions", "Versions"]

    preview = rotate(s3_server, bucket, check=True, prefix="v", delete_old_versions=True, **policy)
    assert sorted(preview["deleted"]) == sorted("v/%s.sql.gz%s" % (stem, ext) for stem in stems[1:3] for ext in ("", ".sha256"))
    assert len(preview["deleted_versions"]) == 2  # the noncurrent "first" versions of the two artifacts
    assert len(versions()["v/%s.sql.gz" % stems[1]]) == 2

    result = rotate(s3_server, bucket, prefix="v", delete_old_versions=True, **policy)
    assert result.get("failed") is not True, result.get("msg")
    left = versions()
    for stem in stems[1:3]:  # deleted now: no version and no marker left
        assert "v/%s.sql.gz" % stem not in left and "v/%s.sql.gz.sha256" % stem not in left
    assert sum(1 for v in result["deleted_versions"] if v["delete_marker"]) == 4
    assert len(result["deleted_versions"]) == 4 + 6  # markers + every version of the 4 keys
    for stem in stems[3:]:  # kept: both versions still there
        assert sorted(left["v/%s.sql.gz" % stem]) == ["Versions", "Versions"]
    # versions of keys deleted by an earlier run are not this run's business
    assert sorted(left["v/%s.sql.gz" % stems[0]]) == ["DeleteMarkers", "Versions", "Versions"]


def test_missing_bucket(s3_server):
    result = rotate(s3_server, "no-such-bucket-%s" % uuid.uuid4().hex[:8], prefix="dr")
    assert result["failed"] is True
    assert result["error"]["code"] == "NoSuchBucket"
    assert "does not exist" in result["msg"]


def test_unreachable_endpoint_fails_within_timeout():
    port = closed_port()
    started = time.monotonic()
    result = run_module("s3_rotate", dict(bucket="dr", endpoint_url="http://127.0.0.1:%d" % port, access_key="dr-test-access",
                                          secret_key="dr-test-secret", timeout=3, max_attempts=3))
    elapsed = time.monotonic() - started
    assert result["failed"] is True
    assert result["error"]["code"] == "EndpointConnectionError"
    assert "127.0.0.1:%d" % port in result["msg"]
    assert result["duration"] <= 3 + 3  # timeout plus retry backoff
    assert elapsed < 3 + 20
