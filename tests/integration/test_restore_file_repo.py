# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""restore.yml with a set of ``dr_backup_files_store=repository``: the file data comes back from the set's
snapshots (the local file repository, else the one in S3), whole or selected paths, into the original or another
destination, with the archive extraction's rules (never through a symbolic link leading out of the destination),
on the local environment (real PostgreSQL, the authenticating S3 server, restic).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.support.localenv import BUCKET, run_playbook, running

from ansible_collections.atlasia.dr.plugins.module_utils import restic

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY = "local-environment-key-for-the-file-repository"


@pytest.fixture(scope="module")
def local_env():
    with running("it-restore-file-repo", with_vault=False, s3_auth=True) as env:
        yield env


@pytest.fixture(scope="module")
def backed_up(local_env):
    vars_file = local_env.write_vars(dr_backup_files_store="repository", dr_encryption_key=KEY,
                                     dr_encryption_enabled=True)
    result = run_playbook("backup.yml", vars_file, capture=True, check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    manifest = sorted((local_env.root / "backups" / "daily").glob("set_*.json"))[-1]
    data = json.loads(manifest.read_text())
    assert sorted(set(e["name"] for e in data["file_snapshots"])) == ["logs", "uploads"]
    return dict(vars_file=vars_file, files=local_env.file_contents(), set=data)


def files_only(*args):
    return ("-e", "dr_restore_database=false", "-e", "dr_restore_files=true") + args


def leftovers(root):
    return [str(p) for p in Path(root).rglob(".dr-file-restore-*")]


def test_restore_brings_the_file_data_back_from_the_local_repository(local_env, backed_up):
    local_env.disaster()  # the database dropped, the uploads folder removed
    (local_env.app_dir / "logs" / "app.log").write_text("overwritten after the backup\n")
    result = run_playbook("restore.yml", backed_up["vars_file"], "-e", "dr_restore_files=true", capture=True,
                          check=False)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    after = local_env.file_contents()
    for name in ("uploads/2026/11/report.pdf", "logs/app.log", "logs/app-2026-01-01.log"):
        assert after[name] == backed_up["files"][name], name
    assert not leftovers(local_env.app_dir) and not leftovers(local_env.root)
    # the configuration is not restored without dr_restore_config
    assert after["deployments/.env.prod"] != backed_up["files"]["deployments/.env.prod"]


def test_selected_paths_into_another_destination_from_s3_when_the_local_repository_is_missing(local_env, backed_up):
    local_repo = local_env.root / "backups" / "files-repository"
    aside = local_env.root / "files-repository.aside"
    dest = local_env.root / "restored-copy"
    wanted = str(local_env.app_dir / "uploads" / "2026")
    os.rename(str(local_repo), str(aside))
    try:
        vars_file = local_env.write_vars(path=local_env.root / "vars-copy.json", dr_backup_files_store="repository",
                                         dr_encryption_key=KEY, dr_restore_files_dest=str(dest),
                                         dr_restore_files_components=["uploads"], dr_restore_files_include=[wanted])
        result = run_playbook("restore.yml", vars_file, *files_only(), capture=True, check=False)
    finally:
        os.rename(str(aside), str(local_repo))
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    copy = dest / wanted.lstrip("/") / "11" / "report.pdf"
    assert copy.read_bytes() == backed_up["files"]["uploads/2026/11/report.pdf"]
    assert not list(dest.rglob("*.log"))  # logs not asked for
    assert "passed over the local repository" in result.stdout + result.stderr
    assert not leftovers(dest)


def test_a_symbolic_link_leading_out_of_the_destination_refuses_the_restore(local_env, backed_up):
    # into another destination whose copy of the uploads folder holds a link out of it (with dest=/ every absolute
    # target is inside the destination, as for an archive)
    dest, outside = local_env.root / "linked-copy", local_env.root / "outside"
    outside.mkdir(exist_ok=True)
    uploads = dest / str(local_env.app_dir / "uploads").lstrip("/")
    uploads.mkdir(parents=True)
    os.symlink(str(outside), str(uploads / "2026"))
    vars_file = local_env.write_vars(path=local_env.root / "vars-linked.json", dr_backup_files_store="repository",
                                     dr_encryption_key=KEY, dr_encryption_enabled=True,
                                     dr_restore_files_dest=str(dest), dr_restore_files_components=["uploads"])
    result = run_playbook("restore.yml", vars_file, *files_only(), capture=True, check=False)
    assert result.returncode != 0
    assert "resolves outside the destination" in result.stdout, result.stdout[-6000:]
    assert os.listdir(str(outside)) == []  # nothing written through the link
    assert sorted(os.listdir(str(uploads))) == ["2026"] and os.path.islink(str(uploads / "2026"))
    assert not leftovers(dest)


def test_after_rekey_the_new_key_restores_the_file_data_and_the_old_one_no_longer_opens(local_env, backed_up):
    new_key = "the rotated key of the local environment"
    keys = local_env.write_vars(path=local_env.root / "rekey.json", dr_backup_files_store="repository",
                                dr_encryption_enabled=True, dr_encryption_key=KEY, dr_encryption_new_key=new_key)
    result = run_playbook("rekey.yml", keys, capture=True, check=False)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    for s3 in (False, True):
        location = str(local_env.root / "backups" / "files-repository")
        settings, options = {}, []
        if s3:
            location = restic.repository_location(bucket=BUCKET, prefix="atlasia-backups/files-repository",
                                                  endpoint_url=local_env.s3.endpoint_url)
            settings, options = restic.s3_settings(local_env.s3.module_args(BUCKET))
        for key, opens in ((KEY, False), (new_key, True)):
            repo = restic.Restic(restic.subprocess_runner, "restic", location, restic.repository_password(key),
                                 env=settings, options=options, cache_dir=str(local_env.root / "restic-cache"))
            assert repo.opens() is opens, (s3, key)
    shutil.rmtree(str(local_env.app_dir / "uploads"))
    rotated = local_env.write_vars(path=local_env.root / "rotated.json", dr_backup_files_store="repository",
                                   dr_encryption_enabled=True, dr_encryption_key=new_key)
    result = run_playbook("restore.yml", rotated, *files_only(), capture=True, check=False)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert local_env.file_contents()["uploads/2026/11/report.pdf"] == backed_up["files"]["uploads/2026/11/report.pdf"]
