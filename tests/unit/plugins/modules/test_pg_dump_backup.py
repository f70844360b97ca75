# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of pg_dump_backup: ``main()`` driven with ``patch_module_args``, no database server.

``pg_dump`` and ``pg_restore`` are small fake programs in a temporary ``pg_bin_dir`` (and a fake ``docker`` for
the container path) whose behaviour each test chooses: a complete dump, a pg_dump that dies mid-stream, is
killed, exits 0 without its trailer... The real pipeline, compressors (gzip/pigz/zstd), checksums and atomic
writes run. Queries (server version, table estimates) are mocked. The real server is exercised by
tests/integration/test_pg_dump_backup.py.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import stat
import subprocess
import sys

import pytest

from ansible_collections.atlasia.dr.plugins.module_utils import dbprops
from ansible_collections.atlasia.dr.plugins.module_utils.postgres import PostgresClient, PostgresError
from ansible_collections.atlasia.dr.plugins.modules import pg_dump_backup
from tests.support.modules import run_module

PASSWORD = "unit-test-secret-Pw"
TS = "20261126_020005"
PROPERTIES = dict(owner="app_owner", encoding="UTF8", locale_provider="icu", collate="C.UTF-8", ctype="C.UTF-8",
                  icu_locale="und", tablespace="pg_default", connection_limit=20, comment="the application",
                  acl=None, settings=["search_path=app, public"], role_settings={})

FAKE_PG = r'''#!{python}
"""Fake pg_dump / pg_restore for unit tests; behaviour from config.json next to this file."""
import json, os, signal, sys, time
here = os.path.dirname(os.path.abspath(__file__))
tool = os.path.basename(sys.argv[0])
cfg = json.load(open(os.path.join(here, "config.json")))
with open(os.path.join(here, "calls.jsonl"), "a") as log:
    log.write(json.dumps({{"tool": tool, "argv": sys.argv[1:],
                          "env": {{k: os.environ.get(k) for k in ("PGPASSWORD", "PGDATABASE", "PGHOST", "PGPORT",
                                                                 "PGUSER", "PGOPTIONS")}}}}) + "\n")
out = sys.stdout.buffer
BODY = b"".join(b"INSERT INTO users VALUES (%d, 'user %d');\n" % (i, i) for i in range(20000))
TRAILER = b"\n--\n-- PostgreSQL database dump complete\n--\n\n"
if tool == "pg_dump":
    mode = cfg.get("dump", "ok")
    fmt = [a.split("=", 1)[1] for a in sys.argv if a.startswith("--format=")][0]
    if mode == "auth":
        sys.stderr.write('pg_dump: error: connection to server at "127.0.0.1", port 5432 failed: FATAL:  '
                         'password authentication failed for user "postgres"\n')
        sys.exit(1)
    if mode == "empty":
        sys.exit(0)
    if fmt == "directory":
        target = [a.split("=", 1)[1] for a in sys.argv if a.startswith("--file=")][0]
        os.mkdir(target, 0o700)
        with open(os.path.join(target, "toc.dat"), "wb") as f:
            f.write(b"PGDMP directory toc\nEND-OF-ARCHIVE")
        with open(os.path.join(target, "3001.dat"), "wb") as f:
            f.write(BODY)
        sys.exit(0)
    head = b"PGDMP\x01\x0e\x00" if fmt == "custom" else b"--\n-- PostgreSQL database dump\n--\n\n"
    out.write(head + BODY[: len(BODY) // 2])
    out.flush()
    if mode == "die":
        sys.stderr.write('pg_dump: error: Dumping the contents of table "users" failed: PQgetResult() failed.\n'
                         'pg_dump: error: Error message from server: server closed the connection unexpectedly\n')
        sys.exit(1)
    if mode == "killed":
        os.kill(os.getpid(), signal.SIGKILL)
    out.write(BODY[len(BODY) // 2:])
    if mode != "no_trailer":
        out.write(b"\nEND-OF-ARCHIVE" if fmt == "custom" else TRAILER)
    sys.exit(0)
if tool == "pg_restore":
    files = [a for a in sys.argv[1:] if not a.startswith("-")]
    if files and os.path.isdir(files[0]):
        ok = os.path.exists(os.path.join(files[0], "toc.dat"))
    else:
        data = open(files[0], "rb").read() if files else sys.stdin.buffer.read()
        ok = data.startswith(b"PGDMP") and data.endswith(b"END-OF-ARCHIVE")
    if not ok:
        sys.stderr.write("pg_restore: error: could not read from input file: end of file\n")
        sys.exit(1)
    sys.exit(0)
if tool == "docker":
    # docker exec [-i] (-e NAME)... CONTAINER PROGRAM ARGS...: run PROGRAM from this directory
    args = sys.argv[2:]
    if args and args[0] == "-i":
        args = args[1:]
    while args and args[0] == "-e":
        if "=" in args[1] or args[1] not in os.environ:
            sys.stderr.write("bad -e %s\n" % args[1])
            sys.exit(125)
        args = args[2:]
    container, program = args[0], args[1]
    if container != cfg.get("container", "db"):
        sys.stderr.write("Error: No such container: %s\n" % container)
        sys.exit(1)
    os.execv(os.path.join(here, program), [os.path.join(here, program)] + args[2:])
sys.exit(99)
'''


class FakePg(object):
    def __init__(self, path):
        self.path = path
        path.mkdir()
        script = FAKE_PG.format(python=sys.executable)
        for tool in ("pg_dump", "pg_restore", "docker"):
            target = path / tool
            target.write_text(script)
            target.chmod(0o755)
        self.configure()

    def configure(self, **cfg):
        (self.path / "config.json").write_text(json.dumps(cfg))

    def calls(self, tool=None):
        log = self.path / "calls.jsonl"
        if not log.exists():
            return []
        calls = [json.loads(line) for line in log.read_text().splitlines()]
        return [c for c in calls if tool is None or c["tool"] == tool]


@pytest.fixture
def fake_pg(tmp_path):
    return FakePg(tmp_path / "bin")


@pytest.fixture
def queries(monkeypatch):
    """Mock the SQL queries the module runs through psql; records them."""
    seen = []

    def server_version_text(self, db=None):
        seen.append(("server_version_text", db))
        if getattr(self, "_fail", None):
            raise self._fail
        return "15.18 (Debian 15.18-0+deb12u1)"

    def table_estimates(self, db):
        seen.append(("table_estimates", db))
        return [dict(schema="public", name="users", rows_estimate=20000)]

    def capture(client, name, db=None):
        seen.append(("database_properties", name))
        return dict(PROPERTIES)

    monkeypatch.setattr(PostgresClient, "server_version_text", server_version_text)
    monkeypatch.setattr(PostgresClient, "table_estimates", table_estimates)
    monkeypatch.setattr(dbprops, "capture", capture)
    return seen


@pytest.fixture
def dest(tmp_path):
    return tmp_path / "backups"


def run_main(args, capsys, check_mode=False):
    return run_module(pg_dump_backup.main, args, capsys, check_mode=check_mode)


def base_args(fake_pg, dest, **extra):
    args = dict(db="appdb", login_host="127.0.0.1", port=5433, login_password=PASSWORD,
                pg_bin_dir=str(fake_pg.path), dest=str(dest), timestamp=TS)
    args.update(extra)
    return args


def listing(directory):
    return sorted(os.listdir(str(directory))) if os.path.isdir(str(directory)) else []


@pytest.mark.parametrize("fmt, comp, ext, native", [
    ("plain", "gzip", "sql.gz", None),
    ("plain", "zstd", "sql.zst", None),
    ("plain", "none", "sql", None),
    ("custom", "gzip", "dump", "--compress=5"),
    ("custom", "none", "dump", "--compress=0"),
    ("custom", "zstd", "dump.zst", "--compress=0"),
])
def test_file_formats_written_verified_and_checksummed(fake_pg, queries, dest, capsys, fmt, comp, ext, native):
    result = run_main(base_args(fake_pg, dest, format=fmt, compression=comp), capsys)
    assert result["changed"] is True and not result.get("failed")
    name = "backup_%s.%s" % (TS, ext)
    path = dest / name
    assert result["path"] == str(path)
    assert listing(dest) == sorted([name, name + ".md5", name + ".sha256", "backup_%s.json" % TS])
    data = path.read_bytes()
    assert result["size"] == len(data)
    assert result["md5"] == hashlib.md5(data).hexdigest()
    assert result["sha256"] == hashlib.sha256(data).hexdigest()
    assert (dest / (name + ".md5")).read_text() == "%s  %s\n" % (result["md5"], name)
    assert (dest / (name + ".sha256")).read_text() == "%s  %s\n" % (result["sha256"], name)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(dest.stat().st_mode) == 0o700
    manifest = json.loads((dest / ("backup_%s.json" % TS)).read_text())
    assert manifest == result["manifest_data"]
    assert manifest["artifact"] == name
    assert (manifest["database"], manifest["format"], manifest["compression"]) == ("appdb", fmt, comp)
    assert manifest["server_version"].startswith("15.18") and result["server_version"] == manifest["server_version"]
    assert manifest["database_properties"] == PROPERTIES
    assert manifest["tables"] == [dict(schema="public", name="users", rows_estimate=20000)]
    assert manifest["size"] == len(data) and manifest["sha256"] == result["sha256"]
    assert manifest["started"].startswith("20") and manifest["finished"] >= manifest["started"]
    if fmt == "plain":
        assert manifest["uncompressed_size"] > 0
    # content really compressed as announced
    if comp == "gzip" and fmt == "plain":
        assert gzip.decompress(data).endswith(b"-- PostgreSQL database dump complete\n--\n\n")
    if comp == "zstd":
        assert subprocess.run(["zstd", "-q", "-t", str(path)], check=False).returncode == 0
    dump_call = fake_pg.calls("pg_dump")[0]
    assert "--format=%s" % fmt in dump_call["argv"] and "--no-password" in dump_call["argv"]
    if native:
        assert native in dump_call["argv"]
    assert dump_call["env"]["PGPASSWORD"] == PASSWORD and dump_call["env"]["PGDATABASE"] == "appdb"
    assert PASSWORD not in " ".join(dump_call["argv"])
    if fmt == "custom":
        assert fake_pg.calls("pg_restore")[0]["argv"][0] == "--file=/dev/null"  # archive read back whole


def test_directory_format_parallel(fake_pg, queries, dest, capsys):
    result = run_main(base_args(fake_pg, dest, format="directory", jobs=2, compression="gzip"), capsys)
    name = "backup_%s.dir" % TS
    assert result["path"] == str(dest / name)
    assert listing(dest) == sorted([name, name + ".md5", name + ".sha256", "backup_%s.json" % TS])
    argv = fake_pg.calls("pg_dump")[0]["argv"]
    assert "--jobs=2" in argv and "--format=directory" in argv and "--compress=5" in argv
    temp_target = [a.split("=", 1)[1] for a in argv if a.startswith("--file=")][0]
    assert os.path.basename(temp_target).startswith(".%s.tmp-" % name)  # dumped under a hidden name
    sidecar = (dest / (name + ".md5")).read_text()
    assert ".tmp-" not in sidecar
    assert sorted(line.split("  ")[1] for line in sidecar.splitlines()) == [name + "/3001.dat", name + "/toc.dat"]
    proc = subprocess.run(["md5sum", "-c", name + ".md5"], cwd=str(dest), capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert result["size"] == sum(f.stat().st_size for f in (dest / name).iterdir())
    assert result["md5"] == hashlib.md5(sidecar.encode()).hexdigest()


@pytest.mark.parametrize("behaviour, kind, message", [
    ("die", "error", "pg_dump failed (exit status 1)"),
    ("killed", "error", "pg_dump failed (killed by signal 9)"),
    ("no_trailer", "verification", "lacks the '-- PostgreSQL database dump complete' line"),
    # nothing at all (none), or a compressed empty stream: either way refused
    ("empty", "verification", "pg_dump produced no output|lacks the '-- PostgreSQL database dump complete' line"),
    ("auth", "auth", "password authentication failed"),
])
@pytest.mark.parametrize("comp", ["gzip", "zstd", "none"])
def test_failed_dump_leaves_nothing(fake_pg, queries, dest, capsys, behaviour, kind, message, comp):
    fake_pg.configure(dump=behaviour)
    result = run_main(base_args(fake_pg, dest, compression=comp), capsys)
    assert result["failed"] is True
    assert result["error_kind"] == kind, result["msg"]
    assert re.search(message.replace("(", r"\(").replace(")", r"\)"), result["msg"]), result["msg"]
    assert result["msg"].startswith("backup of appdb failed and nothing was written")
    assert listing(dest) == []  # no final name, no sidecar, no manifest, no temporary file


@pytest.mark.parametrize("behaviour", ["die", "killed", "no_trailer"])
def test_failed_custom_dump_leaves_nothing(fake_pg, queries, dest, capsys, behaviour):
    fake_pg.configure(dump=behaviour)
    result = run_main(base_args(fake_pg, dest, format="custom"), capsys)
    assert result["failed"] is True
    if behaviour == "no_trailer":
        assert result["error_kind"] == "verification"
        assert "not a complete, readable custom-format archive" in result["msg"]
    assert listing(dest) == []


def test_failed_directory_dump_leaves_nothing(fake_pg, queries, dest, capsys):
    fake_pg.configure(dump="auth")
    result = run_main(base_args(fake_pg, dest, format="directory"), capsys)
    assert result["failed"] and result["error_kind"] == "auth"
    assert listing(dest) == []


def test_check_mode_writes_nothing(fake_pg, queries, dest, capsys):
    result = run_main(base_args(fake_pg, dest), capsys, check_mode=True)
    assert result["changed"] is True and not result.get("failed")
    assert result["path"] == str(dest / ("backup_%s.sql.gz" % TS))
    assert result["manifest"] == str(dest / ("backup_%s.json" % TS))
    assert result["size"] == 0
    assert result["server_version"].startswith("15.18")
    assert not dest.exists()
    assert fake_pg.calls() == []
    assert queries == [("server_version_text", None)]


def test_check_mode_reports_connection_errors(fake_pg, queries, dest, capsys, monkeypatch):
    monkeypatch.setattr(PostgresClient, "_fail", PostgresError("psql failed: password authentication failed",
                                                               kind="auth"), raising=False)
    result = run_main(base_args(fake_pg, dest), capsys, check_mode=True)
    assert result["failed"] and result["error_kind"] == "auth"
    assert not dest.exists()


def test_connection_error_before_dump(fake_pg, queries, dest, capsys, monkeypatch):
    monkeypatch.setattr(PostgresClient, "_fail", PostgresError('database "appdb" does not exist',
                                                               kind="no_database"), raising=False)
    result = run_main(base_args(fake_pg, dest), capsys)
    assert result["failed"] and result["error_kind"] == "no_database"
    assert fake_pg.calls("pg_dump") == []
    assert listing(dest) == []


@pytest.mark.parametrize("extra, message", [
    (dict(format="directory", container="db"), "cannot be used with container"),
    (dict(format="directory", compression="zstd"), "format=directory supports compression gzip or none"),
    (dict(format="plain", jobs=2), "jobs > 1 needs format=directory"),
    (dict(format="custom", jobs=4), "jobs > 1 needs format=directory"),
    (dict(compression="gzip", compression_level=10), "compression_level 10 is out of range for gzip"),
    (dict(compression="zstd", compression_level=20), "compression_level 20 is out of range for zstd"),
    (dict(compression="gzip", compression_level=-1), "out of range"),
    (dict(format="tar"), "value of format must be one of"),
    (dict(timestamp="2026-11-26 02:00"), "invalid prefix, timestamp or mode"),
    (dict(prefix="backup_2024"), "invalid prefix, timestamp or mode"),
    (dict(prefix="../etc"), "invalid prefix, timestamp or mode"),
    (dict(mode="u=rw"), "invalid prefix, timestamp or mode"),
])
def test_rejected_options(fake_pg, queries, dest, capsys, extra, message):
    result = run_main(base_args(fake_pg, dest, **extra), capsys)
    assert result["failed"] is True
    assert message in result["msg"]
    assert not dest.exists()
    assert fake_pg.calls() == []


def test_never_overwrites_an_existing_backup(fake_pg, queries, dest, capsys):
    dest.mkdir()
    existing = dest / ("backup_%s.sql.gz" % TS)
    existing.write_bytes(b"precious")
    result = run_main(base_args(fake_pg, dest), capsys)
    assert result["failed"] and result["error_kind"] == "verification"
    assert "already exists" in result["msg"]
    assert existing.read_bytes() == b"precious"
    assert listing(dest) == [existing.name]
    assert fake_pg.calls("pg_dump") == []


def test_schema_kind_defaults(fake_pg, queries, dest, capsys):
    result = run_main(base_args(fake_pg, dest, kind="schema"), capsys)
    name = "schema_%s.sql" % TS
    assert result["path"] == str(dest / name)
    assert "--schema-only" in fake_pg.calls("pg_dump")[0]["argv"]
    assert result["manifest_data"]["tables"] == []
    assert result["manifest_data"]["compression"] == "none"
    assert result["manifest_data"]["compression_level"] is None
    assert (dest / name).read_bytes().startswith(b"--\n-- PostgreSQL database dump")
    assert ("table_estimates", "appdb") not in queries


def test_prefix_mode_options_and_default_timestamp(fake_pg, queries, dest, capsys):
    args = base_args(fake_pg, dest, prefix="prerestore", mode="0640", dump_options=["--exclude-table-data=audit_log"],
                     compression_level=1)
    del args["timestamp"]
    result = run_main(args, capsys)
    name = os.path.basename(result["path"])
    assert name.startswith("prerestore_") and name.endswith(".sql.gz")
    assert result["manifest"] == str(dest / (name[: -len(".sql.gz")] + ".json"))
    assert stat.S_IMODE(os.stat(result["path"]).st_mode) == 0o640
    assert fake_pg.calls("pg_dump")[0]["argv"][-1] == "--exclude-table-data=audit_log"
    assert result["manifest_data"]["compression_level"] == 1


def test_stale_temporaries_of_dead_runs_are_removed(fake_pg, queries, dest, capsys):
    dest.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    stale = dest / (".backup_20261125_020000.sql.gz.tmp-%d-0a1b2c3d" % proc.pid)
    stale.write_bytes(b"half a dump")
    result = run_main(base_args(fake_pg, dest), capsys)
    assert not result.get("failed")
    assert not stale.exists()


def test_container_mode_runs_pg_dump_through_docker_exec(fake_pg, queries, dest, capsys):
    fake_pg.configure(container="aiteam_db_prod")
    result = run_main(base_args(fake_pg, dest, container="aiteam_db_prod", docker_bin=str(fake_pg.path / "docker"),
                                format="custom", compression="zstd"), capsys)
    assert not result.get("failed"), result.get("msg")
    docker_calls = fake_pg.calls("docker")
    assert len(docker_calls) == 2  # pg_dump, then pg_restore reading the archive back
    argv = docker_calls[0]["argv"]
    assert argv[:2] == ["exec", "-i"]
    names = [argv[i + 1] for i, a in enumerate(argv) if a == "-e"]
    assert "PGPASSWORD" in names and "PGDATABASE" in names
    assert PASSWORD not in " ".join(argv)
    assert argv[argv.index("aiteam_db_prod") + 1] == "pg_dump"
    assert docker_calls[1]["argv"][-2:] == ["pg_restore", "--file=/dev/null"]  # archive streamed on stdin
    assert result["manifest_data"]["container"] == "aiteam_db_prod"


def test_container_missing(fake_pg, queries, dest, capsys):
    fake_pg.configure(container="other")
    result = run_main(base_args(fake_pg, dest, container="aiteam_db_prod", docker_bin=str(fake_pg.path / "docker")),
                      capsys)
    assert result["failed"] and result["error_kind"] == "no_container"
    assert listing(dest) == []


def test_missing_pg_dump_in_pg_bin_dir(fake_pg, queries, dest, capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_main(base_args(fake_pg, dest, pg_bin_dir=str(tmp_path / "empty")), capsys)
    assert result["failed"] and "pg_dump not found in pg_bin_dir" in result["msg"]
    assert listing(dest) == []


def test_password_is_no_log(fake_pg, queries, dest, capsys):
    result = run_main(base_args(fake_pg, dest), capsys)
    assert PASSWORD not in json.dumps(result)
