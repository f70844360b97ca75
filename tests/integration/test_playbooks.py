"""backup.yml and restore.yml end to end on the local environment (real PostgreSQL, OpenBao, S3 server).

These run the playbooks exactly as an operator does (``ansible-playbook playbooks/... -e env=local``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import REPO_ROOT, VENV_BIN, VENV_PYTHON, venv_env
from tests.support.localenv import DB_NAME, SECRET_PATH, running
from tests.support.postgres import PostgresServer, table_digests

pytestmark = pytest.mark.integration


def playbook(name, vars_file, *args):
    argv = [str(VENV_BIN / "ansible-playbook"), "playbooks/%s" % name, "-e", "env=local", "-e", "@%s" % vars_file,
            "-e", "ansible_python_interpreter=%s" % VENV_PYTHON] + list(args)
    return subprocess.run(argv, cwd=str(REPO_ROOT), env=venv_env(), capture_output=True, text=True, timeout=900, check=False)


def sets(root):
    return sorted(p.name for p in (Path(root) / "daily").glob("set_*.json"))


@pytest.fixture(scope="module")
def local_env():
    with running("it-playbooks") as env:
        yield env


@pytest.fixture(scope="module")
def first_backup(local_env):
    """One backup set taken through backup.yml (shared by the tests below)."""
    vars_file = local_env.write_vars(dr_reports_dir=str(local_env.root / "reports"))
    before = local_env.snapshot()
    result = playbook("backup.yml", vars_file)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return dict(vars_file=vars_file, before=before, stdout=result.stdout)


def test_backup_writes_a_complete_set(local_env, first_backup):
    root = Path(local_env.root / "backups")
    names = sets(root)
    assert len(names) == 1
    data = json.loads((root / "daily" / names[0]).read_text())
    components = sorted(a["component"] for a in data["artifacts"])
    assert components == ["config", "database", "globals", "schema", "vault"]
    # the file sets (uploads, logs) are snapshots in the file repository, locally and in S3 (dr_backup_files_store,
    # by default repository), which the set manifest names
    snapshots = data["file_snapshots"]
    assert sorted((s["name"], s["repository"].startswith("s3:")) for s in snapshots) == [
        ("logs", False), ("logs", True), ("uploads", False), ("uploads", True)], snapshots
    assert all(s["snapshot_id"] and s["files"] >= 1 for s in snapshots), snapshots
    stamp = data["set_id"]
    for artifact in data["artifacts"]:
        assert stamp in artifact["name"]
        path = root / "daily" / artifact["name"]
        assert path.exists()
        subprocess.run(["md5sum", "-c", artifact["name"] + ".md5"], cwd=str(root / "daily"), check=True,
                       capture_output=True)
    config = next(a for a in data["artifacts"] if a["component"] == "config")
    assert oct((root / "daily" / config["name"]).stat().st_mode & 0o777) == "0o600"
    assert data["offsite"]["s3"] is True
    # the whole set is in the bucket, manifest included
    keys = [o["Key"] for o in local_env.s3.client().list_objects_v2(Bucket="atlasia-backups").get("Contents", [])]
    for artifact in data["artifacts"]:
        assert any(k.endswith("/" + artifact["name"]) for k in keys), artifact["name"]
    assert any(k.endswith("/" + names[0]) for k in keys)
    metrics = (local_env.root / "metrics" / "atlasia_dr.prom").read_text()
    assert 'atlasia_dr_backup_success{env="local"} 1' in metrics
    assert "atlasia_dr_backup_last_success_timestamp_seconds" in metrics
    # bounded labels: no timestamp in any label value (a new series every day otherwise)
    assert 'artifact="backup.sql.gz"' in metrics or 'artifact="backup.dump"' in metrics, metrics
    assert not re.search(r"\d{8}_\d{6}", metrics), metrics


def test_restore_after_disaster_brings_everything_back(local_env, first_backup):
    local_env.disaster()
    result = playbook("restore.yml", first_backup["vars_file"], "-e", "dr_restore_config=true",
                      "-e", "dr_restore_files=true")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    after = local_env.snapshot()
    assert after["digests"] == first_backup["before"]["digests"]
    assert after["secret"] == first_backup["before"]["secret"]
    assert after["files"] == first_backup["before"]["files"]
    reports = sorted((local_env.root / "reports").glob("restore-*.json"))
    report = json.loads(reports[-1].read_text())
    assert report["verified"] is True
    assert [p["name"] for p in report["phases"]] == ["assessment", "preparation", "restoration", "verification",
                                                     "post-recovery"]
    assert report["rto_seconds"] > 0 and report["rpo_seconds"] >= 0
    assert "Achieved RTO" in result.stdout  # the Markdown report is printed at the end
    assert reports[-1].with_suffix(".md").exists()


def test_prod_restore_refused_without_confirmation(local_env, first_backup):
    argv = [str(VENV_BIN / "ansible-playbook"), "playbooks/restore.yml", "-e", "env=prod",
            "-e", "ansible_python_interpreter=%s" % VENV_PYTHON]
    result = subprocess.run(argv, cwd=str(REPO_ROOT), env=venv_env(), capture_output=True, text=True, timeout=300,
                            stdin=subprocess.DEVNULL, check=False)
    assert result.returncode != 0
    assert "Refusing to restore PRODUCTION without confirmation" in result.stdout + result.stderr


def test_damaged_newest_set_falls_back_to_the_previous_one(local_env, first_backup):
    vars_file = first_backup["vars_file"]
    result = playbook("backup.yml", vars_file)
    assert result.returncode == 0, result.stdout[-4000:]
    root = Path(local_env.root / "backups")
    names = sets(root)
    assert len(names) == 2
    newest = json.loads((root / "daily" / names[-1]).read_text())
    dump = root / "daily" / next(a["name"] for a in newest["artifacts"] if a["component"] == "database")
    with open(dump, "r+b") as handle:  # flip one byte in the middle of the newest dump
        handle.seek(dump.stat().st_size // 2)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0xFF]))
    before = table_digests(local_env.pg, DB_NAME)
    newest_id, older_id = names[-1][len("set_"):-len(".json")], names[0][len("set_"):-len(".json")]
    # the damaged local copy is passed over, the intact copy of the same set in S3 is used
    result = playbook("restore.yml", vars_file, "-e", "dr_restore_vault=false")
    assert result.returncode == 0, result.stdout[-6000:]
    assert "Passed over: %s (%s)" % (newest_id, root / "daily" / names[-1]) in result.stdout
    report = json.loads(sorted((local_env.root / "reports").glob("restore-*.json"))[-1].read_text())
    assert report["backup"]["set_id"] == newest_id and report["backup"]["source"].startswith("s3")
    assert report["backup"]["passed_over"][0]["kind"] == "damaged"
    assert table_digests(local_env.pg, DB_NAME) == before
    # with the S3 copy damaged too, the previous set is restored, and the report says why
    client = local_env.s3.client()
    key = next(o["Key"] for o in client.list_objects_v2(Bucket="atlasia-backups")["Contents"]
               if o["Key"].endswith("/" + dump.name))
    client.put_object(Bucket="atlasia-backups", Key=key, Body=b"not the dump")
    shutil.rmtree(root / "restore-staging")  # the verified download of the previous run would be reused
    result = playbook("restore.yml", vars_file, "-e", "dr_restore_vault=false")
    assert result.returncode == 0, result.stdout[-6000:]
    report = json.loads(sorted((local_env.root / "reports").glob("restore-*.json"))[-1].read_text())
    assert report["backup"]["set_id"] == older_id
    assert [p["set_id"] for p in report["backup"]["passed_over"]] == [newest_id, newest_id]
    assert table_digests(local_env.pg, DB_NAME) == before


def test_restore_from_s3_when_local_backups_are_lost(local_env, first_backup):
    before = table_digests(local_env.pg, DB_NAME)
    shutil.rmtree(local_env.root / "backups")
    local_env.pg.psql('DROP DATABASE "%s" WITH (FORCE)' % DB_NAME)
    result = playbook("restore.yml", first_backup["vars_file"], "-e", "dr_restore_vault=false")
    assert result.returncode == 0, result.stdout[-6000:]
    assert table_digests(local_env.pg, DB_NAME) == before
    reports = sorted((local_env.root / "reports").glob("restore-*.json"))
    report = json.loads(reports[-1].read_text())
    assert report["backup"]["source"].startswith("s3")
    assert report["verified"] is True
    assert local_env.bao.read_secret(SECRET_PATH) is not None


def test_restore_from_explicit_s3_url_and_local_dump(local_env, first_backup):
    before = table_digests(local_env.pg, DB_NAME)
    client = local_env.s3.client()
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket="atlasia-backups").get("Contents", []))
    set_key = [k for k in keys if k.rsplit("/", 1)[-1].startswith("set_")][0]  # the newest was damaged above
    local_env.pg.psql('DROP DATABASE "%s" WITH (FORCE)' % DB_NAME)
    result = playbook("restore.yml", first_backup["vars_file"], "-e", "backup=s3://atlasia-backups/%s" % set_key,
                      "-e", "dr_restore_vault=false")
    assert result.returncode == 0, result.stdout[-6000:]
    assert table_digests(local_env.pg, DB_NAME) == before

    # a single dump given by path (the plan's `dr-restore.sh prod /path/to/backup.sql.gz`): a plaintext dump carries
    # no MAC, so where the environment has a key (the local profile's, for its file repository) it is refused before
    # anything is touched, unless the operator says to restore it anyway
    staging = local_env.root / "backups" / "restore-staging" / set_key.rsplit("/", 1)[-1][len("set_"):-len(".json")]
    dump = sorted(staging.glob("backup_*.sql.gz"))[-1]
    result = playbook("restore.yml", first_backup["vars_file"], "-e", "backup=%s" % dump)
    assert result.returncode != 0, result.stdout[-6000:]
    assert "allow_unauthenticated_set=yes" in " ".join(result.stdout.split()), result.stdout[-6000:]
    assert table_digests(local_env.pg, DB_NAME) == before
    local_env.pg.psql('DROP DATABASE "%s" WITH (FORCE)' % DB_NAME)
    result = playbook("restore.yml", first_backup["vars_file"], "-e", "backup=%s" % dump,
                      "-e", "allow_unauthenticated_set=yes")
    assert result.returncode == 0, result.stdout[-6000:]
    assert table_digests(local_env.pg, DB_NAME) == before


def test_restore_on_a_fresh_server_replays_the_globals_first(local_env, first_backup):
    """Scenario 2: a server where only the superuser exists takes the set (roles, owners, grants, policies)."""
    pg = local_env.pg
    pg.psql("CREATE ROLE pb_app LOGIN PASSWORD 'pb-app-Pw-3d'; CREATE ROLE pb_readers NOLOGIN; GRANT pb_readers TO pb_app")
    try:
        pg.psql("CREATE TABLE pb_notes (id int PRIMARY KEY, body text); ALTER TABLE pb_notes OWNER TO pb_app; "
                "INSERT INTO pb_notes VALUES (1, 'kept'); ALTER TABLE pb_notes ENABLE ROW LEVEL SECURITY; "
                "CREATE POLICY pb_read ON pb_notes FOR SELECT TO pb_readers USING (true); "
                "GRANT SELECT ON pb_notes TO pb_readers; ALTER DATABASE \"%s\" SET work_mem = '7MB'" % DB_NAME,
                db=DB_NAME)
        result = playbook("backup.yml", first_backup["vars_file"])
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
        before = table_digests(pg, DB_NAME)
        fresh = PostgresServer(password=pg.password)
        try:
            fresh.start()
            vars_file = local_env.write_vars(local_env.root / "vars-fresh.json", dr_db_port=fresh.port,
                                             dr_reports_dir=str(local_env.root / "reports-fresh"))
            result = playbook("restore.yml", vars_file, "-e", "dr_restore_vault=false")
            assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
            assert table_digests(fresh, DB_NAME) == before
            assert fresh.rows("SELECT tableowner FROM pg_tables WHERE tablename = 'pb_notes'", db=DB_NAME) == [["pb_app"]]
            assert fresh.rows("SELECT policyname, roles::text FROM pg_policies WHERE tablename = 'pb_notes'",
                              db=DB_NAME) == [["pb_read", "{pb_readers}"]]
            assert fresh.scalar("SELECT array_to_string(setconfig, ',') FROM pg_db_role_setting s JOIN pg_database d "
                                "ON d.oid = s.setdatabase WHERE d.datname = '%s' AND s.setrole = 0" % DB_NAME) == "work_mem=7MB"
            assert fresh.rows("SELECT rolpassword FROM pg_authid WHERE rolname = 'pb_app'") == pg.rows(
                "SELECT rolpassword FROM pg_authid WHERE rolname = 'pb_app'")
            report = json.loads(sorted((local_env.root / "reports-fresh").glob("restore-*.json"))[-1].read_text())
            assert sorted(report["globals_created"]["roles"]) == ["pb_app", "pb_readers"]
            assert report["globals_created"]["memberships"] == [["pb_readers", "pb_app"]]
            assert "Cluster globals created before the database: roles pb_app, pb_readers" in result.stdout
        finally:
            fresh.stop()
    finally:
        pg.psql("DROP TABLE IF EXISTS pb_notes; ALTER DATABASE \"%s\" RESET work_mem" % DB_NAME, db=DB_NAME)
        pg.psql("DROP ROLE IF EXISTS pb_app; DROP ROLE IF EXISTS pb_readers")
