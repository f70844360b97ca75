"""S3 unreachable, then failing in the middle of an upload: the local set is kept and marked not-offsite, the
run fails loudly naming S3, and the next run (S3 back) uploads every set that is missing from the bucket."""

from __future__ import annotations

import pytest

from tests.faults import faultlib as fl
from tests.support.localenv import BUCKET

# keep every set here, locally and in the bucket, so that "both sets are uploaded" can be checked
KEEP_ALL = dict(dr_backup_retention_last=10, dr_backup_s3_keep_last=10)


def assert_failed_on_s3(run):
    assert run.rc != 0, run.tail()
    final = run.failure()
    assert final, run.tail()
    assert "S3" in final or "s3://" in final, final[:1500]
    # the operator is told that the local set is safe and what the next run does
    assert "kept locally" in final and "next run uploads it" in final, final[:1500]
    return final


def assert_kept_locally_not_offsite(root, set_id):
    inspection = fl.inspect_backups(root)
    assert not inspection.problems, inspection.problems
    data = fl.load_set(root, set_id)
    assert data["offsite"]["s3"] is False, data["offsite"]


@pytest.mark.timeout(1200)  # several playbook runs; bounded all the same
def test_s3_outage_keeps_the_local_set_and_the_next_run_uploads_it(fault_env, rng):
    env = fault_env
    root = env.backup_root

    # 1. nothing listens at the endpoint
    dead = env.write_vars(path=env.root / "vars-closed-port.json", dr_reports_dir=str(env.reports_dir),
                          dr_s3_endpoint_url="http://127.0.0.1:%d" % fl.closed_port(), dr_s3_timeout=5, **KEEP_ALL)
    first = fl.run_playbook("backup.yml", dead, log_dir=env.log_dir)
    message = assert_failed_on_s3(first)
    assert "cannot connect" in message or "EndpointConnectionError" in message, message[:1500]
    sets = fl.set_ids(root)
    assert len(sets) == 1
    assert_kept_locally_not_offsite(root, sets[0])

    # 2. the S3 server goes away in the middle of uploading the set (after a random number of artifacts)
    live = env.write_vars(dr_reports_dir=str(env.reports_dir), **KEEP_ALL)
    proc = fl.start_playbook("backup.yml", live, log_dir=env.log_dir)
    try:
        occurrence = rng.randint(2, 4)
        pid = fl.wait_for_process(proc, fl.module_matcher("s3_backup_transfer"), occurrence=occurrence)
        assert pid is not None, "the run ended before upload #%d; log %s" % (occurrence, proc.fault_log)
        env.s3.stop(remove=False)  # SIGTERM, SIGKILL after a grace period: mid-upload from the client's side
    finally:
        second = fl.finish(proc)
    message = assert_failed_on_s3(second)
    sets = fl.set_ids(root)
    assert len(sets) == 2
    for set_id in sets:
        assert_kept_locally_not_offsite(root, set_id)

    # 3. S3 is back (same data, new port): neither set is complete there (a set manifest goes up last); the
    # next run uploads both sets it missed, and its own
    env.s3.start(bucket=BUCKET)
    assert fl.sets_in_bucket(env.s3, BUCKET) == []
    live = env.write_vars(dr_reports_dir=str(env.reports_dir), **KEEP_ALL)
    third = fl.run_playbook("backup.yml", live, log_dir=env.log_dir)
    assert third.rc == 0, third.tail()
    sets = fl.set_ids(root)
    assert len(sets) == 3
    inspection = fl.inspect_backups(root)
    assert not inspection.problems, inspection.problems
    assert all(s["offsite"]["s3"] is True for s in inspection.sets), inspection.sets
    assert fl.sets_in_bucket(env.s3, BUCKET) == sets
    # every artifact of every set is in the bucket with its sidecars
    keys = set(k.rsplit("/", 1)[-1] for k in fl.bucket_keys(env.s3, BUCKET))
    for set_id in sets:
        for artifact in fl.load_set(root, set_id)["artifacts"]:
            assert artifact["name"] in keys and artifact["name"] + ".sha256" in keys, artifact["name"]
