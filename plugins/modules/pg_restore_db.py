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
  - Before anything is changed it checks that the safety backup's disk and the server's data directory have
    room for the safety backup and for a second copy of the database (O(space_check)); otherwise it refuses.
  - With O(safety_backup=true) the current database is dumped to C(prerestore_<YYYYMMDD>_<HHMMSS>.sql.gz),
    through the same code as M(atlasia.dr.pg_dump_backup), while the scratch database loads (the two never touch
    the same database); the swap waits for it, and a safety dump that fails leaves the target as it was. With
    O(encryption_key) it is encrypted while it is written (C(.sql.gz.enc)), so no plaintext copy reaches the
    disk.
  - After a successful restore the older safety backups of O(db) and the older C(<db>_previous_*) databases
    beyond O(safety_backup_retention) and O(previous_retention) are removed, newest kept first; the ones this
    restore made are always kept.
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
  - Run through the collection's action plugin, a long check and load print progress lines every
    C(dr_progress_interval) seconds, such as C(1.2 GiB of 3.4 GiB loaded, 60 MiB/s, about 38 s left) after the
    task's name and host, followed by the safety dump's own figures when it runs. The bytes are those of
    O(src) read so far by the check, then by the load (psql, pg_restore or the decompressor, measured from the
    file position of their descriptors, C(/proc/<pid>/fdinfo) on Linux; the furthest worker of a parallel
    pg_restore), against the size of O(src).
author:
  - atlasia DevOps team (@atlasia-devops)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - atlasia.dr.postgres
  - atlasia.dr.progress
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
        the host. zstd-compressed custom archives are restored by a single session.
      - V(0) (the default) takes the number of CPUs of this host, at most 4; V(1) restores with one session.
      - A plain SQL dump (C(.sql), C(.sql.gz), C(.sql.zst)) above V(1) is read once and loaded over that many
        C(psql) sessions, all with C(ON_ERROR_STOP) (the first error stops them all). Its schema is created
        first by one session, then every table's rows go as C(COPY) pieces to the sessions, then its indexes and
        primary key, unique, check and exclusion constraints are built in parallel, and last the rest (foreign
        keys, triggers, comments, grants...) in the dump's order. The database is the same as one C(psql)
        gives; only the physical order of a table's rows may differ. A dump taken with C(--create), or whose
        preamble holds psql commands such as C(\connect), is loaded by one session.
    type: int
    default: 0
  safety_backup:
    description:
      - Dump the current O(db) before restoring (skipped when O(db) does not exist).
    type: bool
    default: true
  safety_backup_dir:
    description:
      - Directory of the safety backup. Defaults to the directory of O(src).
    type: path
  safety_backup_compression_level:
    description:
      - gzip level (1-9) of the safety backup (C(pigz) when installed, else C(gzip)); the file stays a
        C(.sql.gz) that C(gunzip), C(psql) and this module restore.
      - The safety dump runs while the scratch database loads and competes with it for the CPUs, so it is
        written fast rather than small; level 1 takes about half the compression CPU of level 5 for a file
        about 5% larger (docs/performance.md).
    type: int
    default: 1
  encryption_key:
    description:
      - Passphrase the safety backup is encrypted with (age v1 with a passphrase, the C(.enc) format of
        M(atlasia.dr.dr_crypt)), while it is written. Give it whenever the backups are encrypted.
      - Leave it out for a plain C(.sql.gz) safety backup (private to its owner, mode 0600).
    type: str
  safety_backup_retention:
    description:
      - How many safety backups of O(db) to keep in the safety backup directory after a successful restore,
        newest first, the one just written included (always kept). V(-1) keeps them all.
      - Only files whose manifest names O(db) are counted and removed, with their sidecars and manifest.
    type: int
    default: 3
  previous_retention:
    description:
      - How many C(<db>_previous_<YYYYMMDD>_<HHMMSS>) databases to keep after a successful restore, newest
        first, the one just made included (always kept with O(keep_previous=true)). V(-1) keeps them all.
    type: int
    default: 2
  space_check:
    description:
      - Before anything is changed, check the free space the restore needs and refuse when it is missing
        (error_kind C(space)). The safety backup's directory needs 1.25 times the size of O(src) (plus 16 MiB),
        the server's data directory 1.1 times the current size of O(db) (or the dump's uncompressed size when
        O(db) does not exist) plus 64 MiB for the scratch copy; both together when they share a filesystem.
      - The server side is measured inside O(container), or on this host for a local server; a server on
        another host is reported as not checked.
    type: bool
    default: true
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
  - The restore needs free disk space for a second copy of the database until the previous one is dropped
    (see O(space_check)).
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
safety_backup_encrypted:
  description: Whether the safety backup is encrypted with O(encryption_key).
  returned: always
  type: bool
  sample: true
removed_safety_backups:
  description: Older safety backups of O(db) removed by O(safety_backup_retention) (artifact names).
  returned: success
  type: list
  elements: str
  sample: [prerestore_20261120_031500.sql.gz.enc]
dropped_previous:
  description: Older C(<db>_previous_*) databases dropped by O(previous_retention).
  returned: success
  type: list
  elements: str
  sample: [aiteam_prod_previous_20261120_031500]
space:
  description:
    - The free-space check (O(space_check)) made before anything changed, in bytes. C(local) is the safety
      backup's directory (null without a safety backup), C(server) the server's data directory; an entry
      with C(checked=false) says in C(reason) why it could not be measured.
  returned: always
  type: dict
  sample: {"checked": true, "local": {"path": "/srv/atlasia/backups/safety", "free": 52000000000,
           "needed": 310000000, "checked": true}, "server": {"path": "/var/lib/postgresql/data",
           "free": 52000000000, "needed": 1650000000, "checked": true}, "shared_filesystem": true}
parallel_load:
  description:
    - How a plain dump was loaded over O(jobs) sessions, when it was; C(copy_pieces) is the number of C(COPY)
      pieces, C(parallel_post) the index and constraint statements built in parallel, C(serial_post) the other
      post-data entries run in order.
  returned: when a plain dump was loaded with O(jobs) above 1
  type: dict
  sample: {"sessions": 2, "copy_pieces": 240, "parallel_post": 6, "serial_post": 3}
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
      (renames, and dropping the previous database with O(keep_previous=false)), C(retention) (older safety
      backups and previous databases removed).
  returned: always
  type: dict
  sample: {"check": 2.1, "prepare": 0.4, "safety_backup": 21.7, "load": 48.3, "count": 1.2, "swap": 0.2}
"""

import datetime
import json
import os
import threading
import time

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.atlasia.dr.plugins.module_utils import (
    backupset,
    compression,
    crypto,
    dbprops,
    naming,
    pgdump,
    plainload,
    progress,
    safety,
)
from ansible_collections.atlasia.dr.plugins.module_utils.common import DRModule
from ansible_collections.atlasia.dr.plugins.module_utils.postgres import (
    PostgresClient,
    PostgresError,
    classify,
    fail_postgres,
    postgres_argument_spec,
    quote_ident,
    quote_literal,
)


MIB = 1024 * 1024
SAFETY_PREFIX = "prerestore"


def _tree_size(path):
    if not os.path.isdir(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(top, name)) for top, dirs, files in os.walk(path) for name in files)


def _device(path):
    probe = os.path.abspath(path)
    while not os.path.exists(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)
    return os.stat(probe).st_dev


def _gib(value):
    return "%.2f GiB" % (value / 1024.0 ** 3)


class _SafetyFailed(Exception):
    def __init__(self, cause):
        super(_SafetyFailed, self).__init__(str(cause))
        self.cause = cause


class _Beside(object):
    """Run ``task`` in a thread; :meth:`wait` gives ``(result, exception, seconds)``, the exception caught."""

    def __init__(self, task):
        self._box = {}
        self._started = time.time()
        self._thread = threading.Thread(target=self._run, args=(task,))
        self._thread.daemon = True
        self._thread.start()

    def _run(self, task):
        try:
            self._box["result"] = task()
        except BaseException as exc:  # handed to the module's thread by wait()
            self._box["error"] = exc
        self._box["seconds"] = round(time.time() - self._started, 3)

    def wait(self):
        self._thread.join()
        return self._box.get("result"), self._box.get("error"), self._box.get("seconds")


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
        self.result = dict(db=self.db, safety_backup=None, safety_backup_encrypted=False, previous_db=None,
                           dropped_stale=[], changed=False)
        # progress lines of the action plugin (a no-op unless it set progress_file): bytes of the backup read
        self.report = progress.Reporter.from_module(module, verb="checked")

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

    def load_plain_parallel(self, src, comp, target, env_extra):
        """Load a plain dump over O(jobs) psql sessions (module_utils/plainload); False when it cannot be cut.

        The dump is decompressed once and read as a stream; a session's failure stops the others and fails the
        load like one psql would (the caller drops the scratch database).
        """
        decomp = compression.decompressor_argv(self.module, comp, src)

        def session(name):
            argv, env = self.client.command("psql", ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", target], env_extra)
            full = dict(os.environ)
            full.update(env)
            return argv, full

        try:
            stats = plainload.load_file(src, decomp, session, self.params["jobs"])
        except plainload.Unsupported:
            return False
        except plainload.LoadError as exc:
            kind, hint = classify(exc.stderr)
            raise PostgresError(str(exc) + (" -- %s" % hint if hint else ""), kind=kind, stderr=exc.stderr)
        self.result["parallel_load"] = stats
        return True

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
            reads = progress.FileReads([src]) if self.report.enabled else None
            if reads is not None:
                self.report.set_total(reads.total)
            with progress.Watch(self.report, reads):
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
        self.result["space"] = self.check_space(src, info, target_exists)
        mark = lap("check", mark)
        if self.module.check_mode:
            self.result.update(changed=True, duration=round(time.time() - t0, 3),
                               would=("replace %s" % self.db) if target_exists else ("create %s" % self.db))
            self.module.exit_json(**self.result)

        for stale in self.stale_scratches(existing):
            self.drop(stale)
            self.result["dropped_stale"].append(stale)

        like, self.result["properties_source"] = self.properties(target_exists)
        self.check_roles(like)
        safety = None
        if p["safety_backup"] and target_exists and p["mode"] == "replace":
            # the safety dump of the current database runs while the scratch database loads (it never touches
            # the database being saved); the swap waits for it, so nothing is replaced before it is complete
            safety = _Beside(self.safety_backup_task(src))

        target = self.db if p["mode"] == "new" else naming.scratch_db_name(self.db, self.moment, kind="restore")
        self.create_db(target, like)
        self.result["changed"] = True
        try:
            settings = p["session_settings"] or {}
            env_extra = {"PGOPTIONS": _pgoptions(settings)} if settings else None
            mark = lap("prepare", mark)
            reads = progress.FileReads([src]) if self.report.enabled else None
            self.report.restart("loaded", reads.total if reads is not None else None)
            with progress.Watch(self.report, reads):
                if not (info["format"] == "plain" and p["jobs"] > 1
                        and self.load_plain_parallel(src, info["compression"], target, env_extra)):
                    stages, stdin_path = self.restore_stages(src, info["format"], info["compression"], target,
                                                             env_extra)
                    self.client.pipeline(stages, stdin_path=stdin_path, env_extra=env_extra)
            self.apply_properties(target, like)
            mark = lap("load", mark)
            rows = self.client.exact_counts(target)
            mark = lap("count", mark)
            if safety is not None:
                path, failure, seconds = safety.wait()
                timings["safety_backup"] = seconds
                mark = lap("safety_wait", mark)
                if failure is not None:
                    raise _SafetyFailed(failure)
                self.result["safety_backup"] = path
                self.result["safety_backup_encrypted"] = bool(p["encryption_key"])
            if p["mode"] == "replace":
                self.result["previous_db"] = self.swap(target, target_exists)
                mark = lap("swap", mark)
        except BaseException as exc:
            if safety is not None:
                path, failure, seconds = safety.wait()  # never leave it writing; a complete one is kept
                self.result["safety_backup"] = path
            try:
                self.drop(target)
                cleanup = "the scratch database %s was dropped" % target
            except PostgresError as drop_exc:
                cleanup = "dropping the scratch database %s also failed (%s); drop it by hand" % (target, drop_exc)
            if isinstance(exc, _SafetyFailed):
                self.result["changed"] = False
                self.module.fail_json(
                    msg="the safety backup of %s failed, so the database was not replaced and nothing was changed "
                        "(%s): %s" % (self.db, cleanup, exc.cause), error_kind="safety_backup", **self.result)
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
            mark = lap("swap", mark)
        self.apply_retention()
        lap("retention", mark)
        self.result.update(rows=rows, tables=len(rows), duration=round(time.time() - t0, 3))
        return self.result

    def safety_dir(self, src):
        return self.params["safety_backup_dir"] or os.path.dirname(os.path.abspath(src))

    def check_space(self, src, info, target_exists):
        """Free space for the safety backup and the scratch copy, measured before anything is changed."""
        p = self.params
        report = dict(checked=p["space_check"], local=None, server=None, shared_filesystem=False)
        if not p["space_check"]:
            return report
        src_size = _tree_size(src)
        if p["safety_backup"] and target_exists and p["mode"] == "replace":
            where = self.safety_dir(src)
            free = backupset.disk_space(where)[0]
            report["local"] = dict(path=where, free=free, needed=int(src_size * 1.25) + 16 * MIB, checked=True)
        estimate, why = None, None
        if target_exists:
            try:
                estimate = self.client.database_size(self.db, self.maint)
            except PostgresError as exc:
                why = "the size of %s cannot be read (%s)" % (self.db, str(exc).splitlines()[0])
        else:
            estimate = info.get("uncompressed_size")
            why = None if estimate else "the restored size is not known in advance for a %s-format dump" % info["format"]
        datadir, free, device = self.client.data_directory_space(self.maint)
        if datadir is None:
            report["server"] = dict(path=None, free=None, needed=None, checked=False, reason=device)
        elif estimate is None:
            report["server"] = dict(path=datadir, free=free, needed=None, checked=False, reason=why)
        else:
            report["server"] = dict(path=datadir, free=free, needed=int(estimate * 1.1) + 64 * MIB, checked=True)
        local, server = report["local"], report["server"]
        if local and server["checked"] and isinstance(device, int) and device == _device(local["path"]):
            report["shared_filesystem"] = True
        short = []
        if report["shared_filesystem"]:
            needed = local["needed"] + server["needed"]
            if needed > server["free"]:
                short.append("%s (holding both the safety backup directory %s and the data directory %s) has %s free "
                             "and needs %s" % ("this filesystem", local["path"], datadir, _gib(server["free"]),
                                               _gib(needed)))
        else:
            if local and local["needed"] > local["free"]:
                short.append("the safety backup directory %s has %s free and needs %s (the size of the backup "
                             "restored, with room to spare)" % (local["path"], _gib(local["free"]), _gib(local["needed"])))
            if server["checked"] and server["needed"] > server["free"]:
                short.append("the server's data directory %s has %s free and needs %s for the scratch copy of %s "
                             "(the previous database stays until it is rotated out)" % (
                                 datadir, _gib(server["free"]), _gib(server["needed"]), self.db))
        if not server["checked"]:
            self.module.warn("the free space of the database server was not checked: %s" % server["reason"])
        if short:
            self.module.fail_json(
                msg="not enough free space for the restore of %s, nothing was changed: %s. Free space (older "
                    "%s_previous_* databases and safety backups can go once you no longer need them), or set "
                    "space_check=false to restore anyway." % (self.db, "; ".join(short), self.db),
                error_kind="space", **self.result)
        return report

    def apply_retention(self):
        """Older safety backups and replaced databases beyond their counts; a failure here only warns."""
        p = self.params
        self.result.update(removed_safety_backups=[], dropped_previous=[])
        try:
            if p["mode"] == "replace":
                names = self.client.databases(self.maint)
                for name in safety.previous_to_drop(names, self.db, p["previous_retention"],
                                                    protect=self.result["previous_db"]):
                    self.drop(name)
                    self.result["dropped_previous"].append(name)
            if self.result["safety_backup"]:
                made = naming.parse_backup_name(os.path.basename(self.result["safety_backup"]))
                self.result["removed_safety_backups"] = safety.prune_files(
                    os.path.dirname(self.result["safety_backup"]), SAFETY_PREFIX, p["safety_backup_retention"],
                    protect=made.stem if made else None, database=self.db)
        except (PostgresError, OSError) as exc:
            self.module.warn("the restore succeeded, but removing older safety copies failed: %s" % exc)

    def safety_backup_task(self, src):
        """The safety dump as a callable for another thread, everything that may fail the module resolved first.

        The options, the destination and the programs (pg_dump, the compressor) are checked here, in the module's
        thread: a missing program or an existing file fails the task before anything is started.
        """
        params = dict(self.params)
        params.update(dest=self.safety_dir(src), prefix=SAFETY_PREFIX, kind="full", format="plain", compression="gzip",
                      compression_level=self.params["safety_backup_compression_level"],
                      compression_threads=0, jobs=1, timestamp=naming.format_timestamp(self.moment),
                      dump_options=[], mode="0600", db=self.db)
        opts = pgdump.resolve(params)
        if os.path.lexists(opts["path"]):
            self.module.fail_json(msg="the safety backup %s already exists (a backup is never overwritten); nothing "
                                      "was changed: retry in a second" % opts["path"], error_kind="safety_backup",
                                  **self.result)
        self.client.tool("pg_dump")
        compression.compressor_argv(self.module, opts["compression"], opts["compression_level"], 0)
        # its progress rides in the restore's own lines ("; safety dump: ...")
        report = self.report.child("safety dump")

        def task():
            try:
                return pgdump.write_dump(self.module, self.client, opts, report=report)["path"]
            finally:
                report.close()
        return task


def main():
    argument_spec = postgres_argument_spec()
    argument_spec.update(
        src=dict(type="path", required=True),
        mode=dict(type="str", default="replace", choices=["replace", "new"]),
        jobs=dict(type="int", default=0),
        safety_backup=dict(type="bool", default=True),
        safety_backup_dir=dict(type="path"),
        safety_backup_compression_level=dict(type="int", default=1),
        keep_previous=dict(type="bool", default=True),
        encryption_key=dict(type="str", no_log=True),
        safety_backup_retention=dict(type="int", default=3),
        previous_retention=dict(type="int", default=2),
        space_check=dict(type="bool", default=True),
        maintenance_db=dict(type="str", default="postgres"),
        require_checksum=dict(type="bool", default=False),
        no_owner=dict(type="bool", default=False),
        no_acl=dict(type="bool", default=False),
        owner=dict(type="str"),
        database_properties=dict(type="dict"),
        session_settings=dict(type="dict", default={"synchronous_commit": "off", "maintenance_work_mem": "512MB"}),
        swap_attempts=dict(type="int", default=5),
    )
    argument_spec.update(progress.progress_argument_spec())
    module = DRModule(argument_spec=argument_spec, supports_check_mode=True)
    for name in ("safety_backup_retention", "previous_retention"):
        if module.params[name] == 0 or module.params[name] < -1:
            module.fail_json(msg="%s must be -1 (keep all) or at least 1 (the copy this restore makes is always "
                                 "kept), got %d" % (name, module.params[name]), error_kind="invalid_argument")
    if module.params["encryption_key"] is not None:
        if not module.params["encryption_key"]:
            module.fail_json(msg="encryption_key is empty: give the key the backups are encrypted with, or leave "
                                 "the option out for a plain safety backup", error_kind="invalid_argument")
        if not crypto.HAS_CRYPTOGRAPHY:
            module.fail_json(msg=missing_required_lib("cryptography"), exception=str(crypto.CRYPTOGRAPHY_IMPORT_ERROR),
                             error_kind="invalid_argument")
    if not 1 <= module.params["safety_backup_compression_level"] <= 9:
        module.fail_json(msg="safety_backup_compression_level must be a gzip level from 1 to 9, got %d"
                             % module.params["safety_backup_compression_level"], error_kind="invalid_argument")
    if module.params["jobs"] < 0:
        module.fail_json(msg="jobs must be 0 (one per CPU of this host, at most 4) or a number of sessions, got %d"
                             % module.params["jobs"], error_kind="invalid_argument")
    if module.params["jobs"] == 0:
        module.params["jobs"] = max(1, min(4, os.cpu_count() or 1))
    restorer = Restorer(module)
    try:
        result = restorer.run()
    except PostgresError as exc:
        fail_postgres(module, exc, prefix="restore of %s failed: " % module.params["db"], **restorer.result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
