"""Two backups started at once: without dr_lock_wait one exits cleanly with the lock message (naming the run
that holds it) and the other succeeds; with dr_lock_wait the second waits for the first and both succeed, each
with its own set. A run refused by the lock is not a failed backup: it sends no alert and leaves the metrics
textfile as it was (the run holding the lock reports its own outcome)."""

from __future__ import annotations

import json
import time

from tests.faults import faultlib as fl
from tests.integration.ops_support import WebhookReceiver
from tests.support.ansible_run import run_module

KEEP_ALL = dict(dr_backup_retention_last=10, dr_backup_s3_keep_last=10)


def start_two(env, vars_file):
    first = fl.start_playbook("backup.yml", vars_file, log_dir=env.log_dir)
    second = fl.start_playbook("backup.yml", vars_file, log_dir=env.log_dir)
    return fl.finish(first), fl.finish(second)


def metrics_file(env):
    return env.root / "metrics" / "atlasia_dr.prom"


def test_second_backup_exits_cleanly_with_the_lock_message(fault_env):
    env = fault_env
    with WebhookReceiver() as hook:
        vars_file = env.write_vars(dr_reports_dir=str(env.reports_dir), dr_lock_wait=0, dr_webhook_url=hook.url,
                                   **KEEP_ALL)
        runs = start_two(env, vars_file)
    assert hook.texts() == []  # neither the refused run nor the winner alerts
    winners = [r for r in runs if r.rc == 0]
    losers = [r for r in runs if r.rc != 0]
    assert len(winners) == 1 and len(losers) == 1, [r.tail(2000) for r in runs]
    final = losers[0].failure()
    assert final.startswith("Backup of local on localhost failed during 'Take the backup lock': another run holds "
                            "the lock %s/.atlasia-dr.lock since " % env.backup_root), final
    assert "(owner backup-localhost-" in final and " on host " in final, final
    # the loser wrote nothing and did not take the winner's lock away: exactly one complete set
    assert len(fl.set_ids(env.backup_root)) == 1
    inspection = fl.inspect_backups(env.backup_root)
    assert not inspection.problems and not inspection.temps and not inspection.orphans, inspection
    assert not (env.backup_root / ".atlasia-dr.lock").exists()
    assert 'atlasia_dr_backup_success{env="local"} 1\n' in metrics_file(env).read_text()


def test_backup_refused_by_the_lock_sends_no_alert_and_leaves_the_metrics(fault_env):
    env = fault_env
    lock = env.backup_root / ".atlasia-dr.lock"
    held = run_module("dr_lock", dict(path=str(lock), owner="restore-incident-42"))
    assert held["acquired"] and not held.get("failed"), held
    metrics = metrics_file(env)
    metrics.parent.mkdir(parents=True, exist_ok=True)
    metrics.write_text('atlasia_dr_backup_success{env="local"} 1\n')
    before = (metrics.read_bytes(), metrics.stat().st_mtime_ns)
    sets = fl.set_ids(env.backup_root)
    try:
        with WebhookReceiver() as hook:
            vars_file = env.write_vars(dr_reports_dir=str(env.reports_dir), dr_lock_wait=0, dr_webhook_url=hook.url,
                                       **KEEP_ALL)
            run = fl.finish(fl.start_playbook("backup.yml", vars_file, log_dir=env.log_dir))
            time.sleep(0.5)  # an alert in flight would have arrived
        assert run.rc != 0, run.tail(3000)
        final = run.failure()
        assert final.startswith("Backup of local on localhost failed during 'Take the backup lock': another run "
                                "holds the lock %s since " % lock), final
        assert "(owner restore-incident-42, pid unknown on host " in final, final
        assert hook.texts() == []
        assert (metrics.read_bytes(), metrics.stat().st_mtime_ns) == before
        assert fl.set_ids(env.backup_root) == sets
        assert json.loads(lock.read_text())["owner"] == "restore-incident-42"  # the holder's lock is untouched
    finally:
        run_module("dr_lock", dict(path=str(lock), owner="restore-incident-42", state="released"))
    assert not lock.exists()


def test_with_lock_wait_the_second_backup_waits_and_both_succeed(fault_env):
    env = fault_env
    before = fl.set_ids(env.backup_root)
    vars_file = env.write_vars(dr_reports_dir=str(env.reports_dir), dr_lock_wait=900, **KEEP_ALL)
    runs = start_two(env, vars_file)
    assert all(r.rc == 0 for r in runs), [r.tail(3000) for r in runs if r.rc]
    new = [s for s in fl.set_ids(env.backup_root) if s not in before]
    assert len(new) == 2, new  # one set each, under distinct names
    inspection = fl.inspect_backups(env.backup_root)
    assert not inspection.problems and not inspection.temps and not inspection.orphans, inspection
    assert all(s["offsite"]["s3"] is True for s in inspection.sets)
    assert not (env.backup_root / ".atlasia-dr.lock").exists()
