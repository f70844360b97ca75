"""Scenario 4 (accidental deletion) end to end: playbooks/recover_data.yml against a real PostgreSQL 15 and S3 server.

A backup set is taken with playbooks/backup.yml, rows are really deleted (and some changed afterwards), then the
playbook restores the set into a temporary database and copies the rows back. The database is queried back: the
deleted rows are identical to the backed-up ones, newer rows were not overwritten, the temporary database is gone,
a safety backup was written, and the report says how many rows came back.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import REPO_ROOT, TMP_ROOT, VENV_BIN, VENV_PYTHON, venv_env
from tests.support.localenv import DB_NAME, LocalEnvironment

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = TMP_ROOT / "it-recover-data"


def playbook(name, vars_file, *args):
    """Run a playbook like an operator; its whole output is also kept in <ROOT>/last-playbook.log."""
    argv = [str(VENV_BIN / "ansible-playbook"), "playbooks/%s" % name, "-e", "env=local", "-e", "@%s" % vars_file,
            "-e", "ansible_python_interpreter=%s" % VENV_PYTHON] + list(args)
    result = subprocess.run(argv, cwd=str(REPO_ROOT), env=venv_env(), capture_output=True, text=True, timeout=900,
                            check=False)
    (ROOT / "last-playbook.log").write_text(result.stdout + result.stderr)
    return result


def rows(table, where):
    """The extra vars naming what to bring back (JSON: a where clause holds spaces and quotes)."""
    return json.dumps({"table": table, "where": where})


def output(result):
    return result.stdout[-6000:] + result.stderr[-3000:]


def md5_rows(env, table, where):
    return env.pg.scalar(
        "SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text COLLATE \"C\"), '')) || ':' || count(*) "
        "FROM %s t WHERE %s" % (table, where), db=DB_NAME)


def count(env, sql):
    return int(env.pg.scalar(sql, db=DB_NAME))


def latest_report(env):
    reports = sorted((env.root / "reports").glob("recover-data-*.json"))
    assert reports, "no recover-data report written"
    return json.loads(reports[-1].read_text())


def recover_databases(env):
    return [name for name in env.pg.databases() if "_recover_" in name]


@pytest.fixture(scope="module")
def env():
    local = LocalEnvironment(root=ROOT, with_vault=False, with_s3=True)
    local.start()
    try:
        # A table without a primary key, to show the refusal and the whole-row comparison.
        local.pg.psql("CREATE TABLE audit_log (at timestamptz NOT NULL, who text, what text);"
                      "INSERT INTO audit_log SELECT timestamptz '2024-05-01 00:00:00+00' + make_interval(mins => i),"
                      " 'user' || (i % 7), 'action ' || i FROM generate_series(1, 50) AS i;", db=DB_NAME)
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="module")
def backup(env):
    vars_file = env.write_vars(dr_reports_dir=str(env.root / "reports"), dr_backup_config_paths=[], dr_backup_file_sets=[],
                               dr_restore_min_free_bytes=0)
    result = playbook("backup.yml", vars_file)
    assert result.returncode == 0, output(result)
    sets = sorted((env.root / "backups" / "daily").glob("set_*.json"))
    assert len(sets) == 1
    return dict(vars_file=vars_file, set_id=sets[0].name[len("set_"):-len(".json")],
                runs_1_20=md5_rows(env, "workflow_runs", "id BETWEEN 1 AND 20"))


def test_deleted_rows_come_back_without_overwriting_newer_rows(env, backup):
    original = md5_rows(env, "workflow_runs", "id BETWEEN 100 AND 199")
    total = count(env, "SELECT count(*) FROM workflow_runs")
    env.pg.psql("DELETE FROM workflow_runs WHERE id BETWEEN 100 AND 199;"
                "UPDATE workflow_runs SET status = 'failed', error = 'changed after the backup' WHERE id = 205;",
                db=DB_NAME)
    assert count(env, "SELECT count(*) FROM workflow_runs") == total - 100
    safety_before = set((env.root / "backups" / "safety").glob("prerecover_*")) if (
        env.root / "backups" / "safety").exists() else set()

    result = playbook("recover_data.yml", backup["vars_file"], "-e", rows("workflow_runs", "id BETWEEN 100 AND 210"))
    assert result.returncode == 0, output(result)

    assert md5_rows(env, "workflow_runs", "id BETWEEN 100 AND 199") == original
    assert count(env, "SELECT count(*) FROM workflow_runs") == total
    # the row changed after the backup keeps its newer content
    assert env.pg.scalar("SELECT status || '|' || error FROM workflow_runs WHERE id = 205",
                         db=DB_NAME) == "failed|changed after the backup"
    assert recover_databases(env) == []
    safety_after = set((env.root / "backups" / "safety").glob("prerecover_*.sql.gz"))
    assert len(safety_after - safety_before) == 1

    report = latest_report(env)
    assert report["kind"] == "recover-data"
    assert report["verified"] is True
    assert report["rows_recovered"] == {"public.workflow_runs": 100}
    table = report["tables"][0]
    assert (table["selected"], table["copied"], table["already_present"], table["missing_after"]) == (111, 100, 11, 0)
    assert [p["name"] for p in report["phases"]] == ["assessment", "preparation", "restoration", "verification"]
    assert report["backup"]["set_id"] == backup["set_id"]
    assert report["backup"]["source"] == str(env.root / "backups" / "daily" / ("set_%s.json" % backup["set_id"]))
    assert report["backup"]["passed_over"] == []
    assert "skipped" not in report["backup"]
    assert report["safety_backup"].endswith(".sql.gz")
    assert "100 copied, 11 already present" in result.stdout


def test_a_dry_run_counts_and_changes_nothing(env, backup):
    env.pg.psql("DELETE FROM workflow_runs WHERE id BETWEEN 300 AND 309", db=DB_NAME)
    before = md5_rows(env, "workflow_runs", "true")
    result = playbook("recover_data.yml", backup["vars_file"], "-e", rows("workflow_runs", "id BETWEEN 300 AND 309"),
                      "-e", "dry_run=true")
    assert result.returncode == 0, output(result)
    assert md5_rows(env, "workflow_runs", "true") == before
    report = latest_report(env)
    assert report["dry_run"] is True
    assert report["tables"][0]["copied"] == 10
    assert report["safety_backup"] is None
    assert recover_databases(env) == []


def test_parents_before_children_after_a_cascading_delete(env, backup):
    user = md5_rows(env, "users", "id = 7")
    personas = md5_rows(env, "personas", "user_id = 7")
    assert personas.endswith(":2")
    env.pg.psql("DELETE FROM users WHERE id = 7", db=DB_NAME)  # cascades to the user's personas
    assert count(env, "SELECT count(*) FROM personas WHERE user_id = 7") == 0
    extra = {"dr_recover_data_tables": [{"table": "users", "where": "id = 7"}, {"table": "public.personas", "where": "user_id = 7"}]}
    result = playbook("recover_data.yml", backup["vars_file"], "-e", json.dumps(extra))
    assert result.returncode == 0, output(result)
    assert md5_rows(env, "users", "id = 7") == user
    assert md5_rows(env, "personas", "user_id = 7") == personas
    assert latest_report(env)["rows_recovered"] == {"public.users": 1, "public.personas": 2}


def test_a_table_without_primary_key_is_refused_unless_allowed(env, backup):
    original = md5_rows(env, "audit_log", "true")
    env.pg.psql("DELETE FROM audit_log WHERE what IN ('action 3', 'action 4');"
                "INSERT INTO audit_log VALUES (now(), 'someone', 'written after the backup')", db=DB_NAME)
    safety = sorted((env.root / "backups" / "safety").glob("prerecover_*.sql.gz"))

    refused = playbook("recover_data.yml", backup["vars_file"], "-e", rows("audit_log", "true"))
    assert refused.returncode != 0
    assert "has a primary key: audit_log" in refused.stdout
    assert "allow_no_primary_key" in refused.stdout
    assert count(env, "SELECT count(*) FROM audit_log") == 49
    assert sorted((env.root / "backups" / "safety").glob("prerecover_*.sql.gz")) == safety  # refused before any work
    assert latest_report(env)["status"] == "failed"

    result = playbook("recover_data.yml", backup["vars_file"], "-e", rows("audit_log", "true"),
                      "-e", "allow_no_primary_key=true")
    assert result.returncode == 0, output(result)
    assert count(env, "SELECT count(*) FROM audit_log") == 51
    assert md5_rows(env, "audit_log", "what <> 'written after the backup'") == original
    assert latest_report(env)["rows_recovered"] == {"public.audit_log": 2}


def test_a_bad_where_changes_nothing(env, backup):
    before = md5_rows(env, "workflow_runs", "true")
    result = playbook("recover_data.yml", backup["vars_file"], "-e", rows("workflow_runs", "no_such_column = 1"))
    assert result.returncode != 0
    assert "no_such_column" in result.stdout
    assert md5_rows(env, "workflow_runs", "true") == before
    assert recover_databases(env) == []


def test_an_unknown_backup_value_is_refused_with_the_accepted_forms_and_touches_nothing(env, backup):
    before = md5_rows(env, "workflow_runs", "true")
    env.pg.psql("DELETE FROM workflow_runs WHERE id BETWEEN 400 AND 404", db=DB_NAME)
    deleted = md5_rows(env, "workflow_runs", "true")
    safety = sorted((env.root / "backups" / "safety").glob("prerecover_*"))
    staging = sorted((env.root / "backups" / "restore-staging").rglob("*"))

    result = playbook("recover_data.yml", backup["vars_file"], "-e", rows("workflow_runs", "id BETWEEN 400 AND 404"),
                      "-e", "backup=nosuchthing")
    assert result.returncode != 0
    assert "backup='nosuchthing' is not understood" in result.stdout
    assert "Accepted forms: latest" in result.stdout and "a set id YYYYMMDD_HHMMSS" in result.stdout
    assert "an s3://bucket/key URL" in result.stdout
    assert backup["set_id"] in result.stdout  # the sets it can see
    assert md5_rows(env, "workflow_runs", "true") == deleted != before
    assert recover_databases(env) == []
    assert sorted((env.root / "backups" / "safety").glob("prerecover_*")) == safety
    assert sorted((env.root / "backups" / "restore-staging").rglob("*")) == staging
    report = latest_report(env)
    assert report["status"] == "failed"
    assert report["phases"][-1]["name"] == "preparation" and report["phases"][-1]["status"] == "failed"
    assert report["safety_backup"] is None
    assert "No safety backup was written." in report["next_steps"]
    assert "No temporary database was created." in report["next_steps"]

    result = playbook("recover_data.yml", backup["vars_file"], "-e", rows("workflow_runs", "id BETWEEN 400 AND 404"))
    assert result.returncode == 0, output(result)
    assert md5_rows(env, "workflow_runs", "true") == before


def test_from_s3_when_the_local_backups_are_gone(env, backup):
    shutil.rmtree(env.root / "backups" / "daily")
    env.pg.psql("DELETE FROM workflow_runs WHERE id BETWEEN 1 AND 20", db=DB_NAME)
    result = playbook("recover_data.yml", backup["vars_file"], "-e", rows("workflow_runs", "id <= 20"),
                      "-e", "backup=%s" % backup["set_id"])
    assert result.returncode == 0, output(result)
    assert md5_rows(env, "workflow_runs", "id BETWEEN 1 AND 20") == backup["runs_1_20"]
    report = latest_report(env)
    assert report["backup"]["source"].startswith("s3://")
    assert report["rows_recovered"] == {"public.workflow_runs": 20}
    assert Path(env.root / "backups" / "restore-staging" / "recover").is_dir()
