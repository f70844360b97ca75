# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""backup.yml with ``dr_backup_files_store=repository``: when the retention removes a set, locally and in S3, its
snapshots are forgotten in the matching file repository, and the repository is pruned (``dr_backup_files_prune``),
on the local environment (real PostgreSQL, the authenticating S3 server, restic).

The repositories are read back with restic itself: which sets their snapshots belong to, and the bytes they store.
"""

from __future__ import annotations

import datetime
import json
import os

import pytest

from tests.support.localenv import BUCKET, run_playbook, running

from ansible_collections.atlasia.dr.plugins.module_utils import restic

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY = "local-environment-key-for-the-file-repository"
BIG = 3 * 1024 * 1024


@pytest.fixture(scope="module")
def local_env():
    with running("it-retention-file-repo", with_vault=False, s3_auth=True) as env:
        yield env


def repository(env, s3):
    if s3:
        location = restic.repository_location(bucket=BUCKET, prefix="atlasia-backups/files-repository",
                                              endpoint_url=env.s3.endpoint_url)
        settings, options = restic.s3_settings(env.s3.module_args(BUCKET))
    else:
        location, settings, options = str(env.root / "backups" / "files-repository"), {}, []
    return restic.Restic(restic.subprocess_runner, "restic", location, restic.repository_password(KEY),
                         env=settings, options=options, cache_dir=str(env.root / "restic-cache"))


def snapshot_sets(repo):
    return sorted(set(restic.tag_value(s, restic.TAG_SET) for s in repo.snapshots()))


def set_ids(env):
    return sorted(p.name[len("set_"):-len(".json")] for p in (env.root / "backups").rglob("set_*.json"))


def test_snapshots_follow_the_sets_and_the_repositories_are_pruned(local_env):
    today = datetime.datetime.now(datetime.timezone.utc)
    # one set kept, locally and in S3; no set in the weekly or monthly tiers (the day is neither)
    vars_file = local_env.write_vars(
        dr_backup_files_store="repository", dr_encryption_key=KEY, dr_backup_files_prune="always",
        dr_backup_retention_last=1, dr_backup_retention_daily=1, dr_backup_s3_keep_last=1, dr_backup_s3_keep_daily=1,
        dr_backup_weekly_day=(today.weekday() + 1) % 7, dr_backup_monthly_day=28 if today.day != 28 else 27)
    big = local_env.app_dir / "uploads" / "big.bin"
    big.write_bytes(os.urandom(BIG))  # only in the first set
    result = run_playbook("backup.yml", vars_file, capture=True, check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    first = set_ids(local_env)
    assert len(first) == 1
    stored = dict((s3, repository(local_env, s3).stats()) for s3 in (False, True))
    for s3 in (False, True):
        assert snapshot_sets(repository(local_env, s3)) == first
        assert stored[s3] > BIG
    big.unlink()
    result = run_playbook("backup.yml", vars_file, capture=True, check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    second = set_ids(local_env)
    assert len(second) == 1 and second != first  # the retention removed the first set
    objects = [o["Key"] for o in local_env.s3.client().list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert not [k for k in objects if k.endswith("set_%s.json" % first[0])]
    for s3 in (False, True):
        repo = repository(local_env, s3)
        assert snapshot_sets(repo) == second, s3  # the first set's snapshots are forgotten
        after = repo.stats()
        assert after < stored[s3] - BIG // 2, (s3, stored[s3], after)  # and pruned: the big file's data is gone
        repo.check()
    report = json.loads(sorted((local_env.root / "backups" / "daily").glob("set_*.json"))[-1].read_text())
    assert sorted(e["name"] for e in report["file_snapshots"]) == ["logs", "logs", "uploads", "uploads"]
