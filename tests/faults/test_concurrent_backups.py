"""Two backups started at once: without dr_lock_wait one exits cleanly with the lock message (naming the run
that holds it) and the other succeeds; with dr_lock_wait the second waits for the first and both succeed, each
with its own set."""

from __future__ import annotations

from tests.faults import faultlib as fl

KEEP_ALL = dict(dr_backup_retention_last=10, dr_backup_s3_keep_last=10)


def start_two(env, vars_file):
    first = fl.start_playbook("backup.yml", vars_file, log_dir=env.log_dir)
    second = fl.start_playbook("backup.yml", vars_file, log_dir=env.log_dir)
    return fl.finish(first), fl.finish(second)


def test_second_backup_exits_cleanly_with_the_lock_message(fault_env):
    env = fault_env
    vars_file = env.write_vars(dr_reports_dir=str(env.reports_dir), dr_lock_wait=0, **KEEP_ALL)
    runs = start_two(env, vars_file)
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
