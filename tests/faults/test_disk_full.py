"""Disk full during the backup: a 2 MiB tmpfs is the backup root, filled up to a chosen point.

The run fails cleanly (non-zero, the message says the disk is full), leaves no final-named file without its
sidecars and no hidden temporary file, releases its lock, and keeps the sets already there. Once space is
freed, the next run succeeds.

Mounting needs root (``mount -t tmpfs``); without it the test is skipped with the reason.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.faults import faultlib as fl

MOUNT_POINT = fl.FAULTS_ROOT / "disk_full-mnt"
FS_SIZE = "2m"
PAGE = 4096


def _umount(path):
    for args in (["umount", str(path)], ["umount", "-l", str(path)]):
        if not os.path.ismount(path):
            return
        subprocess.run(args, capture_output=True, check=False, timeout=60)


@pytest.fixture(scope="module")
def small_fs():
    """A 2 MiB tmpfs (unmounted at the end, whatever happens)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a %s tmpfs (mount -t tmpfs); run the fault suite as root (CI does)" % FS_SIZE)
    _umount(MOUNT_POINT)  # left over by an interrupted run
    MOUNT_POINT.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % FS_SIZE, "atlasia-dr-faults",
                           str(MOUNT_POINT)], capture_output=True, text=True, check=False, timeout=60)
    if proc.returncode != 0:
        pytest.skip("mount -t tmpfs is not permitted here (%s): the disk-full case cannot run"
                    % (proc.stderr.strip() or proc.returncode))
    try:
        yield MOUNT_POINT
    finally:
        _umount(MOUNT_POINT)


def free_bytes(path):
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


def fill(fs, leave):
    """Take all the space of ``fs`` but ``leave`` bytes with a filler file; returns its path."""
    filler = fs / "filler"
    if filler.exists():
        filler.unlink()
    size = free_bytes(fs) - leave
    assert size > 0, (free_bytes(fs), leave)
    with open(filler, "wb") as handle:
        os.posix_fallocate(handle.fileno(), 0, size)
    return filler


def assert_clean_disk_full_failure(run, root, before):
    assert run.rc != 0, run.tail()
    final = run.failure()
    assert final, run.tail()
    assert "disk holding %s is full" % root in final, final[:1500]
    inspection = fl.inspect_backups(root)
    assert not inspection.problems, inspection.problems  # every final-named artifact has matching sidecars
    assert not inspection.temps, inspection.temps  # hidden temporary files removed
    assert not (root / ".atlasia-dr.lock").exists()  # released
    after = fl.file_tree(root)
    for name, stat in before.items():  # nothing that existed was deleted or changed
        assert after.get(name) == stat, name
    return final


@pytest.mark.timeout(1200)  # several playbook runs; bounded all the same
def test_disk_full_fails_cleanly_and_the_next_run_succeeds(fault_env, small_fs):
    env = fault_env
    root = small_fs / "backups"
    vars_file = env.write_vars(path=env.root / "vars-small-fs.json", dr_reports_dir=str(env.reports_dir),
                               dr_backup_root=str(root))

    # 1. full before the database dump is written (a few pages left: directories and the lock fit)
    fill(small_fs, leave=12 * PAGE)
    first = fl.run_playbook("backup.yml", vars_file, log_dir=env.log_dir)
    final = assert_clean_disk_full_failure(first, root, {})
    assert "'Dump the database'" in final
    assert not list((root / "daily").iterdir())

    # 2. space freed: the next run succeeds
    (small_fs / "filler").unlink()
    second = fl.run_playbook("backup.yml", vars_file, log_dir=env.log_dir)
    assert second.rc == 0, second.tail()
    set_id = fl.set_ids(root)[-1]
    dump = next(a for a in fl.load_set(root, set_id)["artifacts"] if a["component"] == "database")

    # 3. full after the database dump: the lock, the dump, its two sidecars and its manifest fit (one page
    # each on tmpfs, the dump rounded up), what comes next does not
    before = fl.file_tree(root)
    fill(small_fs, leave=(dump["size"] // PAGE + 1) * PAGE + 4 * PAGE)
    third = fl.run_playbook("backup.yml", vars_file, log_dir=env.log_dir)
    final = assert_clean_disk_full_failure(third, root, before)
    assert "'Dump the database'" not in final, final[:800]  # the point is past the dump
    assert fl.set_ids(root) == [set_id]
    assert not fl.inspect_backups(root).problems
    (small_fs / "filler").unlink()
