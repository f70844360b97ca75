"""Database-level properties: reading them back, CREATE DATABASE, and the SQL that re-applies them."""

from __future__ import annotations

import json

import pytest

from ansible_collections.atlasia.dr.plugins.module_utils import dbprops

PROPS = dict(owner="app_owner", encoding="UTF8", locale_provider="icu", collate="C.UTF-8", ctype="C.UTF-8",
             icu_locale="de-DE", tablespace="pg_default", connection_limit=25, comment="the app's data",
             acl=[dict(grantor="app_owner", grantee="PUBLIC", privilege="TEMPORARY", grantable=False),
                  dict(grantor="app_owner", grantee="app_owner", privilege="CREATE", grantable=False),
                  dict(grantor="app_owner", grantee="app_owner", privilege="TEMPORARY", grantable=False),
                  dict(grantor="app_owner", grantee="app_owner", privilege="CONNECT", grantable=False),
                  dict(grantor="app_owner", grantee="reader", privilege="CONNECT", grantable=True),
                  dict(grantor="reader", grantee="login", privilege="CONNECT", grantable=False)],
             settings=["search_path=app, public", "TimeZone=Europe/Paris"],
             role_settings={"reader": ["statement_timeout=5s"]})


@pytest.mark.parametrize("stored, expected", [
    ('app, public', ["app", "public"]),
    ('"$user", public', ["$user", "public"]),
    ('"a,b", "q""x"', ["a,b", 'q"x']),
    ('""', [""]),
    ('app', ["app"]),
])
def test_split_list_setting(stored, expected):
    assert dbprops.split_list_setting(stored) == expected


@pytest.mark.parametrize("entry, clause", [
    ("search_path=app, public", "\"search_path\" TO 'app', 'public'"),
    ('search_path="$user", public', "\"search_path\" TO '$user', 'public'"),
    ("TimeZone=Europe/Paris", "\"TimeZone\" TO 'Europe/Paris'"),
    ("app.note=it's=fine", "\"app.note\" TO 'it''s=fine'"),
])
def test_setting_clause(entry, clause):
    assert dbprops.setting_clause(entry) == clause


def test_create_statement_icu_and_libc():
    icu = dbprops.create_statement("db_restore_x", PROPS)
    assert icu == ("CREATE DATABASE \"db_restore_x\" TEMPLATE template0 OWNER \"app_owner\" ENCODING 'UTF8' "
                   "LOCALE_PROVIDER icu ICU_LOCALE 'de-DE' LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8'")
    libc = dbprops.create_statement("d", dict(PROPS, locale_provider="libc", tablespace="fast"), owner="other")
    assert "OWNER \"other\"" in libc and "LOCALE_PROVIDER libc" in libc and libc.endswith("TABLESPACE \"fast\"")
    assert "LOCALE_PROVIDER" not in dbprops.create_statement("d", dict(PROPS, locale_provider="libc"), server_version=140000)
    with pytest.raises(ValueError):
        dbprops.create_statement("d", PROPS, server_version=140000)
    assert dbprops.create_statement("d", None, owner="login") == 'CREATE DATABASE "d" TEMPLATE template0 OWNER "login"'


def test_apply_script_resets_then_applies_in_order():
    script = dbprops.apply_script("db", PROPS, current_role_settings=["postgis_role"])
    lines = script.splitlines()
    assert lines[0] == "BEGIN;" and lines[-1] == "COMMIT;"
    assert 'ALTER DATABASE "db" CONNECTION LIMIT 25;' in lines
    assert "COMMENT ON DATABASE \"db\" IS 'the app''s data';" in lines
    # whatever the load left is reset before the backed-up settings are set
    reset = lines.index('ALTER DATABASE "db" RESET ALL;')
    assert lines.index('ALTER ROLE "postgis_role" IN DATABASE "db" RESET ALL;') > reset
    assert lines.index("ALTER DATABASE \"db\" SET \"search_path\" TO 'app', 'public';") > reset
    assert "ALTER ROLE \"reader\" IN DATABASE \"db\" SET \"statement_timeout\" TO '5s';" in lines
    grants = lines[lines.index('REVOKE ALL ON DATABASE "db" FROM PUBLIC;'):]
    assert grants[1] == 'REVOKE ALL ON DATABASE "db" FROM "app_owner";'
    assert grants[2:7] == ['GRANT TEMPORARY ON DATABASE "db" TO PUBLIC;',
                           'GRANT CREATE, TEMPORARY, CONNECT ON DATABASE "db" TO "app_owner";',
                           'GRANT CONNECT ON DATABASE "db" TO "reader" WITH GRANT OPTION;',
                           'SET ROLE "reader";', 'GRANT CONNECT ON DATABASE "db" TO "login";']


def test_apply_script_default_acl_and_no_acl():
    default = dbprops.apply_script("db", dict(PROPS, acl=None, comment=None, settings=[], role_settings={}))
    assert "REVOKE" not in default and "COMMENT ON DATABASE \"db\" IS NULL;" in default
    assert "GRANT" not in dbprops.apply_script("db", PROPS, no_acl=True)


def test_roles_named():
    assert dbprops.roles_named(PROPS) == ["app_owner", "login", "reader"]
    assert dbprops.roles_named(dict(PROPS, acl=None, role_settings={})) == ["app_owner"]


class _Client(object):
    def __init__(self, rows, version=150004):
        self.rows, self.version, self.sql = rows, version, []

    def server_version(self, db=None):
        return self.version

    def query(self, sql, db=None):
        self.sql.append(sql)
        return self.rows


@pytest.mark.parametrize("version, provider", [(140000, "'c'::\"char\""), (150004, "d.datlocprovider"),
                                               (170000, "d.datlocale")])
def test_capture_reads_one_json_row(version, provider):
    client = _Client([[json.dumps(dict(PROPS, settings=None, role_settings=None))]], version)
    props = dbprops.capture(client, "it's", db="postgres")
    assert props["settings"] == [] and props["role_settings"] == {} and props["owner"] == "app_owner"
    assert provider in client.sql[0] and "d.datname = 'it''s'" in client.sql[0]
    assert dbprops.capture(_Client([]), "missing") is None
