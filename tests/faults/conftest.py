"""Fixtures of the fault-injection suite (``make faults``; ``pytest tests/faults``).

Each test module shares one :class:`tests.support.localenv.LocalEnvironment` (real PostgreSQL, OpenBao and
SeaweedFS on 127.0.0.1, seeded ``aiteam`` database) through :func:`fault_env`, and drives the playbooks
like an operator. Every case asserts that nothing is lost and that the error names its cause.

- ``FAULTS_SEED`` (environment) seeds the random kill points (default below); the seed is printed, so a
  failing run can be replayed exactly.
- ``FAULTS_KILLS`` raises the number of random kills of the backup (default 4: pg_dump, the compressor, an
  upload, an archive).
- Logs of every playbook run stay in ``.tmp/faults/<module>/logs`` until the next run of that module.
"""

from __future__ import annotations

import os
import random

import pytest

from tests.faults import faultlib
from tests.support.localenv import BUCKET, DB_NAME, LocalEnvironment

DEFAULT_SEED = 20261126
FAULTS_ROOT = faultlib.FAULTS_ROOT


def pytest_collection_modifyitems(config, items):
    here = os.path.dirname(os.path.abspath(__file__))
    for item in items:
        if str(item.fspath).startswith(here + os.sep):
            item.add_marker(pytest.mark.integration)
            item.add_marker(pytest.mark.slow)


def _seed():
    return int(os.environ.get("FAULTS_SEED", DEFAULT_SEED))


def pytest_report_header(config):
    return "fault-injection seed: FAULTS_SEED=%d (set it to replay the same kill points)" % _seed()


@pytest.fixture(scope="session")
def faults_seed():
    return _seed()


@pytest.fixture
def rng(faults_seed, request):
    """A random generator seeded by FAULTS_SEED and the test's name (tests stay independent of their order)."""
    return random.Random("%d:%s" % (faults_seed, request.node.nodeid))


def add_ballast(env, rows):
    """A table of ``rows`` incompressible-ish rows, so pg_dump and the compressor run long enough to be caught."""
    env.pg.psql(
        "CREATE TABLE fault_ballast (id integer PRIMARY KEY, payload text NOT NULL);"
        "INSERT INTO fault_ballast SELECT g, md5(g::text) || md5((g * 7)::text) || md5((g * 13)::text) "
        "FROM generate_series(1, %d) AS g;" % rows, db=DB_NAME)


def start_env(name, ballast_rows=0, s3_auth=False):
    """Start the module's environment; ``s3_auth`` makes the S3 server check credentials."""
    env = LocalEnvironment(root=FAULTS_ROOT / name, with_s3=not s3_auth)
    # The faults strike during a run; the preflight (tests/integration/test_preflight.py) would stop most runs
    # before they start, so these runs go without it unless a test asks for it.
    write_vars = env.write_vars

    def without_preflight(path=None, **overrides):
        overrides.setdefault("dr_preflight", False)
        return write_vars(path=path, **overrides)

    env.write_vars = without_preflight
    env.start()
    try:
        if s3_auth:
            server_class = faultlib.authenticating_s3_server_class()
            env.s3 = server_class(directory=str(env.root / "s3")).start(bucket=BUCKET)
        if ballast_rows:
            add_ballast(env, ballast_rows)
    except BaseException:
        env.stop()
        raise
    env.log_dir = env.root / "logs"
    env.reports_dir = env.root / "reports"
    env.backup_root = env.root / "backups"
    return env


@pytest.fixture(scope="module")
def fault_env(request):
    """One local environment for the test module (``BALLAST_ROWS`` in the module adds a big table,
    ``S3_AUTH = True`` an S3 server that checks credentials)."""
    name = request.module.__name__.rsplit(".", 1)[-1].replace("test_", "")
    env = start_env(name, ballast_rows=getattr(request.module, "BALLAST_ROWS", 0),
                    s3_auth=getattr(request.module, "S3_AUTH", False))
    try:
        yield env
    finally:
        env.stop()


@pytest.fixture(scope="module")
def vars_file(fault_env):
    """The extra-vars file of the module's environment (reports and logs inside its root)."""
    return fault_env.write_vars(dr_reports_dir=str(fault_env.reports_dir))
