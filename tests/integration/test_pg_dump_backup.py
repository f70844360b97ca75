"""atlasia.dr.pg_dump_backup against a real PostgreSQL 15 (tests/support/postgres.py), through real Ansible.

What a backup must be: verified files with working ``md5sum -c``/``sha256sum -c`` sidecars and a truthful
manifest; a plain gzip usable by hand (``gunzip -t``, ``zcat | psql``); nothing that looks valid after a crash or
a pg_dump that dies mid-stream; classified connection errors; a check mode that writes nothing. Round trips
through pg_restore_db are in test_pg_restore_db.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.integration import pg_helpers as h
from tests.support.postgres import PG_BINDIR, free_port, table_digests

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_database_left_behind")]

# Session fixtures shared with test_pg_restore_db.py (pg_helpers memoises them across modules).
no_database_left_behind = h.no_database_left_behind
shared_source = h.shared_source
shared_source_state = h.shared_source_state
shared_backups = h.shared_backups


@pytest.fixture
def source(shared_source):
    """The session's seeded database (read-only here)."""
    return shared_source


@pytest.fixture(scope="module")
def big_db(pg_server):
    """A larger database (pgbench scale 20, 2M rows, ~300 MB): a dump takes seconds, long enough to kill."""
    name = h.unique("bk_big")
    h.create_pgbench_db(pg_server, name, scale=20)
    try:
        yield name
    finally:
        pg_server.dropdb(name)


def _file_digests(path):
    data_md5, data_sha = hashlib.md5(), hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            data_md5.update(block)
            data_sha.update(block)
    return data_md5.hexdigest(), data_sha.hexdigest()


# --- round trips: files, sidecars, manifest, then restore and compare ---------------------------------------
def assert_backup_artifacts(pg_server, db, dest, result, combo):
    """The backup, its sidecars (checked by coreutils) and its manifest, as the module reported them."""
    fmt, comp, jobs = combo
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is True
    path = result["path"]
    name = os.path.basename(path)
    stem = name.split(".", 1)[0]
    assert h.final_names(dest) == sorted([name, name + ".md5", name + ".sha256", stem + ".json"])
    assert h.hidden_names(dest) == []
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o700
    if fmt != "directory":
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600

    for tool, suffix in (("md5sum", ".md5"), ("sha256sum", ".sha256")):
        proc = subprocess.run([tool, "-c", "--strict", name + suffix], cwd=dest, capture_output=True, text=True,
                              check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "FAILED" not in proc.stdout

    manifest = json.loads((dest / (stem + ".json")).read_text())
    assert manifest == result["manifest_data"]
    assert result["manifest"] == str(dest / (stem + ".json"))
    assert manifest["artifact"] == name
    assert manifest["database"] == db
    assert manifest["server_version"] == pg_server.scalar("SHOW server_version") == result["server_version"]
    assert manifest["server_version"].startswith("15.")
    assert (manifest["format"], manifest["compression"], manifest["kind"]) == (fmt, comp, "full")
    assert manifest["tool"] == "atlasia.dr.pg_dump_backup"
    assert manifest["started"] <= manifest["finished"]
    assert manifest["duration"] > 0
    tables = {(t["schema"], t["name"]): t["rows_estimate"] for t in manifest["tables"]}
    assert tables == {("public", "users"): 60, ("public", "personas"): 120, ("public", "workflow_runs"): 1500}
    if fmt == "directory":
        files = [os.path.join(root, f) for root, _dirs, names in os.walk(path) for f in names]
        assert manifest["size"] == sum(os.path.getsize(f) for f in files)
        listing = (dest / (name + ".sha256")).read_text()
        assert manifest["sha256"] == hashlib.sha256(listing.encode()).hexdigest()
        assert len(listing.splitlines()) == len(files)
    else:
        md5, sha = _file_digests(path)
        assert (manifest["md5"], manifest["sha256"]) == (md5, sha)
        assert manifest["size"] == os.path.getsize(path) == result["size"]
        assert (dest / (name + ".md5")).read_text() == f"{md5}  {name}\n"
    assert (result["md5"], result["sha256"]) == (manifest["md5"], manifest["sha256"])
    if fmt == "plain" and comp != "none":
        assert manifest["uncompressed_size"] > manifest["size"]


@pytest.mark.parametrize("combo", h.COMBINATIONS, ids=h.combo_id)
def test_backup_round_trip(pg_server, source, shared_source_state, shared_backups, tmp_path, combo):
    """Back up, check the files, restore into a new database and in place of another one: byte-exact.

    The backup goes to the session's store (test_pg_restore_db.py damages copies of these same files).
    """
    fmt, comp, jobs = combo
    result = shared_backups.get(combo)
    dest = Path(result["path"]).parent
    assert_backup_artifacts(pg_server, source, dest, result, combo)
    digests, facts = shared_source_state

    # restore into a new database, and in place of a database with other content (rows deleted and changed, a
    # view dropped, the sequence moved): both runs in one play
    new_db, target = h.unique("rt_new"), h.unique("rt_tgt")
    pg_server.psql(f'CREATE DATABASE "{target}" TEMPLATE "{source}"')
    try:
        pg_server.psql("DELETE FROM workflow_runs WHERE id > 100; UPDATE users SET email = email || '.old'; "
                       "DROP VIEW recent_failed_runs; SELECT setval('run_number_seq', 42);", db=target)
        assert table_digests(pg_server, target) != digests
        restored, replaced = h.run_tasks("pg_restore_db", [
            h.conn_args(pg_server, new_db, src=result["path"], mode="new", jobs=jobs),
            h.conn_args(pg_server, target, src=result["path"], mode="replace", jobs=jobs, keep_previous=False,
                        safety_backup=False),
        ], tmp_path)

        assert not restored.get("failed"), restored.get("msg")
        assert restored["changed"] is True
        assert restored["format"]["format"] == fmt
        assert restored["checksums"] == {"md5": "ok", "sha256": "ok"}
        assert restored["rows"] == {"public.users": 60, "public.personas": 120, "public.workflow_runs": 1500}
        h.assert_same_database(pg_server, source, new_db, digests, facts)
        h.assert_objects_work(pg_server, new_db)

        assert not replaced.get("failed"), replaced.get("msg")
        assert replaced["previous_db"] is None and replaced["safety_backup"] is None
        h.assert_same_database(pg_server, source, target, digests, facts)
        assert h.scratch_databases(pg_server, target) == [] and h.previous_databases(pg_server, target) == []
    finally:
        h.drop_databases(pg_server, [new_db, target])


def test_plain_gzip_works_with_the_usual_manual_commands(pg_server, source, shared_backups):
    path = shared_backups.get(("plain", "gzip", 1))["path"]
    assert subprocess.run(["gunzip", "-t", path], capture_output=True, check=False).returncode == 0
    grep = subprocess.run(["bash", "-o", "pipefail", "-c", 'zcat "$1" | grep "CREATE TABLE"', "-", path],
                          capture_output=True, text=True, check=False)
    assert grep.returncode == 0, grep.stderr
    assert sorted(grep.stdout.split()) == sorted(
        "CREATE TABLE public.personas ( CREATE TABLE public.users ( CREATE TABLE public.workflow_runs (".split())

    target = h.unique("bk_manual")
    pg_server.createdb(target)
    try:
        env = dict(os.environ, PGPASSWORD=pg_server.password)
        proc = subprocess.run(
            ["bash", "-o", "pipefail", "-c", 'zcat "$1" | "$2" -X -q -v ON_ERROR_STOP=1 -h "$3" -p "$4" -U "$5" -d "$6"',
             "-", path, str(PG_BINDIR / "psql"), pg_server.host, str(pg_server.port), pg_server.user, target],
            env=env, capture_output=True, text=True, timeout=300, check=False)
        assert proc.returncode == 0, proc.stderr
        h.assert_same_database(pg_server, source, target)
    finally:
        pg_server.dropdb(target)


def test_schema_only_copy(pg_server, source, tmp_path):
    result = h.backup(pg_server, source, tmp_path, kind="schema", timestamp="20261126_020000")
    assert not result.get("failed"), result.get("msg")
    assert result["path"] == str(tmp_path / "schema_20261126_020000.sql")
    text = open(result["path"], encoding="utf-8").read()
    assert "CREATE TABLE public.users" in text and "CREATE VIEW public.recent_failed_runs" in text
    assert "COPY public.users" not in text
    # pg_dump >= 15.14 ends with "\unrestrict <key>" after the completion line
    assert "-- PostgreSQL database dump complete\n" in text[-300:]
    assert result["manifest_data"]["tables"] == []
    target = h.unique("bk_schema")
    pg_server.createdb(target)
    try:
        pg_server.psql(text, db=target)
        digests = table_digests(pg_server, target)
        assert {k: v["rows"] for k, v in digests["tables"].items()} == {
            "public.users": 0, "public.personas": 0, "public.workflow_runs": 0}
        expected = table_digests(pg_server, source)
        for key in ("views", "functions", "triggers", "indexes", "constraints"):
            assert digests[key] == expected[key]
    finally:
        pg_server.dropdb(target)


def test_backup_is_never_overwritten(pg_server, source, shared_backups, tmp_path):
    original = shared_backups.get(("plain", "gzip", 1))
    copy = h.copy_artifact(original, tmp_path)
    stem = copy.name.split(".", 1)[0]
    (tmp_path / (stem + ".json")).write_bytes(Path(original["manifest"]).read_bytes())
    before = {name: (tmp_path / name).read_bytes() for name in h.final_names(tmp_path)}
    assert len(before) == 4
    again = h.backup(pg_server, source, tmp_path, timestamp=stem.split("_", 1)[1])
    assert again["failed"] and "already exists" in again["msg"]
    assert {name: (tmp_path / name).read_bytes() for name in h.final_names(tmp_path)} == before
    assert h.hidden_names(tmp_path) == []


# --- check mode -------------------------------------------------------------------------------------------
def test_check_mode_writes_nothing(pg_server, source, tmp_path):
    existing = tmp_path / "existing"
    existing.mkdir()
    missing = tmp_path / "missing"
    sessions_before = pg_server.scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'atlasia.dr'")
    results = h.run_tasks("pg_dump_backup", [
        h.conn_args(pg_server, source, dest=str(existing), format="directory", jobs=2),
        h.conn_args(pg_server, source, dest=str(missing)),
    ], tmp_path / "play", check=True)
    for dest, result in zip((existing, missing), results):
        assert not result.get("failed"), result.get("msg")
        assert result["changed"] is True
        assert result["size"] == 0
        assert result["path"].startswith(str(dest) + "/backup_")
        assert result["server_version"].startswith("15.")
    assert os.listdir(existing) == []
    assert not missing.exists()
    assert pg_server.scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'atlasia.dr'") == \
        sessions_before


# --- connection errors ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def connection_errors(pg_server, shared_source, tmp_path_factory):
    """Backups that cannot connect, in one play: wrong password, closed port, missing database."""
    root = tmp_path_factory.mktemp("bk_errors")
    runs = {
        "auth": h.conn_args(pg_server, shared_source, dest=str(root / "auth"), login_password="not-the-password"),
        "closed": h.conn_args(pg_server, shared_source, dest=str(root / "closed"), port=free_port()),
        "nodb": h.conn_args(pg_server, "no_such_db_" + h.unique("x"), dest=str(root / "nodb")),
    }
    started = time.monotonic()
    results = h.run_tasks("pg_dump_backup", list(runs.values()), root / "play")
    return root, dict(zip(runs, results)), time.monotonic() - started


def _nothing_written(directory):
    return not directory.exists() or (h.final_names(directory) == [] and h.hidden_names(directory) == [])


def test_wrong_password_is_auth(connection_errors):
    root, results, elapsed = connection_errors
    result = results["auth"]
    assert result["failed"] and result["error_kind"] == "auth", result
    assert "password authentication failed" in result["msg"]
    assert "not-the-password" not in json.dumps(result)
    assert _nothing_written(root / "auth")


def test_closed_port_is_unreachable(connection_errors):
    root, results, elapsed = connection_errors
    result = results["closed"]
    assert result["failed"] and result["error_kind"] == "unreachable", result
    assert "cannot be reached" in result["msg"]
    assert elapsed < 60  # refused at once: nothing waits for a timeout
    assert _nothing_written(root / "closed")


def test_nonexistent_database(connection_errors):
    root, results, elapsed = connection_errors
    result = results["nodb"]
    assert result["failed"] and result["error_kind"] == "no_database", result
    assert _nothing_written(root / "nodb")


def test_silent_server_times_out_within_connect_timeout(pg_server, source, tmp_path):
    """A port that accepts TCP but never answers (a hung server): the task fails after connect_timeout."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    try:
        started = time.monotonic()
        result = h.backup(pg_server, source, tmp_path, port=listener.getsockname()[1], connect_timeout=2)
        elapsed = time.monotonic() - started
    finally:
        listener.close()
    assert result["failed"] and result["error_kind"] == "unreachable", result
    assert "timeout expired" in result["msg"]
    assert 2 <= elapsed < 20, elapsed
    assert h.final_names(tmp_path) == []


# --- crashes ----------------------------------------------------------------------------------------------
def _is_pg_dump(argv):
    return os.path.basename(argv[0]) == "pg_dump"


def _watch_processes(root, stop, seen):
    """Collect the argv and environment of every process of the run, until ``stop`` is set."""
    while not stop.is_set():
        for pid in h.descendants(root):
            argv = h.cmdline(pid)
            if argv and tuple(argv) not in seen:
                seen[tuple(argv)] = h.environ(pid)
        time.sleep(0.02)


def _start_backup(pg_server, db, dest, tmp_path, **extra):
    out = tmp_path / "ansible-out.json"
    launcher = h.start_module("pg_dump_backup", h.conn_args(pg_server, db, dest=str(dest), **extra), out)
    return launcher, out


@pytest.mark.slow
@pytest.mark.parametrize("combo", [("plain", "gzip", 1), ("directory", "gzip", 2)], ids=h.combo_id)
def test_killed_run_leaves_nothing_that_looks_valid(pg_server, big_db, tmp_path, combo):
    fmt, comp, jobs = combo
    dest = tmp_path / "daily"
    launcher, out = _start_backup(pg_server, big_db, dest, tmp_path, format=fmt, compression=comp, jobs=jobs)
    stop, seen = threading.Event(), {}
    watcher = threading.Thread(target=_watch_processes, args=(launcher.pid, stop, seen), daemon=True)
    watcher.start()
    try:
        dump_pid = h.find_descendant(launcher.pid, _is_pg_dump, timeout=60)
        assert dump_pid, "pg_dump never started:\n" + out.read_text(errors="replace")
        # the dump is being written under a hidden temporary name
        assert h.wait_for(lambda: dest.exists() and h.hidden_names(dest), timeout=10)
        time.sleep(0.5)
        assert h.cmdline(dump_pid), "pg_dump finished before the kill: the database is too small"
        killed = h.kill_tree(launcher.pid)
    finally:
        stop.set()
        watcher.join(5)
    assert dump_pid in killed
    h.wait_launcher(launcher)

    # no final-named artifact, sidecar or manifest; only hidden temporaries
    assert h.final_names(dest) == []
    leftovers = h.hidden_names(dest)
    assert leftovers and all(".tmp-" in name for name in leftovers), leftovers

    # the password never appeared in an argument list, only in pg_dump's environment
    assert seen, "no process was observed"
    assert not any(pg_server.password in " ".join(argv) for argv in seen)
    dump_envs = [env for argv, env in seen.items() if _is_pg_dump(list(argv))]
    assert dump_envs and dump_envs[0].get("PGPASSWORD") == pg_server.password

    # the next run removes the leftovers of the dead one, and succeeds (one small table, to stay quick)
    result = h.backup(pg_server, big_db, dest, format=fmt, compression=comp, jobs=jobs,
                      dump_options=["--table=pgbench_branches"])
    assert not result.get("failed"), result.get("msg")
    assert h.hidden_names(dest) == []
    name = os.path.basename(result["path"])
    assert h.final_names(dest) == sorted([name, name + ".md5", name + ".sha256", name.split(".")[0] + ".json"])


def _dump_backend_pid(pg_server, db):
    rows = pg_server.rows(f"SELECT pid FROM pg_stat_activity WHERE datname = '{db}' "
                          "AND application_name = 'atlasia.dr' AND query LIKE 'COPY %'")
    return int(rows[0][0]) if rows else None


@pytest.mark.slow
@pytest.mark.parametrize("combo, how", [
    (("plain", "gzip", 1), "kill-pg_dump"),
    (("custom", "none", 1), "kill-pg_dump"),
    (("plain", "zstd", 1), "terminate-backend"),
    (("custom", "gzip", 1), "terminate-backend"),
], ids=lambda v: h.combo_id(v) if isinstance(v, tuple) else v)
def test_pg_dump_dying_mid_stream_fails_the_task(pg_server, big_db, tmp_path, combo, how):
    """The compressor closes cleanly on EOF; the task must still fail, and write nothing."""
    fmt, comp, jobs = combo
    dest = tmp_path / "daily"
    launcher, out = _start_backup(pg_server, big_db, dest, tmp_path, format=fmt, compression=comp)
    dump_pid = h.find_descendant(launcher.pid, _is_pg_dump, timeout=60)
    assert dump_pid, "pg_dump never started:\n" + out.read_text(errors="replace")
    assert h.wait_for(lambda: dest.exists() and h.hidden_names(dest), timeout=10)
    time.sleep(0.5)
    if how == "kill-pg_dump":
        os.kill(dump_pid, signal.SIGKILL)
    else:
        backend = h.wait_for(lambda: _dump_backend_pid(pg_server, big_db), timeout=10)
        assert backend, "no COPY of pg_dump seen on the server"
        assert pg_server.scalar(f"SELECT pg_terminate_backend({backend})") == "t"
    assert h.wait_launcher(launcher) != 0
    result = h.read_result(out)
    assert result["failed"] is True
    assert result["msg"].startswith(f"backup of {big_db} failed and nothing was written")
    if how == "kill-pg_dump":
        assert "pg_dump failed (killed by signal 9)" in result["msg"]
    else:
        assert "pg_dump failed (exit status 1)" in result["msg"]
        stderr = result.get("stderr", "")
        assert 'Dumping the contents of table "pgbench_accounts" failed' in stderr, stderr
        assert ("terminating connection due to administrator command" in stderr
                or "server closed the connection unexpectedly" in stderr), stderr
    assert os.listdir(dest) == []  # not even a temporary file: the module cleaned up after itself
