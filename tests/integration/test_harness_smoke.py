"""The test harness itself works: PostgreSQL fixtures, the sample schema, digests and real Ansible runs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support import REPO_ROOT, VENV_PYTHON
from tests.support.ansible_run import run_module, run_playbook
from tests.support.postgres import PostgresServer, create_sample_database


def test_server_answers_over_tcp_with_password(pg_server):
    out = pg_server.psql("SELECT current_user, inet_server_addr(), current_setting('server_version_num')",
                         tcp=True)
    user, addr, version = out.strip().split("\x1f")
    assert user == "postgres"
    assert addr == "127.0.0.1"
    assert version.startswith("15")


def test_server_rejects_a_wrong_password(pg_server):
    wrong = PostgresServer.from_info({**pg_server.info(), "password": "not-the-password"})
    with pytest.raises(Exception, match="password authentication failed"):
        wrong.psql("SELECT 1", tcp=True)


def test_psycopg2_connects(pg_server):
    conn = pg_server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 + 1")
            assert cur.fetchone() == (2,)
    finally:
        conn.close()


def test_seeded_database_has_the_sample_schema(pg_db):
    tables = {r[0] for r in pg_db.rows(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")}
    assert {"users", "personas", "workflow_runs", "recent_failed_runs"} <= tables
    counts = dict(pg_db.rows(
        "SELECT 'users', count(*) FROM users UNION ALL SELECT 'personas', count(*) FROM personas "
        "UNION ALL SELECT 'workflow_runs', count(*) FROM workflow_runs"))
    assert counts == {"users": "60", "personas": "120", "workflow_runs": "1500"}
    # NULLs, bytea, jsonb and unicode are really there.
    assert pg_db.psql("SELECT count(*) FROM workflow_runs WHERE artifact IS NULL").strip() != "0"
    assert pg_db.psql("SELECT count(*) FROM users WHERE display_name LIKE '%🚀%'").strip() != "0"
    assert pg_db.psql("SELECT payload->>'step' FROM workflow_runs WHERE id = 1").strip() == "1"


def test_digests_are_stable_and_sensitive(pg_server, pg_db, pg_digests):
    first = pg_digests(pg_server, pg_db.name)
    assert first == pg_db.digests()
    assert set(first["tables"]) == {"public.users", "public.personas", "public.workflow_runs"}
    assert first["sequences"]["public.run_number_seq"] == "5000|t"
    assert "public.recent_failed_runs" in first["views"]
    assert "public.persona_run_count(p_persona uuid)" in first["functions"]
    assert first["triggers"] == ["public.users.users_touch_updated_at"]

    # A second database seeded from the same file has the same content digests.
    other = "smoke_copy"
    create_sample_database(pg_server, other)
    try:
        assert pg_digests(pg_server, other) == first
        pg_server.psql("UPDATE workflow_runs SET payload = '{}' WHERE id = 7", db=other)
        changed = pg_digests(pg_server, other)
        assert changed["tables"]["public.workflow_runs"] != first["tables"]["public.workflow_runs"]
        assert changed["tables"]["public.users"] == first["tables"]["public.users"]
    finally:
        pg_server.dropdb(other)
    assert other not in pg_server.databases()


def test_cli_start_and_stop(tmp_path):
    state = tmp_path / "pg.json"
    cmd = [sys.executable, "-m", "tests.support.postgres"]
    started = subprocess.run(cmd + ["start", "--state", str(state)], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=120, check=True)
    info = json.loads(started.stdout)
    try:
        assert json.loads(state.read_text()) == info
        server = PostgresServer.from_info(info)
        assert server.psql("SELECT 42", tcp=True).strip() == "42"
    finally:
        subprocess.run(cmd + ["stop", "--state", str(state)], cwd=REPO_ROOT, timeout=120, check=True)
    assert not state.exists()


def test_run_module_ping():
    result = run_module("ansible.builtin.ping", {"data": "pong-ü"})
    assert result.rc == 0
    assert result["ping"] == "pong-ü"
    assert not result.get("failed")
    assert result["changed"] is False


def test_run_module_reports_failure():
    result = run_module("ansible.builtin.command", {"argv": ["/nonexistent/binary"]})
    assert result["failed"] is True
    assert result.rc != 0


def test_run_module_check_mode_does_not_write(tmp_path):
    target = tmp_path / "file.txt"
    result = run_module("ansible.builtin.copy", {"dest": str(target), "content": "x\n"}, check=True, diff=True)
    assert result["changed"] is True
    assert not target.exists()


def test_modules_run_with_the_venv_python():
    result = run_module("ansible.builtin.setup", {"filter": ["ansible_python"]})
    assert result["ansible_facts"]["ansible_python"]["executable"] == str(VENV_PYTHON)


def test_run_playbook_on_localhost(tmp_path):
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        "- name: Smoke\n"
        "  hosts: localhost\n"
        "  gather_facts: false\n"
        "  tasks:\n"
        "    - name: Echo a variable\n"
        "      ansible.builtin.debug:\n"
        "        msg: \"{{ greeting }}\"\n"
    )
    proc = run_playbook(playbook, {"greeting": "hello-from-test"}, json_output=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.json["stats"]["localhost"]["failures"] == 0
    assert "hello-from-test" in proc.stdout


def test_collection_is_found_by_ansible():
    proc = subprocess.run([str(REPO_ROOT / ".venv" / "bin" / "ansible-doc"), "-l", "atlasia.dr"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "atlasia.dr." in proc.stdout
