"""The restore killed in each phase: the production database is always either the old one or the fully
restored one (compared by content digests with both), never a mix or nothing, and rerunning the restore
completes.

One restore run per kill point; each run is the rerun of the previous killed one, and a last run completes.
Before each run the database is changed whenever it already equals the backup, so "old" and "restored"
always differ and a swap cannot go unnoticed. Kill points, in order:

- assessment (the database server check), preparation (backup_locate: the whole-set verification);
- restoration: the safety backup (pg_dump of the current database), the middle of the restore into the
  scratch database (psql loading the dump), just before the swap (the scratch database is complete, the
  swap's first query runs), just after the swap (the ``*_previous_*`` database appeared), the Vault
  snapshot restore; the random delay while a stage runs is seeded (``FAULTS_SEED``).
"""

from __future__ import annotations

import json

import pytest

from tests.faults import faultlib as fl
from tests.support.localenv import DB_NAME, SECRET_PATH, SECRET_VALUE
from tests.support.postgres import table_digests

# the dump then takes a few seconds to load: long enough to be killed in the middle
BALLAST_ROWS = 60000


def databases(env):
    return env.pg.databases()


def scratch_dbs(env):
    return [d for d in databases(env) if d.startswith(DB_NAME + "_restore_")]


def previous_dbs(env):
    return [d for d in databases(env) if d.startswith(DB_NAME + "_previous_")]


def change_production(env, tag):
    env.pg.psql("INSERT INTO fault_ballast VALUES ((SELECT max(id) + 1 FROM fault_ballast), 'changed after the "
                "backup: %s'); UPDATE users SET display_name = coalesce(display_name, '') || '.%s' "
                "WHERE id = (SELECT min(id) FROM users);" % (tag, tag), db=DB_NAME)


@pytest.fixture(scope="module")
def backed_up(fault_env, vars_file):
    run = fl.run_playbook("backup.yml", vars_file, log_dir=fault_env.log_dir)
    assert run.rc == 0, run.tail()
    return table_digests(fault_env.pg, DB_NAME)


def _kill_point_plain(match, occurrence=1):
    def reach(env, proc):
        return fl.wait_for_process(proc, match, occurrence=occurrence)
    return reach


def _reach_before_swap(env, proc):
    # the restore into the scratch database ran and ended; the next query on the maintenance database is the
    # first step of the swap (its server-version check), then comes the one-transaction rename script
    loader = fl.wait_for_process(proc, fl.program_matcher("psql", argv_contains=" -d %s_restore_" % DB_NAME))
    if loader is None or not fl.wait_until(proc, lambda: not fl.alive(loader)):
        return None
    return fl.wait_for_process(proc, fl.program_matcher("psql", argv_contains=" -d postgres"), poll=0.001)


def _reach_after_swap(env, proc):
    before = set(previous_dbs(env))
    if fl.wait_until(proc, lambda: set(previous_dbs(env)) - before, poll=0.02):
        return proc.pid
    return None


POINTS = [
    # (name, phase, how to reach it, random delay range, which state the database must be in after the kill)
    ("assessment", "assessment", _kill_point_plain(fl.module_matcher("pg_verify")), (0.0, 0.3), "old"),
    ("preparation", "preparation", _kill_point_plain(fl.module_matcher("backup_locate")), (0.0, 0.3), "old"),
    ("safety backup", "restoration", _kill_point_plain(fl.program_matcher("pg_dump")), (0.0, 0.5), "old"),
    ("mid pg_restore", "restoration",
     _kill_point_plain(fl.program_matcher("psql", argv_contains=" -d %s_restore_" % DB_NAME)), (0.2, 1.0), "old"),
    ("just before the swap", "restoration", _reach_before_swap, (0.0, 0.0), "either"),
    ("just after the swap", "restoration", _reach_after_swap, (0.0, 0.0), "restored"),
    ("vault restore", "restoration", _kill_point_plain(fl.module_matcher("vault_snapshot")), (0.0, 0.5), "restored"),
]


@pytest.mark.timeout(1800)  # several playbook runs; bounded all the same
def test_restore_killed_in_each_phase_leaves_old_or_restored_database(fault_env, vars_file, backed_up, rng):
    env = fault_env
    restored = backed_up
    journal = []
    for index, (name, phase, reach, (d_low, d_high), expected) in enumerate(POINTS):
        if table_digests(env.pg, DB_NAME) == restored:
            change_production(env, "k%d" % index)
        old = table_digests(env.pg, DB_NAME)
        assert old != restored
        proc = fl.start_playbook("restore.yml", vars_file, log_dir=env.log_dir)
        try:
            pid = reach(env, proc)
            if pid is None:
                proc.wait(timeout=60)
                pytest.fail("the restore ended before '%s'; log %s" % (name, proc.fault_log))
            delay = round(rng.uniform(d_low, d_high), 3)
            if delay:
                fl.sleep_while_alive(pid, delay)
        finally:
            fl.kill_tree(proc.pid)
            proc.wait(timeout=60)
        log = proc.fault_log.read_text(errors="replace")
        number = ["assessment", "preparation", "restoration"].index(phase) + 1
        assert "Phase %d, %s" % (number, phase) in log, log[-3000:]  # killed in the phase it was meant for
        assert "Phase %d," % (number + 1) not in log, log[-3000:]

        assert DB_NAME in databases(env), "the production database is gone after a kill at '%s'" % name
        now = table_digests(env.pg, DB_NAME)
        state = "old" if now == old else ("restored" if now == restored else "MIXED")
        assert state != "MIXED", "after a kill at '%s' the database is neither the old one nor the restored one" % name
        if expected != "either":
            assert state == expected, (name, state)
        journal.append(dict(point=name, phase=phase, delay=delay, state=state, scratch_left=scratch_dbs(env)))
        (env.root / "kills.json").write_text(json.dumps(journal, indent=2, sort_keys=True))  # post-mortem

    # the rerun completes: the backup's content is back, scratch databases of killed runs are dropped
    env.bao.write_secret(SECRET_PATH, {"username": "intruder", "password": "changed-after-the-backup"})
    run = fl.run_playbook("restore.yml", vars_file, log_dir=env.log_dir)
    assert run.rc == 0, run.tail()
    assert table_digests(env.pg, DB_NAME) == restored
    assert scratch_dbs(env) == []
    # the safety backups of the killed runs are complete or were never named; their temporary files are gone
    safety = fl.inspect_backups(env.backup_root, tiers=("safety",))
    assert safety.artifacts and not safety.problems and not safety.temps, safety
    assert env.bao.read_secret(SECRET_PATH) == SECRET_VALUE
    assert "took over the stale lock" in run.flat
    report = fl.newest_report(env.reports_dir)
    assert report["verified"] is True and report["status"] != "failed"
