"""The backup killed at random points: nothing incomplete carries a final name, the next run succeeds, the lock
is recovered, and the next run uploads whatever the killed run did not.

Each kill is a SIGKILL of the whole run (ansible-playbook, its workers, the module, pg_dump and the
compressor), as a crash, a reboot or the OOM killer would do it. The kill moment is chosen by watching
``/proc`` for the process of the stage (``pg_dump``, the compressor ``pigz``/``gzip``, the
``s3_backup_transfer`` module of the first or second upload, the ``dr_archive`` and ``dr_file_repo`` modules) and
waiting a random delay (seeded: ``FAULTS_SEED``) while it runs. ``FAULTS_KILLS`` adds more kills at random points.
"""

from __future__ import annotations

import json
import os

import pytest

from tests.faults import faultlib as fl

# ~60k rows of hex text: a dump of a few MB, so pg_dump and the compressor run long enough to be caught.
BALLAST_ROWS = 60000

POINTS = {
    # name: (process predicate, which occurrence (range), random delay range once it runs, seconds)
    "pg_dump": (fl.program_matcher("pg_dump"), (1, 1), (0.0, 0.3)),
    "compressor": (fl.program_matcher("pigz", "gzip"), (1, 1), (0.0, 0.3)),
    # one call uploads every artifact of a set, a second one its manifest
    "upload": (fl.module_matcher("s3_backup_transfer"), (1, 2), (0.0, 1.0)),
    # after the database dump: complete artifacts of a run that never makes a set (the configuration archive; the
    # file sets go to the file repository, dr_backup_files_store's default)
    "archive": (fl.module_matcher("dr_archive"), (1, 1), (0.0, 0.5)),
    # restic killed while it writes a file set's snapshot, locally or in S3: a snapshot no set names, a stale lock
    "file repository": (fl.module_matcher("dr_file_repo"), (1, 4), (0.0, 0.5)),
    "vault snapshot": (fl.module_matcher("vault_snapshot"), (1, 1), (0.0, 0.5)),
    "set manifest": (fl.module_matcher("backup_set"), (1, 2), (0.0, 0.4)),
}
REQUIRED = ["pg_dump", "compressor", "upload", "file repository", "archive"]


def kill_plan(rng):
    """The required points (all but the last in a seeded order, the archive last: by then older sets exist that
    the leftovers of a run killed after its dump could push out), then FAULTS_KILLS - len(REQUIRED) more at
    random."""
    order = REQUIRED[:-1]
    rng.shuffle(order)
    order.append(REQUIRED[-1])
    extra = max(0, int(os.environ.get("FAULTS_KILLS", len(REQUIRED))) - len(REQUIRED))
    order += [rng.choice(sorted(POINTS)) for dummy in range(min(extra, 10))]  # bounded
    plan = []
    for name in order:
        match, (low, high), (d_low, d_high) = POINTS[name]
        plan.append(dict(point=name, occurrence=rng.randint(low, high), delay=round(rng.uniform(d_low, d_high), 3)))
    return plan


@pytest.mark.timeout(1800)  # several playbook runs; bounded all the same
def test_backup_killed_at_random_points_loses_nothing(fault_env, vars_file, rng):
    env = fault_env
    root = env.backup_root
    lock = root / ".atlasia-dr.lock"
    journal = []
    for step in kill_plan(rng):
        match = POINTS[step["point"]][0]
        proc = fl.start_playbook("backup.yml", vars_file, log_dir=env.log_dir)
        try:
            pid = fl.wait_for_process(proc, match, occurrence=step["occurrence"])
            if pid is None:
                proc.wait(timeout=60)
                pytest.fail("the run ended before %s #%d ran; log %s" % (step["point"], step["occurrence"], proc.fault_log))
            step["alive_at_kill"] = fl.sleep_while_alive(pid, step["delay"])
        finally:
            fl.kill_tree(proc.pid)
            proc.wait(timeout=60)

        # 1. nothing with a final name is incomplete
        after_kill = fl.inspect_backups(root)
        assert not after_kill.problems, (step, after_kill.problems)
        step.update(temps_left=len(after_kill.temps), orphan_sidecars=len(after_kill.orphans),
                    sets=fl.set_ids(root))
        # the lock of the dead run is still there: the next run must recover it at once
        assert lock.exists(), step
        assert json.loads(lock.read_text())["pid"] == proc.pid

        # 2. the next run succeeds, recovers the lock and uploads what is missing
        run = fl.run_playbook("backup.yml", vars_file, log_dir=env.log_dir)
        assert run.rc == 0, run.tail()
        assert "took over the stale lock" in run.flat and "process is gone" in run.flat, run.tail()
        assert not lock.exists()
        after_run = fl.inspect_backups(root)
        assert not after_run.problems, (step, after_run.problems)
        assert not after_run.temps, "temporary files of the killed run were not cleaned up: %s" % after_run.temps
        assert not after_run.orphans, "leftovers of the killed run: %s" % after_run.orphans
        local = fl.set_ids(root)
        assert after_run.sets and all(s["offsite"]["s3"] is True for s in after_run.sets), after_run.sets
        in_bucket = fl.sets_in_bucket(env.s3, "atlasia-backups")
        assert set(local) <= set(in_bucket), (local, in_bucket)
        step["next_run_seconds"] = round(run.seconds, 1)
        journal.append(step)
        (env.root / "kills.json").write_text(json.dumps(journal, indent=2, sort_keys=True))  # post-mortem
    assert set(REQUIRED) <= set(s["point"] for s in journal)
