# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""verify.yml with a set of ``dr_backup_files_store=repository``: the local and S3 file repositories are checked
(``restic check`` with data read back) and a sample of the set's files is restored and compared with the snapshot's
listing; a damaged pack fails the restore test, on the local environment (real PostgreSQL, the authenticating S3
server, restic).
"""

from __future__ import annotations

import json

import pytest

from tests.support.localenv import run_playbook, running

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY = "local-environment-key-for-the-file-repository"


@pytest.fixture(scope="module")
def local_env():
    with running("it-verify-file-repo", with_vault=False, s3_auth=True) as env:
        yield env


@pytest.fixture(scope="module")
def backed_up(local_env):
    vars_file = local_env.write_vars(dr_backup_files_store="repository", dr_encryption_key=KEY,
                                     dr_verify_files_read_data_subset="100%")
    result = run_playbook("backup.yml", vars_file, capture=True, check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return dict(vars_file=vars_file, manifest=sorted((local_env.root / "backups" / "daily").glob("set_*.json"))[-1])


def verify(vars_file):
    return run_playbook("verify.yml", vars_file, "-e", "dr_verify_vault=false", capture=True, check=False,
                        timeout=900)


def test_verify_checks_the_repositories_and_restores_a_sample(local_env, backed_up):
    result = verify(backed_up["vars_file"])
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    verified = json.loads(backed_up["manifest"].read_text())["verified"]
    assert verified["result"] == "passed" and verified["failed_checks"] == []
    reports = sorted((local_env.root / "reports").rglob("*.json"))
    checks = [c for r in reports for c in json.loads(r.read_text()).get("checks", [])
              if str(c.get("name", "")).startswith("file repository")]
    assert sorted(set(c["name"] for c in checks)) == ["file repository (local)", "file repository (s3)"], checks
    assert all(c["ok"] for c in checks) and "2 files restored" in checks[0]["detail"], checks
    assert not list((local_env.root / "backups" / "restore-staging").rglob(".dr-file-sample-*"))


def test_a_damaged_pack_fails_the_restore_test(local_env, backed_up):
    packs = sorted(p for p in (local_env.root / "backups" / "files-repository" / "data").rglob("*") if p.is_file())
    assert packs
    for pack in packs:  # every pack: whichever the sample reads, the damage is found
        data = bytearray(pack.read_bytes())
        data[len(data) // 2] ^= 0x01
        pack.chmod(0o600)
        pack.write_bytes(bytes(data))
    result = verify(backed_up["vars_file"])
    assert result.returncode != 0
    verified = json.loads(backed_up["manifest"].read_text())["verified"]
    assert verified["result"] == "failed" and "file repository (local)" in verified["failed_checks"], verified
    assert "file repository (s3)" not in verified["failed_checks"]  # the copy in S3 is intact
