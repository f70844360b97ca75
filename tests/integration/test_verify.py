# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/verify.yml, the weekly restore test, against real servers; and backup + verify across several hosts.

One backup set of the local environment (PostgreSQL, OpenBao, S3 server) is taken with backup.yml, then
verify.yml restores it into a scratch database (on the database host, and on a second PostgreSQL server reading
the set from S3), into a throwaway OpenBao, and records the result. The fleet test runs backup.yml and
verify.yml over three database hosts (three PostgreSQL servers), one of them broken.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.integration.ops_support import (
    WebhookReceiver,
    check_metrics,
    extra,
    metric_lines,
    newest_report,
    playbook,
    promtool,
    tail,
    write_inventory,
)
from tests.support import TMP_ROOT
from tests.support.localenv import BUCKET, DB_NAME, SECRET_PATH, LocalEnvironment
from tests.support.openbao import OpenBaoServer
from tests.support.postgres import PostgresServer, create_sample_database, table_digests

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def scratch_databases(server):
    return [row[0] for row in server.rows("SELECT datname FROM pg_database WHERE datname LIKE '%\\_verify\\_%'")]


@pytest.fixture(scope="module")
def site():
    """The local environment, a throwaway OpenBao, a staging PostgreSQL server and the inventory."""
    env = LocalEnvironment(root=TMP_ROOT / "it-verify")
    scratch_bao = staging = None
    env.start()
    try:
        scratch_bao = OpenBaoServer(directory=str(env.root / "scratch-bao")).setup()
        staging = PostgresServer(base_dir=env.root / "staging-pg").start()
        group_vars = env.vars(dr_reports_dir=str(env.root / "reports"), dr_staging_dir=str(env.root / "staging"))
        inventory = write_inventory(env.root / "inventory.yml", group_vars, {
            "local_db": {"localhost": {}},
            "local_staging": {"staging": {}},
        })
        yield dict(env=env, bao=scratch_bao, staging=staging, inventory=inventory, root=env.root,
                   reports=env.root / "reports" / "localhost", metrics=env.root / "metrics" / "atlasia_dr_verify.prom")
    finally:
        for server in (staging, scratch_bao):
            if server is not None:
                server.stop()
        env.stop()


@pytest.fixture(scope="module")
def backup_set(site):
    """One backup set (database, schema, Vault, configuration, files), local and in S3."""
    before = table_digests(site["env"].pg, DB_NAME)
    result = playbook("backup.yml", site["inventory"])
    assert result.returncode == 0, tail(result)
    manifests = sorted((site["root"] / "backups" / "daily").glob("set_*.json"))
    assert len(manifests) == 1
    return dict(manifest=manifests[0], set_id=json.loads(manifests[0].read_text())["set_id"], digests=before)


def s3_manifest(site, set_id):
    client = site["env"].s3.client()
    body = client.get_object(Bucket=BUCKET, Key="atlasia-backups/set_%s.json" % set_id)["Body"].read()
    return json.loads(body)


def test_restore_test_passes_and_is_recorded(site, backup_set):
    env = site["env"]
    result = playbook("verify.yml", site["inventory"], *extra({
        "dr_verify_vault_scratch_url": site["bao"].addr, "dr_verify_vault_scratch_token": site["bao"].token,
        "dr_verify_vault_unseal_keys": [env.bao.unseal_key], "dr_verify_vault_canary": "secret/data/" + SECRET_PATH,
    }))
    assert result.returncode == 0, tail(result)
    assert "Restore test passed on localhost" in result.stdout
    report = newest_report(site["reports"], "verify")
    assert report["kind"] == "verify" and report["verified"] is True and report["status"] == "succeeded"
    assert report["backup"]["set_id"] == backup_set["set_id"]
    assert report["backup"]["source"].startswith("local: ")
    assert [p["name"] for p in report["phases"]] == ["preparation", "restoration", "verification", "cleanup"]
    checks = dict((c["name"], c) for c in report["checks"])
    for name in ("set %s checksums" % backup_set["set_id"], "database restored into a scratch database",
                 "table public.users present", "row count public.workflow_runs",
                 "newest public.workflow_runs.created_at", "vault snapshot well-formed",
                 "vault snapshot restored into a throwaway Vault", "restored vault unseals with the original keys",
                 "vault canary secret/data/%s readable" % SECRET_PATH, "scratch database dropped",
                 "result recorded in the set manifest", "newest verified backup within the RPO (86400 s)"):
        assert checks[name]["ok"], (name, checks.get(name))
    assert report["rows"]["public.workflow_runs"] == 1500
    # production untouched, scratch dropped, throwaway Vault sealed again
    assert table_digests(env.pg, DB_NAME) == backup_set["digests"]
    assert scratch_databases(env.pg) == []
    assert site["bao"].seal_status()["sealed"] is True
    assert env.bao.read_secret(SECRET_PATH) is not None
    # the set manifest records the test, locally and in S3
    local = json.loads(backup_set["manifest"].read_text())["verified"]
    assert local["result"] == "passed" and local["at"] and local["verify_host"] == "localhost"
    assert local["failed_checks"] == []
    assert s3_manifest(site, backup_set["set_id"])["verified"]["at"] == local["at"]
    # metrics
    values = metric_lines(site["metrics"])
    assert values['atlasia_dr_verify_success{env="local",host="localhost"}'] == 1
    assert values['atlasia_dr_verify_checks_failed{env="local",host="localhost"}'] == 0
    if promtool():
        rc, output = check_metrics(site["metrics"])
        assert rc == 0, output


def test_a_failed_assertion_fails_the_test_and_is_recorded(site, backup_set):
    previous = metric_lines(site["metrics"])
    with WebhookReceiver() as hook:
        result = playbook("verify.yml", site["inventory"], *extra({
            "dr_verify_vault": False, "dr_webhook_url": hook.url,
            "dr_verify_assertions": [{"name": "no user at all", "sql": "SELECT count(*) = 0 FROM users"}]}))
    assert result.returncode != 0, tail(result)
    assert "Restore test FAILED on localhost" in result.stdout + result.stderr
    report = newest_report(site["reports"], "verify")
    assert report["verified"] is False and report["status"] == "failed"
    failed = [c["name"] for c in report["checks"] if not c["ok"]]
    # the record of the set now says "failed", so no set has a passing restore test any more
    assert failed == ["no user at all", "newest verified backup within the RPO (86400 s)"]
    assert scratch_databases(site["env"].pg) == []
    record = json.loads(backup_set["manifest"].read_text())["verified"]
    assert record["result"] == "failed" and "no user at all" in record["failed_checks"]
    assert any("restore test FAILED on localhost" in text and "no user at all" in text for text in hook.texts())
    values = metric_lines(site["metrics"])
    key = '{env="local",host="localhost"}'
    assert values["atlasia_dr_verify_success" + key] == 0
    # the time of the last success survives a failure
    assert values["atlasia_dr_verify_last_success_timestamp_seconds" + key] == \
        previous["atlasia_dr_verify_last_success_timestamp_seconds" + key]


def test_a_damaged_newest_set_fails_before_any_restore(site, backup_set):
    data = json.loads(backup_set["manifest"].read_text())
    dump = backup_set["manifest"].parent / next(a["name"] for a in data["artifacts"] if a["component"] == "database")
    original = dump.read_bytes()
    damaged = bytearray(original)
    damaged[len(damaged) // 2] ^= 0xFF
    dump.write_bytes(bytes(damaged))
    try:
        result = playbook("verify.yml", site["inventory"], *extra({"dr_verify_vault": False}))
    finally:
        dump.write_bytes(original)
    assert result.returncode != 0, tail(result)
    report = newest_report(site["reports"], "verify")
    assert report["checks"][0]["name"] == "set %s checksums" % backup_set["set_id"]
    assert report["checks"][0]["ok"] is False and dump.name in report["checks"][0]["detail"]
    assert "damaged" in report["error"]
    assert "database restored into a scratch database" not in [c["name"] for c in report["checks"]]
    assert [p["name"] for p in report["phases"]] == ["preparation", "cleanup"]
    assert report["phases"][0]["status"] == "failed"


def test_the_verified_backup_must_be_younger_than_the_rpo(site, backup_set):
    result = playbook("verify.yml", site["inventory"], *extra({"dr_verify_vault": False, "dr_verify_rpo_seconds": 1}))
    assert result.returncode != 0, tail(result)
    report = newest_report(site["reports"], "verify")
    failed = [c for c in report["checks"] if not c["ok"]]
    assert [c["name"] for c in failed] == ["newest verified backup within the RPO (1 s)"]
    assert "taken" in failed[0]["detail"]
    assert report["rpo_target_seconds"] == 1 and report["rpo_within_target"] is False


def test_restore_test_on_a_staging_server_reads_the_set_from_s3(site, backup_set):
    staging = site["staging"]
    result = playbook("verify.yml", site["inventory"], "-e", "verify_host=staging", *extra({
        "dr_verify_vault": False, "dr_verify_db_port": staging.port, "dr_verify_db_password": staging.password}))
    assert result.returncode == 0, tail(result)
    report = newest_report(site["reports"], "verify")
    assert report["verified"] is True and report["verify_host"] == "staging"
    assert report["backup"]["source"] == "s3: s3://%s/atlasia-backups/set_%s.json" % (BUCKET, backup_set["set_id"])
    assert report["scratch_db"] in dict((c["name"], c["detail"]) for c in report["checks"])[
        "database restored into a scratch database"]
    assert scratch_databases(staging) == [] and scratch_databases(site["env"].pg) == []
    assert not Path(report["backup"]["directory"]).exists()  # the downloaded copy is removed
    record = s3_manifest(site, backup_set["set_id"])["verified"] or {}
    assert record.get("result") == "passed" and record.get("verify_host") == "staging", tail(result, 30000)


# -- many hosts ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fleet(site):
    """Three database hosts (three PostgreSQL servers), each with its own backup root, S3 prefix and reports."""
    root = site["root"] / "fleet"
    root.mkdir(parents=True, exist_ok=True)  # the clusters may live under /tmp (a checkout under a private folder)
    servers = {}
    try:
        for name in ("db1", "db2", "db3"):
            servers[name] = PostgresServer(base_dir=root / name / "pg").start()
            create_sample_database(servers[name], DB_NAME)
        yield dict(root=root, servers=servers)
    finally:
        for server in servers.values():
            server.stop()


def test_backup_and_verify_across_hosts_in_parallel(site, fleet):
    env, root = site["env"], fleet["root"]
    group_vars = env.vars(dr_reports_dir=str(root / "reports"), dr_vault_enabled=False, dr_backup_config_paths=[],
                          dr_backup_file_sets=[])
    for key in ("dr_db_port", "dr_db_password", "dr_backup_root", "dr_metrics_textfile"):
        group_vars.pop(key)
    hosts = dict((name, dict(dr_db_port=server.port, dr_db_password=server.password,
                             dr_backup_root=str(root / name / "backups"), dr_s3_prefix="fleet/%s/" % name,
                             dr_metrics_textfile=str(root / name / "metrics" / "atlasia_dr.prom")))
                 for name, server in fleet["servers"].items())
    inventory = write_inventory(root / "inventory.yml", group_vars, {"local_db": hosts})
    fleet["servers"]["db3"].stop()  # db3 is down: its backup and its restore test fail, the others go on
    with WebhookReceiver() as hook:
        backup = playbook("backup.yml", inventory, "-e", "dr_webhook_url=" + hook.url)
        verify = playbook("verify.yml", inventory, "-e", "dr_webhook_url=" + hook.url)
    assert backup.returncode != 0, tail(backup)
    for name, failed in (("db1", 0), ("db2", 0), ("db3", 1)):
        assert re.search(r"^%s\s+: ok=\d+\s+changed=\d+\s+unreachable=0\s+failed=%d" % (name, failed), backup.stdout,
                         re.M), tail(backup)
    for name in ("db1", "db2"):
        assert len(list((root / name / "backups" / "daily").glob("set_*.json"))) == 1
        metrics = metric_lines(root / name / "metrics" / "atlasia_dr.prom")
        assert metrics['atlasia_dr_backup_success{env="local"}'] == 1
    assert metric_lines(root / "db3" / "metrics" / "atlasia_dr.prom")['atlasia_dr_backup_success{env="local"}'] == 0
    keys = [o["Key"] for o in env.s3.client().list_objects_v2(Bucket=BUCKET, Prefix="fleet/").get("Contents", [])]
    assert any(k.startswith("fleet/db1/set_") for k in keys) and any(k.startswith("fleet/db2/set_") for k in keys)
    assert not any(k.startswith("fleet/db3/") for k in keys)

    assert verify.returncode != 0, tail(verify)
    assert "Restore test FAILED on db3" in verify.stdout + verify.stderr
    reports = dict((name, newest_report(root / "reports" / name, "verify")) for name in ("db1", "db2", "db3"))
    assert reports["db1"]["verified"] and reports["db2"]["verified"]
    assert reports["db3"]["verified"] is False and "No backup set" in reports["db3"]["error"]
    assert reports["db1"]["backup"]["directory"].startswith(str(root / "db1"))
    # the hosts were restored at the same time (forks), not one after the other
    phases = dict((name, next(p for p in reports[name]["phases"] if p["name"] == "restoration"))
                  for name in ("db1", "db2"))
    assert phases["db1"]["started"] < phases["db2"]["finished"] and phases["db2"]["started"] < phases["db1"]["finished"]
    texts = hook.texts()
    assert any("backup FAILED on db3" in text for text in texts), texts
    assert any("restore test FAILED on db3" in text for text in texts), texts
    assert not any(" on db1 " in text or " on db2 " in text for text in texts), texts
    for name in ("db1", "db2"):
        assert scratch_databases(fleet["servers"][name]) == []
        assert os.path.exists(root / name / "metrics" / "atlasia_dr_verify.prom")
