"""Cluster globals: the replay script (creates only what is missing), its summary, the artifact and the replay."""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.atlasia.dr.plugins.module_utils import checksum, pgglobals, report
from ansible_collections.atlasia.dr.plugins.module_utils.postgres import PostgresError

ROLE = dict(name="gis_owner", superuser=False, inherit=True, createrole=False, createdb=True, login=True,
            replication=False, bypassrls=False, connection_limit=-1, valid_until=None,
            password="SCRAM-SHA-256$4096:c2FsdA==$a:b", comment="owns it's data", settings=["search_path=gis, public"])
DATA = dict(roles=[ROLE, dict(ROLE, name="gis_reader", login=False, createdb=False, password=None, comment=None,
                              settings=[])],
            memberships=[dict(role="gis_reader", member="gis_owner", admin=False)],
            tablespaces=[dict(name="fast", owner="gis_owner", location="/srv/pg/fast", options=["random_page_cost=1.1"],
                              comment=None)], passwords=True)


def test_script_guards_every_item():
    text = pgglobals.script(DATA, "gis", "15.8")
    lines = text.splitlines()
    summary = json.loads(lines[0][len(pgglobals.HEADER):])
    assert summary == dict(database="gis", roles=["gis_owner", "gis_reader"], memberships=[["gis_reader", "gis_owner"]],
                           tablespaces=["fast"], passwords=True)
    create = [line for line in lines if line.startswith("CREATE ROLE \"gis_owner\"")][0]
    assert create == ("CREATE ROLE \"gis_owner\" WITH NOSUPERUSER INHERIT NOCREATEROLE CREATEDB LOGIN NOREPLICATION "
                      "NOBYPASSRLS CONNECTION LIMIT -1 PASSWORD 'SCRAM-SHA-256$4096:c2FsdA==$a:b';")
    # every CREATE/GRANT sits inside an \if on a NOT EXISTS test; nothing ALTERs an existing role
    depth, guarded = 0, []
    for line in lines:
        depth += line.startswith("\\if") - line.startswith("\\endif")
        if line.startswith(("CREATE", "GRANT", "ALTER", "COMMENT")):
            guarded.append(depth == 1)
    assert guarded and all(guarded)
    assert lines.count("\\if :atlasia_missing") == 4
    assert "COMMENT ON ROLE \"gis_owner\" IS 'owns it''s data';" in lines
    assert "ALTER ROLE \"gis_owner\" SET \"search_path\" TO 'gis', 'public';" in lines
    assert "GRANT \"gis_reader\" TO \"gis_owner\";" in lines
    assert "CREATE TABLESPACE \"fast\" OWNER \"gis_owner\" LOCATION '/srv/pg/fast';" in lines
    assert lines.index("GRANT \"gis_reader\" TO \"gis_owner\";") > lines.index(create)
    assert lines[-1] == "-- atlasia.dr globals complete"


def test_read_summary_refuses_foreign_and_cut_files(tmp_path):
    good = tmp_path / "globals_20261126_020000.sql"
    good.write_text(pgglobals.script(DATA, "gis", "15.8"))
    assert pgglobals.read_summary(str(good))["roles"] == ["gis_owner", "gis_reader"]
    cut = tmp_path / "cut.sql"
    cut.write_text(good.read_text()[:-60])
    with pytest.raises(ValueError, match="incomplete"):
        pgglobals.read_summary(str(cut))
    other = tmp_path / "other.sql"
    other.write_text("CREATE ROLE x;\n")
    with pytest.raises(ValueError, match="not a cluster-globals script"):
        pgglobals.read_summary(str(other))


class FakeClient(object):
    container = None

    def __init__(self, roles=("postgres",), memberships=(), tablespaces=("pg_default",), superuser=True):
        self.roles, self.memberships, self.tablespaces = set(roles), set(memberships), set(tablespaces)
        self.superuser = superuser
        self.scripts = []

    def server_version_text(self, db=None):
        return "15.8"

    def query(self, sql, db=None):
        if "FROM pg_authid a" in sql and not self.superuser:
            raise PostgresError("psql failed: permission denied for table pg_authid", kind="permission")
        if "json_build_object('name', a.rolname" in sql:
            roles = DATA["roles"] if "FROM pg_authid a" in sql else [dict(r, password=None) for r in DATA["roles"]]
            return [[json.dumps(roles)]]
        if "json_build_object('role', r.rolname" in sql:
            return [[json.dumps(DATA["memberships"])]]
        if "json_build_object('name', t.spcname" in sql:
            return [[json.dumps(DATA["tablespaces"])]]
        if sql == "SELECT rolname FROM pg_roles":
            return [[r] for r in sorted(self.roles)]
        if sql.startswith("SELECT r.rolname, u.rolname FROM pg_auth_members"):
            return [list(m) for m in sorted(self.memberships)]
        if sql == "SELECT spcname FROM pg_tablespace":
            return [[t] for t in sorted(self.tablespaces)]
        raise AssertionError(sql)

    def script(self, sql, db):
        self.scripts.append(sql)
        summary = json.loads(sql.decode().splitlines()[0][len(pgglobals.HEADER):])
        self.roles.update(summary["roles"])
        self.memberships.update(tuple(m) for m in summary["memberships"])
        self.tablespaces.update(summary["tablespaces"])


def test_write_artifact_with_sidecars_and_manifest(tmp_path):
    result = pgglobals.write_artifact(FakeClient(), "gis", str(tmp_path / "out"), "20261126_020000")
    path = tmp_path / "out" / "globals_20261126_020000.sql"
    assert result["path"] == str(path) and oct(os.stat(path).st_mode & 0o777) == "0o600"
    assert checksum.verify_sidecars(str(path), required=True)[0] == {"md5": "ok", "sha256": "ok"}
    manifest = json.loads((tmp_path / "out" / "globals_20261126_020000.json").read_text())
    assert manifest["type"] == "postgresql_globals" and manifest["roles"] == ["gis_owner", "gis_reader"]
    assert manifest["sha256"] == result["sha256"] and manifest["passwords"] is True
    with pytest.raises(FileExistsError):
        pgglobals.write_artifact(FakeClient(), "gis", str(tmp_path / "out"), "20261126_020000")


def test_write_artifact_without_superuser_has_no_passwords(tmp_path):
    result = pgglobals.write_artifact(FakeClient(superuser=False), "gis", str(tmp_path), "20261126_020000")
    assert result["passwords"] is False and "PASSWORD" not in open(result["path"]).read()


def test_replay_creates_only_what_is_missing(tmp_path):
    path = tmp_path / "globals_20261126_020000.sql"
    path.write_text(pgglobals.script(DATA, "gis", "15.8"))
    client = FakeClient(roles=("postgres", "gis_reader"))
    planned = pgglobals.replay(client, str(path), "postgres", check_mode=True)
    assert planned["created"] == dict(roles=["gis_owner"], memberships=[["gis_reader", "gis_owner"]],
                                      tablespaces=["fast"])
    assert planned["existing"] == dict(roles=["gis_reader"], tablespaces=[]) and client.scripts == []
    done = pgglobals.replay(client, str(path), "postgres")
    assert done["created"] == planned["created"] and len(client.scripts) == 1
    again = pgglobals.replay(client, str(path), "postgres")
    assert again["created"] == dict(roles=[], memberships=[], tablespaces=[]) and len(client.scripts) == 1


def test_report_lists_the_globals_created():
    base = report.build("restore", phases=[], checks=[], extra=dict(
        globals_created=dict(roles=["gis_owner"], memberships=[["gis_reader", "gis_owner"]], tablespaces=[])))
    text = report.markdown(base)
    assert "- Cluster globals created before the database: roles gis_owner; memberships gis_owner in gis_reader; " \
           "tablespaces none" in text
