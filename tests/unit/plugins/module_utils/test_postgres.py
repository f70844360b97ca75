# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of plugins/module_utils/postgres.py: argv/env building, error classification, result parsing.

No server here: ``run_command`` is replaced by a recorder; the real server is exercised by
tests/integration/test_pg_*.py.
"""

from __future__ import annotations

import errno
import json
import os
import stat

import pytest

from ansible_collections.atlasia.dr.plugins.module_utils import postgres
from ansible_collections.atlasia.dr.plugins.module_utils.pipeline import PipelineError

SECRET = "s3cr3t-pässword"


class Failed(Exception):
    def __init__(self, kwargs):
        super(Failed, self).__init__(kwargs.get("msg"))
        self.kwargs = kwargs


class FakeModule(object):
    def __init__(self, replies=None, **params):
        self.params = dict(db="appdb", login_host="127.0.0.1", login_unix_socket=None, port=5433,
                           login_user="postgres", login_password=SECRET, ssl_mode="prefer", ca_cert=None,
                           connect_timeout=7, container=None, docker_bin=None, pg_bin_dir=None)
        self.params.update(params)
        self.replies = list(replies or [])
        self.calls = []

    def get_bin_path(self, name, required=False):
        return "/usr/bin/" + name

    def run_command(self, argv, environ_update=None, data=None, binary_data=False, check_rc=False):
        self.calls.append(dict(argv=argv, env=environ_update, data=data, binary_data=binary_data))
        return self.replies.pop(0) if self.replies else (0, "", "")

    def fail_json(self, **kwargs):
        raise Failed(kwargs)


@pytest.fixture(autouse=True)
def no_debian_wrapper(tmp_path, monkeypatch):
    """The host's own /usr/lib/postgresql (when there is one) stays out of these tests."""
    monkeypatch.setattr(postgres, "PG_LIB_DIR", str(tmp_path / "no-postgresql-here"))
    monkeypatch.setattr(postgres, "_UNWRAPPED", {})


def test_argument_spec_matches_community_postgresql_names():
    spec = postgres.postgres_argument_spec()
    assert spec["db"]["required"] is True
    assert set(spec["db"]["aliases"]) == {"login_db", "name"}
    assert spec["login_password"]["no_log"] is True
    assert spec["port"]["default"] == 5432
    assert spec["login_user"]["default"] == "postgres"
    assert spec["connect_timeout"]["default"] == 10
    assert set(spec) >= {"login_host", "login_unix_socket", "ssl_mode", "ca_cert", "container", "docker_bin",
                         "pg_bin_dir"}


@pytest.mark.parametrize("name, quoted", [
    ("appdb", '"appdb"'),
    ('we"ird', '"we""ird"'),
    ("Mixed Case", '"Mixed Case"'),
])
def test_quote_ident(name, quoted):
    assert postgres.quote_ident(name) == quoted


@pytest.mark.parametrize("value, quoted", [("a", "'a'"), ("O'Brien", "'O''Brien'"), ("", "''")])
def test_quote_literal(value, quoted):
    assert postgres.quote_literal(value) == quoted


# Real libpq 15 / pg_dump 15 / docker messages.
@pytest.mark.parametrize("stderr, kind", [
    ('psql: error: connection to server at "127.0.0.1", port 5433 failed: FATAL:  password authentication failed '
     'for user "postgres"', "auth"),
    ('pg_dump: error: connection to server at "127.0.0.1", port 5433 failed: fe_sendauth: no password supplied',
     "auth"),
    ('psql: error: connection to server at "127.0.0.1", port 5433 failed: FATAL:  role "nobody" does not exist',
     "auth"),
    ('psql: error: connection to server at "127.0.0.1", port 1 failed: Connection refused\n'
     '\tIs the server running on that host and accepting TCP/IP connections?', "unreachable"),
    ('psql: error: connection to server at "127.0.0.1", port 5433 failed: timeout expired', "unreachable"),
    ('psql: error: could not translate host name "db.invalid" to address: Name or service not known', "unreachable"),
    ('psql: error: connection to server on socket "/run/postgresql/.s.PGSQL.5432" failed: No such file or directory\n'
     '\tIs the server running locally and accepting connections on that socket?', "unreachable"),
    ('pg_dump: error: connection to server at "127.0.0.1", port 5433 failed: FATAL:  database "nope" does not exist',
     "no_database"),
    ("Error: No such container: aiteam_db_prod", "no_container"),
    ("Error response from daemon: Container 0123abcd is not running", "no_container"),
    ("pg_dump: error: query failed: ERROR:  permission denied for table secrets", "permission"),
    ("ERROR:  must be owner of database appdb", "permission"),
    ("pg_restore: error: could not write to output file: No space left on device", "disk_full"),
    ("ERROR:  could not extend file \"base/16384/16385\": No space left on device", "disk_full"),
    ("ERROR:  syntax error at or near \"SELEC\"", "error"),
    # SQL inside a dump naming a role the server lacks is not a login failure
    ('psql:<stdin>:40: ERROR:  role "gis_owner" does not exist', "missing_role"),
    ('pg_restore: error: could not execute query: ERROR:  role "gis_owner" does not exist\n'
     'Command was: ALTER TABLE public.places OWNER TO gis_owner;', "missing_role"),
    ('pg_restore: error: could not execute query: ERROR:  could not open extension control file '
     '"/usr/share/postgresql/15/extension/postgis.control": No such file or directory\n'
     'Command was: CREATE EXTENSION IF NOT EXISTS postgis WITH SCHEMA public;', "missing_extension"),
    ('ERROR:  extension "vector" is not available', "missing_extension"),
    ('ERROR:  invalid LC_COLLATE locale name: "de_DE.UTF-8"', "missing_locale"),
    ('ERROR:  invalid locale name: "fr_FR.UTF-8"', "missing_locale"),
    ("pg_dump: error: aborting because of server version mismatch", "version_mismatch"),
    ("pg_restore: error: unsupported version (1.16) in file header", "version_mismatch"),
    ('psql:<stdin>:6: ERROR:  unrecognized configuration parameter "transaction_timeout"', "version_mismatch"),
    ("", "error"),
    (None, "error"),
])
def test_classify(stderr, kind):
    got_kind, hint = postgres.classify(stderr)
    assert got_kind == kind
    assert (hint is None) == (kind == "error")


def test_hints_name_the_cause():
    kind, hint = postgres.classify('psql:<stdin>:40: ERROR:  role "gis_owner" does not exist')
    assert 'role "gis_owner"' in hint and "pg_globals" in hint and "authentication" not in hint
    kind, hint = postgres.classify('ERROR:  could not open extension control file '
                                   '"/usr/share/postgresql/15/extension/postgis_topology.control": No such file')
    assert '"postgis_topology"' in hint and "apt-get install postgresql-15-postgis-3)" in hint
    kind, hint = postgres.classify('ERROR:  invalid LC_COLLATE locale name: "de_DE.UTF-8"')
    assert "locale-gen" in hint


@pytest.mark.parametrize("name, major, package", [
    ("postgis", 15, "postgresql-15-postgis-3"), ("postgis_topology", "16", "postgresql-16-postgis-3"),
    ("address_standardizer", 15, "postgresql-15-postgis-3"), ("vector", 15, "postgresql-15-pgvector"),
    ("pg_cron", None, "postgresql-<major>-cron"),
    ("pg_foo", 15, "postgresql-15 (contrib) or the package named postgresql-15-pg-foo"),
])
def test_extension_package(name, major, package):
    assert postgres.extension_package(name, major) == package


def test_env_carries_connection_and_drops_empty_values():
    client = postgres.PostgresClient(FakeModule())
    env = client.env({"PGDATABASE": "appdb", "EMPTY": "", "NONE": None})
    assert env == {"PGHOST": "127.0.0.1", "PGPORT": "5433", "PGUSER": "postgres", "PGPASSWORD": SECRET,
                   "PGSSLMODE": "prefer", "PGCONNECT_TIMEOUT": "7", "PGAPPNAME": "atlasia.dr", "PGDATABASE": "appdb"}
    assert all(isinstance(v, str) for v in env.values())


def test_env_unix_socket_wins_over_host_and_no_password():
    client = postgres.PostgresClient(FakeModule(login_unix_socket="/run/pg", login_password=None, ca_cert="/ca.pem"))
    env = client.env()
    assert env["PGHOST"] == "/run/pg"
    assert "PGPASSWORD" not in env
    assert env["PGSSLROOTCERT"] == "/ca.pem"


def test_command_on_host_keeps_secrets_out_of_argv():
    client = postgres.PostgresClient(FakeModule())
    argv, env = client.command("pg_dump", ["--format=plain"], {"PGDATABASE": "appdb"})
    assert argv == ["/usr/bin/pg_dump", "--format=plain"]
    assert env["PGPASSWORD"] == SECRET
    assert SECRET not in " ".join(argv)


def test_command_in_container_passes_variable_names_only():
    client = postgres.PostgresClient(FakeModule(container="aiteam_db_prod"))
    argv, env = client.command("pg_dump", ["--format=custom"], {"PGDATABASE": "appdb"})
    assert argv[:3] == ["/usr/bin/docker", "exec", "-i"]
    assert argv[-3:] == ["aiteam_db_prod", "pg_dump", "--format=custom"]
    names = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-e"]
    assert sorted(names) == sorted(env)
    assert "PGPASSWORD" in names and "PGDATABASE" in names
    assert not any("=" in name for name in names)  # `-e NAME`: value taken from the docker CLI's environment
    assert SECRET not in " ".join(argv)


def test_command_in_container_not_interactive_and_custom_docker_bin():
    client = postgres.PostgresClient(FakeModule(container="c1", docker_bin="/opt/docker"))
    argv, env = client.command("psql", ["-c", "SELECT 1"], interactive=False)
    assert argv[:2] == ["/opt/docker", "exec"]
    assert "-i" not in argv
    assert argv[-4:] == ["c1", "psql", "-c", "SELECT 1"]


def test_stage_label_names_container():
    assert postgres.PostgresClient(FakeModule()).stage("pg_dump", [])[0][0] == "pg_dump"
    stage, env = postgres.PostgresClient(FakeModule(container="c1")).stage("pg_dump", [])
    assert stage[0] == "pg_dump (in container c1)"


def test_tool_from_pg_bin_dir(tmp_path):
    tool = tmp_path / "pg_dump"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    client = postgres.PostgresClient(FakeModule(pg_bin_dir=str(tmp_path)))
    assert client.tool("pg_dump") == str(tool)
    with pytest.raises(Failed, match="pg_restore not found in pg_bin_dir"):
        client.tool("pg_restore")


def test_tool_in_container_is_bare_name(tmp_path):
    assert postgres.PostgresClient(FakeModule(container="c", pg_bin_dir=str(tmp_path))).tool("psql") == "psql"


def test_run_raises_classified_error():
    module = FakeModule(replies=[(2, "", 'psql: error: connection to server at "127.0.0.1", port 5433 failed: '
                                         'FATAL:  password authentication failed for user "postgres"\n')])
    client = postgres.PostgresClient(module)
    with pytest.raises(postgres.PostgresError) as info:
        client.run("psql", ["-c", "SELECT 1"])
    assert info.value.kind == "auth"
    assert "psql failed (exit status 2)" in str(info.value)
    assert "check login_user / login_password" in str(info.value)
    assert "password authentication failed" in info.value.stderr
    assert module.calls[0]["env"]["PGPASSWORD"] == SECRET


def test_run_without_check_rc_returns_status():
    client = postgres.PostgresClient(FakeModule(replies=[(1, "out", "err")]))
    assert client.run("psql", [], check_rc=False) == (1, "out", "err")


def test_run_no_error_output():
    client = postgres.PostgresClient(FakeModule(replies=[(1, "", "")]))
    with pytest.raises(postgres.PostgresError, match="no error output"):
        client.run("psql", [])


def test_query_builds_safe_psql_call_and_splits_fields():
    sep = postgres.FIELD_SEP
    module = FakeModule(replies=[(0, "a%sb c\n\nd%s\n" % (sep, sep), "")])
    rows = postgres.PostgresClient(module).query("SELECT 1", db="other")
    assert rows == [["a", "b c"], ["d", ""]]
    argv = module.calls[0]["argv"]
    assert argv[0] == "/usr/bin/psql"
    assert argv[argv.index("-d") + 1] == "other"
    assert argv[argv.index("-c") + 1] == "SELECT 1"
    assert "ON_ERROR_STOP=1" in argv and "-X" in argv
    assert module.calls[0]["data"] is None


def test_query_defaults_to_module_db():
    module = FakeModule(replies=[(0, "", "")])
    postgres.PostgresClient(module).query("SELECT 1")
    argv = module.calls[0]["argv"]
    assert argv[argv.index("-d") + 1] == "appdb"


def test_script_goes_through_stdin():
    module = FakeModule(container="c1")
    postgres.PostgresClient(module).script(b"BEGIN;\nCOMMIT;\n", db="postgres")
    call = module.calls[0]
    assert call["data"] == b"BEGIN;\nCOMMIT;\n" and call["binary_data"] is True
    assert "-i" in call["argv"]  # docker exec needs -i to pass stdin
    assert "BEGIN" not in " ".join(call["argv"])


def test_server_version_is_cached():
    module = FakeModule(replies=[(0, "150018\n", "")])
    client = postgres.PostgresClient(module)
    assert client.server_version() == 150018
    assert client.server_version() == 150018
    assert len(module.calls) == 1


def test_database_info():
    props = dict(owner="app", encoding="UTF8", locale_provider="libc", collate="C.UTF-8", ctype="C.UTF-8",
                 connection_limit=-1, settings=[], role_settings={})
    module = FakeModule(replies=[(0, "150018\n", ""), (0, json.dumps(props) + "\n", ""), (0, "", "")])
    client = postgres.PostgresClient(module)
    assert client.database_info("it's", "postgres") == dict(owner="app", encoding="UTF8", collate="C.UTF-8",
                                                            ctype="C.UTF-8")
    assert "'it''s'" in module.calls[1]["argv"][-1]
    assert client.database_info("missing", "postgres") is None


def test_table_estimates_and_exact_counts():
    sep = postgres.FIELD_SEP
    estimates = "public%susers%s60\nweird schema%sT\"x%s-1\n" % (sep, sep, sep, sep)
    module = FakeModule(replies=[(0, estimates, ""), (0, estimates, ""),
                                 (0, "public.users%s60\nweird schema.T\"x%s3\n" % (sep, sep), "")])
    client = postgres.PostgresClient(module)
    assert client.table_estimates("appdb") == [dict(schema="public", name="users", rows_estimate=60),
                                               dict(schema="weird schema", name='T"x', rows_estimate=-1)]
    assert client.exact_counts("appdb") == {"public.users": 60, 'weird schema.T"x': 3}
    count_sql = module.calls[2]["argv"][-1]
    assert 'FROM "public"."users"' in count_sql
    assert 'FROM "weird schema"."T""x"' in count_sql
    assert " UNION ALL " in count_sql


def test_exact_counts_no_tables():
    module = FakeModule(replies=[(0, "", "")])
    assert postgres.PostgresClient(module).exact_counts("empty") == {}
    assert len(module.calls) == 1


@pytest.mark.parametrize("out, version", [
    ("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n", (15, 18)),
    ("pg_dump (PostgreSQL) 16\n", (16, 0)),
    ("garbage", (0, 0)),
])
def test_client_version(out, version):
    assert postgres.PostgresClient(FakeModule(replies=[(0, out, "")])).client_version() == version


def test_pipeline_converts_errors(monkeypatch):
    client = postgres.PostgresClient(FakeModule())
    seen = {}

    def fake_run_pipeline(stages, sink=None, stdin_path=None, env_update=None):
        seen.update(env_update)
        raise PipelineError([("pg_dump", 1, "pg_dump: error: connection to server at \"127.0.0.1\", port 5433 "
                                            "failed: FATAL:  database \"x\" does not exist")])

    monkeypatch.setattr(postgres, "run_pipeline", fake_run_pipeline)
    with pytest.raises(postgres.PostgresError) as info:
        client.pipeline([("pg_dump", ["pg_dump"])], env_extra={"PGDATABASE": "x"})
    assert info.value.kind == "no_database"
    assert "the database does not exist" in str(info.value)
    assert seen["PGDATABASE"] == "x" and seen["PGPASSWORD"] == SECRET


def test_pipeline_disk_full_cause(monkeypatch):
    def fake_run_pipeline(stages, sink=None, stdin_path=None, env_update=None):
        raise PipelineError([], cause=OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))

    monkeypatch.setattr(postgres, "run_pipeline", fake_run_pipeline)
    with pytest.raises(postgres.PostgresError) as info:
        postgres.PostgresClient(FakeModule()).pipeline([("x", ["x"])])
    assert info.value.kind == "disk_full"
    assert "destination disk is full" in str(info.value)


def test_fail_postgres():
    error = postgres.PostgresError("boom", kind="auth", stderr="x" * 5000)
    with pytest.raises(Failed) as info:
        postgres.fail_postgres(FakeModule(), error, prefix="backup failed: ", path="/p")
    assert info.value.kwargs["msg"] == "backup failed: boom"
    assert info.value.kwargs["error_kind"] == "auth"
    assert len(info.value.kwargs["stderr"]) == 4000
    assert info.value.kwargs["path"] == "/p"


@pytest.mark.parametrize("params,db,expected", [
    (dict(login_unix_socket="/run/pg", port=5433, login_user="app", db="app"), None,
     ["-h", "/run/pg", "-p", "5433", "-U", "app", "-d", "app"]),
    (dict(login_host="db.example", login_unix_socket=None, port=5432, login_user="postgres", db="app"), "postgres",
     ["-h", "db.example", "-p", "5432", "-U", "postgres", "-d", "postgres"]),
    (dict(db="app"), None, ["-d", "app"]),
])
def test_psql_argv_carries_the_connection_and_never_the_password(params, db, expected):
    argv = postgres.psql_argv("/usr/lib/postgresql/15/bin/psql", dict(params, login_password="s3cret"), db=db)
    assert argv == ["/usr/lib/postgresql/15/bin/psql"] + list(postgres.PSQL_OPTIONS) + expected
    assert "s3cret" not in " ".join(argv)
    assert postgres.password_env(dict(params, login_password="s3cret")) == {"PGPASSWORD": "s3cret"}
    assert postgres.password_env(params) == {}


def test_connection_env_leaves_out_empty_values():
    env = postgres.connection_env(dict(login_unix_socket="", login_host="db", port=5432, login_user="app",
                                       login_password=None, ssl_mode="require"), extra={"PGDATABASE": "app"})
    assert env == {"PGHOST": "db", "PGPORT": "5432", "PGUSER": "app", "PGSSLMODE": "require",
                   "PGAPPNAME": "atlasia.dr", "PGDATABASE": "app"}


def _debian_layout(tmp_path, versions, programs=("psql", "pg_dump")):
    """A fake /usr/lib/postgresql with ``versions`` and a /usr/bin whose programs link to pg_wrapper."""
    lib = tmp_path / "lib"
    for version in versions:
        (lib / version / "bin").mkdir(parents=True)
        for name in programs:
            path = lib / version / "bin" / name
            path.write_text("#!/bin/sh\n")
            path.chmod(0o755)
    common = tmp_path / "share"
    common.mkdir()
    (common / "pg_wrapper").write_text("#!/usr/bin/perl\n")
    (common / "pg_wrapper").chmod(0o755)
    usr_bin = tmp_path / "bin"
    usr_bin.mkdir()
    for name in programs:
        (usr_bin / name).symlink_to(common / "pg_wrapper")
    return str(lib), usr_bin


@pytest.mark.parametrize("versions, name, expected", [
    (["15"], "psql", "15"),
    (["15"], "pg_dump", "15"),
    (["13", "15", "9.6"], "psql", "15"),    # psql: the newest, as pg_wrapper does
    (["13", "15"], "pg_dump", None),        # several versions: the wrapper picks by cluster
])
def test_pg_wrapper_resolved_where_its_choice_is_fixed(tmp_path, monkeypatch, versions, name, expected):
    monkeypatch.delenv("PGCLUSTER", raising=False)
    lib, usr_bin = _debian_layout(tmp_path, versions)
    found = postgres.unwrapped_program(str(usr_bin / name), name, lib_dir=lib)
    assert found == (os.path.join(lib, expected, "bin", name) if expected else str(usr_bin / name))


def test_pg_wrapper_kept_with_pgcluster_and_plain_binaries_untouched(tmp_path, monkeypatch):
    lib, usr_bin = _debian_layout(tmp_path, ["15"])
    monkeypatch.setenv("PGCLUSTER", "15/main")
    assert postgres.unwrapped_program(str(usr_bin / "psql"), "psql", lib_dir=lib) == str(usr_bin / "psql")
    monkeypatch.delenv("PGCLUSTER")
    plain = os.path.join(lib, "15", "bin", "psql")
    assert postgres.unwrapped_program(plain, "psql", lib_dir=lib) == plain
    assert postgres.unwrapped_program(str(usr_bin / "psql"), "psql", lib_dir=str(tmp_path / "missing")) == str(
        usr_bin / "psql")


def test_tool_unwraps_only_programs_found_on_path(tmp_path, monkeypatch):
    monkeypatch.delenv("PGCLUSTER", raising=False)
    lib, usr_bin = _debian_layout(tmp_path, ["15"])
    monkeypatch.setattr(postgres, "PG_LIB_DIR", lib)
    module = FakeModule()
    module.get_bin_path = lambda name, required=False: str(usr_bin / name)
    assert postgres.PostgresClient(module).tool("psql") == os.path.join(lib, "15", "bin", "psql")
    # an explicit pg_bin_dir is taken as given, wrapper or not
    module = FakeModule(pg_bin_dir=str(usr_bin))
    assert postgres.PostgresClient(module).tool("pg_dump") == str(usr_bin / "pg_dump")
