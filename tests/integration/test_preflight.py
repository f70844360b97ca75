# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/preflight.yml against real PostgreSQL, OpenBao and S3 (SeaweedFS) on 127.0.0.1.

Everything ready gives one table and exit 0; several missing dependencies are all named in one run, each with its
fix; a key that is not the newest set's is named before any work starts. Nothing is changed.
"""

from __future__ import annotations

import re

import pytest

from tests.support import TMP_ROOT
from tests.support.localenv import BUCKET, LocalEnvironment, run_playbook
from tests.support.seaweedfs import AuthenticatingS3Server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def env():
    local = LocalEnvironment(root=TMP_ROOT / "it-preflight", with_s3=False)
    local.start()
    try:
        # an S3 server that checks credentials, so a wrong secret key is really refused
        local.s3 = AuthenticatingS3Server(directory=str(local.root / "s3")).start(bucket=BUCKET)
        yield local
    finally:
        local.stop()


def preflight(env, name, **overrides):
    overrides.setdefault("dr_preflight_min_free_bytes", 1024)
    vars_file = env.write_vars(path=env.root / ("%s.json" % name), **overrides)
    proc = run_playbook("preflight.yml", vars_file, check=False, capture=True, timeout=600)
    # the output callback folds long lines: compare on the words
    return proc, " ".join((proc.stdout + proc.stderr).split())


def bucket_keys(env):
    listed = env.s3.client().list_objects_v2(Bucket=BUCKET)
    return [obj["Key"] for obj in listed.get("Contents", [])]


def test_everything_ready_is_one_table_and_changes_nothing(env):
    before = bucket_keys(env)
    proc, out = preflight(env, "ready")
    assert proc.returncode == 0, out[-4000:]
    for row in ("| python | cryptography |", "| python | boto3 |", "| tool | pg_dump |", "| postgres | database ",
                "| vault | %s |" % env.bao.addr, "| s3 | s3://%s/" % BUCKET, "| space | "):
        assert row in out, (row, out[-3000:])
    assert "**NO**" not in out
    assert "a probe object was written" in out and "and deleted" in out
    assert "Everything" in out and "is ready" in out
    assert bucket_keys(env) == before  # the probe object is gone
    assert not (env.root / "backups" / "daily").exists() or not list((env.root / "backups" / "daily").iterdir())


def test_every_missing_dependency_is_named_at_once_with_its_fix(env):
    proc, out = preflight(env, "broken", dr_db_password="not-the-password", dr_vault_token="not-a-token",
                          dr_s3_secret_key="not-the-secret", dr_encryption_enabled=True, dr_encryption_key="",
                          dr_preflight_min_free_bytes=1 << 62)
    assert proc.returncode != 0, out[-3000:]
    failure = out[out.index("checks are not ready"):] if "checks are not ready" in out else out
    assert "5 of " in out, out[-4000:]
    for expected in ("postgres database", "check dr_db_user and dr_db_password",
                     "vault %s" % env.bao.addr,
                     "s3 s3://%s/" % BUCKET,
                     "key dr_encryption_key", "set dr_encryption_key",
                     "space %s" % (env.root / "backups"), "GiB needed"):
        assert expected in failure, (expected, failure[-4000:])
    assert "cryptography: importable" not in failure  # what is ready is not in the failure message


def test_a_key_other_than_the_newest_sets_is_named(env):
    from ansible_collections.atlasia.dr.plugins.module_utils import backupset, checksum

    daily = env.root / "keyed" / "daily"
    daily.mkdir(parents=True, exist_ok=True)
    dump = daily / "backup_20261201_020000.sql.gz"
    dump.write_bytes(b"x")
    checksum.write_sidecars(str(dump), checksum.artifact_digests(str(dump))[2])
    backupset.build(str(daily), "20261201_020000", [dict(name="backup_20261201_020000.sql.gz", component="database")],
                    environment="local", auth_key="sets-passphrase-91c2")
    proc, out = preflight(env, "wrongkey", dr_backup_root=str(env.root / "keyed"),
                          dr_encryption_key="wrong-passphrase-7f3a")
    assert proc.returncode != 0
    assert "made with another key" in out and "give the key the sets were made with" in out, out[-3000:]
    proc, out = preflight(env, "rightkey", dr_backup_root=str(env.root / "keyed"),
                          dr_encryption_key="sets-passphrase-91c2")
    assert proc.returncode == 0, out[-3000:]
    assert "the newest authenticated set (20261201_020000) was made with it" in out


# -- the preflight as the first phase of playbooks/backup.yml ------------------------------------------------------
def backup(env, name, **overrides):
    vars_file = env.write_vars(path=env.root / ("%s.json" % name), **overrides)
    proc = run_playbook("backup.yml", vars_file, check=False, capture=True, timeout=600)
    return proc, " ".join((proc.stdout + proc.stderr).split())


def files_under(root):
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file()) if root.exists() else []


def keyed_root(root, key):
    """A backup root whose newest set was made (authenticated) with ``key``."""
    from ansible_collections.atlasia.dr.plugins.module_utils import backupset, checksum

    daily = root / "daily"
    daily.mkdir(parents=True, exist_ok=True)
    dump = daily / "backup_20261201_020000.sql.gz.enc"
    dump.write_bytes(b"x")
    checksum.write_sidecars(str(dump), checksum.artifact_digests(str(dump))[2])
    backupset.build(str(daily), "20261201_020000", [dict(name=dump.name, component="database")],
                    environment="local", auth_key=key)
    return root


def test_a_backup_missing_dependencies_stops_before_any_file_is_written(env):
    root = env.root / "backup-missing"
    proc, out = backup(env, "backup-missing", dr_backup_root=str(root), dr_s3_secret_key="not-the-secret",
                       dr_encryption_enabled=True, dr_encryption_key="")
    assert proc.returncode != 0, out[-3000:]
    assert "Preflight, everything the backup needs" in out
    failure = out[out.index("checks are not ready"):]
    for expected in ("s3 s3://%s/" % BUCKET, "key dr_encryption_key", "set dr_encryption_key"):
        assert expected in failure, (expected, failure[-3000:])
    assert "| tool | pg_dump |" in out and "| vault | %s |" % env.bao.addr in out  # the whole table
    assert "Dump the database" not in out
    assert files_under(root) == []


def test_a_backup_skips_what_it_does_not_use(env):
    root = env.root / "backup-lean"
    proc, out = backup(env, "backup-lean", dr_backup_root=str(root), dr_vault_enabled=False, dr_s3_enabled=False,
                       dr_db_password="not-the-password")
    assert proc.returncode != 0, out[-3000:]
    assert "check dr_db_user and dr_db_password" in out
    assert "| vault |" not in out and "| s3 |" not in out and "| tool | pg_restore |" not in out
    assert files_under(root) == []


def test_a_wrong_key_stops_the_backup_before_the_dump(env):
    root = keyed_root(env.root / "backup-keyed", "sets-passphrase-91c2")
    before = files_under(root)
    proc, out = backup(env, "backup-wrongkey", dr_backup_root=str(root), dr_s3_enabled=False,
                       dr_encryption_enabled=True, dr_encryption_key="wrong-passphrase-7f3a")
    assert proc.returncode != 0, out[-3000:]
    assert "made with another key" in out and "give the key the sets were made with" in out, out[-3000:]
    assert "Dump the database" not in out
    assert files_under(root) == before


def test_a_failed_encrypting_backup_leaves_no_plaintext(env):
    # without the preflight the missing key is found only after the dump; the plaintext dump must not stay
    root = env.root / "backup-noplain"
    # the file sets as tarballs: with the file repository (the default) the empty key stops the run before the dump
    proc, out = backup(env, "backup-noplain", dr_backup_root=str(root), dr_s3_enabled=False, dr_preflight=False,
                       dr_encryption_enabled=True, dr_encryption_key="", dr_backup_files_store="archive")
    assert proc.returncode != 0, out[-3000:]
    assert "Preflight, everything the backup needs" not in out or "skipping" in out
    assert "dr_encryption_key is empty" in out, out[-3000:]
    assert "Remove the plaintext artifacts of the failed run" in out
    assert [name for name in files_under(root) if name.startswith("daily/")] == []


def test_file_sets_without_a_key_stop_the_backup_before_any_work(env):
    """The file sets go to the restic repository by default, whose password is derived from the key: without a key
    (and without encryption) the preflight names the key and restic, and without the preflight the run stops before
    the lock and the dump, saying to set the key or dr_backup_files_store: archive."""
    root = env.root / "backup-nokey"
    proc, out = backup(env, "backup-nokey-preflight", dr_backup_root=str(root), dr_s3_enabled=False,
                       dr_encryption_enabled=False, dr_encryption_key="")
    assert proc.returncode != 0, out[-3000:]
    failure = out[out.index("checks are not ready"):]
    assert "key dr_encryption_key" in failure and "dr_backup_files_store: archive" in failure, failure[-3000:]
    assert "| tool | restic |" in out  # checked where the file sets go to the repository
    assert "Dump the database" not in out
    assert files_under(root) == []

    proc, out = backup(env, "backup-nokey", dr_backup_root=str(root), dr_s3_enabled=False, dr_preflight=False,
                       dr_encryption_enabled=False, dr_encryption_key="")
    assert proc.returncode != 0, out[-3000:]
    assert "Check that the file repository has its key" in out
    assert "dr_encryption_key is empty" in out and "dr_backup_files_store: archive" in out, out[-3000:]
    assert "Take the backup lock" not in out and "Dump the database" not in out
    assert files_under(root) == []

    # with the file data as tarballs, no key is needed and restic is not checked
    proc, out = backup(env, "backup-nokey-archive", dr_backup_root=str(root), dr_s3_enabled=False,
                       dr_encryption_enabled=False, dr_encryption_key="", dr_backup_files_store="archive",
                       dr_preflight_min_free_bytes=1024)
    assert proc.returncode == 0, out[-3000:]
    assert "| tool | restic |" not in out
    assert [name for name in files_under(root) if re.match(r"daily/uploads_\d{8}_\d{6}\.tar\.gz$", name)]
