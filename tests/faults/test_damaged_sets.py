"""A damaged artifact of each type (database dump, Vault snapshot, configuration archive, set manifest) in the
newest set: ``backup=latest`` falls back to the newest set that verifies, restores it, and says so, in its
output and in the report (``backup.passed_over``). S3 is left out of the restore here: with it, the intact S3 copy
of the newest set would be used (tests/integration/test_playbooks.py covers that).

The damage is done in place (the inode is shared with the weekly/monthly hard links, as real disk damage
would be) and undone after each case.
"""

from __future__ import annotations

import os

import pytest

from tests.faults import faultlib as fl
from tests.support.localenv import DB_NAME
from tests.support.postgres import table_digests

RESTORE_ARGS = ("-e", "dr_restore_vault=false", "-e", "dr_s3_enabled=false")


@pytest.fixture(scope="module")
def two_sets(fault_env, vars_file):
    """Set A, then a change to the database, then set B (the newest). Returns their ids and A's content."""
    env = fault_env
    first = fl.run_playbook("backup.yml", vars_file, log_dir=env.log_dir)
    assert first.rc == 0, first.tail()
    digests_a = table_digests(env.pg, DB_NAME)
    env.pg.psql("INSERT INTO users (email, display_name, created_at) SELECT 'set-b-' || g || "
                "'@example.test', 'B', now() FROM generate_series(1, 5) g", db=DB_NAME)
    second = fl.run_playbook("backup.yml", vars_file, log_dir=env.log_dir)
    assert second.rc == 0, second.tail()
    ids = fl.set_ids(env.backup_root)
    assert len(ids) == 2
    return dict(a=ids[0], b=ids[1], digests_a=digests_a)


def flip_byte(path, where=0.5):
    with open(path, "r+b") as handle:
        handle.seek(int(os.path.getsize(path) * where))
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0xFF]))


def truncate_half(path):
    with open(path, "r+b") as handle:
        handle.truncate(os.path.getsize(path) // 2)


DAMAGE = {
    # case: (component of the set whose artifact is damaged (None: the set manifest itself), how)
    "database dump": ("database", flip_byte),
    "vault snapshot": ("vault", truncate_half),
    "config archive": ("config", lambda path: flip_byte(path, where=0.3)),
    "set manifest": (None, truncate_half),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_latest_falls_back_to_the_newest_set_that_verifies(fault_env, vars_file, two_sets, case):
    env = fault_env
    daily = env.backup_root / "daily"
    component, damage = DAMAGE[case]
    manifest = daily / ("set_%s.json" % two_sets["b"])
    if component is None:
        target = manifest
    else:
        target = daily / next(a["name"] for a in fl.load_set(env.backup_root, two_sets["b"])["artifacts"]
                              if a["component"] == component)
    original = target.read_bytes()
    # production differs from set A (and from B), so restoring A is visible
    env.pg.psql("UPDATE users SET display_name = coalesce(display_name, '') || ' (%s)' "
                "WHERE id = (SELECT min(id) FROM users)" % case, db=DB_NAME)
    damage(target)
    try:
        run = fl.run_playbook("restore.yml", vars_file, *RESTORE_ARGS, log_dir=env.log_dir)
    finally:
        with open(target, "r+b") as handle:  # undo the damage in place
            handle.write(original)
            handle.truncate(len(original))
    assert run.rc == 0, run.tail()
    assert ("Using set %s from local" % two_sets["a"]) in run.flat, run.tail()
    assert ("Passed over: %s" % two_sets["b"]) in run.flat, run.tail()
    report = fl.newest_report(env.reports_dir)
    assert report["backup"]["set_id"] == two_sets["a"]
    assert [p["set_id"] for p in report["backup"]["passed_over"]] == [two_sets["b"]]
    assert report["verified"] is True
    assert table_digests(env.pg, DB_NAME) == two_sets["digests_a"]
    # the damaged set was skipped, not "repaired" or deleted
    assert fl.set_ids(env.backup_root) == [two_sets["a"], two_sets["b"]]
