"""The restore does exactly what the operator asked, or refuses before anything is touched.

Against real servers (PostgreSQL, OpenBao, the S3 server) with encryption on, as production runs: every
``backup=`` form that is not understood is refused with the accepted forms; planted, foreign and damaged sets
are refused; the weekly restore test works on encrypted sets; a failure report says what really changed; check
mode changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess

import pytest

from tests.support import REPO_ROOT, TMP_ROOT, VENV_PYTHON
from tests.support.localenv import BUCKET, DB_NAME, LocalEnvironment, run_playbook
from tests.support.postgres import table_digests

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY = "strict restore passphrase 2026"
PWNED = "/tmp/atlasia-dr-planted-set-ran"


def playbook(name, vars_file, *args):
    return run_playbook(name, vars_file, *args, check=False, capture=True, timeout=900)


def out(result):
    return result.stdout[-8000:] + result.stderr[-2000:]


@pytest.fixture(scope="module")
def env():
    local = LocalEnvironment(root=TMP_ROOT / "it-strict")
    local.start()
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="module")
def encrypted(env):
    """Two encrypted, authenticated sets taken by backup.yml, local and in S3."""
    vars_file = env.write_vars(dr_reports_dir=str(env.root / "reports"), dr_encryption_enabled=True,
                               dr_encryption_key=KEY)
    for _round in range(2):
        result = playbook("backup.yml", vars_file)
        assert result.returncode == 0, out(result)
    daily = env.root / "backups" / "daily"
    manifests = sorted(daily.glob("set_*.json"))
    assert len(manifests) == 2
    data = json.loads(manifests[-1].read_text())
    assert data["auth"]["alg"] == "HMAC-SHA256" and data["database"] == DB_NAME
    return dict(vars_file=vars_file, daily=daily, ids=[json.loads(m.read_text())["set_id"] for m in manifests])


def reports(env, kind="restore"):
    return sorted((env.root / "reports").glob("%s-*.json" % kind))


@pytest.mark.parametrize("value", ["2026-12-02", "nosuchthing", "backup_latest.sql.gz"])
def test_an_unknown_backup_value_is_refused_with_the_accepted_forms(env, encrypted, value):
    before = table_digests(env.pg, DB_NAME)
    result = playbook("restore.yml", encrypted["vars_file"], "-e", "backup=%s" % value, "-e", "dr_restore_vault=false")
    assert result.returncode != 0
    assert "Accepted forms" in result.stdout and encrypted["ids"][-1] in result.stdout, out(result)
    assert table_digests(env.pg, DB_NAME) == before


def test_a_set_id_that_does_not_exist_names_the_sets_that_do(env, encrypted):
    result = playbook("restore.yml", encrypted["vars_file"], "-e", "backup=20200101_000000", "-e",
                      "dr_restore_vault=false")
    assert result.returncode != 0
    assert "no backup set 20200101_000000" in result.stdout and encrypted["ids"][0] in result.stdout, out(result)


def _plant(env, encrypted, set_id, database=DB_NAME, sql=None):
    """What someone with only write access to the backups can make: a plaintext set with consistent checksums."""
    daily = encrypted["daily"]
    name = "backup_%s.sql" % set_id
    sql = sql or "\\! touch %s\nCREATE TABLE planted (id int);\n" % PWNED
    (daily / name).write_text(sql)
    digests = dict(md5=hashlib.md5(sql.encode()).hexdigest(), sha256=hashlib.sha256(sql.encode()).hexdigest())
    for algo, digest in digests.items():
        (daily / ("%s.%s" % (name, algo))).write_text("%s  %s\n" % (digest, name))
    manifest = dict(format_version=1, set_id=set_id, timestamp="2030-01-01T00:00:00+00:00", environment="local",
                    database=database, tiers=["daily"], size=len(sql), verified=None, offsite=dict(s3=False),
                    artifacts=[dict(name=name, component="database", size=len(sql), directory=False,
                                    files=[name, name + ".md5", name + ".sha256"], **digests)])
    (daily / ("set_%s.json" % set_id)).write_text(json.dumps(manifest))
    return daily / ("set_%s.json" % set_id)


def _remove_planted(encrypted, set_id):
    for path in encrypted["daily"].glob("*%s*" % set_id):
        path.unlink()


def test_a_planted_plaintext_set_is_never_restored(env, encrypted):
    if os.path.exists(PWNED):
        os.unlink(PWNED)
    planted = _plant(env, encrypted, "20300101_000000")
    try:
        before = table_digests(env.pg, DB_NAME)
        # named explicitly: refused, nothing touched
        for value in ("20300101_000000", str(planted)):
            result = playbook("restore.yml", encrypted["vars_file"], "-e", "backup=%s" % value,
                              "-e", "dr_restore_vault=false")
            assert result.returncode != 0
            assert "no authentication code" in result.stdout and "plaintext" in result.stdout, out(result)
            assert table_digests(env.pg, DB_NAME) == before
        # latest: passed over, named in the output and the report, the newest authentic set is restored
        result = playbook("restore.yml", encrypted["vars_file"], "-e", "dr_restore_vault=false")
        assert result.returncode == 0, out(result)
        assert "Passed over: 20300101_000000" in result.stdout
        report = json.loads(reports(env)[-1].read_text())
        assert report["backup"]["set_id"] == encrypted["ids"][-1]
        assert report["backup"]["passed_over"][0]["kind"] == "unauthentic"
        assert not os.path.exists(PWNED)
        assert "planted" not in [r[0] for r in env.pg.rows("SELECT tablename FROM pg_tables", db=DB_NAME)]
    finally:
        _remove_planted(encrypted, "20300101_000000")


def test_a_set_of_another_database_is_refused_unless_allowed(env, encrypted):
    # a genuine set of this environment (same key), recorded for the database "evil"
    manifest = encrypted["daily"] / ("set_%s.json" % encrypted["ids"][0])
    original = manifest.read_text()
    sys_path = str(REPO_ROOT / ".collections")
    code = ("import json,sys; sys.path.insert(0, %r)\n"
            "from ansible_collections.atlasia.dr.plugins.module_utils import setauth\n"
            "d = json.load(open(%r)); d['database'] = 'evil'; d['auth'] = setauth.sign(d, %r)\n"
            "json.dump(d, open(%r, 'w'))\n") % (sys_path, str(manifest), KEY, str(manifest))
    subprocess.run([str(VENV_PYTHON), "-c", code], check=True)
    try:
        # (without S3 here: the S3 copy of the set is the genuine one, and would be used)
        result = playbook("restore.yml", encrypted["vars_file"], "-e", "backup=%s" % encrypted["ids"][0],
                          "-e", "dr_restore_vault=false", "-e", "dr_s3_enabled=false")
        assert result.returncode != 0
        assert "is a backup of database 'evil', not '%s'" % DB_NAME in result.stdout, out(result)
        result = playbook("restore.yml", encrypted["vars_file"], "-e", "backup=%s" % encrypted["ids"][0],
                          "-e", "dr_restore_vault=false", "-e", "dr_s3_enabled=false", "-e", "allow_foreign_set=yes")
        assert result.returncode == 0, out(result)
    finally:
        manifest.write_text(original)


def test_a_damaged_set_given_by_path_or_folder_is_an_error_not_a_dump(env, encrypted, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(encrypted["daily"], folder)
    newest = encrypted["ids"][-1]
    for set_id in encrypted["ids"]:
        dump = folder / ("backup_%s.sql.gz.enc" % set_id)
        with open(dump, "r+b") as handle:
            handle.seek(100)
            handle.write(b"XXXX")
    before = table_digests(env.pg, DB_NAME)
    for value in (str(folder), str(folder / ("set_%s.json" % newest))):
        result = playbook("restore.yml", encrypted["vars_file"], "-e", "backup=%s" % value,
                          "-e", "dr_restore_vault=false")
        assert result.returncode != 0
        assert "checksum mismatch" in result.stdout and "FAILED in phase preparation" in result.stdout, out(result)
        assert table_digests(env.pg, DB_NAME) == before


def test_verify_works_on_encrypted_sets_and_records_the_result(env, encrypted):
    inventory_vars = encrypted["vars_file"]
    result = playbook("verify.yml", inventory_vars, "-e", "dr_verify_vault=false")
    assert result.returncode == 0, out(result)
    data = json.loads((encrypted["daily"] / ("set_%s.json" % encrypted["ids"][-1])).read_text())
    assert data["verified"]["result"] == "passed"
    setauth_ok = subprocess.run([str(VENV_PYTHON), "-c", (
        "import json,sys; sys.path.insert(0, %r)\n"
        "from ansible_collections.atlasia.dr.plugins.module_utils import setauth\n"
        "setauth.check(json.load(open(%r)), %r)\n") % (str(REPO_ROOT / ".collections"),
                                                       str(encrypted["daily"] / ("set_%s.json" % encrypted["ids"][-1])),
                                                       KEY)], capture_output=True, text=True, check=False)
    assert setauth_ok.returncode == 0, "recording the result must not break the set's MAC: " + setauth_ok.stderr
    assert not list((env.root / "backups" / "restore-staging").rglob("*.plain")), "decrypted copies are removed"


def test_verify_that_cannot_run_does_not_mark_the_set_failed(env, encrypted):
    wrong = env.write_vars(path=env.root / "wrong-key.json", dr_reports_dir=str(env.root / "reports"),
                           dr_encryption_enabled=True, dr_encryption_key="not the key")
    manifest = encrypted["daily"] / ("set_%s.json" % encrypted["ids"][-1])
    before = json.loads(manifest.read_text()).get("verified")
    result = playbook("verify.yml", wrong, "-e", "dr_verify_vault=false")
    assert result.returncode != 0
    assert "not run (key)" in result.stdout, out(result)
    assert json.loads(manifest.read_text()).get("verified") == before


def test_a_failure_after_the_swap_is_reported_as_a_replaced_database(env, encrypted):
    # the Vault restore fails (nothing listens there) after the database was swapped in; without the preflight,
    # which would stop the run before anything is touched
    broken = env.write_vars(path=env.root / "broken-vault.json", dr_reports_dir=str(env.root / "reports"),
                            dr_encryption_enabled=True, dr_encryption_key=KEY, dr_vault_url="http://127.0.0.1:9",
                            dr_preflight=False)
    result = playbook("restore.yml", broken)
    assert result.returncode != 0
    report = json.loads(reports(env)[-1].read_text())
    assert report["status"] == "failed"
    assert report["database_replaced"] is True and report["previous_db"], report
    assert report["previous_db"] in env.pg.databases()
    assert "WAS replaced" in result.stdout and report["previous_db"] in result.stdout


def test_a_failed_item_names_its_own_error(env, encrypted, tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    result = playbook("restore.yml", encrypted["vars_file"], "-e", "dr_restore_vault=false",
                      "-e", "dr_restore_files=true", "-e", "dr_restore_files_dest=%s" % not_a_dir)
    assert result.returncode != 0
    final = result.stdout.split("Stop with what failed and what to do")[-1]
    assert "One or more items failed" not in final and str(not_a_dir) in final, out(result)
    report = json.loads(reports(env)[-1].read_text())
    assert "One or more items failed" not in report["error"]


def test_check_mode_restore_of_an_encrypted_set_changes_nothing(env, encrypted):
    before = table_digests(env.pg, DB_NAME)
    databases = sorted(env.pg.databases())
    staging = env.root / "backups" / "restore-staging"
    listing = sorted(str(p) for p in staging.rglob("*")) if staging.exists() else []
    result = playbook("restore.yml", encrypted["vars_file"], "--check", "-e", "dr_restore_vault=false")
    assert result.returncode == 0, out(result)
    assert "Using set %s" % encrypted["ids"][-1] in result.stdout
    assert table_digests(env.pg, DB_NAME) == before
    assert sorted(env.pg.databases()) == databases
    after = sorted(str(p) for p in staging.rglob("*")) if staging.exists() else []
    assert after == listing


def test_restore_from_s3_only_after_the_local_copies_are_lost(env, encrypted):
    before = table_digests(env.pg, DB_NAME)
    shutil.rmtree(env.root / "backups")
    result = playbook("restore.yml", encrypted["vars_file"], "-e", "dr_restore_vault=false",
                      "-e", "backup=%s" % encrypted["ids"][0])
    assert result.returncode == 0, out(result)
    report = json.loads(reports(env)[-1].read_text())
    assert report["backup"]["set_id"] == encrypted["ids"][0] and report["backup"]["source"].startswith("s3")
    assert table_digests(env.pg, DB_NAME) == before
    keys = [o["Key"] for o in env.s3.client().list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert any(k.endswith("set_%s.json" % encrypted["ids"][0]) for k in keys)
