# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Cluster globals of one database: the roles and tablespaces it uses, as a replayable ``psql`` script.

A database dump names roles (owners, grantees, policies, ``IN DATABASE`` settings) and tablespaces that live
in the cluster, not in the database; on a fresh server the load fails at the first one missing. This module
finds them (:func:`capture`), writes them as ``globals_<YYYYMMDD>_<HHMMSS>.sql`` with its sidecars and manifest
(:func:`write_artifact`), and replays them (:func:`replay`).

The script creates only what is missing and never alters anything that exists - above all not the password
or attributes of an existing role such as the restoring superuser. Every item is guarded by a ``\\gset``
test and ``\\if``, so the same file also serves an operator without Ansible::

    psql -X -v ON_ERROR_STOP=1 -d postgres -f globals_<timestamp>.sql

Roles taken: the database's owner and every role ``pg_shdepend`` records for the database or its objects
(owners, grantees, policy roles), the roles with ``IN DATABASE`` settings, then every role they are members of
and every member of those roles (login roles that act through a group), with their memberships, password
hashes (when the backup user may read ``pg_authid``), attributes, role-wide settings and comments, in the order
they were created (catalog order, which ``pg_dump`` follows for settings). Predefined
``pg_*`` roles are never created, only memberships in them. Tablespaces taken: the database's default one
and those of its relations, other than ``pg_default``/``pg_global``.
"""

from __future__ import annotations

import json
import os
import time

from ansible_collections.atlasia.dr.plugins.module_utils import artifact, naming
from ansible_collections.atlasia.dr.plugins.module_utils.postgres import PostgresError, quote_ident, quote_literal

PREFIX = "globals"
EXTENSION = "sql"
HEADER = "-- atlasia.dr globals: "
BUILTIN_TABLESPACES = ("pg_default", "pg_global")


def _roles_cte(name):
    db = quote_literal(name)
    return (
        "WITH RECURSIVE d AS (SELECT oid, datdba FROM pg_database WHERE datname = %s), "
        "direct(r) AS (SELECT datdba FROM d "
        "UNION SELECT s.refobjid FROM pg_shdepend s, d WHERE s.refclassid = 'pg_authid'::regclass "
        "AND (s.dbid = d.oid OR (s.dbid = 0 AND s.classid = 'pg_database'::regclass AND s.objid = d.oid)) "
        "UNION SELECT s.setrole FROM pg_db_role_setting s, d WHERE s.setdatabase = d.oid AND s.setrole <> 0), "
        "up(r) AS (SELECT r FROM direct UNION SELECT m.roleid FROM pg_auth_members m JOIN up ON m.member = up.r), "
        "down(r) AS (SELECT r FROM direct UNION SELECT m.member FROM pg_auth_members m JOIN down ON m.roleid = down.r), "
        "involved AS (SELECT r FROM up UNION SELECT r FROM down) " % db)


def _roles_sql(name, catalog):
    password = "a.rolpassword" if catalog == "pg_authid" else "NULL::text"
    return _roles_cte(name) + (
        "SELECT COALESCE(json_agg(json_build_object("
        "'name', a.rolname, 'superuser', a.rolsuper, 'inherit', a.rolinherit, 'createrole', a.rolcreaterole, "
        "'createdb', a.rolcreatedb, 'login', a.rolcanlogin, 'replication', a.rolreplication, "
        "'bypassrls', a.rolbypassrls, 'connection_limit', a.rolconnlimit, 'valid_until', a.rolvaliduntil, "
        "'password', %s, 'comment', shobj_description(a.oid, 'pg_authid'), "
        "'settings', COALESCE((SELECT to_json(s.setconfig) FROM pg_db_role_setting s "
        "WHERE s.setrole = a.oid AND s.setdatabase = 0), '[]'::json)) ORDER BY a.oid), '[]'::json)::text "
        "FROM %s a WHERE a.oid IN (SELECT r FROM involved) AND a.rolname !~ '^pg_'" % (password, catalog))


def _memberships_sql(name):
    return _roles_cte(name) + (
        "SELECT COALESCE(json_agg(json_build_object('role', r.rolname, 'member', u.rolname, 'admin', m.admin_option) "
        "ORDER BY r.rolname, u.rolname), '[]'::json)::text FROM pg_auth_members m "
        "JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles u ON u.oid = m.member "
        "WHERE (m.roleid IN (SELECT r FROM involved) OR r.rolname ~ '^pg_') "
        "AND (m.member IN (SELECT r FROM involved) OR u.rolname ~ '^pg_') "
        "AND (m.roleid IN (SELECT r FROM involved) OR m.member IN (SELECT r FROM involved))")


def _tablespaces_sql(name):
    return (
        "SELECT COALESCE(json_agg(json_build_object('name', t.spcname, 'owner', pg_get_userbyid(t.spcowner), "
        "'location', pg_tablespace_location(t.oid), 'options', COALESCE(to_json(t.spcoptions), '[]'::json), "
        "'comment', shobj_description(t.oid, 'pg_tablespace')) ORDER BY t.spcname), '[]'::json)::text "
        "FROM pg_tablespace t WHERE t.spcname NOT IN ('pg_default', 'pg_global') AND (t.oid IN "
        "(SELECT dattablespace FROM pg_database WHERE datname = %s) OR t.oid IN "
        "(SELECT DISTINCT reltablespace FROM pg_class WHERE reltablespace <> 0))" % quote_literal(name))


def capture(client, name):
    """``dict(roles, memberships, tablespaces, passwords)`` of database ``name`` (queried in ``name`` itself)."""
    passwords = True
    try:
        roles = client.query(_roles_sql(name, "pg_authid"), db=name)
    except PostgresError as exc:
        if exc.kind != "permission":
            raise
        # not a superuser: the role definitions without their password hashes
        passwords = False
        roles = client.query(_roles_sql(name, "pg_roles"), db=name)
    memberships = client.query(_memberships_sql(name), db=name)
    tablespaces = client.query(_tablespaces_sql(name), db=name)
    return dict(roles=json.loads(roles[0][0]), memberships=json.loads(memberships[0][0]),
                tablespaces=json.loads(tablespaces[0][0]), passwords=passwords)


# -- the script ----------------------------------------------------------------------------------------------
def _guard(test_sql, body):
    """``body`` run only when ``test_sql`` (a boolean query) is true, in psql's own conditional."""
    return ["SELECT %s AS atlasia_missing \\gset" % test_sql, "\\if :atlasia_missing"] + body + ["\\endif"]


def _role_exists(name):
    return "SELECT 1 FROM pg_roles WHERE rolname = %s" % quote_literal(name)


def _membership_exists(role, member):
    return ("SELECT 1 FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles u ON u.oid = m.member "
            "WHERE r.rolname = %s AND u.rolname = %s" % (quote_literal(role), quote_literal(member)))


def _setting(entry):
    from ansible_collections.atlasia.dr.plugins.module_utils.dbprops import setting_clause  # avoids a cycle
    return setting_clause(entry)


def _create_role(role):
    flags = [("SUPERUSER", role["superuser"]), ("INHERIT", role["inherit"]), ("CREATEROLE", role["createrole"]),
             ("CREATEDB", role["createdb"]), ("LOGIN", role["login"]), ("REPLICATION", role["replication"]),
             ("BYPASSRLS", role["bypassrls"])]
    words = [flag if on else "NO" + flag for flag, on in flags]
    words.append("CONNECTION LIMIT %d" % int(role.get("connection_limit", -1)))
    if role.get("valid_until"):
        words.append("VALID UNTIL %s" % quote_literal(str(role["valid_until"])))
    if role.get("password"):
        words.append("PASSWORD %s" % quote_literal(role["password"]))
    ident = quote_ident(role["name"])
    body = ["CREATE ROLE %s WITH %s;" % (ident, " ".join(words))]
    if role.get("comment") is not None:
        body.append("COMMENT ON ROLE %s IS %s;" % (ident, quote_literal(role["comment"])))
    for entry in role.get("settings") or []:
        body.append("ALTER ROLE %s SET %s;" % (ident, _setting(entry)))
    return body


def script(data, database, server_version):
    """The replay script of captured globals ``data``: creates what is missing, alters nothing that exists."""
    summary = dict(database=database, roles=[r["name"] for r in data["roles"]],
                   memberships=[[m["role"], m["member"]] for m in data["memberships"]],
                   tablespaces=[t["name"] for t in data["tablespaces"]], passwords=data.get("passwords", True))
    lines = [
        HEADER + json.dumps(summary, sort_keys=True),
        "-- Cluster globals (roles, memberships, tablespaces) used by database %s, PostgreSQL %s." % (
            database, server_version),
        "-- Replay BEFORE the database: psql -X -v ON_ERROR_STOP=1 -d postgres -f <this file>",
        "-- Creates only what is missing; never changes an existing role (password, attributes) or tablespace.",
        "\\set ON_ERROR_STOP on",
        "SET client_min_messages = warning;",
    ]
    for role in data["roles"]:
        lines.append("-- role %s" % role["name"].replace("\n", " "))
        lines += _guard("NOT EXISTS (%s)" % _role_exists(role["name"]), _create_role(role))
    for member in data["memberships"]:
        grant = "GRANT %s TO %s%s;" % (quote_ident(member["role"]), quote_ident(member["member"]),
                                       " WITH ADMIN OPTION" if member.get("admin") else "")
        lines += _guard("NOT EXISTS (%s)" % _membership_exists(member["role"], member["member"]), [grant])
    for space in data["tablespaces"]:
        body = ["CREATE TABLESPACE %s OWNER %s LOCATION %s;" % (
            quote_ident(space["name"]), quote_ident(space["owner"]), quote_literal(space["location"]))]
        if space.get("options"):
            body.append("ALTER TABLESPACE %s SET (%s);" % (quote_ident(space["name"]), ", ".join(space["options"])))
        if space.get("comment") is not None:
            body.append("COMMENT ON TABLESPACE %s IS %s;" % (quote_ident(space["name"]), quote_literal(space["comment"])))
        lines += _guard("NOT EXISTS (SELECT 1 FROM pg_tablespace WHERE spcname = %s)" % quote_literal(space["name"]),
                        body)
    lines.append("-- atlasia.dr globals complete")
    return "\n".join(lines) + "\n"


def read_summary(path):
    """What a globals script holds (its first line): ``dict(database, roles, memberships, tablespaces, passwords)``."""
    with open(path, "rb") as handle:
        first = handle.readline().decode("utf-8")
        handle.seek(0, os.SEEK_END)
        handle.seek(max(0, handle.tell() - 64))
        tail = handle.read().decode("utf-8", "replace")
    if not first.startswith(HEADER):
        raise ValueError("%s is not a cluster-globals script written by atlasia.dr.pg_globals" % path)
    if "-- atlasia.dr globals complete" not in tail:
        raise ValueError("%s is incomplete: it lacks its last line (the file was cut short)" % path)
    return json.loads(first[len(HEADER):])


# -- the artifact --------------------------------------------------------------------------------------------
def write_artifact(client, database, dest, timestamp=None, mode=0o600):
    """Write ``globals_<ts>.sql`` with its sidecars and manifest in ``dest``; returns the module's result."""
    started = naming.utc_now()
    t0 = time.time()
    moment = naming.parse_timestamp(timestamp) if timestamp else started
    name = naming.backup_name(PREFIX, moment, EXTENSION)
    path = os.path.join(dest, name)
    manifest_path = os.path.join(dest, naming.manifest_name(naming.backup_stem(PREFIX, moment)))
    artifact.prepare(dest)
    if os.path.lexists(path):
        raise FileExistsError("%s already exists; a backup is never overwritten (pass another timestamp)" % path)
    server_version = client.server_version_text(db=database)
    data = capture(client, database)
    text = script(data, database, server_version).encode("utf-8")
    with artifact.Writer(path, mode=mode, manifest_path=manifest_path) as out:
        out.write(text)
        out.manifest = artifact.base_manifest(
            name, "postgresql_globals", "atlasia.dr.pg_globals", out.size, out.digests, started, t0,
            database=database, server_version=server_version, format="sql", compression="none",
            roles=[r["name"] for r in data["roles"]],
            memberships=[[m["role"], m["member"]] for m in data["memberships"]],
            tablespaces=[t["name"] for t in data["tablespaces"]], passwords=data["passwords"],
            container=client.container)
    manifest = out.manifest
    opts = dict(path=path, manifest_path=manifest_path)
    return naming.artifact_result(opts, manifest, roles=manifest["roles"], tablespaces=manifest["tablespaces"],
                                  passwords=data["passwords"])


# -- replay --------------------------------------------------------------------------------------------------
def present(client, db):
    """``dict(roles, memberships, tablespaces)`` of the server now (sets of names / ``(role, member)`` pairs)."""
    roles = set(row[0] for row in client.query("SELECT rolname FROM pg_roles", db=db))
    memberships = set((row[0], row[1]) for row in client.query(
        "SELECT r.rolname, u.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid "
        "JOIN pg_roles u ON u.oid = m.member", db=db))
    tablespaces = set(row[0] for row in client.query("SELECT spcname FROM pg_tablespace", db=db))
    return dict(roles=roles, memberships=memberships, tablespaces=tablespaces)


def missing(summary, now):
    """Items of a script's summary the server lacks: ``dict(roles, memberships, tablespaces)`` (lists)."""
    return dict(roles=[r for r in summary["roles"] if r not in now["roles"]],
                memberships=[list(m) for m in summary["memberships"] if tuple(m) not in now["memberships"]],
                tablespaces=[t for t in summary["tablespaces"] if t not in now["tablespaces"]])


def replay(client, path, db, check_mode=False):
    """Run the globals script ``path`` (connected to ``db``); returns ``dict(created, existing, summary)``."""
    summary = read_summary(path)
    before = present(client, db)
    wanted = missing(summary, before)
    existing = dict(roles=[r for r in summary["roles"] if r in before["roles"]],
                    tablespaces=[t for t in summary["tablespaces"] if t in before["tablespaces"]])
    if check_mode or not any(wanted.values()):
        return dict(created=wanted, existing=existing, summary=summary)
    with open(path, "rb") as handle:
        client.script(handle.read(), db=db)
    created = missing(summary, present(client, db))
    created = dict((key, [item for item in wanted[key] if item not in created[key]]) for key in wanted)
    return dict(created=created, existing=existing, summary=summary)
