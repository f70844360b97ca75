"""The embedded local environment: PostgreSQL, OpenBao and an S3 server on 127.0.0.1, plus a tiny application.

Used by ``make demo`` (scripts/demo.py) and by the playbook tests, so both exercise the same thing:

- :meth:`LocalEnvironment.start` starts the three servers, seeds the ``aiteam`` database with the sample
  schema (users, personas, workflow_runs...), writes a Vault secret and some application files (``.env``,
  compose file, uploads, logs);
- :meth:`LocalEnvironment.vars` is the extra-vars dict pointing the ``local`` inventory at them
  (:meth:`write_vars` writes it to a file for ``-e @file``);
- :meth:`disaster` drops the database, changes the Vault secret and damages the application files;
- :meth:`snapshot` captures what a restore must bring back (database digests, the secret, file contents);
- :meth:`stop` stops every server it started.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from tests.support import REPO_ROOT, TMP_ROOT, VENV_BIN, VENV_PYTHON, venv_env
from tests.support.openbao import OpenBaoServer
from tests.support.postgres import PostgresServer, create_sample_database, table_digests
from tests.support.seaweedfs import AuthenticatingS3Server, SeaweedS3Server

DB_NAME = "aiteam"
BUCKET = "atlasia-backups"
SECRET_PATH = "aiteam/database"
SECRET_VALUE = {"username": "aiteam_prod_user", "password": "original-secret-value"}
# The environment's key (dr_encryption_key): the file sets go to the restic repository by default
# (dr_backup_files_store), whose password is derived from it. A test overrides it, or empties it to see the refusal.
ENCRYPTION_KEY = "local-environment-key-0d5c2b"


@contextlib.contextmanager
def running(name, **options):
    """A :class:`LocalEnvironment` under ``TMP_ROOT/name``, started, and stopped however the block ends (the body
    of a module fixture: ``with running("it-x") as env: yield env``)."""
    env = LocalEnvironment(root=TMP_ROOT / name, **options)
    env.start()
    try:
        yield env
    finally:
        env.stop()


class LocalEnvironment(object):
    def __init__(self, root=None, with_vault=True, with_s3=True, db_password=None, s3_secret_key=None,
                 s3_auth=True):
        """``s3_auth``: an S3 server that checks credentials, as a real one does (restic, which keeps the file sets
        in the S3 file repository by default, signs its uploads in chunks, which the plain server refuses)."""
        self.root = Path(root or (TMP_ROOT / "demo"))
        self.s3_auth = s3_auth
        self.db_password = db_password
        self.s3_secret_key = s3_secret_key
        self.with_vault = with_vault
        self.with_s3 = with_s3
        self.pg = None
        self.bao = None
        self.s3 = None
        self.app_dir = self.root / "app"

    # -- life cycle ---------------------------------------------------------------------------------------
    def start(self):
        if self.root.exists():
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True)
        try:
            pg_args = dict(password=self.db_password) if self.db_password else {}
            self.pg = PostgresServer(base_dir=self.root / "postgres", **pg_args).start()
            create_sample_database(self.pg, DB_NAME)
            if self.with_vault:
                self.bao = OpenBaoServer(directory=str(self.root / "openbao")).setup()
                self.bao.write_secret(SECRET_PATH, SECRET_VALUE)
            if self.with_s3:
                s3_args = dict(secret_key=self.s3_secret_key) if self.s3_secret_key else {}
                server = AuthenticatingS3Server if self.s3_auth else SeaweedS3Server
                self.s3 = server(directory=str(self.root / "s3"), **s3_args).start(bucket=BUCKET)
            self._write_app_files()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        errors = []
        for server in (self.s3, self.bao, self.pg):
            if server is None:
                continue
            try:
                server.stop()
            except Exception as exc:  # keep stopping the others
                errors.append(exc)
        self.s3 = self.bao = self.pg = None
        if errors:
            raise errors[0]

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- the application's files ---------------------------------------------------------------------------
    def _write_app_files(self):
        deploy = self.app_dir / "deployments"
        (deploy).mkdir(parents=True)
        (deploy / ".env").write_text("SPRING_PROFILES_ACTIVE=local\n")
        (deploy / ".env.prod").write_text("DB_PASSWORD=%s\n" % SECRET_VALUE["password"])
        (deploy / "docker-compose.yml").write_text("services:\n  ai-orchestrator:\n    image: atlasia/app:local\n")
        uploads = self.app_dir / "uploads" / "2026" / "11"
        uploads.mkdir(parents=True)
        (uploads / "report.pdf").write_bytes(os.urandom(4096))
        logs = self.app_dir / "logs"
        logs.mkdir()
        (logs / "app.log").write_text("started\n")
        old = logs / "app-2026-01-01.log"
        old.write_text("old\n")
        ten_days_ago = time.time() - 10 * 86400
        os.utime(old, (ten_days_ago, ten_days_ago))
        for path in (deploy / ".env", deploy / ".env.prod"):
            path.chmod(0o600)

    def file_contents(self):
        result = {}
        for path in sorted(self.app_dir.rglob("*")):
            if path.is_file():
                result[str(path.relative_to(self.app_dir))] = path.read_bytes()
        return result

    # -- what the playbooks get ---------------------------------------------------------------------------
    def vars(self, **overrides):
        data = dict(
            dr_backup_root=str(self.root / "backups"),
            dr_reports_dir=str(self.root / "reports"),
            dr_db_name=DB_NAME,
            dr_db_user=self.pg.user,
            dr_db_password=self.pg.password,
            dr_db_host=self.pg.host,
            dr_db_port=self.pg.port,
            dr_backup_config_paths=[str(self.app_dir / "deployments" / ".env*"),
                                    str(self.app_dir / "deployments" / "docker-compose*.yml")],
            dr_backup_file_sets=[dict(name="uploads", paths=[str(self.app_dir / "uploads")]),
                                 dict(name="logs", paths=[str(self.app_dir / "logs")], max_age_days=7)],
            dr_vault_enabled=self.bao is not None,
            dr_s3_enabled=self.s3 is not None,
            dr_metrics_textfile=str(self.root / "metrics" / "atlasia_dr.prom"),
            dr_encryption_key=ENCRYPTION_KEY,
        )
        if self.bao is not None:
            data.update(dr_vault_url=self.bao.addr, dr_vault_token=self.bao.token)
        if self.s3 is not None:
            data.update(dr_s3_endpoint_url=self.s3.endpoint_url, dr_s3_access_key=self.s3.access_key,
                        dr_s3_secret_key=self.s3.secret_key, dr_s3_region=self.s3.region, dr_s3_bucket=BUCKET)
        data.update(overrides)
        return data

    def write_vars(self, path=None, **overrides):
        path = Path(path or (self.root / "vars.json"))
        path.write_text(json.dumps(self.vars(**overrides), indent=2))
        path.chmod(0o600)
        return path

    # -- the disaster and its check --------------------------------------------------------------------------
    def snapshot(self):
        return dict(
            digests=table_digests(self.pg, DB_NAME),
            secret=self.bao.read_secret(SECRET_PATH) if self.bao else None,
            files=self.file_contents(),
        )

    def disaster(self):
        """Drop the database, change the Vault secret, damage the application files."""
        self.pg.psql('DROP DATABASE "%s" WITH (FORCE)' % DB_NAME)
        if self.bao is not None:
            self.bao.write_secret(SECRET_PATH, {"username": "intruder", "password": "changed-by-the-disaster"})
        (self.app_dir / "deployments" / ".env.prod").write_text("DB_PASSWORD=garbage\n")
        shutil.rmtree(self.app_dir / "uploads")


def run_playbook(name, extra_vars_file, *args, env=None, check=True, capture=False, timeout=None):
    """Run ``playbooks/<name>`` like an operator would; returns the CompletedProcess.

    The output is streamed, or kept as text with ``capture`` (stdin closed, as under a scheduler).
    """
    argv = [str(VENV_BIN / "ansible-playbook"), "playbooks/%s" % name, "-e", "env=local",
            "-e", "@%s" % extra_vars_file, "-e", "ansible_python_interpreter=%s" % VENV_PYTHON] + list(args)
    if capture:
        return subprocess.run(argv, cwd=str(REPO_ROOT), env=venv_env(env), capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL, check=check)
    return subprocess.run(argv, cwd=str(REPO_ROOT), env=venv_env(env), timeout=timeout, check=check)
