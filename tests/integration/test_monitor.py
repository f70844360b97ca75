# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/monitor.yml against real servers, and the Prometheus rules and Grafana dashboard under promtool.

Monitoring runs before any backup (everything missing, alerts posted to a webhook receiver), after a backup
(all fine), with too little disk, with the local backups gone (S3 still there), and with the restore-test
record of the set manifest failed then passed. Every textfile written is checked by ``promtool check metrics``;
the alert rules by ``promtool check rules`` and ``promtool test rules``; every query of the dashboard by promtool
and against the metric names the playbooks really write.
"""

from __future__ import annotations

import datetime
import json
import re
import shutil
import subprocess

import pytest
import yaml

from tests.integration.ops_support import (
    WebhookReceiver,
    check_metrics,
    extra,
    metric_lines,
    playbook,
    promtool,
    tail,
    write_inventory,
)
from tests.support import REPO_ROOT, TMP_ROOT
from tests.support.ansible_run import run_module
from tests.support.localenv import LocalEnvironment

pytestmark = [pytest.mark.integration]

RULES = REPO_ROOT / "monitoring" / "prometheus" / "atlasia-dr.rules.yml"
RULE_TESTS = REPO_ROOT / "monitoring" / "prometheus" / "atlasia-dr.rules.test.yml"
DASHBOARD = REPO_ROOT / "monitoring" / "grafana" / "atlasia-dr-dashboard.json"
KEY = '{env="local",host="localhost"'

needs_promtool = pytest.mark.skipif(promtool() is None, reason="promtool (Debian package prometheus) not installed")


@pytest.fixture(scope="module")
def site():
    env = LocalEnvironment(root=TMP_ROOT / "it-monitor")
    env.start()
    try:
        inventory = write_inventory(env.root / "inventory.yml", env.vars(dr_reports_dir=str(env.root / "reports")),
                                    {"local_db": {"localhost": {}}})
        yield dict(env=env, inventory=inventory, root=env.root, metrics=env.root / "metrics")
    finally:
        env.stop()


def monitor(site, *args):
    with WebhookReceiver() as hook:
        result = playbook("monitor.yml", site["inventory"], "-e", "dr_webhook_url=" + hook.url, *args)
    return result, hook.texts()


def monitor_metrics(site):
    return metric_lines(site["metrics"] / "atlasia_dr_monitor.prom")


def present(values, component, location):
    return values['atlasia_dr_backup_present%s,component="%s",location="%s",expected="true"}' % (KEY, component, location)]


@pytest.fixture(scope="module")
def before_backup(site):
    return monitor(site)


@pytest.fixture(scope="module")
def after_backup(site, before_backup):
    result = playbook("backup.yml", site["inventory"])
    assert result.returncode == 0, tail(result)
    return monitor(site)


def test_nothing_backed_up_yet_fails_and_alerts(site, before_backup):
    result, texts = before_backup
    assert result.returncode != 0, tail(result)
    assert "Backup monitoring found problems on localhost" in result.stdout + result.stderr
    assert len(texts) == 1
    for component in ("database", "schema", "vault", "config", "files"):
        for location in ("local", "s3"):
            assert "no %s backup in %s" % (component, location) in texts[0]
    assert "no restore test is recorded" in texts[0]
    values = monitor_metrics(site)
    assert values["atlasia_dr_monitor_ok%s}" % KEY] == 0
    assert present(values, "database", "local") == 0 and present(values, "vault", "s3") == 0


def test_after_a_backup_everything_is_fresh(site, after_backup):
    result, texts = after_backup
    # the only problem left: no restore test yet
    assert result.returncode != 0
    assert len(texts) == 1 and texts[0].endswith("1 problem(s): no restore test is recorded in any set manifest "
                                                 "(run playbooks/verify.yml)"), texts
    values = monitor_metrics(site)
    for component in ("database", "schema", "vault", "config", "files"):
        for location in ("local", "s3"):
            assert present(values, component, location) == 1
            age = values['atlasia_dr_backup_age_seconds%s,component="%s",location="%s"}' % (KEY, component, location)]
            assert 0 <= age < 3600
    assert values['atlasia_dr_backup_sets%s,location="s3"}' % KEY] == 1
    assert values['atlasia_dr_backups_kept%s,component="files",location="local"}' % KEY] == 2  # uploads and logs
    assert 0 < values['atlasia_dr_disk_free_ratio%s,path="%s"}' % (KEY, site["root"] / "backups")] <= 1


def test_no_problem_without_the_restore_test_check(site, after_backup):
    result, texts = monitor(site, "-e", "dr_monitor_verify_max_age_seconds=0")
    assert result.returncode == 0, tail(result)
    assert "Backups OK on localhost" in result.stdout
    assert texts == []
    assert monitor_metrics(site)["atlasia_dr_monitor_ok%s}" % KEY] == 1


def test_the_restore_test_record_of_the_set_manifest(site, after_backup):
    manifest = sorted((site["root"] / "backups" / "daily").glob("set_*.json"))[-1]
    set_id = json.loads(manifest.read_text())["set_id"]
    for outcome, minutes_ago in (("failed", 60), ("passed", 1)):
        at = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=minutes_ago)).replace(
            microsecond=0).isoformat()
        record = run_module("backup_set", dict(state="updated", path=str(manifest.parent), timestamp=set_id,
                                               changes=dict(verified=dict(at=at, result=outcome))))
        assert not record.get("failed"), record
        result, texts = monitor(site)
        values = monitor_metrics(site)
        if outcome == "failed":
            assert result.returncode != 0
            assert "the last restore test (%s, set %s) failed" % (at, set_id) in texts[0]
            assert "no restore test has ever passed" in texts[0]
            assert values["atlasia_dr_verify_recorded_success%s}" % KEY] == 0
        else:
            assert result.returncode == 0, tail(result)
            assert texts == []
            assert values["atlasia_dr_verify_recorded_success%s}" % KEY] == 1
            assert values["atlasia_dr_verified_backup_timestamp_seconds%s}" % KEY] == \
                values['atlasia_dr_backup_newest_timestamp_seconds%s,component="database",location="local"}' % KEY]


def test_low_disk_space_is_a_problem(site, after_backup):
    result, texts = monitor(site, *extra({"dr_monitor_min_free_percent": 100.0, "dr_monitor_verify_max_age_seconds": 0}))
    assert result.returncode != 0
    assert len(texts) == 1 and "free on the filesystem of %s (less than 100 %%)" % (site["root"] / "backups") in texts[0]


def test_local_backups_lost_but_s3_copies_there(site, after_backup):
    backups, hidden = site["root"] / "backups", site["root"] / "backups-hidden"
    backups.rename(hidden)
    try:
        result, texts = monitor(site, "-e", "dr_monitor_verify_max_age_seconds=0")
    finally:
        if backups.exists():
            shutil.rmtree(backups)
        hidden.rename(backups)
    assert result.returncode != 0
    assert "no database backup in local" in texts[0] and "in s3" not in texts[0]
    values = monitor_metrics(site)
    assert present(values, "database", "local") == 0 and present(values, "database", "s3") == 1


@needs_promtool
def test_every_textfile_passes_promtool(site, after_backup):
    files = sorted(site["metrics"].glob("*.prom"))
    assert {f.name for f in files} >= {"atlasia_dr.prom", "atlasia_dr_monitor.prom"}
    for path in files:
        rc, output = check_metrics(path)
        assert rc == 0, (path, output)


@needs_promtool
def test_alert_rules_pass_promtool_check_and_unit_tests():
    check = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60,
                           check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 10 rules found" in check.stdout
    unit = subprocess.run([promtool(), "test", "rules", RULE_TESTS.name], cwd=str(RULE_TESTS.parent),
                          capture_output=True, text=True, timeout=300, check=False)
    assert unit.returncode == 0, unit.stdout + unit.stderr


def exported_metric_names(site):
    """Every metric family the playbooks write: the textfiles of these runs plus the roles' templates (a family
    written only in some states, such as the restore-test ones, is in the template)."""
    names = set()
    for path in site["metrics"].glob("*.prom"):
        names.update(re.findall(r"^# TYPE (\w+) ", path.read_text(), re.M))
    for role in ("dr_verify", "dr_monitor"):
        for template in (REPO_ROOT / "roles" / role / "templates").glob("*.prom.j2"):
            names.update(re.findall(r"^# TYPE (\w+) ", template.read_text(), re.M))
    return names


@needs_promtool
def test_dashboard_queries_are_valid_promql_on_exported_metrics(site, after_backup, tmp_path):
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 12
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": "atlasia_dr:dashboard_query_%d" % i, "expr": expr.replace("$env", ".*").replace("$host", ".*")}
        for i, expr in enumerate(exprs)]}]}
    path = tmp_path / "dashboard-queries.rules.yml"
    path.write_text(yaml.safe_dump(rules))
    check = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60,
                           check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    exported = exported_metric_names(site)
    used = set(name for expr in exprs for name in re.findall(r"\b(atlasia_dr_\w+)", expr))
    assert used <= exported, sorted(used - exported)
    rule_exprs = [r["expr"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    rules_used = set(name for expr in rule_exprs for name in re.findall(r"\b(atlasia_dr_\w+)", expr))
    assert rules_used <= exported, sorted(rules_used - exported)
