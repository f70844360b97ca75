"""Everything a database is comes back exactly: replace, ``mode: new`` and a second, fresh cluster.

The source database has what ``pg_dump`` alone does not carry back: a non-superuser owner, objects owned by
two other roles, row-level security policies for roles, default privileges, ``ALTER DATABASE SET
search_path/TimeZone``, ``ALTER ROLE ... IN DATABASE SET``, ``REVOKE CONNECT ... FROM PUBLIC`` plus grants, a
comment, a connection limit, an ICU locale, contrib extensions (hstore, citext, pg_trgm, pgcrypto), PostGIS
with topology (when the Debian package postgresql-15-postgis-3 is installed; its install script changes the
database's search_path), large objects with owners and grants, a partitioned table and a materialized view.

Each path is compared with a normalised fingerprint of the original: ``pg_dump --create --schema-only``,
``pg_dumpall --globals-only`` restricted to the roles involved, per-table row digests, large object digests
and the database settings; the comparison is printed per path (run with ``-s`` to see it). The application's
own queries (as its login role, unqualified names through the database's search_path) must work too.
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
import subprocess

import pytest

from tests.integration import pg_helpers as h
from tests.support.postgres import PG_BINDIR, PostgresServer, quote_ident, quote_literal

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DB = "fidelity_app"
ROLES = ("fid_owner", "fid_writer", "fid_reader", "fid_login")
APP_PASSWORD = "fid-login-Pw-7c1e"
POSTGIS = os.path.exists("/usr/share/postgresql/15/extension/postgis_topology.control")

SOURCE_SQL = """
CREATE ROLE fid_owner NOLOGIN;
CREATE ROLE fid_writer NOLOGIN;
CREATE ROLE fid_reader NOLOGIN CONNECTION LIMIT 30;
CREATE ROLE fid_login LOGIN PASSWORD '%(password)s' IN ROLE fid_reader;
GRANT fid_writer TO fid_owner;
COMMENT ON ROLE fid_reader IS 'read-only access of the application';
CREATE DATABASE %(db)s OWNER fid_owner TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER icu ICU_LOCALE 'de-DE'
  LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8' CONNECTION LIMIT 25;
""" % dict(password=APP_PASSWORD, db=DB)

OBJECTS_SQL = """
CREATE EXTENSION hstore;
CREATE EXTENSION citext;
CREATE EXTENSION pg_trgm;
CREATE EXTENSION pgcrypto;
%(postgis)s
CREATE SCHEMA app AUTHORIZATION fid_owner;
CREATE SCHEMA audit AUTHORIZATION fid_writer;
GRANT USAGE ON SCHEMA app TO fid_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE fid_owner IN SCHEMA app GRANT SELECT ON TABLES TO fid_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE fid_writer IN SCHEMA audit GRANT INSERT ON TABLES TO fid_owner;
SET ROLE fid_owner;
CREATE TABLE app.places (id serial PRIMARY KEY, name citext NOT NULL, tags hstore, visible boolean NOT NULL,
                         token text NOT NULL DEFAULT encode(gen_random_bytes(8), 'hex') %(geom)s);
CREATE INDEX places_name_trgm ON app.places USING gin ((name::text) gin_trgm_ops);
ALTER TABLE app.places ENABLE ROW LEVEL SECURITY;
CREATE POLICY readers_see_visible ON app.places FOR SELECT TO fid_reader USING (visible);
CREATE TABLE app.measures (at date NOT NULL, place int NOT NULL, value numeric) PARTITION BY RANGE (at);
CREATE TABLE app.measures_2026_01 PARTITION OF app.measures FOR VALUES FROM ('2026-01-01') TO ('2026-02-01');
CREATE TABLE app.measures_2026_02 PARTITION OF app.measures FOR VALUES FROM ('2026-02-01') TO ('2026-03-01');
INSERT INTO app.places (name, tags, visible, token %(geom_col)s)
  SELECT 'Place ' || i, hstore('kind', CASE WHEN i %% 2 = 0 THEN 'park' ELSE 'shop' END), i %% 3 <> 0,
         md5(i::text) %(geom_val)s FROM generate_series(1, 60) AS i;
INSERT INTO app.measures SELECT DATE '2026-01-01' + (i %% 50), i %% 60 + 1, i * 1.5 FROM generate_series(1, 400) AS i;
CREATE MATERIALIZED VIEW app.place_totals AS
  SELECT place, count(*) AS n, sum(value) AS total FROM app.measures GROUP BY place;
SELECT lo_from_bytea(0, convert_to('owned by the application', 'UTF8'));
RESET ROLE;
SET ROLE fid_writer;
CREATE TABLE audit.events (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), what text);
INSERT INTO audit.events (at, what) SELECT TIMESTAMPTZ '2026-01-01 00:00+00' + i * INTERVAL '1 hour', 'event ' || i
  FROM generate_series(1, 25) AS i;
ALTER TABLE audit.events ENABLE ROW LEVEL SECURITY;
CREATE POLICY owner_reads ON audit.events FOR SELECT TO fid_owner USING (true);
RESET ROLE;
DO $$DECLARE o oid; BEGIN
  o := lo_from_bytea(0, convert_to('audit attachment', 'UTF8'));
  EXECUTE format('ALTER LARGE OBJECT %%s OWNER TO fid_writer', o);
  EXECUTE format('GRANT SELECT ON LARGE OBJECT %%s TO fid_reader', o);
END$$;
""" % dict(
    postgis="CREATE EXTENSION postgis;\nCREATE EXTENSION postgis_topology;" if POSTGIS else "",
    geom=", geom geometry(Point, 4326)" if POSTGIS else "",
    geom_col=", geom" if POSTGIS else "",
    geom_val=", ST_SetSRID(ST_MakePoint(i, i / 2.0), 4326)" if POSTGIS else "")

# After the extensions: PostGIS topology added itself to the database's search_path when it was created.
DATABASE_SQL = """
ALTER DATABASE %(db)s SET search_path = app, public;
ALTER DATABASE %(db)s SET "TimeZone" = 'Europe/Paris';
ALTER ROLE fid_reader IN DATABASE %(db)s SET work_mem = '8MB';
ALTER ROLE fid_login IN DATABASE %(db)s SET search_path = app, public, "$user";
ALTER ROLE fid_login IN DATABASE %(db)s SET statement_timeout = '5s';
REVOKE CONNECT, TEMPORARY ON DATABASE %(db)s FROM PUBLIC;
GRANT CONNECT ON DATABASE %(db)s TO fid_reader;
GRANT CONNECT, TEMPORARY ON DATABASE %(db)s TO fid_writer;
COMMENT ON DATABASE %(db)s IS 'the application''s data';
""" % dict(db=DB)


# --- the fingerprint ---------------------------------------------------------------------------------------
def _run(server, tool, args):
    env = dict(os.environ, PGPASSWORD=server.password, PGHOST=server.host, PGPORT=str(server.port), PGUSER=server.user)
    proc = subprocess.run([str(PG_BINDIR / tool)] + args, capture_output=True, text=True, env=env, timeout=300,
                          check=False)
    assert proc.returncode == 0, "%s %s failed: %s" % (tool, args, proc.stderr)
    return proc.stdout


def _normalise(text, db):
    lines = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("--") or line.startswith("\\restrict") or line.startswith("\\unrestrict"):
            continue
        lines.append(re.sub(r"\b%s\b" % re.escape(db), "<DB>", line))
    return lines


def _schema(server, db):
    return _normalise(_run(server, "pg_dump", ["--create", "--schema-only", "-d", db]), db)


def _globals(server):
    pattern = re.compile(r"\b(%s)\b" % "|".join(ROLES))
    return [line for line in _normalise(_run(server, "pg_dumpall", ["--globals-only"]), DB) if pattern.search(line)]


def _rows(server, db):
    tables = server.rows(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'p', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
        "AND n.nspname NOT LIKE 'pg\\_%' ORDER BY 1, 2", db=db)
    digests = {}
    for schema, name in tables:
        qualified = "%s.%s" % (quote_ident(schema), quote_ident(name))
        digests["%s.%s" % (schema, name)] = server.scalar(
            "SELECT count(*) || ':' || md5(coalesce(string_agg(t::text, '|' ORDER BY t::text COLLATE \"C\"), '')) "
            "FROM %s t" % qualified, db=db)
    return digests


def _large_objects(server, db):
    return server.rows(
        "SELECT m.oid, pg_get_userbyid(m.lomowner), coalesce(m.lomacl::text, ''), md5(lo_get(m.oid)) "
        "FROM pg_largeobject_metadata m ORDER BY 1", db=db)


def _settings(server, db):
    rows = server.rows(
        "SELECT pg_get_userbyid(d.datdba), pg_encoding_to_char(d.encoding), d.datlocprovider, "
        "coalesce(d.daticulocale, ''), d.datcollate, d.datctype, d.datconnlimit, coalesce(d.datacl::text, ''), "
        "coalesce(shobj_description(d.oid, 'pg_database'), '') FROM pg_database d WHERE d.datname = %s"
        % quote_literal(db))
    settings = server.rows(
        "SELECT coalesce(pg_get_userbyid(NULLIF(s.setrole, 0)), '(database)'), array_to_string(s.setconfig, '; ') "
        "FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = %s ORDER BY 1"
        % quote_literal(db))
    return [[re.sub(r"\b%s\b" % re.escape(db), "<DB>", v) for v in row] for row in rows + settings]


def fingerprint(server, db):
    return dict(schema=_schema(server, db), globals=_globals(server), rows=_rows(server, db),
                large_objects=_large_objects(server, db), settings=_settings(server, db))


def compare(path, original, restored):
    """Print the comparison of each part of the fingerprint; return the parts that differ."""
    differing = []
    print("\n== fingerprint comparison: %s ==" % path)
    for part in ("schema", "globals", "rows", "large_objects", "settings"):
        same = original[part] == restored[part]
        unit = "tables" if part == "rows" else "lines" if part == "schema" else "entries"
        print("  %-14s %-6s (%d %s)" % (part, "equal" if same else "DIFFER", len(original[part]), unit))
        if not same:
            differing.append(part)
            if isinstance(original[part], dict):
                for key in sorted(set(original[part]) | set(restored[part])):
                    if original[part].get(key) != restored[part].get(key):
                        print("    %s: %s != %s" % (key, original[part].get(key), restored[part].get(key)))
            else:
                for line in list(difflib.unified_diff([str(x) for x in original[part]],
                                                      [str(x) for x in restored[part]], lineterm="", n=0))[:40]:
                    print("    " + line)
    return differing


def app_queries_work(server, db):
    """The application's own queries, as its login role: unqualified names, RLS, its settings."""
    env = dict(os.environ, PGPASSWORD=APP_PASSWORD)
    sql = "SELECT count(*) FROM places; SELECT count(*) FROM place_totals; SHOW statement_timeout; SHOW TimeZone;"
    proc = subprocess.run([str(PG_BINDIR / "psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", server.host,
                           "-p", str(server.port), "-U", "fid_login", "-d", db, "-c", sql],
                          capture_output=True, text=True, env=env, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["40", "60", "5s", "Europe/Paris"], proc.stdout


# --- fixtures ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def source():
    """A cluster of its own (the roles are cluster-wide) holding the source database and its fingerprint."""
    server = PostgresServer()
    try:
        server.start()
        server.psql(SOURCE_SQL)
        server.psql(OBJECTS_SQL, db=DB)
        server.psql(DATABASE_SQL)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def original(source):
    app_queries_work(source, DB)
    return fingerprint(source, DB)


@pytest.fixture(scope="module")
def backups(source, original, tmp_path_factory):
    dest = tmp_path_factory.mktemp("fidelity")
    made = {}
    for fmt in ("plain", "custom"):
        result = h.backup(source, DB, dest / fmt, format=fmt)
        assert not result.get("failed"), result.get("msg")
        made[fmt] = result
    return made


# --- the paths ---------------------------------------------------------------------------------------------
def test_backup_records_the_database_properties(backups):
    props = backups["plain"]["manifest_data"]["database_properties"]
    assert props["owner"] == "fid_owner" and props["locale_provider"] == "icu" and props["icu_locale"] == "de-DE"
    assert props["connection_limit"] == 25 and props["comment"] == "the application's data"
    assert sorted(props["settings"]) == ["TimeZone=Europe/Paris", "search_path=app, public"]
    assert props["role_settings"]["fid_reader"] == ["work_mem=8MB"]
    assert props["role_settings"]["fid_login"] == ['search_path=app, public, "$user"', "statement_timeout=5s"]
    assert not [a for a in props["acl"] if a["grantee"] == "PUBLIC" and a["privilege"] == "CONNECT"]


def test_replace_keeps_everything(source, original, backups):
    result = h.restore(source, DB, backups["plain"]["path"], safety_backup=False)
    assert not result.get("failed"), result.get("msg")
    assert result["properties_source"] == "backup" and result["previous_db"]
    try:
        restored = fingerprint(source, DB)
        assert compare("replace (plain dump, same cluster)", original, restored) == []
        app_queries_work(source, DB)
    finally:
        source.dropdb(result["previous_db"])


def test_mode_new_keeps_everything(source, original, backups):
    name = DB + "_copy"
    result = h.restore(source, name, backups["custom"]["path"], mode="new", safety_backup=False)
    assert not result.get("failed"), result.get("msg")
    try:
        restored = fingerprint(source, name)
        assert compare("mode: new (custom dump, same cluster)", original, restored) == []
        app_queries_work(source, name)
    finally:
        source.dropdb(name)


# --- cluster globals and a fresh cluster -------------------------------------------------------------------
@pytest.fixture(scope="module")
def globals_artifact(source, original, tmp_path_factory):
    dest = str(tmp_path_factory.mktemp("globals"))
    result = h.run_module("pg_globals", h.conn_args(source, DB, state="dumped", dest=dest))
    assert not result.get("failed"), result.get("msg")
    return result


def test_globals_artifact_holds_the_roles_the_database_uses(globals_artifact):
    assert sorted(globals_artifact["roles"]) == sorted(ROLES) and globals_artifact["passwords"] is True
    manifest = globals_artifact["manifest_data"]
    assert manifest["type"] == "postgresql_globals" and ["fid_reader", "fid_login"] in manifest["memberships"]
    for suffix in (".md5", ".sha256"):
        assert os.path.exists(globals_artifact["path"] + suffix)
    assert oct(os.stat(globals_artifact["path"]).st_mode & 0o777) == "0o600"


def test_replay_changes_no_existing_role(source, globals_artifact):
    """On the cluster that has them all: nothing created, an existing role's password and attributes untouched."""
    source.psql("ALTER ROLE fid_login PASSWORD 'changed-Pw-91'; ALTER ROLE fid_reader CONNECTION LIMIT 3")
    before = source.rows("SELECT rolname, rolpassword, rolconnlimit FROM pg_authid ORDER BY 1")
    try:
        result = h.run_module("pg_globals", h.conn_args(source, DB, state="restored", src=globals_artifact["path"]))
        assert not result.get("failed"), result.get("msg")
        assert result["changed"] is False and result["created"] == dict(roles=[], memberships=[], tablespaces=[])
        assert sorted(result["existing"]["roles"]) == sorted(ROLES)
        assert source.rows("SELECT rolname, rolpassword, rolconnlimit FROM pg_authid ORDER BY 1") == before
    finally:
        source.psql("ALTER ROLE fid_login PASSWORD '%s'; ALTER ROLE fid_reader CONNECTION LIMIT 30" % APP_PASSWORD)


def test_fresh_cluster_takes_globals_then_the_database(original, backups, globals_artifact):
    fresh = PostgresServer()
    try:
        fresh.start()
        superuser = fresh.rows("SELECT rolname, rolpassword, rolsuper FROM pg_authid WHERE rolname = 'postgres'")
        check = h.run_module("pg_globals", h.conn_args(fresh, DB, state="restored", src=globals_artifact["path"]),
                             check=True)
        assert sorted(check["created"]["roles"]) == sorted(ROLES) and fresh.scalar(
            "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'fid%'") == "0"
        replayed = h.run_module("pg_globals", h.conn_args(fresh, DB, state="restored", src=globals_artifact["path"],
                                                          require_checksum=True))
        assert not replayed.get("failed"), replayed.get("msg")
        assert sorted(replayed["created"]["roles"]) == sorted(ROLES) and replayed["changed"] is True
        assert ["fid_reader", "fid_login"] in replayed["created"]["memberships"]
        assert fresh.rows("SELECT rolname, rolpassword, rolsuper FROM pg_authid WHERE rolname = 'postgres'") == superuser
        result = h.restore(fresh, DB, backups["custom"]["path"])
        assert not result.get("failed"), result.get("msg")
        assert result["properties_source"] == "backup" and result["previous_db"] is None
        restored = fingerprint(fresh, DB)
        assert compare("fresh cluster (globals replayed, then custom dump)", original, restored) == []
        app_queries_work(fresh, DB)
    finally:
        fresh.stop()


def test_fresh_cluster_without_globals_names_the_missing_roles(backups, tmp_path):
    fresh = PostgresServer()
    try:
        fresh.start()
        result = h.restore(fresh, DB, backups["plain"]["path"])
        assert result.get("failed") and result["error_kind"] == "missing_role"
        assert sorted(result["missing_roles"]) == ["fid_login", "fid_owner", "fid_reader", "fid_writer"]
        assert DB not in fresh.databases()
        # a backup without recorded properties (an older one): the dump's own ALTER ... OWNER TO fails, and the
        # error names the missing role, not the login
        old = tmp_path / os.path.basename(backups["custom"]["path"])
        shutil.copy(backups["custom"]["path"], old)
        result = h.restore(fresh, DB, old)
        assert result.get("failed") and result["error_kind"] == "missing_role", result.get("msg")
        assert re.search(r'role "fid_\w+", which this server does not have', result["msg"])
        assert "authentication" not in result["msg"] and DB not in fresh.databases()
    finally:
        fresh.stop()


def test_no_acl_and_no_owner_restore_without_privileges_or_owners(source, backups):
    name = DB + "_noacl"
    refused = h.restore(source, name, backups["plain"]["path"], mode="new", no_acl=True)
    assert refused.get("failed") and refused["error_kind"] == "request" and name not in source.databases()
    result = h.restore(source, name, backups["custom"]["path"], mode="new", no_acl=True, no_owner=True)
    assert not result.get("failed"), result.get("msg")
    try:
        assert source.rows("SELECT pg_get_userbyid(datdba), datacl IS NULL, datconnlimit FROM pg_database "
                           "WHERE datname = '%s'" % name) == [["postgres", "t", "25"]]
        assert source.scalar("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                             "WHERE n.nspname IN ('app', 'audit') AND c.relacl IS NOT NULL", db=name) == "0"
        assert source.scalar("SELECT count(*) FROM pg_default_acl", db=name) == "0"
        assert source.scalar("SELECT count(DISTINCT tableowner) FROM pg_tables WHERE schemaname IN ('app', 'audit')",
                             db=name) == "1"
        # policies are not privileges: they stay
        assert source.scalar("SELECT count(*) FROM pg_policies", db=name) == "2"
    finally:
        source.dropdb(name)
