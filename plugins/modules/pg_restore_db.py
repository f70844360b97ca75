#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pg_restore_db
short_description: Restore a PostgreSQL database from a backup without ever losing the current one
version_added: 0.1.0
description:
  - Restores a backup made by M(atlasia.dr.pg_dump_backup) (any format and compression) or a plain
    C(.sql.gz) made by C(pg_dump | gzip).
  - Before touching anything it checks the C(.md5)/C(.sha256) sidecars when present, decompresses the whole
    file (and checks pg_dump's completion trailer of plain dumps) or reads the whole archive. A missing or
    damaged backup fails the task and the server is untouched.
  - With O(safety_backup=true) the current database is first dumped to
    C(prerestore_<YYYYMMDD>_<HHMMSS>.sql.gz), through the same code as M(atlasia.dr.pg_dump_backup).
  - O(mode=replace) restores into a scratch database with C(ON_ERROR_STOP) / C(--exit-on-error); only when
    that fully succeeded are the target's sessions terminated and the databases swapped by renames in one
    transaction, the old one kept under C(<db>_previous_<YYYYMMDD>_<HHMMSS>). Any failure before the swap
    drops the scratch database and leaves the target exactly as it was.
  - O(mode=new) restores into O(db), which must not exist (a temporary database from which lost rows are
    copied back, the plan's Scenario 4).
  - Scratch databases left by an interrupted earlier run for the same O(db) are dropped first.
  - The database restored into gets the database-level properties of the backup, which C(pg_dump) leaves out
    (owner, encoding, locale provider and ICU locale, LC_COLLATE/LC_CTYPE, tablespace, connection limit,
    comment, grants on the database including C(REVOKE CONNECT ... FROM PUBLIC), C(ALTER DATABASE ... SET)
    and C(ALTER ROLE ... IN DATABASE ... SET) settings). They are created with the database or applied after
    the load, after every setting the load left (extension scripts such as PostGIS topology change the
    database's C(search_path)) was reset. They come from O(database_properties), else from the manifest
    M(atlasia.dr.pg_dump_backup) wrote beside O(src); for a backup without them (taken by an older version)
    they are copied from the database being replaced; with none of these the database gets the server's
    defaults and O(owner) (or O(login_user)) as owner.
  - When those properties name roles the server does not have, the restore fails before changing anything
    and lists them (replay the set's cluster globals with M(atlasia.dr.pg_globals) first).
author:
  - atlasia DevOps team (@atlasia-devops)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - atlasia.dr.postgres
attributes:
  check_mode:
    support: full
    details: Validates the backup completely and reports what it would do; the server is not changed.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  src:
    description:
      - Backup to restore, a file or a directory-format dump.
    type: path
    required: true
  mode:
    description:
      - V(replace) swaps a fully restored copy in place of O(db) (O(db) may be missing).
      - V(new) restores into O(db), which must not exist.
    type: str
    default: replace
    choices: [replace, new]
  jobs:
    description:
      - Parallel restore jobs (C(pg_restore --jobs)) for custom and directory formats read from a file on
        the host. Plain SQL and zstd-compressed archives are restored by a single session.
    type: int
    default: 1
  safety_backup:
    description:
      - Dump the current O(db) before restoring (skipped when O(db) does not exist).
    type: bool
    default: true
  safety_backup_dir:
    description:
      - Directory of the safety backup. Defaults to the directory of O(src).
    type: path
  keep_previous:
    description:
      - Keep the replaced database under C(<db>_previous_<YYYYMMDD>_<HHMMSS>). When V(false) it is dropped
        after a successful swap.
    type: bool
    default: true
  maintenance_db:
    description:
      - Database to connect to for creating, renaming and dropping databases.
    type: str
    default: postgres
  require_checksum:
    description:
      - Refuse a backup that has no C(.md5) or C(.sha256) sidecar.
    type: bool
    default: false
  no_owner:
    description:
      - Do not restore object ownership (C(pg_restore --no-owner)); the objects belong to O(login_user), and so
        does the database unless O(owner) is given. For restoring into a foreign cluster on purpose.
      - Custom and directory formats only; a plain SQL dump is replayed by C(psql) as written, C(ALTER ... OWNER
        TO) included (take such backups with C(format=custom), or C(pg_dump --no-owner)).
    type: bool
    default: false
  no_acl:
    description:
      - Do not restore privileges (C(pg_restore --no-acl)) - no C(GRANT)/C(REVOKE) on the objects, no default
        privileges, no grants on the database (it keeps PostgreSQL's default grants). Row-level security
        policies are not privileges and are restored. For restoring into a foreign cluster on purpose.
      - With O(no_owner) or O(no_acl), C(ALTER ROLE ... IN DATABASE ... SET) settings of roles the server does not
        have are left out (listed in RV(skipped_role_settings)) instead of failing the restore.
      - Custom and directory formats only. A plain SQL dump is replayed by C(psql) exactly as written and its
        C(GRANT)/C(REVOKE) lines cannot be told apart safely from data, so O(no_acl=true) with a plain dump
        fails before anything changes (take such backups with C(format=custom), or C(pg_dump --no-acl)).
    type: bool
    default: false
  owner:
    description:
      - Owner of the restored database, also in its grants. Defaults to the owner recorded in the backup,
        else the owner of the database being replaced, else O(login_user).
    type: str
  database_properties:
    description:
      - Database-level properties to restore, as recorded by M(atlasia.dr.pg_dump_backup) under
        C(database_properties) in its manifest (M(atlasia.dr.backup_locate) returns those of the set).
      - Defaults to the manifest beside O(src), when there is one.
    type: dict
  session_settings:
    description:
      - Server settings applied to the restoring sessions only (through C(PGOPTIONS)). They speed up a
        load without touching the server's configuration. Set to V({}) to disable.
    type: dict
    default:
      synchronous_commit: 'off'
      maintenance_work_mem: 512MB
  swap_attempts:
    description:
      - How many times to retry the swap when clients reconnect to O(db) between terminating its sessions
        and renaming it.
    type: int
    default: 5
notes:
  - Stop the application services using O(db) before a restore; the swap terminates their sessions.
  - The restore needs free disk space for a second copy of the database until the previous one is dropped.
seealso:
  - module: atlasia.dr.pg_dump_backup
"""

EXAMPLES = r"""
- name: Restore the newest backup in place of the production database (old one kept)
  atlasia.dr.pg_restore_db:
    src: /srv/atlasia/backups/daily/backup_20261126_020000.sql.gz
    db: aiteam_prod
    container: aiteam_db_prod
    login_user: aiteam_prod_user
    login_password: "{{ vault_db_password }}"
    safety_backup_dir: /srv/atlasia/backups/safety
  register: restore

- name: Restore into a temporary database to copy deleted rows back (Scenario 4)
  atlasia.dr.pg_restore_db:
    src: /srv/atlasia/backups/daily/backup_20261125_020000.dump
    db: aiteam_recovery_tmp
    mode: new
    safety_backup: false
    login_host: 127.0.0.1

- name: Parallel restore of a directory-format dump
  atlasia.dr.pg_restore_db:
    src: /srv/atlasia/backups/daily/backup_20261126_020000.dir
    db: aiteam_prod
    jobs: 4
    keep_previous: false
"""

RETURN = r"""
db:
  description: Database restored.
  returned: always
  type: str
  sample: aiteam_prod
safety_backup:
  description: Path of the safety backup written before the restore, or null.
  returned: always
  type: str
  sample: /srv/atlasia/backups/safety/prerestore_20261126_031500.sql.gz
previous_db:
  description: Name the replaced database was kept under, or null (none existed, or O(keep_previous=false)).
  returned: always
  type: str
  sample: aiteam_prod_previous_20261126_031500
rows:
  description: Exact row count of every table after the restore.
  returned: success and not check mode
  type: dict
  sample: {"public.users": 120, "public.workflow_runs": 10452}
tables:
  description: Number of tables restored.
  returned: success and not check mode
  type: int
  sample: 12
duration:
  description: Seconds the task took.
  returned: always
  type: float
  sample: 48.2
format:
  description: Format and compression detected in O(src).
  returned: always
  type: dict
  sample: {"format": "plain", "compression": "gzip"}
checksums:
  description: Result of the sidecar check per algorithm (V(ok) or V(missing)).
  returned: always
  type: dict
  sample: {"md5": "ok", "sha256": "ok"}
properties_source:
  description:
    - Where the database-level properties came from; V(backup) (the backup's manifest), V(existing database)
      (a backup without them, replacing a database) or V(none) (server defaults).
  returned: when the server was reached
  type: str
  sample: backup
skipped_role_settings:
  description:
    - The C(ALTER ROLE ... IN DATABASE ... SET) settings of the backup left out, by role - with O(no_owner) or
      O(no_acl) because their roles do not exist on the server, or because O(login_user) is neither superuser nor
      C(CREATEROLE) (a warning says so).
  returned: when some were left out
  type: dict
  sample: {"gis_reader": ["statement_timeout=5s"]}
dropped_stale:
  description: Scratch databases of interrupted earlier runs that were dropped.
  returned: always
  type: list
  elements: str
  sample: []
timings:
  description:
    - Seconds spent in each phase, for RTO reports; phases that did not run are absent.
    - C(check) (sidecars and full read of the backup), C(prepare) (stale scratch databases, creating the one
      restored into), C(safety_backup), C(load) (psql or pg_restore), C(count) (exact row counts), C(swap)
      (renames, and dropping the previous database with O(keep_previous=false)).
  returned: always
  type: dict
  sample: {"check": 2.1, "prepare": 0.4, "safety_backup": 21.7, "load": 48.3, "count": 1.2, "swap": 0.2}
"""

import datetime
import json
import os
import time

from ansible_collections.atlasia.dr.plugins.module_utils import compression, dbprops, naming, pgdump
from ansible_collections.atlasia.dr.plugins.module_utils.common import DRModule
from ansible_collections.atlasia.dr.plugins.module_utils.postgres import (
    PostgresClient,
    PostgresError,
    fail_postgres,
    postgres_argument_spec,
    quote_ident,
    quote_literal,
)


def _pgoptions(settings):
    return " ".join("-c %s=%s" % (key, str(value).replace(" ", "\\ ")) for key, value in sorted(settings.items()))


class Restorer(object):
    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.client = PostgresClient(module)
        self.maint = self.params["maintenance_db"]
        self.db = self.params["db"]
        self.moment = naming.utc_now()
        self.result = dict(db=self.db, safety_backup=None, previous_db=None, dropped_stale=[], changed=False)

    def sql(self, statement):
        return self.client.query(statement, db=self.maint)

    def drop(self, name):
        self.sql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % quote_ident(name))

    def stale_scratches(self, names=None):
        if names is None:
            names = self.client.databases(self.maint)
        return [name for name in names if naming.parse_scratch_db_name(name, self.db, kind="restore") is not None]

    def restore_stages(self, src, fmt, comp, target, env_extra=None):
        # env_extra (PGOPTIONS) is named in the stages too: through `docker exec` only variables listed with -e
        # reach the client program.
        jobs = self.params["jobs"]
        if fmt == "plain":
            stage, env = self.client.stage("psql", ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", target], env_extra)
            decomp = compression.decompressor_argv(self.module, comp, src)
            if decomp:
                return [(os.path.basename(decomp[0]) + " -d", decomp), stage], None
            return [stage], src
        args = ["--exit-on-error", "--dbname=%s" % target]
        if self.params["no_owner"]:
            args.append("--no-owner")
        if self.params["no_acl"]:
            args.append("--no-acl")
        from_stdin = self.client.container or comp == "zstd"
        if jobs > 1 and not from_stdin:
            args.append("--jobs=%d" % jobs)
        if not from_stdin:
            args.append(src)
        stage, env = self.client.stage("pg_restore", args, env_extra)
        if comp == "zstd":
            return [("zstd -d", compression.decompressor_argv(self.module, "zstd", src)), stage], None
        return [stage], (src if from_stdin else None)

    def properties(self, target_exists):
        """Database-level properties to give the restored database, and where they come from.

        The backup's own record (O(database_properties), else the manifest beside O(src)) wins; a backup taken
        before manifests recorded them falls back to the database being replaced.
        """
        props, source = self.params["database_properties"], "backup"
        if not props:
            own = naming.manifest_path_for(self.params["src"])
            if own:
                try:
                    with open(own) as handle:
                        props = json.load(handle).get("database_properties")
                except (OSError, ValueError) as exc:
                    self.module.fail_json(msg="the manifest %s beside the backup is unreadable: %s" % (own, exc),
                                          error_kind="bad_backup", **self.result)
        if not props and target_exists:
            props, source = dbprops.capture(self.client, self.db, db=self.maint), "existing database"
        if not props:
            return None, "none"
        props = dict(props)
        owner = self.params["owner"] or (self.params["login_user"] if self.params["no_owner"] else None)
        if self.params["no_acl"]:
            props["acl"] = None  # the database keeps the default grants
        if owner and owner != props.get("owner"):
            # the chosen owner takes the original owner's place, in the grants too
            old = props.get("owner")
            props["acl"] = None if props.get("acl") is None else [
                dict(item, grantor=owner if item.get("grantor") == old else item.get("grantor"),
                     grantee=owner if item.get("grantee") == old else item.get("grantee")) for item in props["acl"]]
            props["owner"] = owner
        return props, source

    def check_roles(self, props):
        """Fail before anything changes when the properties name roles this server does not have.

        Also refuses O(no_acl) with a plain dump, which psql replays as written.
        """
        if self.params["no_acl"] and (self.result.get("format") or {}).get("format") == "plain":
            self.module.fail_json(msg="no_acl needs a custom or directory-format backup: psql replays a plain SQL dump "
                                      "as written, GRANT and REVOKE included. Restore a custom-format backup, or a "
                                      "plain dump taken with pg_dump --no-acl (without no_acl). Nothing was changed.",
                                  error_kind="request", **self.result)
        if not props:
            return
        missing = dbprops.missing_roles(self.client, dbprops.roles_named(props), self.maint)
        foreign = self.params["no_owner"] or self.params["no_acl"]
        settings = props.get("role_settings") or {}
        if foreign and missing and set(missing) <= set(settings) and props.get("owner") not in missing:
            # a foreign cluster on purpose: settings of roles it does not have are left out
            self.result["skipped_role_settings"] = dict((role, settings[role]) for role in missing)
            props["role_settings"] = dict((role, value) for role, value in settings.items() if role not in missing)
            missing = []
        if props.get("role_settings") and not dbprops.may_set_role_settings(self.client, self.maint):
            skipped = self.result.setdefault("skipped_role_settings", {})
            skipped.update(props["role_settings"])
            props["role_settings"] = {}
            self.module.warn("%s may not set ALTER ROLE ... IN DATABASE settings (it is neither superuser nor "
                             "CREATEROLE): the restored database goes without those of the backup (%s); set them as "
                             "a superuser, see skipped_role_settings" % (self.params["login_user"], ", ".join(sorted(skipped))))
        if missing:
            self.module.fail_json(
                msg="the backed-up database names roles this server does not have: %s. Replay the set's cluster "
                    "globals first (atlasia.dr.pg_globals state=restored, or psql -f globals_<timestamp>.sql), "
                    "or restore on purpose into a foreign cluster with no_owner=true and no_acl=true. "
                    "Nothing was changed." % ", ".join(missing), error_kind="missing_role", missing_roles=missing,
                **self.result)

    def create_db(self, name, props):
        if props:
            statement = dbprops.create_statement(name, props, server_version=self.client.server_version(db=self.maint))
        else:
            statement = dbprops.create_statement(name, None, owner=self.params["owner"] or self.params["login_user"])
        self.sql(statement)

    def apply_properties(self, name, props):
        """After the load: connection limit, comment, settings and grants of the backup (none left by the load)."""
        if props:
            dbprops.apply(self.client, name, props, self.maint, no_acl=self.params["no_acl"])

    def swap(self, scratch, target_exists):
        previous = naming.scratch_db_name(self.db, self.moment, kind="previous")
        if target_exists:
            # a restore of the same database within the same second already keeps a copy under that name
            taken = set(self.client.databases(self.maint))
            moment = self.moment
            for dummy in range(3600):
                if previous not in taken:
                    break
                moment += datetime.timedelta(seconds=1)
                previous = naming.scratch_db_name(self.db, moment, kind="previous")
        terminate = ("SELECT pg_terminate_backend(pid%s) FROM pg_stat_activity WHERE datname IN (%s, %s) "
                     "AND pid <> pg_backend_pid();" % (
                         ", 5000" if self.client.server_version(db=self.maint) >= 140000 else "",
                         quote_literal(self.db), quote_literal(scratch)))
        renames = "BEGIN;\n"
        if target_exists:
            renames += "ALTER DATABASE %s RENAME TO %s;\n" % (quote_ident(self.db), quote_ident(previous))
        renames += "ALTER DATABASE %s RENAME TO %s;\nCOMMIT;\n" % (quote_ident(scratch), quote_ident(self.db))
        last_error = None
        for attempt in range(max(1, self.params["swap_attempts"])):
            try:
                self.client.script((terminate + "\n" + renames).encode("utf-8"), db=self.maint)
                return previous if target_exists else None
            except PostgresError as exc:
                last_error = exc
                if "being accessed by other users" not in (exc.stderr or str(exc)):
                    raise
                time.sleep(0.5 * (attempt + 1))
        raise last_error

    def run(self):
        p = self.params
        t0 = time.time()
        timings = self.result["timings"] = {}

        def lap(name, since):
            now = time.time()
            timings[name] = round(timings.get(name, 0) + now - since, 3)
            return now

        src = p["src"]
        try:
            info = pgdump.inspect(self.module, self.client, src, require_checksum=p["require_checksum"])
        except pgdump.ArtifactError as exc:
            self.module.fail_json(msg="backup refused, nothing was changed: %s" % exc, error_kind="bad_backup",
                                  **self.result)
        self.result.update(format=dict(format=info["format"], compression=info["compression"]),
                           checksums=info["checksums"])
        mark = lap("check", t0)
        existing = self.client.databases(self.maint)
        target_exists = self.db in existing
        if p["mode"] == "new" and target_exists:
            self.module.fail_json(msg="database %s already exists; mode=new restores only into a database that "
                                      "does not exist (drop it or choose another name)" % self.db,
                                  error_kind="exists", **self.result)
        if self.module.check_mode:
            self.result.update(changed=True, duration=round(time.time() - t0, 3),
                               would=("replace %s" % self.db) if target_exists else ("create %s" % self.db))
            self.module.exit_json(**self.result)

        for stale in self.stale_scratches(existing):
            self.drop(stale)
            self.result["dropped_stale"].append(stale)

        like, self.result["properties_source"] = self.properties(target_exists)
        self.check_roles(like)
        if p["safety_backup"] and target_exists and p["mode"] == "replace":
            mark = lap("prepare", mark)
            self.result["safety_backup"] = self.safety_backup(src)
            mark = lap("safety_backup", mark)

        target = self.db if p["mode"] == "new" else naming.scratch_db_name(self.db, self.moment, kind="restore")
        self.create_db(target, like)
        self.result["changed"] = True
        try:
            settings = p["session_settings"] or {}
            env_extra = {"PGOPTIONS": _pgoptions(settings)} if settings else None
            stages, stdin_path = self.restore_stages(src, info["format"], info["compression"], target, env_extra)
            mark = lap("prepare", mark)
            self.client.pipeline(stages, stdin_path=stdin_path, env_extra=env_extra)
            self.apply_properties(target, like)
            mark = lap("load", mark)
            rows = self.client.exact_counts(target)
            mark = lap("count", mark)
            if p["mode"] == "replace":
                self.result["previous_db"] = self.swap(target, target_exists)
                mark = lap("swap", mark)
        except BaseException as exc:
            try:
                self.drop(target)
                cleanup = "the scratch database %s was dropped" % target
            except PostgresError as drop_exc:
                cleanup = "dropping the scratch database %s also failed (%s); drop it by hand" % (target, drop_exc)
            if not isinstance(exc, (PostgresError, OSError)):
                raise
            state = ("database %s is unchanged" % self.db) if p["mode"] == "replace" else (
                "database %s was not created" % self.db)
            self.result["changed"] = False
            self.module.fail_json(
                msg="restore of %s from %s failed: %s. %s; %s. Check the error above, fix it (or pick another "
                    "backup) and run the restore again." % (self.db, src, exc, state.capitalize(), cleanup),
                error_kind=getattr(exc, "kind", "io"), stderr=(getattr(exc, "stderr", "") or "")[-4000:],
                **self.result)
        if p["mode"] == "replace" and self.result["previous_db"] and not p["keep_previous"]:
            self.drop(self.result["previous_db"])
            self.result["previous_db"] = None
            lap("swap", mark)
        self.result.update(rows=rows, tables=len(rows), duration=round(time.time() - t0, 3))
        return self.result

    def safety_backup(self, src):
        params = dict(self.params)
        params.update(dest=self.params["safety_backup_dir"] or os.path.dirname(os.path.abspath(src)),
                      prefix="prerestore", kind="full", format="plain", compression="gzip", compression_level=None,
                      compression_threads=0, jobs=1, timestamp=naming.format_timestamp(self.moment),
                      dump_options=[], mode="0600", db=self.db)
        opts = pgdump.resolve(params)
        try:
            return pgdump.write_dump(self.module, self.client, opts)["path"]
        except (PostgresError, pgdump.ArtifactError, OSError) as exc:
            self.module.fail_json(msg="the safety backup of %s failed, so the restore did not start and nothing "
                                      "was changed: %s" % (self.db, exc), error_kind="safety_backup", **self.result)


def main():
    argument_spec = postgres_argument_spec()
    argument_spec.update(
        src=dict(type="path", required=True),
        mode=dict(type="str", default="replace", choices=["replace", "new"]),
        jobs=dict(type="int", default=1),
        safety_backup=dict(type="bool", default=True),
        safety_backup_dir=dict(type="path"),
        keep_previous=dict(type="bool", default=True),
        maintenance_db=dict(type="str", default="postgres"),
        require_checksum=dict(type="bool", default=False),
        no_owner=dict(type="bool", default=False),
        no_acl=dict(type="bool", default=False),
        owner=dict(type="str"),
        database_properties=dict(type="dict"),
        session_settings=dict(type="dict", default={"synchronous_commit": "off", "maintenance_work_mem": "512MB"}),
        swap_attempts=dict(type="int", default=5),
    )
    module = DRModule(argument_spec=argument_spec, supports_check_mode=True)
    restorer = Restorer(module)
    try:
        result = restorer.run()
    except PostgresError as exc:
        fail_postgres(module, exc, prefix="restore of %s failed: " % module.params["db"], **restorer.result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
