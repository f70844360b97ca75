# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of pg_restore_db: ``main()`` driven with ``patch_module_args``, no database server.

The catalogue (which databases exist, CREATE/DROP/RENAME) is a fake behind ``PostgresClient.query`` and
``PostgresClient.script``; the restore pipeline runs for real with fake ``psql``/``pg_restore``/``pg_dump``
(and ``docker``) programs in a temporary ``pg_bin_dir`` that record their argv, environment and input.
The real server is exercised by tests/integration/test_pg_restore_db.py.
"""

from __future__ import annotations

import datetime
import gzip
import hashlib
import json
import os
import re
import subprocess
import sys

import pytest

from tests.support.modules import run_module
from ansible_collections.atlasia.dr.plugins.module_utils import checksum, naming
from ansible_collections.atlasia.dr.plugins.module_utils.postgres import FIELD_SEP, PostgresClient, PostgresError
from ansible_collections.atlasia.dr.plugins.modules import pg_restore_db

PASSWORD = "unit-test-secret-Pw"
TRAILER = b"\n--\n-- PostgreSQL database dump complete\n--\n\n"
PLAIN = b"--\n-- PostgreSQL database dump\n--\n\nCREATE TABLE users (id int);\n" + TRAILER

FAKE_TOOLS = r'''#!{python}
"""Fake psql / pg_restore / pg_dump / docker for unit tests; behaviour from config.json next to this file."""
import hashlib, json, os, sys
here = os.path.dirname(os.path.abspath(__file__))
tool = os.path.basename(sys.argv[0])
cfg = json.load(open(os.path.join(here, "config.json")))


def log(**extra):
    entry = {{"tool": tool, "argv": sys.argv[1:],
              "env": {{k: os.environ.get(k) for k in ("PGPASSWORD", "PGDATABASE", "PGHOST", "PGPORT", "PGUSER",
                                                      "PGOPTIONS")}}}}
    entry.update(extra)
    with open(os.path.join(here, "calls.jsonl"), "a") as handle:
        handle.write(json.dumps(entry) + "\n")


if tool == "docker":
    args = sys.argv[2:]
    if args and args[0] == "-i":
        args = args[1:]
    while args and args[0] == "-e":
        if "=" in args[1] or args[1] not in os.environ:
            sys.stderr.write("bad -e %s\n" % args[1])
            sys.exit(125)
        args = args[2:]
    log()
    os.execv(os.path.join(here, args[1]), [os.path.join(here, args[1])] + args[2:])
if tool == "df":
    log()
    sys.stdout.write("Filesystem 1024-blocks Used Available Capacity Mounted on\n"
                     "overlay 100000000 1 %d 1%% /\n" % cfg.get("df_avail_kb", 10 ** 9))
    sys.exit(0)
if tool == "pg_dump":
    log()
    if cfg.get("dump_fail"):
        sys.stderr.write("pg_dump: error: query failed: ERROR:  permission denied for table users\n")
        sys.exit(1)
    sys.stdout.buffer.write(b"--\n-- PostgreSQL database dump\n--\nSELECT 1;\n\n--\n-- PostgreSQL database dump complete\n--\n\n")
    sys.exit(0)
files = [a for a in sys.argv[1:] if not a.startswith("-") and os.path.exists(a)]
if files and os.path.isfile(files[0]):
    data = open(files[0], "rb").read()
elif files:
    data = b"directory"
else:
    data = sys.stdin.buffer.read()
log(input_sha256=hashlib.sha256(data).hexdigest(), input_size=len(data))
if tool == "pg_restore" and "--file=/dev/null" in sys.argv:
    if files and os.path.isdir(files[0]):
        sys.exit(0)
    if not data.startswith(b"PGDMP"):
        sys.stderr.write("pg_restore: error: input file does not appear to be a valid archive\n")
        sys.exit(1)
    sys.exit(0)
if cfg.get("restore_fail"):
    sys.stderr.write('psql:<stdin>:42: ERROR:  relation "users" already exists\n')
    sys.exit(3)
sys.exit(0)
'''


class Fake(object):
    """Fake tools on disk plus a fake catalogue of databases."""

    def __init__(self, path, databases=("postgres", "template0", "template1", "appdb")):
        self.path = path
        path.mkdir()
        text = FAKE_TOOLS.format(python=sys.executable)
        for tool in ("psql", "pg_restore", "pg_dump", "docker", "df"):
            (path / tool).write_text(text)
            (path / tool).chmod(0o755)
        self.configure()
        self.dbs = dict((name, dict(owner="app_owner" if name == "appdb" else "postgres", encoding="UTF8",
                                    collate="C.UTF-8", ctype="C.UTF-8")) for name in databases)
        self.sql = []           # every statement run through query()/script(), in order
        self.swap_failures = []  # stderr of the next script() calls that must fail
        self.db_size = 1000      # pg_database_size of any database
        self.data_directory = str(path)
        self.missing_roles = set()  # roles the fake server lacks
        self.may_set_role_settings = True  # login_user is superuser or CREATEROLE

    def configure(self, **cfg):
        (self.path / "config.json").write_text(json.dumps(cfg))

    def calls(self, tool=None):
        log = self.path / "calls.jsonl"
        if not log.exists():
            return []
        entries = [json.loads(line) for line in log.read_text().splitlines()]
        return [e for e in entries if tool is None or e["tool"] == tool]

    def statements(self, verb):
        return [s for s in self.sql if s.lstrip().upper().startswith(verb)]

    # -- PostgresClient.query / .script replacements --------------------------------------------------
    def query(self, client, sql, db=None):
        self.sql.append(sql)
        if sql.startswith("SELECT datname FROM pg_database"):
            return [[name] for name in sorted(self.dbs)]
        if "pg_get_userbyid(d.datdba)" in sql:
            name = re.search(r"datname = '((?:[^']|'')*)'", sql).group(1).replace("''", "'")
            info = self.dbs.get(name)
            if not info:
                return []
            props = dict(locale_provider="libc", icu_locale=None, tablespace="pg_default", connection_limit=-1,
                         comment=None, acl=None, settings=[], role_settings={})
            props.update(info)
            return [[json.dumps(props)]]
        if sql.startswith("SELECT r.rolname FROM pg_db_role_setting"):
            return []
        if sql.startswith("SELECT rolsuper OR rolcreaterole"):
            return [["t" if self.may_set_role_settings else "f"]]
        if sql.startswith("SELECT rolname FROM pg_roles WHERE rolname IN"):
            return [[name] for name in re.findall(r"'([^']*)'", sql) if name not in self.missing_roles]
        if sql.startswith("SELECT pg_database_size("):
            return [[str(self.db_size)]]
        if sql == "SELECT current_setting('data_directory')":
            return [[self.data_directory]]
        if sql == "SHOW server_version_num":
            return [["150018"]]
        if sql == "SHOW server_version":
            return [["15.18 (fake)"]]
        if "GREATEST(c.reltuples" in sql:
            return [["public", "users", "3"]]
        if "count(*)" in sql:
            return [["public.users", "3"]]
        match = re.match(r'DROP DATABASE IF EXISTS "((?:[^"]|"")*)" WITH \(FORCE\)$', sql)
        if match:
            self.dbs.pop(match.group(1).replace('""', '"'), None)
            return []
        match = re.match(r'CREATE DATABASE "((?:[^"]|"")*)" TEMPLATE template0', sql)
        if match:
            name = match.group(1)
            if name in self.dbs:
                raise PostgresError('psql failed: ERROR:  database "%s" already exists' % name)
            owner = re.search(r'OWNER "([^"]*)"', sql)
            self.dbs[name] = dict(owner=owner.group(1) if owner else "postgres", encoding="UTF8",
                                  collate="C.UTF-8", ctype="C.UTF-8")
            return []
        raise AssertionError("unexpected SQL: %s" % sql)

    def script(self, client, sql, db):
        text = sql.decode("utf-8")
        self.sql.append(text)
        assert db == "postgres"
        if "pg_terminate_backend" not in text:  # the database-level properties applied after the load
            assert text.startswith("BEGIN;") and text.rstrip().endswith("COMMIT;")
            return 0, "", ""
        if self.swap_failures:
            stderr = self.swap_failures.pop(0)
            raise PostgresError("psql failed (exit status 3): %s" % stderr, stderr=stderr)
        renames = re.findall(r'ALTER DATABASE "([^"]*)" RENAME TO "([^"]*)";', text)
        assert text.index("pg_terminate_backend") < text.index("BEGIN;") < text.index("COMMIT;")
        after = dict(self.dbs)
        for old, new in renames:  # in order, all or nothing (one transaction)
            assert old in after and new not in after, (old, new, sorted(after))
            after[new] = after.pop(old)
        self.dbs = after
        return 0, "", ""


@pytest.fixture
def fake(tmp_path, monkeypatch):
    fake = Fake(tmp_path / "bin")

    def query(client, sql, db=None):
        return fake.query(client, sql, db)

    def script(client, sql, db):
        return fake.script(client, sql, db)

    monkeypatch.setattr(PostgresClient, "query", query)
    monkeypatch.setattr(PostgresClient, "script", script)
    return fake


@pytest.fixture
def backups(tmp_path):
    path = tmp_path / "backups"
    path.mkdir()
    return path


def make_backup(directory, name="backup_20261126_020005.sql.gz", data=None, sidecars=True):
    path = directory / name
    if data is None:
        data = gzip.compress(PLAIN) if name.endswith(".gz") else PLAIN
    path.write_bytes(data)
    if sidecars:
        checksum.write_sidecars(str(path), checksum.artifact_digests(str(path))[2])
    return path


def run_main(args, capsys, check_mode=False):
    return run_module(pg_restore_db.main, args, capsys, check_mode=check_mode)


def args_for(fake, src, **extra):
    args = dict(db="appdb", src=str(src), login_host="127.0.0.1", port=5433, login_password=PASSWORD,
                pg_bin_dir=str(fake.path))
    args.update(extra)
    return args


def user_dbs(fake):
    return sorted(name for name in fake.dbs if name not in ("postgres", "template0", "template1"))


def test_replace_existing_database(fake, backups, capsys):
    src = make_backup(backups)
    result = run_main(args_for(fake, src), capsys)
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is True
    previous = result["previous_db"]
    assert re.match(r"^appdb_previous_\d{8}_\d{6}$", previous)
    assert user_dbs(fake) == ["appdb", previous]
    assert fake.dbs[previous]["owner"] == "app_owner" and fake.dbs["appdb"]["owner"] == "app_owner"
    assert result["format"] == {"format": "plain", "compression": "gzip"}
    assert result["checksums"] == {"md5": "ok", "sha256": "ok"}
    assert result["rows"] == {"public.users": 3} and result["tables"] == 1
    assert result["dropped_stale"] == []

    # the scratch database: created like the target, restored, counted, then swapped in
    creates = fake.statements("CREATE DATABASE")
    assert len(creates) == 1
    scratch = re.match(r'CREATE DATABASE "([^"]+)"', creates[0]).group(1)
    assert re.match(r"^appdb_restore_\d{8}_\d{6}$", scratch)
    assert scratch[-15:] == previous[-15:]
    assert "OWNER \"app_owner\" ENCODING 'UTF8' LOCALE_PROVIDER libc LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8'" in creates[0]
    psql = fake.calls("psql")
    assert len(psql) == 1
    argv = psql[0]["argv"]
    assert argv[argv.index("-d") + 1] == scratch
    assert "ON_ERROR_STOP=1" in argv and "-X" in argv
    assert psql[0]["input_sha256"] == hashlib.sha256(PLAIN).hexdigest()  # the whole dump, decompressed
    assert psql[0]["env"]["PGOPTIONS"] == "-c maintenance_work_mem=512MB -c synchronous_commit=off"
    assert psql[0]["env"]["PGPASSWORD"] == PASSWORD and PASSWORD not in " ".join(argv)
    swap = [s for s in fake.sql if "RENAME TO" in s][0]
    assert "pg_terminate_backend(pid, 5000)" in swap
    assert "datname IN ('appdb', '%s')" % scratch in swap
    assert swap.index('ALTER DATABASE "appdb" RENAME TO "%s"' % previous) < swap.index(
        'ALTER DATABASE "%s" RENAME TO "appdb"' % scratch)

    # the safety backup came first, next to the source, through pg_dump
    safety = result["safety_backup"]
    assert os.path.dirname(safety) == str(backups)
    assert re.match(r"^prerestore_\d{8}_\d{6}\.sql\.gz$", os.path.basename(safety))
    assert os.path.basename(safety)[11:26] == previous[-15:]
    for suffix in (".md5", ".sha256"):
        assert os.path.exists(safety + suffix)
    assert gzip.decompress(open(safety, "rb").read()).endswith(TRAILER)
    assert open(safety, "rb").read()[8] == 4  # gzip's "fastest" flag: level 1 (safety_backup_compression_level)
    dump_env = fake.calls("pg_dump")[0]["env"]
    assert dump_env["PGDATABASE"] == "appdb"
    assert "SHOW server_version" in fake.sql  # the safety dump ran (beside the load; the swap waited for it)


def test_keep_previous_false_drops_it(fake, backups, capsys):
    result = run_main(args_for(fake, make_backup(backups), keep_previous=False, safety_backup=False), capsys)
    assert not result.get("failed"), result.get("msg")
    assert result["previous_db"] is None and result["safety_backup"] is None
    assert user_dbs(fake) == ["appdb"]
    assert re.match(r'DROP DATABASE IF EXISTS "appdb_previous_\d{8}_\d{6}" WITH \(FORCE\)', fake.statements("DROP")[-1])
    assert fake.calls("pg_dump") == []


def test_replace_when_target_missing(fake, backups, capsys):
    del fake.dbs["appdb"]
    result = run_main(args_for(fake, make_backup(backups)), capsys)
    assert not result.get("failed"), result.get("msg")
    assert result["previous_db"] is None and result["safety_backup"] is None  # nothing to save
    assert user_dbs(fake) == ["appdb"]
    assert fake.dbs["appdb"]["owner"] == "postgres"  # login_user
    swap = [s for s in fake.sql if "RENAME TO" in s][0]
    assert swap.count("RENAME TO") == 1


def test_mode_new(fake, backups, capsys):
    result = run_main(args_for(fake, make_backup(backups), db="recovery_tmp", mode="new", owner="reader"), capsys)
    assert not result.get("failed"), result.get("msg")
    assert user_dbs(fake) == ["appdb", "recovery_tmp"]
    assert fake.statements("CREATE DATABASE") == ['CREATE DATABASE "recovery_tmp" TEMPLATE template0 OWNER "reader"']
    assert not any("RENAME" in s for s in fake.sql)
    assert result["previous_db"] is None and result["safety_backup"] is None
    argv = fake.calls("psql")[0]["argv"]
    assert argv[argv.index("-d") + 1] == "recovery_tmp"


def test_mode_new_into_existing_database_fails(fake, backups, capsys):
    result = run_main(args_for(fake, make_backup(backups), mode="new"), capsys)
    assert result["failed"] and result["error_kind"] == "exists"
    assert "already exists" in result["msg"]
    assert fake.statements("CREATE") == [] and fake.statements("DROP") == []
    assert fake.calls("psql") == []


def test_stale_scratches_are_dropped_first(fake, backups, capsys):
    for name in ("appdb_restore_20250101_000000", "appdb_restore_20250102_000000", "appdb_previous_20250101_000000",
                 "other_restore_20250101_000000", "appdb_restore_latest"):
        fake.dbs[name] = dict(owner="postgres", encoding="UTF8", collate="C", ctype="C")
    result = run_main(args_for(fake, make_backup(backups), safety_backup=False), capsys)
    assert not result.get("failed"), result.get("msg")
    assert result["dropped_stale"] == ["appdb_restore_20250101_000000", "appdb_restore_20250102_000000"]
    assert "appdb_previous_20250101_000000" in fake.dbs
    assert "other_restore_20250101_000000" in fake.dbs
    assert "appdb_restore_latest" in fake.dbs


def test_failed_restore_drops_scratch_and_keeps_target(fake, backups, capsys):
    fake.configure(restore_fail=True)
    before = dict(fake.dbs)
    result = run_main(args_for(fake, make_backup(backups), safety_backup=False), capsys)
    assert result["failed"] is True and result["changed"] is False
    assert "database appdb is unchanged" in result["msg"].lower()
    assert "was dropped" in result["msg"]
    assert 'relation "users" already exists' in result["msg"]
    assert 'relation "users" already exists' in result["stderr"]
    assert fake.dbs == before
    scratch = re.match(r'CREATE DATABASE "([^"]+)"', fake.statements("CREATE")[0]).group(1)
    assert fake.statements("DROP")[-1] == 'DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % scratch
    assert not any("RENAME" in s for s in fake.sql)


def test_failed_restore_in_mode_new_removes_the_new_database(fake, backups, capsys):
    fake.configure(restore_fail=True)
    result = run_main(args_for(fake, make_backup(backups), db="recovery_tmp", mode="new"), capsys)
    assert result["failed"] and "database recovery_tmp was not created" in result["msg"].lower()
    assert "recovery_tmp" not in fake.dbs


def test_swap_retries_while_clients_reconnect(fake, backups, capsys, monkeypatch):
    monkeypatch.setattr(pg_restore_db.time, "sleep", lambda seconds: None)
    busy = 'ERROR:  database "appdb" is being accessed by other users\nDETAIL:  There is 1 other session.'
    fake.swap_failures = [busy, busy]
    result = run_main(args_for(fake, make_backup(backups), safety_backup=False), capsys)
    assert not result.get("failed"), result.get("msg")
    assert len([s for s in fake.sql if "RENAME TO" in s]) == 3
    assert user_dbs(fake) == ["appdb", result["previous_db"]]


def test_swap_gives_up_and_keeps_target(fake, backups, capsys, monkeypatch):
    monkeypatch.setattr(pg_restore_db.time, "sleep", lambda seconds: None)
    busy = 'ERROR:  database "appdb" is being accessed by other users'
    fake.swap_failures = [busy] * 3
    before = dict(fake.dbs)
    result = run_main(args_for(fake, make_backup(backups), safety_backup=False, swap_attempts=3), capsys)
    assert result["failed"] and "being accessed by other users" in result["msg"]
    assert fake.dbs == before  # scratch dropped, appdb untouched


def test_swap_other_error_is_not_retried(fake, backups, capsys):
    fake.swap_failures = ["ERROR:  must be owner of database appdb"]
    result = run_main(args_for(fake, make_backup(backups), safety_backup=False), capsys)
    assert result["failed"] and result["error_kind"] == "error"
    assert len([s for s in fake.sql if "RENAME TO" in s]) == 1
    assert user_dbs(fake) == ["appdb"]


def _flip(data):
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:]


@pytest.mark.parametrize("case, message", [
    ("missing", "does not exist"),
    ("empty", "empty or not a PostgreSQL dump"),
    ("truncated_no_sidecar", "fails the gzip decompression test"),
    ("flipped_with_sidecar", "checksum mismatch"),
    ("flipped_no_sidecar", "fails the gzip decompression test"),
    ("no_trailer", "lacks the '-- PostgreSQL database dump complete' line"),
    ("required_checksum_missing", "no checksum sidecar"),
    ("bad_sidecar", "malformed checksum line"),
    ("not_an_archive", "not a complete, readable custom-format archive"),
])
def test_bad_backups_are_refused_before_anything_changes(fake, backups, capsys, case, message):
    extra = {}
    good = gzip.compress(PLAIN * 50)
    if case == "missing":
        src = backups / "backup_20261126_020005.sql.gz"
    elif case == "empty":
        src = make_backup(backups, data=b"", sidecars=False)
    elif case == "truncated_no_sidecar":
        src = make_backup(backups, data=good[: len(good) // 2], sidecars=False)
    elif case == "flipped_with_sidecar":
        src = make_backup(backups, data=good)
        src.write_bytes(_flip(good))
    elif case == "flipped_no_sidecar":
        src = make_backup(backups, data=_flip(good), sidecars=False)
    elif case == "no_trailer":
        src = make_backup(backups, data=gzip.compress(PLAIN[: -len(TRAILER)]))
    elif case == "required_checksum_missing":
        src = make_backup(backups, sidecars=False)
        extra = dict(require_checksum=True)
    elif case == "bad_sidecar":
        src = make_backup(backups, sidecars=False)
        (backups / (src.name + ".md5")).write_text("garbage\n")
    else:
        src = make_backup(backups, name="backup_20261126_020005.dump", data=b"PGDMP-not-really", sidecars=False)
        src.write_bytes(b"XXXXX not an archive")
        src = backups / "backup_20261126_020005.dump"
    if case == "not_an_archive":
        src.write_bytes(b"PGDMP" + b"\0" * 10)
        fake.configure()
        # the fake pg_restore accepts PGDMP: make it refuse this one
        (fake.path / "pg_restore").write_text("#!/bin/sh\necho 'pg_restore: error: could not read from input file: "
                                              "end of file' >&2\nexit 1\n")
    before = dict(fake.dbs)
    result = run_main(args_for(fake, src, **extra), capsys)
    assert result["failed"] is True and result["changed"] is False
    assert result["error_kind"] == "bad_backup", result["msg"]
    assert result["msg"].startswith("backup refused, nothing was changed")
    assert message in result["msg"], result["msg"]
    assert fake.dbs == before
    assert fake.sql == []  # not even a connection: the server is untouched
    assert fake.calls("psql") == [] and fake.calls("pg_dump") == []
    assert sorted(p.name for p in backups.iterdir() if p.name.startswith("prerestore")) == []


def test_check_mode_changes_nothing(fake, backups, capsys):
    fake.dbs["appdb_restore_20250101_000000"] = dict(owner="postgres", encoding="UTF8", collate="C", ctype="C")
    before = dict(fake.dbs)
    result = run_main(args_for(fake, make_backup(backups)), capsys, check_mode=True)
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is True and result["would"] == "replace appdb"
    assert result["checksums"] == {"md5": "ok", "sha256": "ok"}
    assert fake.dbs == before
    assert all(s.startswith("SELECT ") for s in fake.sql), fake.sql  # reads only
    assert fake.calls("psql") == [] and fake.calls("pg_dump") == []
    assert sorted(p.name for p in backups.iterdir()) == sorted(
        ["backup_20261126_020005.sql.gz", "backup_20261126_020005.sql.gz.md5", "backup_20261126_020005.sql.gz.sha256"])


def test_check_mode_new_database(fake, backups, capsys):
    result = run_main(args_for(fake, make_backup(backups), db="fresh", mode="new"), capsys, check_mode=True)
    assert result["would"] == "create fresh"
    assert "fresh" not in fake.dbs


def test_check_mode_still_refuses_bad_backup(fake, backups, capsys):
    src = make_backup(backups, data=gzip.compress(PLAIN)[:20], sidecars=False)
    result = run_main(args_for(fake, src), capsys, check_mode=True)
    assert result["failed"] and result["error_kind"] == "bad_backup"


def test_safety_backup_failure_replaces_nothing(fake, backups, capsys, tmp_path):
    """The safety dump runs beside the load into the scratch database; when it fails, the scratch database is
    dropped and the target is never swapped: nothing was changed."""
    fake.configure(dump_fail=True)
    result = run_main(args_for(fake, make_backup(backups), safety_backup_dir=str(tmp_path / "safety")), capsys)
    assert result["failed"] and result["error_kind"] == "safety_backup"
    assert "permission denied" in result["msg"] and "was not replaced and nothing was changed" in result["msg"]
    assert result["changed"] is False and result["safety_backup"] is None and result["previous_db"] is None
    assert not [sql for sql in fake.sql if "RENAME TO" in sql]  # never swapped
    assert user_dbs(fake) == ["appdb"]  # the scratch database was dropped
    assert os.listdir(str(tmp_path / "safety")) == []


def test_safety_backup_runs_beside_the_load_and_the_swap_waits_for_it(fake, backups, capsys, tmp_path):
    result = run_main(args_for(fake, make_backup(backups), safety_backup_dir=str(tmp_path / "safety")), capsys)
    assert not result.get("failed"), result.get("msg")
    assert os.path.exists(result["safety_backup"]) and result["previous_db"]
    assert "safety_backup" in result["timings"] and "load" in result["timings"]
    calls = [c["tool"] for c in fake.calls() if c["tool"] in ("pg_dump", "psql")]
    assert sorted(calls) == ["pg_dump", "psql"]  # both ran; the swap came after both (fake.script asserts order)


def test_an_existing_safety_backup_name_fails_before_anything(fake, backups, capsys, tmp_path, monkeypatch):
    moment = datetime.datetime(2026, 12, 2, 3, 15, 0, tzinfo=datetime.timezone.utc)
    monkeypatch.setattr(naming, "utc_now", lambda: moment)
    safety_dir = tmp_path / "safety"
    safety_dir.mkdir()
    (safety_dir / "prerestore_20261202_031500.sql.gz").write_bytes(b"someone else's")
    result = run_main(args_for(fake, make_backup(backups), safety_backup_dir=str(safety_dir)), capsys)
    assert result["failed"] and result["error_kind"] == "safety_backup" and "already exists" in result["msg"]
    assert fake.statements("CREATE") == [] and fake.calls("pg_dump") == []
    assert (safety_dir / "prerestore_20261202_031500.sql.gz").read_bytes() == b"someone else's"


def test_safety_backup_dir(fake, backups, capsys, tmp_path):
    result = run_main(args_for(fake, make_backup(backups), safety_backup_dir=str(tmp_path / "safety")), capsys)
    assert os.path.dirname(result["safety_backup"]) == str(tmp_path / "safety")
    proc = subprocess.run(["sha256sum", "-c", os.path.basename(result["safety_backup"]) + ".sha256"],
                          cwd=str(tmp_path / "safety"), capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _custom_archive(backups, name="backup_20261126_020005.dump", compress_zstd=False):
    data = b"PGDMP\x01\x0e\x00" + os.urandom(2000)
    if compress_zstd:
        data = subprocess.run(["zstd", "-q", "-c"], input=data, capture_output=True, check=True).stdout
    return make_backup(backups, name=name, data=data)


@pytest.mark.parametrize("jobs, no_owner", [(1, False), (3, True)])
def test_custom_archive_from_file(fake, backups, capsys, jobs, no_owner):
    src = _custom_archive(backups)
    result = run_main(args_for(fake, src, jobs=jobs, no_owner=no_owner, safety_backup=False,
                               session_settings={}), capsys)
    assert not result.get("failed"), result.get("msg")
    assert result["format"] == {"format": "custom", "compression": "none"}
    verify, restore = fake.calls("pg_restore")
    assert verify["argv"] == ["--file=/dev/null", str(src)]
    argv = restore["argv"]
    assert argv[0] == "--exit-on-error" and argv[-1] == str(src)
    assert re.match(r"^--dbname=appdb_restore_\d{8}_\d{6}$", argv[1])
    assert ("--jobs=3" in argv) == (jobs == 3)
    assert ("--no-owner" in argv) == no_owner
    assert restore["env"]["PGOPTIONS"] is None  # session_settings: {} disables it


def test_custom_zstd_archive_streams_through_zstd(fake, backups, capsys):
    src = _custom_archive(backups, name="backup_20261126_020005.dump.zst", compress_zstd=True)
    result = run_main(args_for(fake, src, jobs=4, safety_backup=False), capsys)
    assert not result.get("failed"), result.get("msg")
    assert result["format"] == {"format": "custom", "compression": "zstd"}
    restore = fake.calls("pg_restore")[-1]
    assert "--jobs=4" not in restore["argv"]  # a stream cannot be restored in parallel
    assert not any(a.endswith(".zst") for a in restore["argv"])
    assert restore["input_sha256"] == hashlib.sha256(
        subprocess.run(["zstd", "-q", "-d", "-c", str(src)], capture_output=True, check=True).stdout).hexdigest()


def test_directory_dump_parallel(fake, backups, capsys):
    src = backups / "backup_20261126_020005.dir"
    src.mkdir()
    (src / "toc.dat").write_bytes(b"PGDMP")
    (src / "3001.dat.gz").write_bytes(gzip.compress(b"1\n"))
    checksum.write_sidecars(str(src), checksum.artifact_digests(str(src))[2])
    result = run_main(args_for(fake, src, jobs=2, safety_backup=False), capsys)
    assert not result.get("failed"), result.get("msg")
    assert result["format"]["format"] == "directory"
    assert result["checksums"] == {"md5": "ok", "sha256": "ok"}
    argv = fake.calls("pg_restore")[-1]["argv"]
    assert "--jobs=2" in argv and argv[-1] == str(src)


def test_plain_uncompressed_reads_file_directly(fake, backups, capsys):
    src = make_backup(backups, name="backup_20261126_020005.sql")
    result = run_main(args_for(fake, src, safety_backup=False), capsys)
    assert not result.get("failed"), result.get("msg")
    assert result["format"] == {"format": "plain", "compression": "none"}
    assert fake.calls("psql")[0]["input_sha256"] == hashlib.sha256(PLAIN).hexdigest()


@pytest.mark.parametrize("kind", ["plain", "custom"])
def test_container_mode_passes_session_settings_and_no_secret(fake, backups, capsys, kind):
    src = make_backup(backups) if kind == "plain" else _custom_archive(backups)
    result = run_main(args_for(fake, src, container="aiteam_db_prod", docker_bin=str(fake.path / "docker"),
                               safety_backup=False, jobs=4), capsys)
    assert not result.get("failed"), result.get("msg")
    docker = fake.calls("docker")
    restore_exec = docker[-1]["argv"]
    names = [restore_exec[i + 1] for i, a in enumerate(restore_exec) if a == "-e"]
    assert "PGOPTIONS" in names and "PGPASSWORD" in names
    assert PASSWORD not in " ".join(restore_exec)
    tool = "psql" if kind == "plain" else "pg_restore"
    ran = fake.calls(tool)[-1]
    assert ran["env"]["PGOPTIONS"] == "-c maintenance_work_mem=512MB -c synchronous_commit=off"
    assert "--jobs=4" not in ran["argv"]  # streamed through docker exec: no parallel restore
    assert not any(a == str(src) for a in ran["argv"])  # the file stays on the host, streamed on stdin


def test_directory_dump_refused_in_container(fake, backups, capsys):
    src = backups / "backup_20261126_020005.dir"
    src.mkdir()
    (src / "toc.dat").write_bytes(b"PGDMP")
    result = run_main(args_for(fake, src, container="db", docker_bin=str(fake.path / "docker")), capsys)
    assert result["failed"] and result["error_kind"] == "bad_backup"
    assert "cannot be read inside a container" in result["msg"]


@pytest.mark.parametrize("settings, expected", [
    ({"synchronous_commit": "off"}, "-c synchronous_commit=off"),
    ({"b": 1, "a": "x y"}, "-c a=x\\ y -c b=1"),
    ({}, ""),
])
def test_pgoptions(settings, expected):
    assert pg_restore_db._pgoptions(settings) == expected


def test_connection_error_is_classified(fake, backups, capsys, monkeypatch):
    def refuse(client, sql, db=None):
        raise PostgresError("psql failed: password authentication failed", kind="auth")

    monkeypatch.setattr(PostgresClient, "query", refuse)
    result = run_main(args_for(fake, make_backup(backups)), capsys)
    assert result["failed"] and result["error_kind"] == "auth"
    assert result["msg"].startswith("restore of appdb failed")
    assert PASSWORD not in json.dumps(result)


def test_field_separator_is_not_in_names():
    assert FIELD_SEP == "\x1f"


def test_two_replace_restores_in_one_second_keep_both_previous_copies(fake, backups, capsys, monkeypatch):
    moment = datetime.datetime(2026, 11, 26, 10, 41, 0, tzinfo=datetime.timezone.utc)
    monkeypatch.setattr(naming, "utc_now", lambda: moment)
    src = make_backup(backups)
    first = run_main(args_for(fake, src, safety_backup=False), capsys)
    second = run_main(args_for(fake, src, safety_backup=False), capsys)
    assert not first.get("failed") and not second.get("failed"), second.get("msg")
    assert first["previous_db"] == "appdb_previous_20261126_104100"
    assert second["previous_db"] == "appdb_previous_20261126_104101"  # the next free name, still parseable
    assert user_dbs(fake) == ["appdb", first["previous_db"], second["previous_db"]]


# -- free space, encrypted safety backups, retention of the copies a restore leaves (issue: nothing lost) ---

def test_refused_before_anything_when_the_server_lacks_room(fake, backups, capsys):
    fake.db_size = 1 << 60
    result = run_main(args_for(fake, make_backup(backups)), capsys)
    assert result["failed"] and result["error_kind"] == "space", result
    assert "nothing was changed" in result["msg"] and "space_check=false" in result["msg"]
    assert "data directory" in result["msg"] or "filesystem" in result["msg"]
    assert fake.statements("CREATE") == [] and fake.calls("pg_dump") == [] and fake.calls("psql") == []
    assert user_dbs(fake) == ["appdb"]


def test_check_mode_reports_the_lack_of_room_too(fake, backups, capsys):
    fake.db_size = 1 << 60
    result = run_main(args_for(fake, make_backup(backups)), capsys, check_mode=True)
    assert result["failed"] and result["error_kind"] == "space"


def test_space_is_measured_inside_the_container(fake, backups, capsys):
    fake.configure(df_avail_kb=1)
    src = make_backup(backups, name="backup_20261126_020005.dump", data=b"PGDMP\x01\x0e\x00" + os.urandom(100))
    result = run_main(args_for(fake, src, container="db1", docker_bin=str(fake.path / "docker")), capsys)
    assert result["failed"] and result["error_kind"] == "space", result
    assert "data directory %s has 0.00 GiB free" % fake.data_directory in result["msg"]
    assert [c["argv"] for c in fake.calls("df")] == [["-Pk", fake.data_directory]]
    assert fake.statements("CREATE") == []


def test_space_check_false_restores_anyway_and_a_remote_server_is_not_checked(fake, backups, capsys):
    fake.db_size = 1 << 60
    result = run_main(args_for(fake, make_backup(backups), space_check=False), capsys)
    assert not result.get("failed"), result.get("msg")
    assert result["space"]["checked"] is False
    result = run_main(args_for(fake, make_backup(backups, name="backup_20261126_020006.sql.gz"),
                               login_host="db.example.internal", safety_backup=False), capsys)
    assert not result.get("failed"), result.get("msg")
    assert result["space"]["server"]["checked"] is False
    assert "not on this host" in result["space"]["server"]["reason"]
    assert "free space of the database server was not checked" in json.dumps(result["warnings"])


def test_space_figures_are_reported(fake, backups, capsys):
    src = make_backup(backups)
    result = run_main(args_for(fake, src), capsys)
    space = result["space"]
    assert space["server"] == dict(path=fake.data_directory, free=space["server"]["free"],
                                   needed=int(1000 * 1.1) + 64 * 1024 * 1024, checked=True)
    assert space["local"]["needed"] == int(os.path.getsize(str(src)) * 1.25) + 16 * 1024 * 1024
    assert space["shared_filesystem"] is True  # tmp_path holds both here
    assert "check" in result["timings"] and "retention" in result["timings"]


def test_safety_backup_is_encrypted_on_the_way(fake, backups, capsys, tmp_path):
    from ansible_collections.atlasia.dr.plugins.module_utils import crypto
    safety_dir = tmp_path / "safety"
    result = run_main(args_for(fake, make_backup(backups), safety_backup_dir=str(safety_dir),
                               encryption_key="the-env-key"), capsys)
    assert not result.get("failed"), result.get("msg")
    path = result["safety_backup"]
    assert path.endswith(".sql.gz.enc") and result["safety_backup_encrypted"] is True
    assert crypto.is_encrypted(path)
    names = sorted(os.listdir(str(safety_dir)))
    assert not [n for n in names if n.endswith(".sql.gz") or n.startswith(".")], names  # no plaintext, no temp
    checksum.verify_sidecars(path, required=True)
    plain = []
    with open(path, "rb") as handle:
        crypto.decrypt_stream(handle, plain.append, "the-env-key")
    text = gzip.decompress(b"".join(plain))
    assert text.endswith(b"-- PostgreSQL database dump complete\n--\n\n")
    manifest = json.loads((safety_dir / naming.manifest_name(
        naming.parse_backup_name(os.path.basename(path)).stem)).read_text())
    assert manifest["database"] == "appdb" and manifest["size"] == os.path.getsize(path)
    assert manifest["encryption"]["key_id"] == crypto.key_id("the-env-key").hex()
    assert manifest["encryption"]["plaintext"]["sha256"] == hashlib.sha256(b"".join(plain)).hexdigest()
    assert manifest["sha256"] == hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_empty_encryption_key_is_refused(fake, backups, capsys):
    result = run_main(args_for(fake, make_backup(backups), encryption_key=""), capsys)
    assert result["failed"] and "encryption_key is empty" in result["msg"]
    assert fake.sql == []


@pytest.mark.parametrize("name", ["safety_backup_retention", "previous_retention"])
@pytest.mark.parametrize("value", [0, -2])
def test_retention_counts_below_one_are_refused(fake, backups, capsys, name, value):
    result = run_main(args_for(fake, make_backup(backups), **{name: value}), capsys)
    assert result["failed"] and result["error_kind"] == "invalid_argument" and name in result["msg"]
    assert fake.sql == []


def _old_safety_copy(directory, stamp, database):
    name = "prerestore_%s.sql.gz" % stamp
    (directory / name).write_bytes(b"old")
    checksum.write_sidecars(str(directory / name), checksum.artifact_digests(str(directory / name))[2])
    (directory / ("prerestore_%s.json" % stamp)).write_text(json.dumps(dict(database=database)))
    return name


def test_older_previous_databases_and_safety_backups_follow_their_retention(fake, backups, capsys, tmp_path):
    safety_dir = tmp_path / "safety"
    safety_dir.mkdir()
    old = [_old_safety_copy(safety_dir, "2026110%d_031500" % day, "appdb") for day in (1, 2, 3, 4)]
    other = _old_safety_copy(safety_dir, "20261001_031500", "otherdb")
    stray = safety_dir / "prerestore_notes.txt"
    stray.write_text("kept")
    for day in (1, 2, 3, 4):
        fake.dbs["appdb_previous_2026110%d_031500" % day] = dict(fake.dbs["appdb"])
    fake.dbs["otherdb_previous_20261101_031500"] = dict(fake.dbs["appdb"])
    result = run_main(args_for(fake, make_backup(backups), safety_backup_dir=str(safety_dir),
                               safety_backup_retention=2, previous_retention=2), capsys)
    assert not result.get("failed"), result.get("msg")
    # the copies this restore made, plus the newest older one of each kind
    assert result["dropped_previous"] == ["appdb_previous_20261103_031500", "appdb_previous_20261102_031500",
                                          "appdb_previous_20261101_031500"]
    assert user_dbs(fake) == sorted(["appdb", result["previous_db"], "appdb_previous_20261104_031500",
                                     "otherdb_previous_20261101_031500"])
    assert result["removed_safety_backups"] == list(reversed(old[:3]))
    left = sorted(os.listdir(str(safety_dir)))
    made = os.path.basename(result["safety_backup"])
    assert made in left and old[3] in left and other in left and stray.name in left
    assert not [n for n in left if any(n.startswith(o) for o in old[:3])]
    checksum.verify_sidecars(str(safety_dir / old[3]), required=True)


def test_retention_minus_one_keeps_every_copy(fake, backups, capsys, tmp_path):
    safety_dir = tmp_path / "safety"
    safety_dir.mkdir()
    for day in (1, 2, 3, 4):
        _old_safety_copy(safety_dir, "2026110%d_031500" % day, "appdb")
        fake.dbs["appdb_previous_2026110%d_031500" % day] = dict(fake.dbs["appdb"])
    result = run_main(args_for(fake, make_backup(backups), safety_backup_dir=str(safety_dir),
                               safety_backup_retention=-1, previous_retention=-1), capsys)
    assert result["dropped_previous"] == [] and result["removed_safety_backups"] == []
    assert len([n for n in fake.dbs if n.startswith("appdb_previous_")]) == 5


def test_a_failed_restore_removes_no_older_copy(fake, backups, capsys, tmp_path):
    safety_dir = tmp_path / "safety"
    safety_dir.mkdir()
    for day in (1, 2, 3, 4):
        _old_safety_copy(safety_dir, "2026110%d_031500" % day, "appdb")
        fake.dbs["appdb_previous_2026110%d_031500" % day] = dict(fake.dbs["appdb"])
    fake.configure(restore_fail=True)
    result = run_main(args_for(fake, make_backup(backups), safety_backup_dir=str(safety_dir),
                               safety_backup_retention=1, previous_retention=1), capsys)
    assert result["failed"]
    assert len([n for n in fake.dbs if n.startswith("appdb_previous_")]) == 4
    assert len([n for n in os.listdir(str(safety_dir)) if n.endswith(".json")]) == 5  # four old + this one


# --- database-level properties -----------------------------------------------------------------------------
BACKED_UP = dict(owner="gis_owner", encoding="UTF8", locale_provider="icu", collate="C.UTF-8", ctype="C.UTF-8",
                 icu_locale="de-DE", tablespace="pg_default", connection_limit=25, comment="gis",
                 acl=[dict(grantor="gis_owner", grantee="gis_reader", privilege="CONNECT", grantable=False)],
                 settings=["search_path=app, public"], role_settings={"gis_reader": ["work_mem=8MB"]})


def _applied(fake):
    return [s for s in fake.sql if s.startswith("BEGIN;") and "pg_terminate_backend" not in s]


def test_properties_come_from_the_manifest_beside_the_backup(fake, backups, capsys):
    src = make_backup(backups)
    (backups / "backup_20261126_020005.json").write_text(json.dumps(dict(database_properties=BACKED_UP)))
    result = run_main(args_for(fake, src, mode="new", db="newdb"), capsys)
    assert not result.get("failed"), result.get("msg")
    assert result["properties_source"] == "backup"
    create = fake.statements("CREATE DATABASE")[0]
    assert "OWNER \"gis_owner\"" in create and "LOCALE_PROVIDER icu ICU_LOCALE 'de-DE'" in create
    applied = _applied(fake)
    assert len(applied) == 1 and 'ALTER DATABASE "newdb" CONNECTION LIMIT 25;' in applied[0]
    assert 'GRANT CONNECT ON DATABASE "newdb" TO "gis_reader";' in applied[0]
    # applied after the load, before the row counts
    assert fake.sql.index(applied[0]) < fake.sql.index([s for s in fake.sql if "count(*)" in s][0])


def test_properties_option_wins_and_owner_replaces_the_original(fake, backups, capsys):
    src = make_backup(backups)
    result = run_main(args_for(fake, src, database_properties=BACKED_UP, owner="other", safety_backup=False), capsys)
    assert not result.get("failed"), result.get("msg")
    assert "OWNER \"other\"" in fake.statements("CREATE DATABASE")[0]
    applied = _applied(fake)[0]
    assert 'REVOKE ALL ON DATABASE' in applied and "SET ROLE" not in applied and "gis_owner" not in applied


def test_old_backup_takes_the_properties_of_the_replaced_database(fake, backups, capsys):
    result = run_main(args_for(fake, make_backup(backups), safety_backup=False), capsys)
    assert result["properties_source"] == "existing database"
    assert "OWNER \"app_owner\"" in fake.statements("CREATE DATABASE")[0]


def test_missing_roles_fail_before_anything_changes(fake, backups, capsys):
    fake.missing_roles = {"gis_owner", "gis_reader"}
    before = dict(fake.dbs)
    result = run_main(args_for(fake, make_backup(backups), database_properties=BACKED_UP), capsys)
    assert result["failed"] and result["error_kind"] == "missing_role"
    assert result["missing_roles"] == ["gis_owner", "gis_reader"] and "globals" in result["msg"]
    assert fake.dbs == before and fake.calls("pg_dump") == [] and not fake.statements("CREATE DATABASE")


# --- no_acl / no_owner: a foreign cluster on purpose -------------------------------------------------------
def test_no_acl_passes_to_pg_restore_and_keeps_default_database_grants(fake, backups, capsys):
    src = _custom_archive(backups)
    result = run_main(args_for(fake, src, no_acl=True, safety_backup=False, database_properties=BACKED_UP), capsys)
    assert not result.get("failed"), result.get("msg")
    argv = fake.calls("pg_restore")[1]["argv"]
    assert "--no-acl" in argv and "--no-owner" not in argv
    applied = _applied(fake)[0]
    assert "GRANT" not in applied and "REVOKE" not in applied and "CONNECTION LIMIT 25" in applied


def test_no_acl_with_a_plain_dump_is_refused_before_anything_changes(fake, backups, capsys):
    before = dict(fake.dbs)
    result = run_main(args_for(fake, make_backup(backups), no_acl=True), capsys)
    assert result["failed"] and result["error_kind"] == "request" and "custom" in result["msg"]
    assert fake.dbs == before and fake.calls("pg_dump") == [] and not fake.statements("CREATE DATABASE")


def test_foreign_cluster_on_purpose_leaves_out_settings_of_missing_roles(fake, backups, capsys):
    fake.missing_roles = {"gis_owner", "gis_reader"}
    src = _custom_archive(backups)
    result = run_main(args_for(fake, src, no_acl=True, no_owner=True, database_properties=BACKED_UP, db="newdb",
                               mode="new", safety_backup=False), capsys)
    assert not result.get("failed"), result.get("msg")
    assert result["skipped_role_settings"] == {"gis_reader": ["work_mem=8MB"]}
    assert 'OWNER "postgres"' in fake.statements("CREATE DATABASE")[0]  # login_user
    applied = _applied(fake)[0]
    assert "gis_" not in applied and "search_path" in applied
    argv = fake.calls("pg_restore")[1]["argv"]
    assert "--no-acl" in argv and "--no-owner" in argv


def test_role_settings_left_out_with_a_warning_when_the_login_may_not_set_them(fake, backups, capsys, monkeypatch):
    from ansible.module_utils.common import warnings as ansible_warnings
    monkeypatch.setattr(ansible_warnings, "_global_warnings", {})  # this test's warning stays in this test
    fake.may_set_role_settings = False
    result = run_main(args_for(fake, make_backup(backups), database_properties=BACKED_UP, safety_backup=False), capsys)
    assert not result.get("failed"), result.get("msg")
    assert result["skipped_role_settings"] == {"gis_reader": ["work_mem=8MB"]}
    assert "IN DATABASE" in json.dumps(result.get("warnings", []))
    applied = _applied(fake)[0]
    assert "ALTER ROLE" not in applied and "search_path" in applied


@pytest.mark.parametrize("value", [0, 10])
def test_safety_backup_compression_level_outside_gzip_levels_is_refused(fake, backups, capsys, value):
    result = run_main(args_for(fake, make_backup(backups), safety_backup_compression_level=value), capsys)
    assert result["failed"] and result["error_kind"] == "invalid_argument"
    assert "safety_backup_compression_level" in result["msg"]
    assert fake.sql == []
