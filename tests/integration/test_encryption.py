"""Client-side encryption of backup sets end to end (real PostgreSQL, OpenBao and S3 server)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.support import REPO_ROOT, TMP_ROOT, VENV_BIN, VENV_PYTHON, venv_env
from ansible_collections.atlasia.dr.plugins.module_utils import backupset, crypto, locate
from tests.support.localenv import DB_NAME, LocalEnvironment
from tests.support.postgres import table_digests

pytestmark = pytest.mark.integration

KEY = "correct horse battery staple 42"
NEW_KEY = "rotated key 2026-11"


def playbook(name, vars_file, *args):
    argv = [str(VENV_BIN / "ansible-playbook"), "playbooks/%s" % name, "-e", "env=local", "-e", "@%s" % vars_file,
            "-e", "ansible_python_interpreter=%s" % VENV_PYTHON] + list(args)
    return subprocess.run(argv, cwd=str(REPO_ROOT), env=venv_env(), capture_output=True, text=True, timeout=900,
                          check=False)


@pytest.fixture(scope="module")
def env():
    local = LocalEnvironment(root=TMP_ROOT / "it-encryption", with_s3=False)
    local.start()
    try:
        yield local
    finally:
        local.stop()


def newest_set(root):
    return json.loads(sorted((Path(root) / "daily").glob("set_*.json"))[-1].read_text())


def test_encrypted_set_round_trip_wrong_key_and_rotation(env):
    vars_file = env.write_vars(dr_reports_dir=str(env.root / "reports"), dr_encryption_enabled=True,
                               dr_encryption_key=KEY)
    before = table_digests(env.pg, DB_NAME)
    result = playbook("backup.yml", vars_file)
    assert result.returncode == 0, result.stdout[-4000:]
    daily = env.root / "backups" / "daily"
    data = newest_set(env.root / "backups")
    names = [a["name"] for a in data["artifacts"]]
    assert names and all(n.endswith(".enc") for n in names)
    # no plaintext artifact is left, and the set verifies without the key
    assert not [p for p in daily.iterdir() if p.name.endswith((".sql.gz", ".sql", ".snap", ".tar.gz"))]
    for name in names:
        subprocess.run(["sha256sum", "-c", name + ".sha256"], cwd=str(daily), check=True, capture_output=True)
        assert KEY.encode() not in (daily / name).read_bytes()
    manifest = json.loads((daily / ("backup_%s.json" % data["set_id"])).read_text())
    assert manifest["encryption"]["algorithm"] == crypto.ALGORITHM and len(manifest["encryption"]["key_id"]) == 32

    # a wrong key is refused before anything is touched
    env.pg.psql("INSERT INTO users (email, display_name, created_at) VALUES ('after-backup@example.com', 'after', now())", db=DB_NAME)
    changed = table_digests(env.pg, DB_NAME)
    wrong = env.write_vars(path=env.root / "wrong.json", dr_reports_dir=str(env.root / "reports"),
                           dr_encryption_enabled=True, dr_encryption_key="not the key")
    result = playbook("restore.yml", wrong, "-e", "dr_restore_vault=false")
    assert result.returncode != 0
    assert "with another key" in result.stdout
    assert table_digests(env.pg, DB_NAME) == changed
    assert not [d for d in env.pg.databases() if "_restore_" in d]

    # the right key restores the backed-up content
    result = playbook("restore.yml", vars_file, "-e", "dr_restore_vault=false")
    assert result.returncode == 0, result.stdout[-4000:]
    assert table_digests(env.pg, DB_NAME) == before
    assert not list((env.root / "backups" / "restore-staging").glob("*.plain")), "decrypted copies must be removed"

    # key rotation: the set also has weekly and monthly copies (hard links, as on a Sunday the 1st); the rekey
    # playbook re-encrypts every copy under the new key, under the backup lock, and re-signs every set manifest
    root = env.root / "backups"
    for tier in ("weekly", "monthly"):
        backupset.link_into(str(daily), data, str(root / tier))
    keys = env.write_vars(path=env.root / "rekey.json", dr_reports_dir=str(env.root / "reports"),
                          dr_encryption_enabled=True, dr_encryption_key=KEY, dr_encryption_new_key=NEW_KEY)
    result = playbook("rekey.yml", keys)
    assert result.returncode == 0, result.stdout[-4000:]
    assert not list(root.glob(".atlasia-dr.lock*")), "the rekey must release the backup lock"
    # the old key is destroyed: every tier's copy authenticates, verifies and decrypts under the new key only
    policy = locate.Policy(key=NEW_KEY, encryption_required=True)
    for tier in backupset.TIERS:
        manifest = root / tier / backupset.set_manifest_name(data["set_id"])
        assert locate.Locator(policy).check_local(str(manifest)) == [], tier
        for name in names:
            assert os.path.samefile(str(root / tier / name), str(daily / name))
            crypto.check_key(str(root / tier / name), NEW_KEY)
    inodes = [os.stat(str(path)).st_ino for path in sorted(root.glob("*/*"))]
    again = playbook("rekey.yml", keys)  # nothing left to do: nothing is rewritten
    assert again.returncode == 0, again.stdout[-4000:]
    assert [os.stat(str(path)).st_ino for path in sorted(root.glob("*/*"))] == inodes
    env.pg.psql('DROP DATABASE "%s" WITH (FORCE)' % DB_NAME)
    rotated_vars = env.write_vars(path=env.root / "rotated.json", dr_reports_dir=str(env.root / "reports"),
                                  dr_encryption_enabled=True, dr_encryption_key=NEW_KEY)
    result = playbook("restore.yml", rotated_vars, "-e", "dr_restore_vault=false")
    assert result.returncode == 0, result.stdout[-4000:]
    assert table_digests(env.pg, DB_NAME) == before
