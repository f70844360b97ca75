"""The RPO of the shipped prod profile: physical backups with WAL archiving, and the monitoring of the archive.

``inventories/prod`` as shipped, in the prod world of tests/support/prodprofile.py (the database in the Compose
container ``aiteam_db_prod``, pgBackRest in its image, repo1 on a volume, repo2 in the S3 bucket under its own
prefix, both encrypted with the environment's key; the playbooks run over real SSH). In order:

1. ``pgbackrest.yml`` sets pgBackRest up (configuration, ``archive_command``, ``archive_timeout``, stanza, check);
2. ``backup.yml`` (the nightly run) takes the logical set and the physical backup into both repositories;
3. a row is written and the test waits until the segment holding it is archived: the time from the commit to
   the archive is the RPO of a quiet database with the profile's ``archive_timeout`` (printed, ``-s`` shows it);
4. ``monitor.yml`` is green and exports the WAL metrics;
5. repo1 is made unwritable (its archive folder read-only for the ``postgres`` user in the container), a row is
   written and a segment switched: archiving fails (``pg_stat_archiver``); ``monitor.yml`` reports it, and, once
   the newest archived WAL is older than a short ``dr_rpo_target`` given with -e, reports the RPO missed too;
6. repo1 is writable again: the archive catches up and ``monitor.yml`` is green again.

``monitor.yml`` runs with ``-e dr_monitor_verify_max_age_seconds=0``: this world has no weekly restore test yet
(tests/integration/test_prod_profile.py runs it), which monitoring would otherwise report.

Needs root, a Docker engine (scripts/docker-engine.sh) and the local images (scripts/build-images.sh). One prod
world per machine: the world waits for the machine-wide lock of tests/support/prodprofile.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest

from tests.support.prodprofile import METRICS_FILE, PROFILE, ProdWorld, discard_workdir, make_workdir

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.root, pytest.mark.slow]

DB = PROFILE["dr_db_name"]
CONTAINER = PROFILE["dr_db_container"]
ARCHIVE_TIMEOUT = PROFILE["dr_pgbackrest_archive_timeout"]
REPO1_ARCHIVE = "%s/archive" % PROFILE["dr_pgbackrest_repo1_path"]
MONITOR_METRICS = METRICS_FILE.parent / "atlasia_dr_monitor.prom"
NO_RESTORE_TEST = ("-e", "dr_monitor_verify_max_age_seconds=0")
ARCHIVER_SQL = ("SELECT coalesce(extract(epoch FROM last_archived_time), 0), "
                "coalesce(extract(epoch FROM last_failed_time), 0), failed_count, "
                "extract(epoch FROM clock_timestamp()) FROM pg_stat_archiver")


def output(proc, size=6000):
    return (proc.stdout[-size:] + "\n--- stderr ---\n" + proc.stderr[-2000:]) if proc is not None else ""


def archiver(world):
    """(last archived, last failed, failed count, server now) from pg_stat_archiver; times as epoch seconds."""
    row = world.db.rows(ARCHIVER_SQL)[0]
    return float(row[0]), float(row[1]), int(row[2]), float(row[3])


def wait_for(condition, timeout, what):
    """Poll ``condition`` (returns a true value when met) every half second, at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %d s waiting for %s" % (timeout, what))
        time.sleep(0.5)


def metric(name, text):
    match = re.search(r"^%s\{[^}]*\} (\S+)$" % re.escape(name), text, re.M)
    return float(match.group(1)) if match else None


def root_exec(*argv):
    proc = subprocess.run(["docker", "exec", "-u", "root", CONTAINER] + list(argv), capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def world(docker_images):
    workdir = make_workdir()
    prod = ProdWorld(workdir)
    try:
        prod.start()
        prod.measured = {}
        yield prod
    finally:
        try:
            try:  # repo1 writable again, whatever happened, so the world's clean-up can remove it
                root_exec("chmod", "-R", "u+w", REPO1_ARCHIVE)
            except AssertionError:
                pass
            prod.stop()
        finally:
            discard_workdir(workdir, "it-prod-rpo")
            if getattr(prod, "measured", None):
                print("\nprod RPO measurements: %s" % json.dumps(prod.measured, sort_keys=True))


def test_the_profile_turns_the_physical_path_on():
    assert PROFILE["dr_backup_physical"] is True
    assert PROFILE["dr_pgbackrest_archive_timeout"] == 60 and PROFILE["dr_rpo_target"] == 300
    assert PROFILE["dr_s3_enabled"] is True  # repo2 in the same bucket
    assert not PROFILE["dr_pgbackrest_repo2_path"].lstrip("/").startswith(PROFILE["dr_s3_prefix"].strip("/"))


def test_pgbackrest_is_set_up_in_the_container(world):
    proc = world.playbook("pgbackrest.yml")
    assert proc.returncode == 0, output(proc)
    settings = dict(world.db.rows("SELECT name, setting FROM pg_settings WHERE name IN "
                                  "('archive_mode', 'archive_command', 'archive_timeout')"))
    assert settings["archive_mode"] == "on" and settings["archive_timeout"] == str(ARCHIVE_TIMEOUT)
    assert "archive-push" in settings["archive_command"]
    conf = root_exec("cat", "/etc/pgbackrest/pgbackrest.conf")
    # both repositories encrypted with the environment's key
    assert "repo1-cipher-type=aes-256-cbc" in conf and "repo2-cipher-type=aes-256-cbc" in conf
    assert "repo2-path=%s" % PROFILE["dr_pgbackrest_repo2_path"] in conf
    assert "repo1-path=%s" % PROFILE["dr_pgbackrest_repo1_path"] in conf


def test_the_nightly_backup_takes_the_physical_backup_beside_the_logical_set(world):
    proc = world.playbook("backup.yml")
    assert proc.returncode == 0, output(proc)
    manifest = world.manifest(world.sets()[-1])
    assert "database" in [a["component"] for a in manifest["artifacts"]]  # the logical set is still there
    physical = manifest["physical"]
    assert physical["tool"] == "pgbackrest" and sorted(b["repo"] for b in physical["backups"]) == [1, 2]
    keys = [o["Key"] for o in world.s3.client().list_objects_v2(
        Bucket=PROFILE["dr_s3_bucket"], Prefix=PROFILE["dr_pgbackrest_repo2_path"].lstrip("/") + "/").get(
            "Contents", [])]
    assert any("/archive/atlasia/" in k for k in keys) and any("/backup/atlasia/" in k for k in keys), keys[:20]


def test_a_write_reaches_the_archive_within_archive_timeout(world):
    """The RPO of a quiet database: a commit, then nothing; archive_timeout switches the segment."""
    wait_for(lambda: archiver(world)[0] > 0, 30, "a first archived segment")
    world.db.psql("INSERT INTO users (email, display_name, created_at) VALUES ('rpo@atlasia.test', 'RPO', now())",
                  db=DB)
    committed = archiver(world)[3]

    def archived_after_the_commit():
        state = archiver(world)
        return state if state[0] > committed else None

    last, _failed, _count, _now = wait_for(archived_after_the_commit, ARCHIVE_TIMEOUT * 3,
                                           "the segment holding the write to be archived")
    delay = last - committed
    world.measured["commit_to_archived_seconds"] = round(delay, 2)
    assert delay <= ARCHIVE_TIMEOUT + 10, delay


def test_monitoring_is_green_with_the_archive_within_the_rpo_target(world):
    proc = world.playbook("monitor.yml", *NO_RESTORE_TEST)
    assert proc.returncode == 0, output(proc)
    metrics = MONITOR_METRICS.read_text()
    assert metric("atlasia_dr_wal_archive_ok", metrics) == 1
    assert metric("atlasia_dr_wal_archive_failing", metrics) == 0
    assert metric("atlasia_dr_rpo_target_seconds", metrics) == PROFILE["dr_rpo_target"]
    age = metric("atlasia_dr_wal_archive_age_seconds", metrics)
    assert age is not None and age < PROFILE["dr_rpo_target"]
    world.measured["monitor_wal_age_seconds"] = age
    world.measured["monitor_at_risk_seconds"] = metric("atlasia_dr_wal_at_risk_seconds", metrics)
    assert 'repo="1"' in metrics and 'repo="2"' in metrics


def test_monitoring_reports_failing_archiving_and_the_missed_rpo(world):
    root_exec("chmod", "-R", "a-w", REPO1_ARCHIVE)
    before_last, _failed, before_count, _now = archiver(world)
    world.db.psql("INSERT INTO users (email, display_name, created_at) VALUES ('lost@atlasia.test', 'Lost', now()); "
                  "SELECT pg_switch_wal()", db=DB)

    def failing():
        state = archiver(world)
        return state[2] > before_count and state[1] > state[0]

    wait_for(failing, 60, "archiving to fail (pg_stat_archiver.failed_count)")
    proc = world.playbook("monitor.yml", *NO_RESTORE_TEST)
    assert proc.returncode != 0, output(proc)
    assert "WAL archiving fails" in proc.stdout, output(proc)
    metrics = MONITOR_METRICS.read_text()
    assert metric("atlasia_dr_wal_archive_ok", metrics) == 0 and metric("atlasia_dr_wal_archive_failing", metrics) == 1
    assert metric("atlasia_dr_wal_archive_failed_count", metrics) > before_count

    # the RPO itself: with a target shorter than the time archiving has been failing
    target = 30
    wait_for(lambda: archiver(world)[3] - archiver(world)[0] > target + 1, 120, "the archive to be %d s old" % target)
    proc = world.playbook("monitor.yml", *NO_RESTORE_TEST, "-e", "dr_rpo_target=%d" % target)
    assert proc.returncode != 0, output(proc)
    assert "more than the RPO target of %d s (dr_rpo_target)" % target in proc.stdout, output(proc)
    assert archiver(world)[0] == before_last  # nothing was archived meanwhile


def test_monitoring_is_green_again_once_the_archive_caught_up(world):
    root_exec("chmod", "-R", "u+w", REPO1_ARCHIVE)
    # PostgreSQL retries the failed segment by itself (about once a minute after three failures in a row)

    def caught_up():
        state = archiver(world)
        return state[0] > state[1]

    wait_for(caught_up, 180, "the archive to catch up")
    proc = world.playbook("monitor.yml", *NO_RESTORE_TEST)
    assert proc.returncode == 0, output(proc)
    assert metric("atlasia_dr_wal_archive_ok", MONITOR_METRICS.read_text()) == 1
