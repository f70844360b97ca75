"""Fixtures for integration tests: real PostgreSQL 15 servers and the local Docker engine and images.

- ``pg_server`` (session): one throwaway PostgreSQL 15 on 127.0.0.1 (:class:`tests.support.postgres.PostgresServer`),
  stopped and removed at the end of the session even when tests fail.
- ``pg_db`` (function): a fresh, uniquely named database on ``pg_server`` seeded with
  ``tests/support/sample_schema.sql`` (users, personas, workflow_runs, a sequence, a view, functions and a
  trigger); dropped after the test. It is a :class:`SampleDatabase`: ``name``, ``server``, ``dsn``,
  ``psql(sql)``, ``digests()``.
- ``pg_digests``: the function :func:`tests.support.postgres.table_digests`.
- ``docker_images`` (session): starts the Docker engine if needed (scripts/docker-engine.sh) and builds the
  local images when missing (scripts/build-images.sh); skips the test when that is impossible (not root).
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import uuid
from dataclasses import dataclass

import pytest

from tests.support import REPO_ROOT
from tests.support.postgres import PostgresServer, create_sample_database, table_digests


@dataclass
class SampleDatabase:
    """A seeded database on a test server."""

    name: str
    server: PostgresServer

    @property
    def dsn(self) -> str:
        """libpq key/value connection string (TCP, password) for this database."""
        return self.server.conninfo(self.name)

    def psql(self, sql: str) -> str:
        return self.server.psql(sql, db=self.name)

    def rows(self, sql: str) -> list:
        return self.server.rows(sql, db=self.name)

    def digests(self) -> dict:
        return table_digests(self.server, self.name)

    def __str__(self) -> str:
        return self.name


@pytest.fixture(scope="session")
def pg_server():
    """A PostgreSQL 15 server for the whole session (superuser ``postgres``, password in ``.password``)."""
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


def unique_db_name(prefix: str = "t") -> str:
    """A database name no other test uses: ``<prefix>_<12 hex>``."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def pg_db(pg_server):
    """A fresh database seeded with the sample schema; dropped after the test."""
    name = unique_db_name("src")
    create_sample_database(pg_server, name)
    try:
        yield SampleDatabase(name=name, server=pg_server)
    finally:
        pg_server.dropdb(name)


@pytest.fixture
def pg_empty_db(pg_server):
    """A fresh empty database (e.g. a restore target); dropped after the test."""
    name = unique_db_name("dst")
    pg_server.createdb(name)
    try:
        yield SampleDatabase(name=name, server=pg_server)
    finally:
        pg_server.dropdb(name)


@pytest.fixture(scope="session")
def pg_digests():
    """``table_digests(server, db) -> dict`` for byte-exact round-trip comparisons."""
    return table_digests


@pytest.fixture(scope="session")
def docker_images():
    """Make sure the Docker engine answers and the local images exist; return their names."""
    if os.geteuid() != 0 and subprocess.run(["docker", "info"], capture_output=True, check=False).returncode:
        pytest.skip("no Docker engine answers and starting one needs root")
    # one build at a time: the suite runs in several pytest-xdist workers, each asking for the images
    lock_path = REPO_ROOT / ".tmp" / "build-images.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        proc = subprocess.run([str(REPO_ROOT / "scripts" / "build-images.sh")], capture_output=True, text=True,
                              timeout=1800, check=False)
    if proc.returncode != 0:
        pytest.fail(f"scripts/build-images.sh failed:\n{proc.stderr[-4000:]}")
    names = subprocess.run([str(REPO_ROOT / "scripts" / "build-images.sh"), "--list"], capture_output=True,
                           text=True, check=True).stdout.split()
    return {"base": names[0], "postgres": names[1], "host": names[2]}
