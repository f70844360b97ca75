# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The properties of a database that belong to the database rather than to its objects.

``pg_dump`` without ``--create`` leaves out everything recorded on the database itself: its owner, encoding,
locale provider and locales, tablespace, connection limit, comment, grants (``REVOKE CONNECT ... FROM
PUBLIC``), ``ALTER DATABASE ... SET`` and ``ALTER ROLE ... IN DATABASE ... SET`` settings. They are read here
(:func:`capture`, at backup time into the dump's manifest), turned into the ``CREATE DATABASE`` statement of
the database restored into (:func:`create_statement`) and re-applied after the load (:func:`apply_script`),
which first clears the settings that extension scripts added while loading (PostGIS topology sets the
database's ``search_path``), so the restored database has exactly the backed-up properties.

Shared by pg_dump_backup (through pgdump's manifest) and pg_restore_db.
"""

from __future__ import annotations

import json

from ansible_collections.atlasia.dr.plugins.module_utils.postgres import quote_ident, quote_literal

# Settings whose value is a list that pg_dump re-quotes element by element (GUC_LIST_QUOTE in the server).
LIST_SETTINGS = frozenset(["search_path", "temp_tablespaces", "session_preload_libraries", "shared_preload_libraries",
                           "local_preload_libraries"])
PROPERTY_KEYS = ("owner", "encoding", "locale_provider", "collate", "ctype", "icu_locale", "tablespace",
                 "connection_limit", "comment", "acl", "settings", "role_settings")


def _capture_sql(name, version):
    if version >= 170000:
        provider, icu = "d.datlocprovider", "d.datlocale"
    elif version >= 150000:
        provider, icu = "d.datlocprovider", "d.daticulocale"
    else:
        provider, icu = "'c'::\"char\"", "NULL::text"
    return (
        "SELECT json_build_object("
        "'owner', pg_get_userbyid(d.datdba), "
        "'encoding', pg_encoding_to_char(d.encoding), "
        "'locale_provider', CASE %s WHEN 'i' THEN 'icu' ELSE 'libc' END, "
        "'collate', d.datcollate, 'ctype', d.datctype, 'icu_locale', %s, "
        "'tablespace', t.spcname, "
        "'connection_limit', d.datconnlimit, "
        "'comment', shobj_description(d.oid, 'pg_database'), "
        "'acl', CASE WHEN d.datacl IS NULL THEN NULL ELSE COALESCE(("
        "SELECT json_agg(json_build_object('grantor', pg_get_userbyid(a.grantor), "
        "'grantee', CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END, "
        "'privilege', a.privilege_type, 'grantable', a.is_grantable) ORDER BY a.n) "
        "FROM aclexplode(d.datacl) WITH ORDINALITY AS a(grantor, grantee, privilege_type, is_grantable, n)), "
        "'[]'::json) END, "
        "'settings', COALESCE((SELECT to_json(s.setconfig) FROM pg_db_role_setting s "
        "WHERE s.setdatabase = d.oid AND s.setrole = 0), '[]'::json), "
        "'role_settings', COALESCE((SELECT json_object_agg(r.rolname, s.setconfig ORDER BY r.rolname) "
        "FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole WHERE s.setdatabase = d.oid), '{}'::json)"
        ")::text FROM pg_database d JOIN pg_tablespace t ON t.oid = d.dattablespace WHERE d.datname = %s"
        % (provider, icu, quote_literal(name)))


def capture(client, name, db=None):
    """The properties of database ``name`` (a dict with :data:`PROPERTY_KEYS`), or ``None`` when it does not exist.

    ``db`` is the database connected to (any database of the cluster: the catalogs read are shared).
    """
    version = client.server_version(db=db or name)
    rows = client.query(_capture_sql(name, version), db=db or name)
    if not rows:
        return None
    props = json.loads(rows[0][0])
    props["role_settings"] = props.get("role_settings") or {}
    props["settings"] = props.get("settings") or []
    return props


def split_list_setting(value):
    """Elements of a list setting as the server stores it (``"$user", public`` -> ``['$user', 'public']``)."""
    items, current, quoted, i, started = [], [], False, 0, False
    while i < len(value):
        char = value[i]
        if quoted:
            if char == '"':
                if value[i + 1:i + 2] == '"':
                    current.append('"')
                    i += 1
                else:
                    quoted = False
            else:
                current.append(char)
        elif char == '"':
            quoted, started = True, True
        elif char == ",":
            items.append("".join(current).strip() if not started else "".join(current))
            current, started = [], False
        elif char.isspace() and not current:
            pass
        else:
            current.append(char)
        i += 1
    if current or started or items:
        items.append("".join(current).strip() if not started else "".join(current))
    return items


def setting_clause(entry):
    """``name TO value`` of one stored ``name=value`` setting, quoted as pg_dump quotes it."""
    name, dummy, value = entry.partition("=")
    if name.lower() in LIST_SETTINGS:
        return "%s TO %s" % (quote_ident(name), ", ".join(quote_literal(v) for v in split_list_setting(value)))
    return "%s TO %s" % (quote_ident(name), quote_literal(value))


def roles_named(props):
    """Roles the properties name (owner, grantors and grantees, roles with settings in the database)."""
    names = set()
    if props.get("owner"):
        names.add(props["owner"])
    for item in props.get("acl") or []:
        names.update(r for r in (item.get("grantor"), item.get("grantee")) if r and r != "PUBLIC")
    names.update((props.get("role_settings") or {}).keys())
    return sorted(names)


def create_statement(name, props, owner=None, server_version=150000):
    """``CREATE DATABASE`` of a database with the encoding, locales and tablespace of ``props``."""
    statement = "CREATE DATABASE %s TEMPLATE template0" % quote_ident(name)
    owner = owner or (props or {}).get("owner")
    if owner:
        statement += " OWNER %s" % quote_ident(owner)
    if not props:
        return statement
    statement += " ENCODING %s" % quote_literal(props["encoding"])
    if props.get("locale_provider") == "icu":
        if server_version < 150000:
            raise ValueError("the database uses the ICU locale provider, which needs PostgreSQL 15 or later")
        keyword = "LOCALE" if server_version >= 170000 else "ICU_LOCALE"
        statement += " LOCALE_PROVIDER icu %s %s" % (keyword, quote_literal(props.get("icu_locale") or ""))
    elif server_version >= 150000:
        statement += " LOCALE_PROVIDER libc"
    statement += " LC_COLLATE %s LC_CTYPE %s" % (quote_literal(props["collate"]), quote_literal(props["ctype"]))
    if props.get("tablespace") and props["tablespace"] != "pg_default":
        statement += " TABLESPACE %s" % quote_ident(props["tablespace"])
    return statement


def _privileges(acl, owner):
    """Grants of an exploded ACL grouped as they were recorded: ``[(grantor, grantee, [privileges], grantable)]``."""
    groups = []
    for item in acl:
        key = (item["grantor"], item["grantee"], bool(item.get("grantable")))
        if groups and groups[-1][0] == key:
            groups[-1][1].append(item["privilege"])
        else:
            groups.append((key, [item["privilege"]]))
    return [(grantor, grantee, privileges, grantable) for (grantor, grantee, grantable), privileges in groups]


def apply_script(name, props, current_role_settings=(), no_acl=False):
    """SQL that gives the existing database ``name`` the connection limit, comment, settings and grants of ``props``.

    Run it after the load: every setting present on the database (those extension scripts added included)
    is first reset, so exactly the backed-up ones remain. ``current_role_settings`` are the roles that have
    ``IN DATABASE`` settings on ``name`` now. With ``no_acl`` the database keeps its default grants.
    """
    db = quote_ident(name)
    lines = ["BEGIN;"]
    if props.get("owner"):
        lines.append("ALTER DATABASE %s OWNER TO %s;" % (db, quote_ident(props["owner"])))
    lines.append("ALTER DATABASE %s CONNECTION LIMIT %d;" % (db, int(props.get("connection_limit", -1))))
    comment = props.get("comment")
    lines.append("COMMENT ON DATABASE %s IS %s;" % (db, quote_literal(comment) if comment is not None else "NULL"))
    lines.append("ALTER DATABASE %s RESET ALL;" % db)
    for role in sorted(current_role_settings):
        lines.append("ALTER ROLE %s IN DATABASE %s RESET ALL;" % (quote_ident(role), db))
    for entry in props.get("settings") or []:
        lines.append("ALTER DATABASE %s SET %s;" % (db, setting_clause(entry)))
    for role, entries in sorted((props.get("role_settings") or {}).items()):
        for entry in entries or []:
            lines.append("ALTER ROLE %s IN DATABASE %s SET %s;" % (quote_ident(role), db, setting_clause(entry)))
    if not no_acl and props.get("acl") is not None:
        owner = props.get("owner")
        lines.append("REVOKE ALL ON DATABASE %s FROM PUBLIC;" % db)
        if owner:
            lines.append("REVOKE ALL ON DATABASE %s FROM %s;" % (db, quote_ident(owner)))
        for grantor, grantee, privileges, grantable in _privileges(props["acl"], owner):
            to = "PUBLIC" if grantee == "PUBLIC" else quote_ident(grantee)
            option = " WITH GRANT OPTION" if grantable else ""
            grant = "GRANT %s ON DATABASE %s TO %s%s;" % (", ".join(privileges), db, to, option)
            if grantor and grantor != owner:
                lines += ["SET ROLE %s;" % quote_ident(grantor), grant, "RESET ROLE;"]
            else:
                lines.append(grant)
    lines.append("COMMIT;")
    return "\n".join(lines) + "\n"


def role_settings_on(client, name, db):
    """Roles that have ``ALTER ROLE ... IN DATABASE name SET`` settings now."""
    rows = client.query("SELECT r.rolname FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole "
                        "JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = %s" % quote_literal(name), db=db)
    return [row[0] for row in rows]


def missing_roles(client, names, db):
    """Those of ``names`` that are not roles of the server."""
    if not names:
        return []
    rows = client.query("SELECT rolname FROM pg_roles WHERE rolname IN (%s)" % ", ".join(
        quote_literal(n) for n in names), db=db)
    present = set(row[0] for row in rows)
    return sorted(n for n in names if n not in present)


def may_set_role_settings(client, db):
    """Whether the connected user may run ``ALTER ROLE ... IN DATABASE ... SET`` (superuser or CREATEROLE)."""
    rows = client.query("SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user", db=db)
    return bool(rows) and rows[0][0] == "t"


def apply(client, name, props, db, no_acl=False):
    """Apply :func:`apply_script` for ``props`` to database ``name`` (connected to ``db``)."""
    script = apply_script(name, props, role_settings_on(client, name, db), no_acl=no_acl)
    client.script(script.encode("utf-8"), db=db)


def differences(expected, actual):
    """Keys whose values differ between two property dicts (for reports and tests)."""
    return sorted(k for k in PROPERTY_KEYS if (expected or {}).get(k) != (actual or {}).get(k))
