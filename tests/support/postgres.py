"""Throwaway PostgreSQL 15 servers for tests and demos, on 127.0.0.1 only.

A :class:`PostgresServer` runs initdb + pg_ctl from ``/usr/lib/postgresql/15/bin`` in a private temporary
directory (data, socket and log), on a free TCP port of 127.0.0.1:

- superuser ``postgres`` with a known password, scram-sha-256 over TCP, trust on the unix socket;
- when the caller is root the cluster runs as the unprivileged system user ``atlasia-pg`` (created when
  missing), because initdb and postgres refuse to run as root;
- every wait is bounded; :meth:`PostgresServer.stop` stops it (``pg_ctl stop -m immediate``, then SIGKILL of
  the postmaster PID) and removes its directory.

Also here: :func:`load_sample_schema` (``tests/support/sample_schema.sql``) and :func:`table_digests`, which
fingerprints a database's content (per-table md5 of all rows, sequence values, views, functions, triggers,
indexes, constraints) so that a backup/restore round trip can be compared exactly.

CLI (run from the repository root)::

    python -m tests.support.postgres start --state .tmp/pg.json     # prints the connection info as JSON
    python -m tests.support.postgres seed  --state .tmp/pg.json --db appdb
    python -m tests.support.postgres digest --state .tmp/pg.json --db appdb
    python -m tests.support.postgres stop  --state .tmp/pg.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support import SAMPLE_SCHEMA
from tests.support.process import free_port, pid_alive

PG_BINDIR = Path(os.environ.get("ATLASIA_PG_BINDIR", "/usr/lib/postgresql/15/bin"))
PG_OS_USER = "atlasia-pg"
DEFAULT_USER = "postgres"
DEFAULT_PASSWORD = "atlasia-dr-test-password"
HOST = "127.0.0.1"
START_TIMEOUT = 30
COMMAND_TIMEOUT = 120
# Unit separator between psql output fields: never part of names or values we read back.
FIELD_SEP = "\x1f"


class PostgresError(RuntimeError):
    """A PostgreSQL command failed; the message carries its output."""


def quote_ident(name: str) -> str:
    """Quote an SQL identifier (like PostgreSQL's quote_ident, always quoting)."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    """Quote an SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def _reachable_by_others(path: Path) -> bool:
    """True when every existing parent of ``path`` can be traversed by any user (o+x)."""
    for parent in Path(os.path.abspath(path)).parents:
        if parent.exists() and not os.stat(parent).st_mode & 0o001:
            return False
    return True


def _ensure_os_user(name: str = PG_OS_USER) -> pwd.struct_passwd:
    """Return the unprivileged user that runs clusters for root, creating it when missing."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    proc = subprocess.run(
        [useradd, "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
         "--shell", "/usr/sbin/nologin", "--comment", "atlasia.dr test PostgreSQL", name],
        capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False,
    )
    try:  # another process may have created it at the same moment
        return pwd.getpwnam(name)
    except KeyError:
        raise PostgresError(f"cannot create system user {name}: {proc.stderr.strip()}") from None


class PostgresServer:
    """A throwaway PostgreSQL cluster listening on 127.0.0.1:``port`` and on a private unix socket.

    Attributes: ``host``, ``port``, ``socket_dir``, ``user``, ``password``, ``dsn`` (libpq key/value string
    for TCP with password), ``base_dir``, ``data_dir``, ``log_file``, ``bindir``, ``os_user`` (the OS user
    running the cluster, None when it runs as the caller).
    """

    def __init__(
        self,
        base_dir: str | os.PathLike | None = None,
        port: int | None = None,
        user: str = DEFAULT_USER,
        password: str = DEFAULT_PASSWORD,
        bindir: str | os.PathLike = PG_BINDIR,
        settings: dict | None = None,
        os_user: str | None = None,
    ) -> None:
        self.bindir = Path(bindir)
        self.host = HOST
        self.port = port
        self.user = user
        self.password = password
        self._base_dir_given = base_dir is not None
        self.base_dir = Path(base_dir) if base_dir is not None else None
        # fsync off etc.: these clusters are disposable and should be quick.
        self.settings = {
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "50",
            "shared_buffers": "32MB",
            "log_min_messages": "warning",
        }
        self.settings.update(settings or {})
        if os.geteuid() == 0:
            self.os_user = os_user or PG_OS_USER
        else:
            self.os_user = None
        self._running = False
        self._pid: int | None = None

    # --- paths and connection strings -----------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def socket_dir(self) -> str:
        return str(self.base_dir / "socket")

    @property
    def log_file(self) -> Path:
        return self.base_dir / "postgres.log"

    def conninfo(self, db: str = "postgres") -> str:
        """libpq key/value connection string over TCP with the password."""
        return (f"host={self.host} port={self.port} user={self.user} "
                f"password={self.password} dbname={db}")

    @property
    def dsn(self) -> str:
        return self.conninfo("postgres")

    def url(self, db: str = "postgres") -> str:
        """postgresql:// URL over TCP with the password."""
        from urllib.parse import quote

        return f"postgresql://{quote(self.user, safe='')}:{quote(self.password, safe='')}@{self.host}:{self.port}/{quote(db, safe='')}"

    def env(self, db: str = "postgres") -> dict:
        """libpq environment variables for TCP access (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE)."""
        return {
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGPASSWORD": self.password,
            "PGDATABASE": db,
        }

    def info(self) -> dict:
        """Connection and housekeeping details as a JSON-able dict (what the CLI prints)."""
        return {
            "host": self.host,
            "port": self.port,
            "socket_dir": self.socket_dir,
            "user": self.user,
            "password": self.password,
            "dsn": self.dsn,
            "url": self.url(),
            "base_dir": str(self.base_dir),
            "data_dir": str(self.data_dir),
            "log_file": str(self.log_file),
            "bindir": str(self.bindir),
            "os_user": self.os_user,
            "pid": self.pid(),
        }

    @classmethod
    def from_info(cls, info: dict) -> "PostgresServer":
        """Rebuild a handle on a running server from :meth:`info` output (used by the CLI's stop)."""
        server = cls(base_dir=info["base_dir"], port=int(info["port"]), user=info["user"],
                     password=info["password"], bindir=info["bindir"], os_user=info.get("os_user"))
        server.os_user = info.get("os_user")
        server._pid = info.get("pid")
        server._running = True
        return server

    # --- running things ----------------------------------------------------------------------------------
    def _bin(self, name: str) -> str:
        return str(self.bindir / name)

    def _run_as_owner(self, args: list, timeout: float = COMMAND_TIMEOUT, **kwargs) -> subprocess.CompletedProcess:
        """Run a server-side command (initdb, pg_ctl) as the cluster's OS user."""
        if self.os_user:
            entry = pwd.getpwnam(self.os_user)
            kwargs.update(user=entry.pw_uid, group=entry.pw_gid, extra_groups=[])
        env = {"PATH": f"{self.bindir}:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
               "HOME": str(self.base_dir), "TZ": "UTC"}
        return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout,
                              env=env, cwd="/", check=False, **kwargs)

    def pid(self) -> int | None:
        """The postmaster PID from postmaster.pid, or None."""
        try:
            first = (self.data_dir / "postmaster.pid").read_text().splitlines()[0]
            return int(first)
        except (OSError, ValueError, IndexError):
            return None

    def start(self) -> "PostgresServer":
        """initdb and start the cluster; return self. Retries on a port taken in between (up to 3 times)."""
        if self._running:
            return self
        if self.base_dir is not None and self.os_user and not _reachable_by_others(self.base_dir):
            # The cluster runs as another user, who must be able to reach its files: a checkout under a
            # private folder (mktemp -d, a 0700 home) is not reachable, so the cluster lives under /tmp.
            self.base_dir = None
        if self.base_dir is None:
            self.base_dir = Path(tempfile.mkdtemp(prefix="atlasia-pg-"))
        self.base_dir.mkdir(parents=True, exist_ok=True)
        (self.base_dir / "socket").mkdir(exist_ok=True)
        if self.os_user:
            entry = _ensure_os_user(self.os_user)
            for path in (self.base_dir, self.base_dir / "socket"):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        os.chmod(self.base_dir, 0o755)
        os.chmod(self.base_dir / "socket", 0o755)
        try:
            self._initdb()
            attempts = 1 if self.port else 3
            for attempt in range(attempts):
                if not self.port or attempt:
                    self.port = free_port()
                if self._pg_ctl_start():
                    break
            else:
                raise PostgresError(f"PostgreSQL did not start; log:\n{self._log_tail()}")
            self._running = True
            self._pid = self.pid()
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _initdb(self) -> None:
        pwfile = self.base_dir / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self.os_user:
            entry = pwd.getpwnam(self.os_user)
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        os.chmod(pwfile, 0o600)
        proc = self._run_as_owner([
            self._bin("initdb"), "-D", self.data_dir, "--username", self.user, "--pwfile", pwfile,
            "--auth-local=trust", "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8",
            "--no-sync",
        ])
        pwfile.unlink()
        if proc.returncode != 0:
            raise PostgresError(f"initdb failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        with open(self.data_dir / "postgresql.auto.conf", "a", encoding="utf-8") as conf:
            conf.write("# atlasia.dr test server\n")
            conf.write(f"listen_addresses = '{self.host}'\n")
            conf.write(f"unix_socket_directories = '{self.socket_dir}'\n")
            conf.write("password_encryption = 'scram-sha-256'\n")
            for key, value in self.settings.items():
                conf.write(f"{key} = '{value}'\n")

    def _pg_ctl_start(self) -> bool:
        proc = self._run_as_owner(
            [self._bin("pg_ctl"), "-D", self.data_dir, "-l", self.log_file, "-w", "-t", str(START_TIMEOUT),
             "-o", f"-p {self.port}", "start"],
            timeout=START_TIMEOUT + 30,
        )
        if proc.returncode == 0:
            return True
        # A port taken in between shows as "could not bind"; make sure nothing is left before a retry.
        pid = self.pid()
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return False

    def _wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            proc = subprocess.run(
                [self._bin("pg_isready"), "-h", self.host, "-p", str(self.port), "-U", self.user, "-d", "postgres"],
                capture_output=True, text=True, timeout=10, check=False,
            )
            if proc.returncode == 0:
                return
            last = proc.stdout + proc.stderr
            time.sleep(0.2)
        raise PostgresError(f"server on {self.host}:{self.port} not ready after {timeout}s: {last}\n{self._log_tail()}")

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Stop the server (immediate shutdown, SIGKILL of the postmaster as fallback) and remove its files."""
        if self.base_dir is None:
            return
        pid = self.pid() or self._pid
        if pid and self.data_dir.exists():
            with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                self._run_as_owner(
                    [self._bin("pg_ctl"), "-D", self.data_dir, "-m", "immediate", "-w", "-t", "30", "stop"],
                    timeout=60,
                )
        if pid and pid_alive(pid) and _is_postgres(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, 10)
        shutil.rmtree(self.base_dir, ignore_errors=True)
        self._pid = None
        self._running = False

    def __enter__(self) -> "PostgresServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- SQL helpers ---------------------------------------------------------------------------------------
    def psql(self, sql: str, db: str = "postgres", tcp: bool = False, check: bool = True,
             timeout: float = COMMAND_TIMEOUT) -> str:
        """Run SQL with psql (ON_ERROR_STOP, unaligned, tuples only; fields separated by \\x1f).

        Connects over the unix socket (trust) unless ``tcp`` is true (password over 127.0.0.1). Returns
        stdout; raises :class:`PostgresError` on failure when ``check``.
        """
        host = self.host if tcp else self.socket_dir
        env = dict(os.environ, PGPASSWORD=self.password, PGCONNECT_TIMEOUT="10", PGAPPNAME="atlasia-dr-tests")
        env.pop("PGSERVICE", None)
        proc = subprocess.run(
            [self._bin("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-A", "-t", "-F", FIELD_SEP,
             "-h", host, "-p", str(self.port), "-U", self.user, "-d", db, "-f", "-"],
            input=sql, capture_output=True, text=True, timeout=timeout, env=env, check=False,
        )
        if check and proc.returncode != 0:
            raise PostgresError(f"psql on {db} failed ({proc.returncode}): {proc.stderr.strip()}\nSQL: {sql[:500]}")
        return proc.stdout

    def rows(self, sql: str, db: str = "postgres") -> list[list[str]]:
        """Run a query and return its rows as lists of strings (NULL comes back as '')."""
        out = self.psql(sql, db=db)
        return [line.split(FIELD_SEP) for line in out.splitlines() if line != ""]

    def scalar(self, sql: str, db: str = "postgres") -> str:
        """Run a query returning one value and return it as a string."""
        return self.psql(sql, db=db).strip()

    def createdb(self, name: str, template: str = "template0") -> None:
        self.psql(f"CREATE DATABASE {quote_ident(name)} TEMPLATE {quote_ident(template)} ENCODING 'UTF8'")

    def dropdb(self, name: str) -> None:
        """Drop a database if it exists, disconnecting its sessions."""
        self.psql(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")

    def databases(self) -> list[str]:
        """Names of the non-template databases, sorted."""
        out = self.psql("SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY datname")
        return [line for line in out.splitlines() if line]

    def connect(self, db: str = "postgres", **kwargs):
        """A psycopg2 connection over TCP with the password (psycopg2 imported on demand)."""
        import psycopg2

        return psycopg2.connect(host=self.host, port=self.port, user=self.user, password=self.password,
                                dbname=db, connect_timeout=10, **kwargs)


def _is_postgres(pid: int) -> bool:
    """True when process ``pid`` is a postgres (so a recycled PID is never killed)."""
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8") as comm:
            return comm.read().strip() in ("postgres", "postmaster")
    except OSError:
        return False


def _wait_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)


# --- sample schema and digests --------------------------------------------------------------------------
def load_sample_schema(server: PostgresServer, db: str) -> None:
    """Create the sample schema and its deterministic rows (tests/support/sample_schema.sql) in ``db``."""
    server.psql(SAMPLE_SCHEMA.read_text(encoding="utf-8"), db=db)


def create_sample_database(server: PostgresServer, db: str) -> None:
    """Create database ``db`` and seed it with the sample schema."""
    server.createdb(db)
    load_sample_schema(server, db)


_SYSTEM_SCHEMAS = "('pg_catalog', 'information_schema')"


def table_digests(server: PostgresServer, db: str) -> dict:
    """Fingerprint the content of ``db`` so that two databases can be compared exactly.

    Returns ``{"tables": {"schema.table": {"rows": N, "md5": "..."}}, "sequences": {"schema.seq":
    "last_value|is_called"}, "views": {"schema.view": md5(definition)}, "functions": [...], "triggers":
    [...], "indexes": [...], "constraints": [...]}``. Row digests are md5 over every row's text form in
    byte order (COLLATE "C"), so they do not depend on physical order or the server's locale.
    """
    schemas_filter = f"n.nspname NOT IN {_SYSTEM_SCHEMAS} AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'"
    tables = server.rows(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        f"WHERE c.relkind IN ('r', 'p') AND {schemas_filter} ORDER BY 1, 2",
        db=db,
    )
    result: dict = {"tables": {}, "sequences": {}, "views": {}, "functions": [], "triggers": [],
                    "indexes": [], "constraints": []}
    if tables:
        parts = []
        for schema, name in tables:
            qualified = f"{quote_ident(schema)}.{quote_ident(name)}"
            parts.append(
                f"SELECT {quote_literal(schema + '.' + name)}, count(*), "
                f"md5(coalesce(string_agg(t::text, '|' ORDER BY t::text COLLATE \"C\"), '')) FROM {qualified} t"
            )
        for key, count, digest in server.rows("\nUNION ALL\n".join(parts), db=db):
            result["tables"][key] = {"rows": int(count), "md5": digest}
    # Sequence state read from each sequence itself (pg_sequences hides last_value before the first call).
    seqs = server.rows(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        f"WHERE c.relkind = 'S' AND {schemas_filter} ORDER BY 1, 2",
        db=db,
    )
    if seqs:
        parts = [
            f"SELECT {quote_literal(s + '.' + n)}, last_value, is_called FROM {quote_ident(s)}.{quote_ident(n)}"
            for s, n in seqs
        ]
        for key, last_value, is_called in server.rows("\nUNION ALL\n".join(parts), db=db):
            result["sequences"][key] = f"{last_value}|{is_called}"
    for key, digest in server.rows(
        "SELECT n.nspname || '.' || c.relname, md5(pg_get_viewdef(c.oid)) FROM pg_class c "
        f"JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('v', 'm') AND {schemas_filter} ORDER BY 1",
        db=db,
    ):
        result["views"][key] = digest
    result["functions"] = [r[0] for r in server.rows(
        "SELECT n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')' "
        f"FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE {schemas_filter} ORDER BY 1",
        db=db,
    )]
    result["triggers"] = [r[0] for r in server.rows(
        "SELECT n.nspname || '.' || c.relname || '.' || t.tgname FROM pg_trigger t "
        "JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        f"WHERE NOT t.tgisinternal AND {schemas_filter} ORDER BY 1",
        db=db,
    )]
    result["indexes"] = [r[0] for r in server.rows(
        "SELECT n.nspname || '.' || c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        f"JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {schemas_filter} ORDER BY 1",
        db=db,
    )]
    result["constraints"] = [r[0] for r in server.rows(
        "SELECT n.nspname || '.' || cl.relname || '.' || co.conname || ':' || co.contype::text "
        "FROM pg_constraint co JOIN pg_class cl ON cl.oid = co.conrelid "
        f"JOIN pg_namespace n ON n.oid = cl.relnamespace WHERE {schemas_filter} ORDER BY 1",
        db=db,
    )]
    return result


# --- CLI ---------------------------------------------------------------------------------------------
def _load_state(path: str) -> PostgresServer:
    with open(path, encoding="utf-8") as handle:
        return PostgresServer.from_info(json.load(handle))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.postgres",
                                     description="Throwaway PostgreSQL 15 servers on 127.0.0.1.")
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="start a server; print its connection info as JSON and save it")
    start.add_argument("--state", required=True, help="JSON file to write the connection info to")
    start.add_argument("--port", type=int, help="TCP port (default: a free one)")
    start.add_argument("--base-dir", help="directory for data, socket and log (default: a new temp dir)")
    start.add_argument("--password", default=DEFAULT_PASSWORD)
    stop = sub.add_parser("stop", help="stop the server described by --state and remove its files")
    stop.add_argument("--state", required=True)
    seed = sub.add_parser("seed", help="create a database with the sample schema and rows")
    seed.add_argument("--state", required=True)
    seed.add_argument("--db", required=True)
    digest = sub.add_parser("digest", help="print table_digests() of a database as JSON")
    digest.add_argument("--state", required=True)
    digest.add_argument("--db", required=True)
    args = parser.parse_args(argv)

    if args.command == "start":
        server = PostgresServer(base_dir=args.base_dir, port=args.port, password=args.password).start()
        info = server.info()
        fd = os.open(args.state, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(info, handle, indent=2)
            handle.write("\n")
        print(json.dumps(info, indent=2))
    elif args.command == "stop":
        if not os.path.exists(args.state):
            print(f"no state file {args.state}: nothing to stop", file=sys.stderr)
            return 0
        _load_state(args.state).stop()
        os.unlink(args.state)
    elif args.command == "seed":
        create_sample_database(_load_state(args.state), args.db)
    elif args.command == "digest":
        print(json.dumps(table_digests(_load_state(args.state), args.db), indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
