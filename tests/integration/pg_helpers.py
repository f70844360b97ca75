"""Helpers of the pg_dump_backup / pg_restore_db integration tests (real PostgreSQL 15, real Ansible).

Builds on the harness (tests/support/postgres.py, tests/support/ansible_run.py, tests/integration/conftest.py)
and adds what these tests need on top: module arguments for a server, read-back of content the digests do not
show (unicode, NULLs, bytea, jsonb, sequences, comments), damaging files, a bigger database for the kill tests,
running a module in the background and killing its whole process tree, and the Docker container server.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.support import REPO_ROOT, VENV_BIN, VENV_PYTHON
from tests.support.ansible_run import ansible_env, run_module
from tests.support.postgres import PG_BINDIR, free_port, quote_ident, table_digests
from tests.support.process import kill_tree as shared_kill_tree

# (format, compression, jobs): every combination pg_dump_backup supports.
COMBINATIONS = [
    ("plain", "gzip", 1),
    ("plain", "zstd", 1),
    ("plain", "none", 1),
    ("custom", "gzip", 1),
    ("custom", "zstd", 1),
    ("custom", "none", 1),
    ("directory", "gzip", 2),
    ("directory", "none", 2),
]


def combo_id(combo) -> str:
    fmt, comp, jobs = combo
    return f"{fmt}-{comp}" + (f"-j{jobs}" if jobs > 1 else "")


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def conn_args(server, db: str, **extra) -> dict:
    """Connection arguments of the modules for ``server`` over TCP with the password (host client programs)."""
    args = dict(db=db, login_host=server.host, port=server.port, login_user=server.user,
                login_password=server.password, pg_bin_dir=str(PG_BINDIR), connect_timeout=10)
    args.update(extra)
    return args


def backup(server, db: str, dest, check: bool = False, **extra):
    """Run atlasia.dr.pg_dump_backup; return its result dict."""
    return run_module("pg_dump_backup", conn_args(server, db, dest=str(dest), **extra), check=check)


def restore(server, db: str, src, check: bool = False, **extra):
    """Run atlasia.dr.pg_restore_db; return its result dict."""
    return run_module("pg_restore_db", conn_args(server, db, src=str(src), **extra), check=check)


def scratch_databases(server, db: str) -> list:
    """Scratch databases (``<db>_restore_<ts>``) of ``db`` present on the server."""
    return [name for name in server.databases() if name.startswith(db + "_restore_")]


def previous_databases(server, db: str) -> list:
    return [name for name in server.databases() if name.startswith(db + "_previous_")]


def drop_databases(server, names) -> None:
    for name in names:
        server.dropdb(name)


_FACTS = {
    "unicode_name": "SELECT display_name FROM users WHERE id = 7",
    "unicode_rows": "SELECT count(*) FROM users WHERE display_name LIKE '%🚀%'",
    "awkward_text": "SELECT md5(display_name) FROM users WHERE id = 5",
    "null_names": "SELECT count(*) FROM users WHERE display_name IS NULL",
    "null_avatars": "SELECT count(*) FROM users WHERE avatar IS NULL",
    "bytea": "SELECT md5(string_agg(coalesce(encode(avatar, 'hex'), '-'), ',' ORDER BY id)) FROM users",
    "artifact_bytes": "SELECT sum(octet_length(artifact)) FROM workflow_runs",
    "jsonb_unicode": "SELECT settings->'nested'->>'unicode' FROM personas ORDER BY id LIMIT 1",
    "jsonb_null_key": "SELECT count(*) FROM personas WHERE settings->'nested'->'null' = 'null'::jsonb",
    "jsonb_payload": "SELECT md5(string_agg(payload::text, ',' ORDER BY id)) FROM workflow_runs",
    "run_number_seq": "SELECT last_value || '|' || is_called FROM run_number_seq",
    "users_id_seq": "SELECT last_value || '|' || is_called FROM users_id_seq",
    "view_rows": "SELECT count(*) FROM recent_failed_runs",
    "view_def": "SELECT md5(pg_get_viewdef('recent_failed_runs'::regclass))",
    "function": "SELECT persona_run_count(md5('persona2')::uuid)",
    "trigger": "SELECT string_agg(tgname, ',') FROM pg_trigger WHERE tgrelid = 'users'::regclass AND NOT tgisinternal",
    "comment": "SELECT obj_description('workflow_runs'::regclass, 'pg_class')",
    "interval_sum": "SELECT sum(duration) FROM workflow_runs",
    "timestamps": "SELECT md5(string_agg(created_at::text || coalesce(updated_at::text, '-'), ',' ORDER BY id)) "
                  "FROM users",
    "errors_text": "SELECT md5(string_agg(coalesce(error, '-'), ',' ORDER BY id)) FROM workflow_runs",
}


def content_facts(server, db: str) -> dict:
    """Values a byte-exact round trip must carry, read back one by one (complements ``table_digests``).

    One query (one psql run): each fact is a scalar subquery, text values without newlines.
    """
    columns = ", ".join(f"({sql})::text" for sql in _FACTS.values())
    row = server.rows(f"SELECT {columns}", db=db)[0]
    return dict(zip(_FACTS, row))


def assert_same_database(server, source: str, restored: str, source_digests=None, source_facts=None) -> None:
    """``restored`` holds exactly what ``source`` holds (tables, sequences, views, functions, triggers...)."""
    expected = source_digests if source_digests is not None else table_digests(server, source)
    got = table_digests(server, restored)
    assert got == expected, f"{restored} differs from {source}"
    facts = source_facts if source_facts is not None else content_facts(server, source)
    assert content_facts(server, restored) == facts


def assert_objects_work(server, db: str) -> None:
    """The restored sequence continues, the trigger fires, the function runs (modifies ``db``)."""
    assert server.psql("SELECT nextval('run_number_seq')", db=db).strip() == "5001"
    assert server.psql("SELECT nextval('users_id_seq')", db=db).strip() == "61"
    touched = server.psql("UPDATE users SET is_admin = NOT is_admin WHERE id = 1 "
                          "RETURNING updated_at > timestamptz '2025-01-01'", db=db).strip()
    assert touched == "t", "trigger users_touch_updated_at did not fire"
    new_run = server.psql("INSERT INTO workflow_runs (status, created_at) VALUES ('queued', now()) "
                          "RETURNING run_number", db=db).strip()
    assert new_run == "5002"


# --- files ------------------------------------------------------------------------------------------------
def final_names(directory) -> list:
    """Entries of ``directory`` that are not hidden temporaries."""
    return sorted(name for name in os.listdir(directory) if not name.startswith("."))


def hidden_names(directory) -> list:
    return sorted(name for name in os.listdir(directory) if name.startswith("."))


def copy_artifact(result: dict, target_dir) -> Path:
    """Copy a backup with its sidecars (not the manifest) into ``target_dir``; return the copy's path."""
    src = Path(result["path"])
    target_dir = Path(target_dir)
    target_dir.mkdir(parents=True, exist_ok=True)
    dst = target_dir / src.name
    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        shutil.copy2(src, dst)
    for suffix in (".md5", ".sha256"):
        if Path(str(src) + suffix).exists():
            shutil.copy2(str(src) + suffix, str(dst) + suffix)
    return dst


def remove_sidecars(path) -> None:
    for suffix in (".md5", ".sha256"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(str(path) + suffix)


def truncate(path, keep_fraction: float = 0.6) -> None:
    size = os.path.getsize(path)
    with open(path, "r+b") as handle:
        handle.truncate(int(size * keep_fraction))


def flip_byte(path, fraction: float = 0.5) -> None:
    size = os.path.getsize(path)
    offset = int(size * fraction)
    with open(path, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0xFF]))


def rewrite_sidecars(path) -> None:
    """Sidecars matching the file as it is now (for files altered on purpose)."""
    for tool, suffix in (("md5sum", ".md5"), ("sha256sum", ".sha256")):
        out = subprocess.run([tool, os.path.basename(path)], cwd=os.path.dirname(path), capture_output=True,
                             text=True, check=True).stdout
        Path(str(path) + suffix).write_text(out)


def plain_sql(path) -> bytes:
    with gzip.open(path, "rb") as handle:
        return handle.read()


# --- a bigger database --------------------------------------------------------------------------------------
def create_pgbench_db(server, db: str, scale: int = 20) -> None:
    """``pgbench -i -s scale`` (client-side generation, no vacuum): scale 20 is 2M rows, ~300 MB."""
    server.createdb(db)
    env = dict(os.environ, PGPASSWORD=server.password)
    subprocess.run([str(PG_BINDIR / "pgbench"), "-i", "-s", str(scale), "-I", "dtgp", "-q",
                    "-h", server.host, "-p", str(server.port), "-U", server.user, db],
                   env=env, check=True, capture_output=True, timeout=600)


# --- background module runs and process trees ---------------------------------------------------------------
# The module runs under a small launcher that is a child subreaper: the processes of the run that we SIGKILL
# are re-parented to it and reaped, so no zombie outlives the test (PID 1 on these machines does not reap).
_LAUNCHER = r"""
import ctypes, errno, os, subprocess, sys
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
child = subprocess.Popen(sys.argv[1:])
status = None
while True:
    try:
        pid, st = os.wait()
    except ChildProcessError:
        break
    if pid == child.pid:
        status = os.waitstatus_to_exitcode(st)
sys.exit(0 if status == 0 else 1)
"""


def start_module(module: str, args: dict, stdout_path) -> subprocess.Popen:
    """Start ``ansible localhost -m atlasia.dr.<module>`` in the background; returns the launcher process.

    ``login_password`` is templated from a vars file (``-e @file``), so that no argument list of the run, not
    even ansible's own, holds the password: tests can then assert that none does.
    """
    args = dict(args)
    extra_vars = {"ansible_python_interpreter": str(VENV_PYTHON)}
    if args.get("login_password"):
        extra_vars["atlasia_test_login_password"] = args["login_password"]
        args["login_password"] = "{{ atlasia_test_login_password }}"
    vars_file = Path(str(stdout_path) + ".vars.json")
    fd = os.open(vars_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(extra_vars, handle)
    cmd = [
        str(VENV_BIN / "ansible"), "localhost", "-i", "localhost,", "-c", "local",
        "-m", f"atlasia.dr.{module}", "-a", json.dumps(args), "-e", f"@{vars_file}",
    ]
    out = open(stdout_path, "wb")
    try:
        return subprocess.Popen([sys.executable, "-c", _LAUNCHER] + cmd, cwd=REPO_ROOT,
                                env=ansible_env(json_output=True), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    finally:
        out.close()


def children(pid: int) -> list:
    """The children of every thread of ``pid`` (a process started from a thread is listed under that thread only:
    Ansible's worker starts the module from a thread when it prints progress)."""
    found = []
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in threads:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as handle:
                found.extend(int(p) for p in handle.read().split())
        except OSError:
            continue
    return found


def descendants(pid: int) -> list:
    """Every descendant of ``pid`` (depth first)."""
    found = []
    stack = children(pid)
    while stack:
        child = stack.pop()
        found.append(child)
        stack.extend(children(child))
    return found


def cmdline(pid: int) -> list:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return [part.decode("utf-8", "replace") for part in handle.read().split(b"\0") if part]
    except OSError:
        return []


def environ(pid: int) -> dict:
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            items = [part.decode("utf-8", "replace") for part in handle.read().split(b"\0") if part]
    except OSError:
        return {}
    return dict(item.split("=", 1) for item in items if "=" in item)


def find_descendant(root: int, predicate, timeout: float = 60.0, interval: float = 0.05):
    """First descendant of ``root`` whose argv satisfies ``predicate``, polling until ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in descendants(root):
            argv = cmdline(pid)
            if argv and predicate(argv):
                return pid
        time.sleep(interval)
    return None


def kill_tree(root: int) -> list:
    """SIGSTOP then SIGKILL every descendant of ``root`` (not ``root``): a crash of the whole run."""
    return shared_kill_tree(root, include_root=False)


def wait_launcher(proc: subprocess.Popen, timeout: float = 120.0) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid)
        proc.kill()
        return proc.wait(timeout=30)


def read_result(stdout_path) -> dict:
    """The module result from the json callback output of :func:`start_module`."""
    text = Path(stdout_path).read_text(errors="replace")
    start = text.find("{")
    data = json.loads(text[start:])
    return data["plays"][0]["tasks"][0]["hosts"]["localhost"]


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return None


# --- PostgreSQL in a Docker container ---------------------------------------------------------------------
class ContainerServer:
    """A container of ``atlasia/postgres:15`` on the host network, listening on 127.0.0.1:``port``."""

    image = "atlasia/postgres:15"

    def __init__(self, password: str = "container-secret-Pw-0b8f"):
        self.name = unique("atlasia_dr_test_pg")
        self.port = free_port()
        self.host = "127.0.0.1"
        self.user = "postgres"
        self.password = password
        self.started = False

    def start(self, timeout: float = 90.0) -> "ContainerServer":
        subprocess.run(["docker", "run", "-d", "--name", self.name, "--network", "host",
                        "-e", "POSTGRES_PASSWORD", "-e", f"PGPORT={self.port}", "-e", "POSTGRES_DB=postgres",
                        self.image], env=dict(os.environ, POSTGRES_PASSWORD=self.password),
                       check=True, capture_output=True, timeout=120)
        self.started = True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = subprocess.run(["docker", "exec", self.name, "pg_isready", "-q", "-h", "127.0.0.1",
                                   "-p", str(self.port)], capture_output=True, timeout=30, check=False)
            if proc.returncode == 0:
                return self
            time.sleep(0.5)
        raise RuntimeError(f"container {self.name} not ready:\n{self.logs()}")

    def logs(self) -> str:
        proc = subprocess.run(["docker", "logs", "--tail", "50", self.name], capture_output=True, text=True,
                              check=False)
        return proc.stdout + proc.stderr

    def psql(self, sql: str, db: str = "postgres") -> str:
        """SQL through ``docker exec psql`` on the container's socket (trust), tuples only."""
        proc = subprocess.run(["docker", "exec", "-i", self.name, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1",
                               "-A", "-t", "-F", "\x1f", "-p", str(self.port), "-U", self.user, "-d", db],
                              input=sql, capture_output=True, text=True, timeout=120, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"psql in {self.name} failed: {proc.stderr}")
        return proc.stdout

    def rows(self, sql: str, db: str = "postgres") -> list:
        return [line.split("\x1f") for line in self.psql(sql, db).splitlines() if line]

    def createdb(self, name: str) -> None:
        self.psql(f"CREATE DATABASE {quote_ident(name)} TEMPLATE template0 ENCODING 'UTF8'")

    def dropdb(self, name: str) -> None:
        self.psql(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")

    def databases(self) -> list:
        return [r[0] for r in self.rows("SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY 1")]

    def remove(self) -> None:
        if self.started:
            subprocess.run(["docker", "rm", "-f", "-v", self.name], capture_output=True, timeout=120, check=False)
            self.started = False


def docker_usable() -> tuple:
    """``(True, "")`` when a Docker engine answers (starting it with scripts/docker-engine.sh if needed)."""
    if not shutil.which("docker"):
        return False, "the docker CLI is not installed"
    proc = subprocess.run([str(REPO_ROOT / "scripts" / "docker-engine.sh"), "start"], capture_output=True,
                          text=True, timeout=180, check=False)
    if proc.returncode != 0:
        return False, f"scripts/docker-engine.sh could not start an engine: {proc.stderr.strip()[-1000:]}"
    return True, ""


# --- several module runs in one ansible-playbook process -------------------------------------------------
def run_tasks(module: str, tasks: list, workdir, check: bool = False) -> list:
    """Run ``atlasia.dr.<module>`` once per argument dict in ``tasks``, in one play; return the results in order."""
    return run_play([(module, args) for args in tasks], workdir, check=check)


def run_play(runs: list, workdir, check: bool = False) -> list:
    """Run ``(module, args)`` pairs as the tasks of one play (one ansible-playbook); return the results in order.

    Failures do not stop the play (``ignore_errors``), so each result is the module's own. Saves Ansible's start
    (about a second) per run. ``login_password`` values are templated from a vars file, never on a command line.
    """
    from tests.support.ansible_run import run_playbook

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    secrets = {}
    play_tasks = []
    for index, (module, args) in enumerate(runs):
        args = dict(args)
        if args.get("login_password") is not None:
            key = f"atlasia_test_password_{index}"
            secrets[key] = args["login_password"]
            args["login_password"] = "{{ %s }}" % key
        play_tasks.append({"name": f"run {index}", f"atlasia.dr.{module}": args, "ignore_errors": True})
    playbook = workdir / f"play-{uuid.uuid4().hex[:8]}.yml"
    playbook.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": play_tasks}], indent=1))
    vars_file = workdir / (playbook.stem + ".vars.json")
    fd = os.open(vars_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(secrets, handle)
    proc = run_playbook(playbook, check=check, json_output=True, extra_args=["-e", f"@{vars_file}"])
    if not proc.json:
        raise AssertionError(f"ansible-playbook gave no JSON (rc={proc.returncode}):\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-3000:]}")
    results = [task["hosts"]["localhost"] for task in proc.json["plays"][0]["tasks"]]
    assert len(results) == len(runs), proc.stdout[-3000:]
    return results


# --- session fixtures shared by test_pg_dump_backup.py and test_pg_restore_db.py ----------------------------
# Imported by those modules (pytest finds fixtures in a test module's namespace): one seeded source database and
# one backup per format/compression for the whole session, so the refusal and replace tests reuse the backups
# the round trips made and checked.

class BackupStore:
    """Backups of one database, one per combination, each alone in its own directory.

    The first :meth:`get` makes every combination of :data:`COMBINATIONS` in one play (one Ansible start).
    """

    def __init__(self, server, db: str, root: Path):
        self.server, self.db, self.root = server, db, Path(root)
        self.made = {}

    def get(self, combo) -> dict:
        if combo not in self.made:
            wanted = [c for c in COMBINATIONS if c not in self.made] if combo in COMBINATIONS else [combo]
            runs = [conn_args(self.server, self.db, dest=str(self.root / combo_id(c)), format=c[0], compression=c[1],
                              jobs=c[2]) for c in wanted]
            for made, result in zip(wanted, run_tasks("pg_dump_backup", runs, self.root / "play")):
                assert not result.get("failed"), f"{combo_id(made)}: {result.get('msg')}"
                self.made[made] = result
        return self.made[combo]


# pytest registers a fixture once per module that imports it, so these session fixtures would run once per
# importing module: the objects are memoised here, and only the first instance cleans up.
_SHARED: dict = {}


@pytest.fixture(scope="session")
def shared_source(pg_server):
    """A database seeded with tests/support/sample_schema.sql, never modified by the tests that use it."""
    from tests.support.postgres import create_sample_database

    key = ("source", pg_server.port)
    owner = key not in _SHARED
    if owner:
        name = unique("pg_source")
        create_sample_database(pg_server, name)
        _SHARED[key] = name
    try:
        yield _SHARED[key]
    finally:
        if owner:
            pg_server.dropdb(_SHARED.pop(key))


@pytest.fixture(scope="session")
def shared_source_state(pg_server, shared_source):
    """``(table_digests, content_facts)`` of ``shared_source``."""
    key = ("state", shared_source)
    if key not in _SHARED:
        _SHARED[key] = (table_digests(pg_server, shared_source), content_facts(pg_server, shared_source))
    return _SHARED[key]


@pytest.fixture(scope="session")
def shared_backups(pg_server, shared_source, tmp_path_factory):
    """:class:`BackupStore` of ``shared_source`` (read-only for its users: copy a backup before damaging it)."""
    key = ("backups", shared_source)
    if key not in _SHARED:
        _SHARED[key] = BackupStore(pg_server, shared_source, tmp_path_factory.mktemp("pg_backups"))
    return _SHARED[key]


@pytest.fixture(scope="module")
def no_database_left_behind(pg_server):
    """Fails the module's teardown when its tests left databases on the shared server (scratch, previous...)."""
    before = set(pg_server.databases())
    yield
    left = sorted(set(pg_server.databases()) - before - {name for name in _SHARED.values() if isinstance(name, str)})
    assert not left, f"databases left behind: {left}"
