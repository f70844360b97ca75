"""The shipped prod profile, run the way users run it: what users run is what we test.

``inventories/prod`` as shipped (encryption on, Vault, S3 with AES256, the database in the Docker container
``aiteam_db_prod`` of the application's Compose project, the paths under /srv/atlasia), its host reached over
real SSH as the unprivileged user ``atlasiaops`` with become (tests/support/sshd.py). The inventory is built in a
private temporary folder by tests/support/prodprofile.py: ``group_vars/prod/main.yml`` is a byte-for-byte copy of
the shipped file (checked below), host names and addresses are host variables, secrets are in an ansible-vault
encrypted ``group_vars/prod/vault.yml``, where the shipped hosts.yml says to keep them. The one other
variable (-e, MACHINE_LIMITS) is what this machine cannot do: enable a systemd timer (systemd is not PID 1 here).

The scenario, in order (each test needs the ones before it; pytest runs them in file order):
backups on three simulated days (``dr_backup_timestamp`` names each set), each set encrypted, in S3 and recorded;
the weekly restore test (verify.yml) on the newest set, and its refusal of a set id naming no set; monitor.yml;
restore.yml with backup=latest; recover_data.yml; restore.yml with a set id, with a set manifest path, and its
refusals of backup values naming nothing; vault_recover.yml (mode=restore into an empty Vault); restore.yml from
S3 alone once the local copies are gone; drill.yml (the prod inventory has no drill group). After every restore
the database (table digests) and the Vault secret are compared with the state at backup time, and the report the
playbook wrote is read back.

The module takes 13-25 minutes on this 2-CPU machine under the load of parallel work (about 60-150 s per
playbook run over SSH); each backup or restore is one run.

Needs root, a Docker engine (scripts/docker-engine.sh) and the local images (scripts/build-images.sh).
"""

from __future__ import annotations

import datetime
import json
import shutil

import pytest
import yaml

from tests.support.prodprofile import (DEPLOY_DIR, HOST_NAME, MACHINE_LIMITS, METRICS_FILE, PROFILE, SECRET_PATH,
                                       SHIPPED_GROUP_VARS, SRV, ProdWorld, discard_workdir, make_workdir)
from tests.support.postgres import table_digests

from ansible_collections.atlasia.dr.plugins.module_utils import restic

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.root, pytest.mark.slow]

ENC_HEADER = b"age-encryption.org/v1\n"
DB = PROFILE["dr_db_name"]
DAYS = 3


def output(proc, size=6000):
    return (proc.stdout[-size:] + "\n--- stderr ---\n" + proc.stderr[-2000:]) if proc is not None else ""


@pytest.fixture(scope="module")
def world(docker_images):
    """The prod world (Docker engine and images from conftest's docker_images), stopped even when a test fails."""
    workdir = make_workdir()
    prod = ProdWorld(workdir)
    try:
        prod.start()
        prod.states = {}  # set id -> what a restore of that set must bring back
        yield prod
    finally:
        try:
            prod.stop()
        finally:
            discard_workdir(workdir, "it-prod-profile")


def snapshot(world):
    return dict(digests=table_digests(world.db, DB), secret=world.bao.read_secret(SECRET_PATH))


def disaster(world):
    """The database is dropped, the Vault secret overwritten."""
    world.db.psql('DROP DATABASE "%s" WITH (FORCE)' % DB)
    world.bao.write_secret(SECRET_PATH, {"username": "intruder", "password": "changed-by-the-disaster"})


def newest(world):
    return max(world.states)


def assert_restored(world, set_id, proc, source=None):
    assert proc.returncode == 0, output(proc)
    after = snapshot(world)
    assert after["digests"] == world.states[set_id]["digests"], "the database is not the one of set %s" % set_id
    assert after["secret"] == world.states[set_id]["secret"], "Vault does not hold the secret of set %s" % set_id
    report = json.loads(world.new_reports("restore-*.json")[-1].read_text())
    assert report["verified"] is True
    assert report["backup"]["set_id"] == set_id
    if source:
        assert report["backup"]["source"].startswith(source), report["backup"]
    return report


# -- the inventory is the shipped profile ------------------------------------------------------------------------
def test_the_inventory_is_the_shipped_profile_with_only_hosts_addresses_and_secrets_replaced(world):
    assert (world.inventory / "group_vars" / "prod" / "main.yml").read_bytes() == SHIPPED_GROUP_VARS.read_bytes()
    host_vars = yaml.safe_load((world.inventory / "host_vars" / ("%s.yml" % HOST_NAME)).read_text())
    addresses = {"dr_db_port", "dr_vault_url", "dr_s3_endpoint_url", "dr_s3_region", "dr_health_urls",
                 "dr_s3_ca_bundle", "dr_pgbackrest_s3_ca_file",  # the S3 CA: this machine's S3 has its own
                 "dr_s3_checksum_calculation"}  # and refuses boto3's checksum trailers over HTTPS
    assert {k for k in host_vars if not k.startswith("ansible_")} == addresses
    assert host_vars["ansible_host_key_checking"] is True and "StrictHostKeyChecking=yes" in host_vars[
        "ansible_ssh_common_args"]
    assert world.vault_file.read_text().startswith("$ANSIBLE_VAULT;")
    variables = world.host_variables()
    assert variables["dr_db_container"] == PROFILE["dr_db_container"]
    assert variables["vault_dr_db_password"] == world.db_password
    assert MACHINE_LIMITS == {"dr_backup_schedule_enabled": False}
    # the shipped profile's own choices, which the scenario relies on
    assert PROFILE["dr_env"] == "prod" and PROFILE["dr_db_container"] == "aiteam_db_prod"
    assert PROFILE["dr_vault_enabled"] and PROFILE["dr_s3_enabled"] and PROFILE["dr_s3_encryption"] == "AES256"
    assert "dr_encryption_enabled" not in PROFILE  # on through roles/dr/defaults (dr_env == 'prod')


def test_secrets_kept_where_the_shipped_inventory_says_keep_the_profile(world):
    """inventories/prod/hosts.yml: 'keep secrets in group_vars/prod/vault.yml', beside the profile's main.yml."""
    variables = world.host_variables()
    assert world.vault_file == world.inventory / "group_vars" / "prod" / "vault.yml"
    assert variables.get("vault_dr_db_password") == world.db_password  # the secrets are read...
    assert variables.get("dr_db_container") == PROFILE["dr_db_container"]  # ...and so is the profile


# -- physical backups: set up once ---------------------------------------------------------------------------------
def test_pgbackrest_is_set_up_by_its_playbook(world):
    """The profile takes physical backups too: playbooks/pgbackrest.yml sets pgBackRest up in the container once."""
    assert PROFILE["dr_backup_physical"] is True
    proc = world.playbook("pgbackrest.yml")
    assert proc.returncode == 0, output(proc)
    archive_command = world.db.rows("SHOW archive_command")[0][0]
    assert archive_command.startswith("pgbackrest ") and "archive-push" in archive_command


# -- backups on several days ---------------------------------------------------------------------------------------
def test_backups_on_several_days_are_encrypted_uploaded_and_recorded(world):
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    stamps = [(now - datetime.timedelta(days=DAYS - 1 - day, minutes=5)).strftime("%Y%m%d_%H%M%S")
              for day in range(DAYS)]
    for day, stamp in enumerate(stamps):
        # the data of that day
        world.db.psql("INSERT INTO users (email, display_name, created_at) VALUES ('day%d@atlasia.test', 'Day %d', "
                      "now()); UPDATE workflow_runs SET status = 'succeeded' WHERE id = %d"
                      % (day, day, 10 + day), db=DB)
        world.bao.write_secret(SECRET_PATH, {"username": PROFILE["dr_db_user"], "password": "password-of-day-%d" % day})
        state = snapshot(world)
        proc = world.playbook("backup.yml", "-e", "dr_backup_timestamp=%s" % stamp)
        assert proc.returncode == 0, output(proc)
        assert table_digests(world.db, DB) == state["digests"]  # a backup changes nothing
        world.states[stamp] = state
        assert world.sets()[-1] == stamp

        manifest = world.manifest(stamp)
        assert manifest["set_id"] == stamp
        components = sorted(a["component"] for a in manifest["artifacts"])
        assert components == ["config", "database", "globals", "schema", "vault"]
        # the file sets (uploads, plugins, logs) are snapshots in the file repository, locally and in S3
        # (dr_backup_files_store, by default repository), which the set manifest names
        snapshots = manifest["file_snapshots"]
        assert sorted((s["name"], s["repository"].startswith("s3:")) for s in snapshots) == [
            (name, in_s3) for name in ("logs", "plugins", "uploads") for in_s3 in (False, True)], snapshots
        assert all(s["snapshot_id"] and s["store"] == "repository" for s in snapshots), snapshots
        daily = world.backup_root / "daily"
        for artifact in manifest["artifacts"]:
            assert artifact["name"].endswith(".enc"), artifact
            with open(daily / artifact["name"], "rb") as handle:
                assert handle.read(len(ENC_HEADER)) == ENC_HEADER, artifact["name"]
        # nothing of this set is left in clear beside the encrypted artifacts
        # (each artifact's .json metadata sidecar holds names, sizes and checksums)
        clear = [p.name for p in daily.iterdir() if stamp in p.name and ".enc" not in p.name
                 and not p.name.endswith(".json")]
        assert clear == []
        for sidecar in daily.glob("*_%s.json" % stamp):
            assert world.db_password not in sidecar.read_text()
        assert manifest["offsite"]["s3"] is True
        assert sorted(b["repo"] for b in manifest["physical"]["backups"]) == [1, 2], manifest["physical"]
        keys = world.s3_keys()
        for name in [a["name"] for a in manifest["artifacts"]] + ["set_%s.json" % stamp]:
            assert any(k.endswith("/" + name) for k in keys), "%s is not in S3" % name
        metrics = METRICS_FILE.read_text()
        assert 'atlasia_dr_backup_success{env="prod"} 1' in metrics
    assert world.sets() == stamps
    # each file repository (local and S3) opens with one key, of the environment's password, rewritten with light
    # KDF parameters by the first backup (restic init's calibrated key removed)
    local_keys = sorted((world.backup_root / "files-repository" / "keys").iterdir())
    s3_prefix = PROFILE["dr_s3_prefix"].rstrip("/") + "/files-repository/keys/"
    client = world.s3.client()
    s3_keys = [json.loads(client.get_object(Bucket=PROFILE["dr_s3_bucket"], Key=key)["Body"].read())
               for key in world.s3_keys() if key.startswith(s3_prefix)]
    assert len(local_keys) == 1 and len(s3_keys) == 1, (local_keys, len(s3_keys))
    for doc in [json.loads(local_keys[0].read_text()), s3_keys[0]]:
        assert restic.key_is_light(doc) and doc["N"] == restic.LIGHT_KDF["N"], doc
    # the runs went over SSH as the unprivileged user
    assert "Accepted publickey for %s" % world.ssh.user in world.ssh.log_file.read_text()


# -- the weekly restore test and the monitoring ------------------------------------------------------------------
def test_the_preflight_finds_everything_ready_over_ssh(world):
    """The shipped profile's dependencies, checked at once on the host reached over SSH: all ready, nothing changed."""
    before = snapshot(world)
    proc = world.playbook("preflight.yml")
    assert proc.returncode == 0, output(proc)
    text = " ".join(proc.stdout.split())
    for row in ("| postgres | database %s in container %s | yes |" % (DB, PROFILE["dr_db_container"]),
                "| vault |", "| s3 |", "| key | dr_encryption_key | yes | key id", "| space |"):
        assert row in text, (row, output(proc))
    assert "the newest authenticated set (%s) was made with it" % newest(world) in text
    assert "**NO**" not in text
    assert snapshot(world) == before


def test_the_weekly_restore_test_passes_on_the_newest_encrypted_set(world):
    assert world.states, "no backup was taken"
    proc = world.playbook("verify.yml")
    assert proc.returncode == 0, output(proc)
    report = json.loads(world.new_reports("verify-*.json")[-1].read_text())
    assert report["backup"]["set_id"] == newest(world)
    assert report["verified"] is True
    assert world.manifest(newest(world)).get("verified"), "the set manifest does not record the restore test"


def test_the_restore_test_refuses_a_set_id_naming_no_set(world):
    before = set(world.new_reports("verify-*.json"))
    proc = world.playbook("verify.yml", "-e", "backup=20990101_000000")
    assert proc.returncode != 0, output(proc)
    tested = [json.loads(p.read_text()).get("backup", {}).get("set_id")
              for p in world.new_reports("verify-*.json") if p not in before]
    assert [t for t in tested if t] == [], "backup=20990101_000000 tested another set: %s" % tested
    assert "20990101_000000" in proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def monitor_run(world):
    """One run of monitor.yml after the backups and the restore test."""
    assert world.states, "no backup was taken"
    return world.playbook("monitor.yml")


def test_monitoring_finds_every_component_backed_up_locally_and_in_s3(world, monitor_run):
    metrics = (METRICS_FILE.parent / "atlasia_dr_monitor.prom").read_text()
    present = [line for line in metrics.splitlines() if line.startswith("atlasia_dr_backup_present{")]
    expected = [line for line in present if 'expected="true"' in line]
    assert {loc for line in expected for loc in ("local", "s3") if 'location="%s"' % loc in line} == {"local", "s3"}
    assert expected and all(line.endswith(" 1") for line in expected), present


def test_monitoring_passes(world, monitor_run):
    assert monitor_run.returncode == 0, output(monitor_run)
    assert "Backups OK on %s" % HOST_NAME in monitor_run.stdout


# -- restores --------------------------------------------------------------------------------------------------------
def test_restore_latest_after_a_disaster(world):
    disaster(world)
    proc = world.playbook("restore.yml", "-e", "confirm=yes", "-e", "backup=latest")
    report = assert_restored(world, newest(world), proc)
    assert [p["name"] for p in report["phases"]] == ["assessment", "preparation", "restoration", "verification",
                                                     "post-recovery"]
    # the application was stopped for the restore and is up again (health URL answered in the verification)
    running = world.compose("ps", "--status", "running", "--services").stdout.split()
    assert sorted(running) == ["ai-orchestrator", "db"]


def test_deleted_rows_come_back_with_recover_data(world):
    latest = newest(world)
    assert table_digests(world.db, DB) == world.states[latest]["digests"], "the restore of the newest set failed"
    world.db.psql("DELETE FROM workflow_runs WHERE id BETWEEN 100 AND 149", db=DB)
    where = json.dumps({"table": "workflow_runs", "where": "id BETWEEN 100 AND 149"})
    proc = world.playbook("recover_data.yml", "-e", where, "-e", "confirm=yes")
    assert proc.returncode == 0, output(proc)
    assert table_digests(world.db, DB) == world.states[latest]["digests"]
    report = json.loads(world.new_reports("recover-data-*.json")[-1].read_text())
    assert report["verified"] is True
    assert report["rows_recovered"] == {"public.workflow_runs": 50}
    assert report["backup"]["set_id"] == latest


def test_restore_a_set_named_by_its_id(world):
    oldest = min(world.states)
    disaster(world)
    proc = world.playbook("restore.yml", "-e", "confirm=yes", "-e", "backup=%s" % oldest)
    assert_restored(world, oldest, proc)


def test_restore_a_set_named_by_the_path_of_its_manifest(world):
    middle = sorted(world.states)[1]
    disaster(world)
    manifest = world.backup_root / "daily" / ("set_%s.json" % middle)
    proc = world.playbook("restore.yml", "-e", "confirm=yes", "-e", "backup=%s" % manifest)
    assert_restored(world, middle, proc)


#: backup= values that name nothing: a set id of no set, no accepted form at all, a manifest path that does not exist
BAD_BACKUP_VALUES = [
    "20990101_000000",
    "yesterday",
    "/srv/atlasia/backups/daily/set_20990101_000000.json",
]


@pytest.mark.parametrize("value", BAD_BACKUP_VALUES)
def test_restore_refuses_a_backup_value_naming_nothing(world, value):
    # The database holds the middle set now: a fallback to the newest set changes it.
    before = snapshot(world)
    proc = world.playbook("restore.yml", "-e", "confirm=yes", "-e", "backup=%s" % value)
    after = snapshot(world)
    assert after == before, "backup=%s restored something" % value
    assert proc.returncode != 0, output(proc)
    assert value in proc.stdout + proc.stderr, "the refusal does not name backup=%s:\n%s" % (value, output(proc))


def test_vault_is_rebuilt_from_the_newest_snapshot(world):
    latest = newest(world)
    fresh = world.replace_vault_with_a_fresh_server()
    assert fresh.seal_status()["initialized"] is False
    proc = world.playbook("vault_recover.yml", "-e", "mode=restore", "-e", "confirm=yes")
    assert proc.returncode == 0, output(proc)
    assert world.bao.read_secret(SECRET_PATH) == world.states[latest]["secret"]
    report = json.loads(world.new_reports("vault-recover-*.json")[-1].read_text())
    assert report["verified"] is True
    assert report["backup"]["set_id"] == latest


def test_restore_from_s3_alone_once_the_local_copies_are_gone(world):
    latest = newest(world)
    for tier in ("daily", "weekly", "monthly"):
        shutil.rmtree(world.backup_root / tier, ignore_errors=True)
    disaster(world)
    proc = world.playbook("restore.yml", "-e", "confirm=yes", "-e", "backup=latest")
    assert_restored(world, latest, proc, source="s3")


def test_restores_leave_encrypted_bounded_copies_and_one_undoes_another(world):
    """Restores over a live database: each leaves an encrypted safety dump (never plaintext) and the replaced
    database; the copies are bounded by the retention; the safety dump undoes the restore it preceded."""
    latest, oldest = newest(world), min(world.states)
    live = table_digests(world.db, DB)
    assert live == world.states[latest]["digests"]
    proc = world.playbook("restore.yml", "-e", "confirm=yes", "-e", "backup=%s" % oldest)
    assert_restored(world, oldest, proc)
    safety_dir = world.backup_root / "safety"
    dumps = sorted(safety_dir.glob("prerestore_*.sql.gz*"))
    assert dumps and all(p.name.endswith((".enc", ".enc.md5", ".enc.sha256")) for p in dumps), dumps
    assert not [p for p in safety_dir.iterdir() if p.name.startswith(".")], "temporary files left behind"
    assert all(p.name.endswith((".enc", ".enc.md5", ".enc.sha256", ".json"))
               for p in safety_dir.glob("vault-prerestore_*")), "a plaintext Vault safety snapshot"
    undo = max(p for p in dumps if p.name.endswith(".enc"))

    # the safety dump, restored like any dump, brings back the database the restore replaced
    proc = world.playbook("restore.yml", "-e", "confirm=yes", "-e", "backup=%s" % undo)
    assert proc.returncode == 0, output(proc)
    assert table_digests(world.db, DB) == live

    proc = world.playbook("restore.yml", "-e", "confirm=yes", "-e", "backup=latest")
    assert_restored(world, latest, proc)
    previous = [name for name in world.db.databases() if name.startswith(DB + "_previous_")]
    assert len(previous) == 2, previous  # dr_restore_previous_retention, the newest ones
    kept_dumps = list(safety_dir.glob("prerestore_*.sql.gz.enc"))
    assert 1 <= len(kept_dumps) <= 3 and undo in kept_dumps, kept_dumps  # dr_safety_retention
    assert table_digests(world.db, sorted(previous)[-1]) == live  # the database the last restore replaced


def test_the_prod_inventory_has_no_drill_group(world):
    """drill.yml restores on the group prod_drill; the shipped inventory has none, so the drill refuses to run."""
    proc = world.playbook("drill.yml")
    assert proc.returncode != 0
    assert "No drill target matches 'prod_drill'" in proc.stdout + proc.stderr, output(proc)
    assert SRV.exists() and DEPLOY_DIR.exists()  # nothing was touched
