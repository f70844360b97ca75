"""PostgreSQL down, Vault sealed, wrong credentials (database password, Vault token, S3 key): each run fails
(non-zero) with a message that names its own cause and what to do, and deletes nothing: the set taken before
stays intact, locally and in the bucket."""

from __future__ import annotations

import pytest

from tests.faults import faultlib as fl
from tests.support.localenv import BUCKET

# the S3 server of this module checks credentials (the plain test server accepts any key)
S3_AUTH = True

# case: (failed task, words that must be in the message (its cause and the fix), extra vars)
CASES = {
    "postgresql down": ("Dump the database",
                        ["the database server cannot be reached", "check that PostgreSQL runs", "Connection refused"],
                        {}),
    "vault sealed": ("Take a Vault raft snapshot", ["is sealed", "unseal it"], {}),
    "wrong database password": ("Dump the database",
                                ["password authentication failed", "check login_user / login_password"],
                                {"dr_db_password": "not-the-password"}),
    "wrong vault token": ("Take a Vault raft snapshot", ["Vault rejected the token", "give a valid token"],
                          {"dr_vault_token": "s.not-a-valid-token"}),
    "wrong s3 secret key": ("Upload",
                            ["the credentials were refused", "check access_key/secret_key", "S3"],
                            {"dr_s3_secret_key": "not-the-secret-key"}),
}
# the distinctive word of each cause: no other case's message may contain it
SIGNATURE = {
    "postgresql down": "cannot be reached",
    "vault sealed": "is sealed",
    "wrong database password": "password authentication failed",
    "wrong vault token": "rejected the token",
    "wrong s3 secret key": "credentials were refused",
}


@pytest.fixture(scope="module")
def baseline(fault_env, vars_file):
    """One good set, locally and in the bucket, that no failing run may touch."""
    run = fl.run_playbook("backup.yml", vars_file, log_dir=fault_env.log_dir)
    assert run.rc == 0, run.tail()
    return dict(files=fl.file_tree(fault_env.backup_root / "daily"), sets=fl.set_ids(fault_env.backup_root),
                keys=sorted(fl.bucket_keys(fault_env.s3, BUCKET)))


@pytest.fixture
def broken(fault_env, request):
    """Break the dependency of the case for the duration of the run, and repair it afterwards."""
    case = request.param
    if case == "postgresql down":
        fl.postgres_down(fault_env.pg)
    elif case == "vault sealed":
        fault_env.bao.seal()
    try:
        yield case
    finally:
        if case == "postgresql down":
            fl.postgres_up(fault_env.pg)
        elif case == "vault sealed":
            fault_env.bao.unseal()


@pytest.mark.parametrize("broken", sorted(CASES), indirect=True)
def test_failure_is_distinct_loud_and_deletes_nothing(fault_env, baseline, broken):
    env = fault_env
    task, words, overrides = CASES[broken]
    vars_file = env.write_vars(path=env.root / "vars-case.json", dr_reports_dir=str(env.reports_dir), **overrides)
    run = fl.run_playbook("backup.yml", vars_file, log_dir=env.log_dir)
    assert run.rc != 0, run.tail()
    final = run.failure()
    assert final.startswith("Backup of local on localhost failed during '%s" % task), run.tail()
    for word in words:
        assert word in final, (word, final)
    for other, signature in SIGNATURE.items():
        if other != broken:
            assert signature not in final, (other, final)
    assert "fix the cause and run playbooks/backup.yml again" in final

    # nothing deleted: the earlier set's files are all there, unchanged, and it still verifies
    after = fl.file_tree(env.backup_root / "daily")
    for name, stat in baseline["files"].items():
        assert after.get(name) == stat, "%s was changed or deleted by the failed run" % name
    inspection = fl.inspect_backups(env.backup_root)
    assert not inspection.problems, inspection.problems
    assert fl.set_ids(env.backup_root)[: len(baseline["sets"])] == baseline["sets"]
    assert set(baseline["keys"]) <= set(fl.bucket_keys(env.s3, BUCKET))
    assert not (env.backup_root / ".atlasia-dr.lock").exists()
