# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Connection handling for the PostgreSQL client programs, the one place that knows how to reach a server.

Options are named like community.postgresql's. Programs run either on the host or inside a container
through ``docker exec``; in both cases the connection travels in ``PG*`` environment variables, so the
password never appears in an argument list (``docker exec -e PGPASSWORD`` copies the value from the
Docker CLI's own environment).
"""

from __future__ import annotations

import os
import re

from ansible_collections.atlasia.dr.plugins.module_utils.pipeline import PipelineError, run_pipeline

FIELD_SEP = "\x1f"


def postgres_argument_spec():
    """Options documented by the ``atlasia.dr.postgres`` doc fragment."""
    return dict(
        db=dict(type="str", required=True, aliases=["login_db", "name"]),
        login_host=dict(type="str", aliases=["host"]),
        login_unix_socket=dict(type="str"),
        port=dict(type="int", default=5432, aliases=["login_port"]),
        login_user=dict(type="str", default="postgres", aliases=["login"]),
        login_password=dict(type="str", no_log=True),
        ssl_mode=dict(type="str", default="prefer",
                      choices=["allow", "disable", "prefer", "require", "verify-ca", "verify-full"]),
        ca_cert=dict(type="path", aliases=["ssl_rootcert"]),
        connect_timeout=dict(type="int", default=10),
        container=dict(type="str"),
        docker_bin=dict(type="path"),
        pg_bin_dir=dict(type="path"),
    )


# psql options of every statement the collection runs: no psqlrc, quiet, unaligned, tuples only, stop at the
# first error
PSQL_OPTIONS = ("-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1")


def connection_env(params, extra=None):
    """The ``PG*`` environment of the connection options ``params`` (empty values left out), plus ``extra``."""
    env = {
        "PGHOST": params.get("login_unix_socket") or params.get("login_host"),
        "PGPORT": params.get("port"),
        "PGUSER": params.get("login_user"),
        "PGPASSWORD": params.get("login_password"),
        "PGSSLMODE": params.get("ssl_mode"),
        "PGSSLROOTCERT": params.get("ca_cert"),
        "PGCONNECT_TIMEOUT": params.get("connect_timeout"),
        "PGAPPNAME": "atlasia.dr",
    }
    if extra:
        env.update(extra)
    return dict((k, str(v)) for k, v in env.items() if v not in (None, ""))


def psql_argv(psql, params, db=None):
    """argv of ``psql`` (without ``-c``) for the connection options ``params``, the connection on its command line.

    For a psql run through a prefix that passes on only named environment variables (``docker exec -e
    PGPASSWORD``): the server (``-h`` socket directory or host, ``-p``, ``-U``, ``-d``) is in the argv, the
    password only in :func:`password_env`.
    """
    argv = [psql] + list(PSQL_OPTIONS)
    host = params.get("login_unix_socket") or params.get("login_host")
    if host:
        argv += ["-h", host]
    if params.get("port") is not None:
        argv += ["-p", str(params["port"])]
    if params.get("login_user"):
        argv += ["-U", params["login_user"]]
    return argv + ["-d", db or params["db"]]


def password_env(params):
    """The environment carrying the password of the connection options ``params`` (empty without one)."""
    return {"PGPASSWORD": params["login_password"]} if params.get("login_password") else {}


def quote_ident(name):
    """SQL identifier quoting (``"name"``), for database names built into statements."""
    return '"%s"' % name.replace('"', '""')


def quote_literal(value):
    """SQL string literal quoting (``'value'``)."""
    return "'%s'" % value.replace("'", "''")


# Debian's /usr/bin/psql, pg_dump, pg_restore... are links to pg_wrapper, a Perl script that picks a version and
# then runs /usr/lib/postgresql/<major>/bin/<program>; its start costs every call (see docs/performance.md).
PG_LIB_DIR = "/usr/lib/postgresql"
# the programs pg_wrapper always runs from the newest version installed (they are downwards compatible)
NEWEST_VERSION_PROGRAMS = ("psql", "pg_isready", "pg_archivecleanup")
_UNWRAPPED = {}


def unwrapped_program(path, name, lib_dir=None):
    """The binary Debian's ``pg_wrapper`` would run for ``path`` (program ``name``), or ``path`` itself.

    Resolved only where the wrapper's choice does not depend on the cluster: ``psql`` (and the other programs
    the wrapper always takes from the newest version) from the newest version installed, any other program
    when exactly one version is installed. With ``PGCLUSTER`` set, or several versions for a version-specific
    program such as ``pg_dump``, the wrapper keeps choosing. Not a wrapper: ``path`` unchanged.
    """
    lib_dir = lib_dir or PG_LIB_DIR
    key = (path, name, lib_dir, os.environ.get("PGCLUSTER"))
    if key in _UNWRAPPED:
        return _UNWRAPPED[key]
    found = path
    try:
        wrapped = os.path.basename(os.path.realpath(path)) == "pg_wrapper"
        versions = sorted((entry for entry in os.listdir(lib_dir) if re.match(r"^\d+(\.\d+)?$", entry)
                           and os.access(os.path.join(lib_dir, entry, "bin", name), os.X_OK)),
                          key=lambda entry: [int(part) for part in entry.split(".")]) if wrapped else []
    except OSError:
        versions = []
    if versions and not os.environ.get("PGCLUSTER") and (name in NEWEST_VERSION_PROGRAMS or len(versions) == 1):
        found = os.path.join(lib_dir, versions[-1], "bin", name)
    _UNWRAPPED[key] = found
    return found


class PostgresError(Exception):
    """A client program failed; ``kind`` classifies the cause for the on-call engineer."""

    def __init__(self, message, kind="error", stderr=""):
        self.kind = kind
        self.stderr = stderr
        super(PostgresError, self).__init__(message)


# Debian packages of extensions that are not in postgresql-<major> itself (contrib is part of it). ``{major}`` is the
# server's major version.
EXTENSION_PACKAGES = (
    (re.compile(r"^(postgis.*|address_standardizer.*)$"), "postgresql-{major}-postgis-3"),
    (re.compile(r"^pgrouting$"), "postgresql-{major}-pgrouting"),
    (re.compile(r"^vector$"), "postgresql-{major}-pgvector"),
    (re.compile(r"^pg_cron$"), "postgresql-{major}-cron"),
    (re.compile(r"^pg_partman$"), "postgresql-{major}-partman"),
    (re.compile(r"^pgaudit$"), "postgresql-{major}-pgaudit"),
    (re.compile(r"^hypopg$"), "postgresql-{major}-hypopg"),
    (re.compile(r"^(h3|h3_postgis)$"), "postgresql-{major}-h3"),
    (re.compile(r"^(ip4r)$"), "postgresql-{major}-ip4r"),
    (re.compile(r"^(pg_repack)$"), "postgresql-{major}-repack"),
    (re.compile(r"^(timescaledb)$"), "timescaledb-2-postgresql-{major} (Timescale's own repository)"),
)


def extension_package(name, major=None):
    """Debian package providing extension ``name`` (``major``: the server's major version, when known)."""
    major = str(major) if major else "<major>"
    for pattern, package in EXTENSION_PACKAGES:
        if pattern.match(name):
            return package.format(major=major)
    return "postgresql-%s (contrib) or the package named postgresql-%s-%s" % (major, major, name.replace("_", "-"))


def _missing_extension(match):
    name = match.group("name")
    where = match.groupdict().get("dir") or ""
    major = re.search(r"/postgresql/(\d+)/", where)
    package = extension_package(name, major.group(1) if major else None)
    return ("the extension \"%s\" the backup uses is not installed on the target server: install the Debian package "
            "%s there (apt-get install %s) and run the restore again" % (name, package, package.split(" ")[0]))


# (kind, pattern, hint): the first pattern found in the error output names the cause. A hint may be a function of
# the match. Errors of SQL run inside a dump come before the connection failures they could be mistaken for.
_CLASSIFY = (
    ("version_mismatch", re.compile(r"server version mismatch|unsupported version \([\d.]+\) in file header|"
                                    r"unrecognized configuration parameter \"transaction_timeout\"", re.I),
     "the backup comes from a newer PostgreSQL major version than the programs or server restoring it: restore "
     "with client programs and a server of at least the backup's major version (server_version in its manifest)"),
    ("missing_extension", re.compile(r'could not open extension control file "(?P<dir>[^"]*/)(?P<name>[^"/]+)\.control"'
                                     r'|extension "(?P<name2>[^"]+)" is not available', re.I),
     None),
    ("missing_locale", re.compile(r'invalid locale name:? "?(?P<name>[^"\s]+)|invalid (LC_COLLATE|LC_CTYPE) locale name|'
                                  r'could not (create|open collator for) locale "(?P<name2>[^"]+)"|'
                                  r'locale "[^"]*" (is not|does not exist)', re.I),
     "a locale of the backed-up database is not available on the target server: generate it there (Debian: "
     "add it to /etc/locale.gen, run locale-gen, restart PostgreSQL; ICU locales come with libicu) and run the "
     "restore again"),
    ("missing_role", re.compile(r'ERROR:\s+role "(?P<name>[^"]*)" does not exist', re.I),
     lambda m: "the backup names role \"%s\", which this server does not have: replay the set's cluster globals "
               "first (atlasia.dr.pg_globals state=restored, or psql -f globals_<timestamp>.sql), or restore into a "
               "foreign cluster on purpose with no_owner and no_acl" % m.group("name")),
    ("auth", re.compile(r"password authentication failed|no password supplied|authentication failed|"
                        r'FATAL:\s+role "[^"]*" does not exist', re.I),
     "authentication failed for the database user: check login_user / login_password"),
    ("unreachable", re.compile(r"could not connect|connection refused|timeout expired|could not translate host|"
                               r"No such file or directory\s+Is the server running", re.I),
     "the database server cannot be reached: check that PostgreSQL runs and login_host/port/login_unix_socket"),
    ("no_database", re.compile(r'database "[^"]*" does not exist', re.I),
     "the database does not exist"),
    ("no_container", re.compile(r"No such container|is not running", re.I),
     "the container is missing or stopped: check `docker ps -a` and the container option"),
    ("permission", re.compile(r"permission denied|must be owner|must be superuser", re.I),
     "the database user lacks a privilege this operation needs"),
    ("disk_full", re.compile(r"No space left on device|could not extend file", re.I),
     "a disk is full"),
)


def classify(stderr):
    """``(kind, hint)`` for a client program's error output."""
    for kind, pattern, hint in _CLASSIFY:
        match = pattern.search(stderr or "")
        if match:
            if kind == "missing_extension":
                return kind, _missing_extension(_ExtensionMatch(match))
            return kind, hint(match) if callable(hint) else hint
    return "error", None


class _ExtensionMatch(object):
    """The two spellings of a missing extension (PostgreSQL 15's control file, 16's "not available") as one."""

    def __init__(self, match):
        self.match = match

    def group(self, name):
        return self.match.group(name) or self.match.group(name + "2")

    def groupdict(self):
        return self.match.groupdict()


class PostgresClient(object):
    """Builds and runs ``pg_dump``/``pg_restore``/``psql`` commands for the module's connection options."""

    def __init__(self, module, params=None):
        self.module = module
        self.params = params if params is not None else module.params
        self.container = self.params.get("container")
        self._server_version = None

    # -- environment and argv ---------------------------------------------------------------------------
    def env(self, extra=None):
        return connection_env(self.params, extra)

    def tool(self, name):
        if self.container:
            return name
        if self.params.get("pg_bin_dir"):
            path = os.path.join(self.params["pg_bin_dir"], name)
            if not os.access(path, os.X_OK):
                self.module.fail_json(msg="%s not found in pg_bin_dir %s" % (name, self.params["pg_bin_dir"]))
            return path
        return unwrapped_program(self.module.get_bin_path(name, required=True), name)

    def command(self, name, args, env_extra=None, interactive=True):
        """``(argv, env)`` for client program ``name`` with ``args``."""
        env = self.env(env_extra)
        if not self.container:
            return [self.tool(name)] + list(args), env
        docker = self.params.get("docker_bin") or self.module.get_bin_path("docker", required=True)
        argv = [docker, "exec"] + (["-i"] if interactive else [])
        for key in sorted(env):
            argv += ["-e", key]  # value taken from the CLI's environment, not argv
        return argv + [self.container, name] + list(args), env

    def stage(self, name, args, env_extra=None, interactive=True):
        """A pipeline stage ``(label, argv)`` plus its environment."""
        argv, env = self.command(name, args, env_extra, interactive)
        label = "%s (in container %s)" % (name, self.container) if self.container else name
        return (label, argv), env

    # -- running ----------------------------------------------------------------------------------------
    def run(self, name, args, env_extra=None, data=None, check_rc=True):
        argv, env = self.command(name, args, env_extra, interactive=data is not None)
        rc, out, err = self.module.run_command(argv, environ_update=env, data=data, binary_data=data is not None,
                                               check_rc=False)
        if rc != 0 and check_rc:
            kind, hint = classify(err)
            lines = (err or out or "").strip().splitlines()
            msg = "%s failed (exit status %d): %s" % (name, rc, " | ".join(lines[-3:]) or "no error output")
            if hint:
                msg += " -- %s" % hint
            raise PostgresError(msg, kind=kind, stderr=err)
        return rc, out, err

    def query(self, sql, db=None):
        """Run one SQL statement in ``db`` (default: the module's ``db``) and return rows of strings."""
        args = list(PSQL_OPTIONS) + ["-F", FIELD_SEP, "-d", db or self.params["db"], "-c", sql]
        rc, out, err = self.run("psql", args)
        return [line.split(FIELD_SEP) for line in out.splitlines() if line != ""]

    def script(self, sql, db):
        """Run a multi-statement script through psql's stdin, stopping at the first error."""
        args = ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db]
        return self.run("psql", args, data=sql)

    def pipeline(self, stages, sink=None, stdin_path=None, env_extra=None):
        """Run a pipeline whose stages were built with :meth:`stage`; errors become :class:`PostgresError`."""
        env = self.env(env_extra)
        try:
            return run_pipeline(stages, sink=sink, stdin_path=stdin_path, env_update=env)
        except PipelineError as exc:
            kind, hint = classify(exc.stderr)
            if exc.cause is not None and isinstance(exc.cause, OSError) and exc.cause.errno == 28:
                kind, hint = "disk_full", "the destination disk is full"
            msg = str(exc) + (" -- %s" % hint if hint else "")
            raise PostgresError(msg, kind=kind, stderr=exc.stderr)

    # -- facts ------------------------------------------------------------------------------------------
    def server_version(self, db=None):
        if self._server_version is None:
            rows = self.query("SHOW server_version_num", db=db)
            self._server_version = int(rows[0][0])
        return self._server_version

    def server_version_text(self, db=None):
        return self.query("SHOW server_version", db=db)[0][0]

    def databases(self, maintenance_db):
        return [row[0] for row in self.query("SELECT datname FROM pg_database ORDER BY datname", db=maintenance_db)]

    def database_info(self, name, maintenance_db):
        """Owner, encoding and locales of database ``name`` (a subset of :func:`dbprops.capture`), or ``None``."""
        from ansible_collections.atlasia.dr.plugins.module_utils import dbprops  # dbprops builds on this module

        props = dbprops.capture(self, name, db=maintenance_db)
        if props is None:
            return None
        return dict((key, props[key]) for key in ("owner", "encoding", "collate", "ctype"))

    def database_size(self, name, maintenance_db):
        return int(self.query("SELECT pg_database_size(%s)" % quote_literal(name), db=maintenance_db)[0][0])

    def data_directory_space(self, maintenance_db):
        """``(data_directory, free_bytes, device)`` of the server's data directory, or ``(None, None, reason)``.

        Measured inside the container (``df``) or, for a server on this host, with ``statvfs``. A server on
        another host, or a login that may not read ``data_directory`` (superuser or pg_read_all_settings),
        gives no answer: the reason says why.
        """
        try:
            datadir = self.query("SELECT current_setting('data_directory')", db=maintenance_db)[0][0]
        except PostgresError as exc:
            return None, None, "data_directory cannot be read by this login (%s)" % str(exc).splitlines()[0]
        if self.container:
            docker = self.params.get("docker_bin") or self.module.get_bin_path("docker", required=True)
            rc, out, err = self.module.run_command([docker, "exec", self.container, "df", "-Pk", datadir])
            fields = out.splitlines()[-1].split() if rc == 0 and out.strip() else []
            if len(fields) < 4 or not fields[3].isdigit():
                return None, None, "df in container %s gave no answer for %s: %s" % (
                    self.container, datadir, (err or out).strip()[-200:])
            return datadir, int(fields[3]) * 1024, "container:%s" % self.container
        host = self.params.get("login_unix_socket") or self.params.get("login_host") or ""
        if host and not host.startswith("/") and host not in ("localhost", "127.0.0.1", "::1"):
            return None, None, "the server runs on %s, not on this host" % host
        try:
            stats = os.statvfs(datadir)
            device = os.stat(datadir).st_dev
        except OSError as exc:
            return None, None, "the data directory %s is not visible from this host (%s)" % (datadir, exc.strerror)
        return datadir, stats.f_bavail * stats.f_frsize, device

    def table_estimates(self, db):
        """User tables with planner row estimates (cheap; used in manifests)."""
        rows = self.query(
            "SELECT n.nspname, c.relname, GREATEST(c.reltuples, 0)::bigint FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') "
            "AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' "
            "ORDER BY 1, 2", db=db)
        return [dict(schema=s, name=t, rows_estimate=int(n)) for s, t, n in rows]

    def exact_counts(self, db):
        """``{"schema.table": rows}`` counted exactly (used after a restore)."""
        tables = self.table_estimates(db)
        if not tables:
            return {}
        parts = ["SELECT %s, count(*) FROM %s.%s" % (
            quote_literal("%s.%s" % (t["schema"], t["name"])), quote_ident(t["schema"]), quote_ident(t["name"]))
            for t in tables]
        rows = self.query(" UNION ALL ".join(parts), db=db)
        return dict((name, int(count)) for name, count in rows)

    def client_version(self, name="pg_dump"):
        rc, out, err = self.run(name, ["--version"])
        match = re.search(r"(\d+)(?:\.(\d+))?", out)
        return (int(match.group(1)), int(match.group(2) or 0)) if match else (0, 0)


def fail_postgres(module, exc, prefix="", **extra):
    """``fail_json`` for a :class:`PostgresError`, with its classification."""
    module.fail_json(msg=prefix + str(exc), error_kind=exc.kind, stderr=exc.stderr[-4000:] if exc.stderr else "", **extra)
