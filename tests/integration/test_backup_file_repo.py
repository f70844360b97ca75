# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""backup.yml with ``dr_backup_files_store=repository``: the file sets become snapshots of the environment's restic
repositories (local and in S3) and the set manifest records them, on the local environment (real PostgreSQL and
S3 server, restic).

The snapshots are looked up in the repositories themselves (restic, with the password derived from the key), not
only in the manifest.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.localenv import BUCKET, run_playbook, running

from ansible_collections.atlasia.dr.plugins.module_utils import restic

pytestmark = pytest.mark.integration

KEY = "local-environment-key-for-the-file-repository"


@pytest.fixture(scope="module")
def local_env():
    with running("it-backup-file-repo", with_vault=False, s3_auth=True) as env:
        yield env


def repository(env, s3):
    if s3:
        params = env.s3.module_args(BUCKET)
        location = restic.repository_location(bucket=BUCKET, prefix="atlasia-backups/files-repository",
                                              endpoint_url=env.s3.endpoint_url)
        settings, options = restic.s3_settings(params)
    else:
        location, settings, options = str(env.root / "backups" / "files-repository"), {}, []
    return restic.Restic(restic.subprocess_runner, "restic", location, restic.repository_password(KEY),
                         env=settings, options=options, cache_dir=str(env.root / "restic-cache"))


@pytest.mark.slow
def test_file_sets_become_snapshots_recorded_in_the_set(local_env):
    vars_file = local_env.write_vars(dr_backup_files_store="repository", dr_encryption_key=KEY)
    result = run_playbook("backup.yml", vars_file, capture=True, check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    daily = Path(local_env.root / "backups" / "daily")
    manifests = sorted(daily.glob("set_*.json"))
    assert len(manifests) == 1
    data = json.loads(manifests[0].read_text())
    assert "files" not in [a["component"] for a in data["artifacts"]]  # no tarball of the file data
    assert not list(daily.glob("uploads_*")) and not list(daily.glob("logs_*"))
    entries = data["file_snapshots"]
    assert sorted((e["name"], e["repository"].startswith("s3:")) for e in entries) == [
        ("logs", False), ("logs", True), ("uploads", False), ("uploads", True)]
    for s3 in (False, True):
        snaps = dict((s["id"], s) for s in repository(local_env, s3).snapshots())
        for entry in [e for e in entries if e["repository"].startswith("s3:") is s3]:
            snap = snaps[entry["snapshot_id"]]
            assert restic.tag_value(snap, restic.TAG_SET) == data["set_id"]
            assert restic.tag_value(snap, restic.TAG_COMPONENT) == entry["name"]
            # uploads: one file; logs: the recent log only (max_age_days=7 keeps working)
            assert entry["files"] == 1, entry
            assert entry["bytes"] == (4096 if entry["name"] == "uploads" else len("started\n"))
    # by default (dr_backup_files_light_key) the backup rewrote the repository's key with light KDF parameters
    default_keys = local_env.root / "backups" / "files-repository" / "keys"
    default = [json.loads(path.read_text()) for path in default_keys.iterdir()]
    assert len(default) == 1 and restic.key_is_light(default[0]), default


@pytest.mark.slow
def test_dr_backup_files_light_key_false_keeps_the_keys_restic_calibrated(local_env):
    # a repository of its own (locally and in S3), so the default run above is not what is looked at
    folder = local_env.root / "backups" / "calibrated-repository"
    vars_file = local_env.write_vars(dr_backup_files_store="repository", dr_encryption_key=KEY,
                                     dr_backup_files_repository=str(folder),
                                     dr_backup_files_s3_prefix="atlasia-backups/calibrated-repository",
                                     dr_backup_files_light_key=False)
    result = run_playbook("backup.yml", vars_file, capture=True, check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    keys = [json.loads(path.read_text()) for path in (folder / "keys").iterdir()]
    assert len(keys) == 1 and not restic.key_is_light(keys[0]), keys
