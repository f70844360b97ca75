# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/drill.yml against real servers: a timed full restore on a staging PostgreSQL server from S3.

The production side is the local environment (PostgreSQL with the sample database, S3 server); the staging
target is a second PostgreSQL server with an empty backup root, so the drill restores the set it finds in S3,
exactly the path of a disaster. The drill history and the SVG timeline are checked, and the guards (no target,
a production database host as target, recording the same run twice).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.integration.ops_support import newest_report, playbook, tail, write_inventory
from tests.support import TMP_ROOT
from tests.support.localenv import DB_NAME, LocalEnvironment
from tests.support.postgres import PostgresServer, table_digests

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RESTORE_PHASES = ["assessment", "preparation", "restoration", "verification", "post-recovery"]


@pytest.fixture(scope="module")
def site():
    env = LocalEnvironment(root=TMP_ROOT / "it-drill", with_vault=False)
    staging = None
    env.start()
    try:
        staging = PostgresServer(base_dir=env.root / "staging-pg").start()
        reports = env.root / "reports"
        inventory = write_inventory(env.root / "inventory.yml", env.vars(dr_reports_dir=str(reports)), {
            "local_db": {"localhost": {}},
            "local_drill": {"staging": dict(dr_db_port=staging.port, dr_db_password=staging.password,
                                            dr_backup_root=str(env.root / "staging-backups"),
                                            dr_metrics_textfile="")},
        })
        result = playbook("backup.yml", inventory)
        assert result.returncode == 0, tail(result)
        yield dict(env=env, staging=staging, inventory=inventory, reports=reports,
                   digests=table_digests(env.pg, DB_NAME))
    finally:
        if staging is not None:
            staging.stop()
        env.stop()


def history(site):
    path = site["reports"] / "drills.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_drill_restores_the_s3_copy_on_staging_and_times_every_phase(site):
    result = playbook("drill.yml", site["inventory"])
    assert result.returncode == 0, tail(result)
    report = newest_report(site["reports"], "drill")
    assert report["kind"] == "drill" and report["verified"] is True and report["status"] == "succeeded"
    assert report["mode"] == "restore" and report["target"] == "staging"
    assert report["backup"]["source"].startswith("s3")
    assert [p["name"] for p in report["phases"]] == RESTORE_PHASES
    for phase in report["phases"]:
        assert phase["duration_seconds"] >= 0 and phase["target_seconds"] > 0 and phase["within_target"]
    assert 0 < report["rto_seconds"] <= report["rto_target_seconds"] == 14400
    assert 0 <= report["rpo_seconds"] <= report["rpo_target_seconds"] == 86400
    assert report["rto_within_target"] and report["rpo_within_target"]
    assert "Drill on staging: RTO" in result.stdout
    # the staging server holds the production data; production itself was not touched
    assert table_digests(site["staging"], DB_NAME) == site["digests"]
    assert table_digests(site["env"].pg, DB_NAME) == site["digests"]
    # timeline and history
    svg = ET.parse(Path(report["_path"]).with_suffix(".svg")).getroot()
    assert svg.tag.endswith("svg")
    labels = [t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")]
    assert all(name in labels for name in RESTORE_PHASES)
    lines = history(site)
    assert len(lines) == 1 and lines[0]["rto_seconds"] == report["rto_seconds"]
    assert lines[0]["phases"] == report["phases"]


def test_every_drill_is_appended_to_the_history(site):
    before = len(history(site))
    result = playbook("drill.yml", site["inventory"], "-e", "drill_hosts=staging")
    assert result.returncode == 0, tail(result)
    lines = history(site)
    assert len(lines) == before + 1
    assert lines[-1]["started"] > lines[-2]["started"]


def test_a_production_database_host_is_refused_as_drill_target(site):
    before = len(history(site))
    result = playbook("drill.yml", site["inventory"], "-e", "drill_hosts=local_db")
    assert result.returncode != 0
    assert "localhost is a database host of local (local_db)" in result.stdout + result.stderr
    assert len(history(site)) == before
    assert table_digests(site["env"].pg, DB_NAME) == site["digests"]


def test_a_drill_needs_targets(site):
    result = playbook("drill.yml", site["inventory"], "-e", "drill_hosts=no_such_group")
    assert result.returncode != 0
    assert "No drill target matches 'no_such_group'" in result.stdout + result.stderr


def test_record_mode_adopts_a_restore_report_once(site):
    # a restore of the database host with restore.yml (not a drill), then recorded as one
    result = playbook("restore.yml", site["inventory"], "-e", "dr_restore_safety_backup=false", "--limit", "localhost")
    assert result.returncode == 0, tail(result)
    restore = newest_report(site["reports"], "restore")
    before = len(history(site))
    result = playbook("drill.yml", site["inventory"], "-e", "drill_mode=record", "-e", "drill_record=restore")
    assert result.returncode == 0, tail(result)
    lines = history(site)
    assert len(lines) == before + 1
    assert lines[-1]["mode"] == "record" and lines[-1]["recorded_kind"] == "restore"
    assert lines[-1]["recorded_from"] == restore["_path"]
    assert lines[-1]["started"] == restore["started"] and lines[-1]["rto_seconds"] == restore["rto_seconds"]
    assert Path(newest_report(site["reports"], "drill")["_path"]).with_suffix(".svg").exists()
    # the same run cannot be recorded twice
    result = playbook("drill.yml", site["inventory"], "-e", "drill_mode=record", "-e", "drill_record=" + restore["_path"])
    assert result.returncode != 0
    assert "is already in" in result.stdout + result.stderr
    assert len(history(site)) == before + 1


def test_drill_playbook_syntax_with_rebuild_mode(site):
    result = playbook("drill.yml", site["inventory"], "--syntax-check", "-e", "drill_mode=rebuild")
    assert result.returncode == 0, tail(result)


def test_history_and_reports_persist_in_s3(site):
    """An AWX job starts in an empty folder: the history and the reports live on in S3 under <prefix>reports/."""
    client = site["env"].s3.client()
    prefix = "atlasia-backups/"  # dr_s3_prefix of the role's defaults
    bucket = site["env"].vars()["dr_s3_bucket"]
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=prefix + "reports/").get("Contents", [])]
    local = history(site)
    remote = client.get_object(Bucket=bucket, Key=prefix + "reports/drills.jsonl")["Body"].read().decode()
    assert [json.loads(line)["started"] for line in remote.splitlines()] == [line["started"] for line in local]
    for kind in ("drill", "restore"):
        newest = Path(newest_report(site["reports"], kind)["_path"])
        assert prefix + "reports/" + newest.name in keys and prefix + "reports/" + newest.with_suffix(".md").name in keys
    # a run in a fresh folder reads the history back before it appends: the run recorded above is refused again
    fresh = site["env"].root / "fresh-reports"
    restore = newest_report(site["reports"], "restore")
    result = playbook("drill.yml", site["inventory"], "-e", "drill_mode=record", "-e", "drill_record=" + restore["_path"],
                      "-e", "dr_reports_dir=%s" % fresh, extra_env={"ANSIBLE_SHOW_CUSTOM_STATS": "true"})
    assert result.returncode != 0
    assert "is already in" in result.stdout + result.stderr
    assert len((fresh / "drills.jsonl").read_text().splitlines()) == len(local)
