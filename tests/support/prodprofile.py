"""The shipped ``prod`` profile on this machine: a production-like host for the playbooks, over real SSH.

:class:`ProdWorld` builds what ``inventories/prod`` expects and runs the playbooks the way an operator does
(``ansible-playbook -i INVENTORY playbooks/X.yml -e env=prod``):

- the host: ``tests/support/sshd.py`` (real OpenSSH on 127.0.0.1, unprivileged user ``atlasiaops``, key made
  here, passwordless sudo, strict host key checking against a known_hosts file of ours), in group ``prod_db``;
- the application's Compose project at the profile's path ``/srv/atlasia/infra/deployments/prod``: service
  ``db`` is the container ``aiteam_db_prod`` (``atlasia/postgres:15`` from scripts/build-images.sh, network
  host, its own port on 127.0.0.1, superuser ``aiteam_prod_user``, database ``aiteam_prod`` with the sample
  schema) and service ``ai-orchestrator`` is a stand-in answering the health URL; the profile's files
  (``.env.prod``, ``.env``, compose file, ``/srv/atlasia/config/application*.properties``, uploads, plugins,
  logs) exist at the profile's paths;
- OpenBao (raft) and SeaweedFS (S3 over HTTPS with a certificate made here, as pgBackRest speaks only HTTPS to S3,
  and ``WEED_S3_SSE_KEY`` so the profile's ``dr_s3_encryption: AES256`` works) on free ports of 127.0.0.1; the
  certificate is the S3 CA of the host (``dr_s3_ca_bundle``) and, bind-mounted, of pgBackRest in the database
  container (``dr_pgbackrest_s3_ca_file``); SeaweedFS refuses boto3's checksum trailers over HTTPS, hence
  ``dr_s3_checksum_calculation: when_required``;
- the database service as docs/physical.md "Compose layout" asks for the profile's physical backups: ``PGDATA``
  below the volume, pgBackRest's configuration and repo1 on volumes, ``archive_mode=on``; ``playbooks/pgbackrest.yml``
  (run by the tests) does the rest;
- the inventory, in a private temporary folder: ``group_vars/prod/main.yml`` is a byte-for-byte COPY of the shipped
  file; host names and addresses are host variables (``host_vars/<host>.yml``); secrets are in
  ``group_vars/prod/vault.yml`` encrypted with ansible-vault, where ``inventories/prod/hosts.yml`` says.
  Nothing else is overridden, except what this machine cannot do (:data:`MACHINE_LIMITS`).

The profile's paths are kept: ``/srv/atlasia`` (refused when it exists and was not made by this helper) and
the metrics textfile under ``/var/lib/prometheus/node-exporter``. Those paths and the container name are the
machine's, so one world at a time: :meth:`ProdWorld.start` waits for a machine-wide lock (:data:`WORLD_LOCK`,
held until :meth:`ProdWorld.stop`), which the prod profile and quickstart tests take in parallel workers. Needs root (CI runs as root on a throwaway
machine). :meth:`ProdWorld.stop` stops every server and container it started and removes what it created,
even after a failure.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

from tests.support import REPO_ROOT, SAMPLE_SCHEMA, TMP_ROOT, VENV_BIN, VENV_PYTHON, venv_env
from tests.support.openbao import OpenBaoServer, terminate_pid
from tests.support.pgbackrest import AuthenticatingTLSSeaweedS3Server, make_tls_cert
from tests.support.process import free_port
from tests.support.sshd import SshServer

SHIPPED_GROUP_VARS = REPO_ROOT / "inventories" / "prod" / "group_vars" / "prod" / "main.yml"
PROFILE = yaml.safe_load(SHIPPED_GROUP_VARS.read_text())
HOST_NAME = "aiteam-prod-db1"
SRV = Path("/srv/atlasia")
MARKER = SRV / ".atlasia-dr-test-prod-profile"
DEPLOY_DIR = Path(PROFILE["dr_compose_file"]).parent
COMPOSE_PROJECT = DEPLOY_DIR.name
METRICS_FILE = Path(PROFILE["dr_metrics_textfile"])
SECRET_PATH = "aiteam/database"
POSTGRES_IMAGE = "atlasia/postgres:15"
APP_IMAGE = "atlasia/debian-base:bookworm"
#: Where the database container sees the S3 CA (the profile's pgBackRest repo2 on S3).
CONTAINER_S3_CA = "/etc/atlasia-dr/s3-ca.crt"
VOLUMES = ("pgdata", "pgbackrest-repo", "pgbackrest-conf")
VAULT_PASSWORD = "atlasia-dr-prod-profile-test-vault-password"
COMPOSE = VENV_BIN / "docker-compose"
#: What this machine cannot do, passed with -e: no systemd is PID 1 here, so the daily timer of the profile
#: (dr_backup_schedule_enabled, method systemd) cannot be enabled. Not a host name, address or secret: the one
#: deviation from the shipped profile, listed so that a test can check it stays the only one.
MACHINE_LIMITS = {"dr_backup_schedule_enabled": False}
#: One prod world per machine (/srv/atlasia, the container aiteam_db_prod): held from start to stop.
WORLD_LOCK = Path("/run/lock/atlasia-dr-prod-world.lock")


class ProdWorldError(RuntimeError):
    pass


def _run(argv, check=True, timeout=300, **kwargs):
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    proc = subprocess.run([str(a) for a in argv], timeout=timeout, check=False, **kwargs)
    if check and proc.returncode != 0:
        raise ProdWorldError("%s failed (%s):\n%s%s" % (" ".join(map(str, argv)), proc.returncode,
                                                        proc.stdout[-3000:], proc.stderr[-3000:]))
    return proc


class ContainerDatabase:
    """SQL in the ``aiteam_db_prod`` container through ``docker exec psql`` (its unix socket, trust).

    Has ``rows(sql, db)`` like :class:`tests.support.postgres.PostgresServer`, so ``table_digests`` works on it.
    """

    def __init__(self, container, port, user):
        self.container = container
        self.port = port
        self.user = user

    def psql(self, sql, db="postgres"):
        proc = _run(["docker", "exec", "-i", self.container, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-A",
                     "-t", "-F", "\x1f", "-p", self.port, "-U", self.user, "-d", db], check=False, input=sql)
        if proc.returncode != 0:
            raise ProdWorldError("psql in %s failed: %s" % (self.container, proc.stderr.strip()))
        return proc.stdout

    def rows(self, sql, db="postgres"):
        return [line.split("\x1f") for line in self.psql(sql, db).splitlines() if line]

    def databases(self):
        """Names of the non-template databases, sorted."""
        return [row[0] for row in self.rows("SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY 1")]


class ProdWorld:
    """Everything the shipped prod profile needs, on 127.0.0.1; see the module docstring."""

    def __init__(self, workdir, ssh_port=None):
        self.workdir = Path(workdir)
        self.ssh_port = ssh_port  # None: a free port
        self.inventory = self.workdir / "inventory"
        self.password_file = self.workdir / "vault-password"
        self.limits_file = self.workdir / "machine-limits.yml"
        self.ssh = None
        self.bao = None
        self.s3 = None
        self.db = None
        self.db_port = None
        self.app_port = None
        self.db_password = "prod-db-" + os.urandom(12).hex()
        self.encryption_key = "prod-enc-" + os.urandom(24).hex()
        self.compose_up = False
        self.s3_cert = None
        self.made_metrics_dir = []
        self.reports_before = set()
        self._lock = None

    # -- life cycle -----------------------------------------------------------------------------------------
    def start(self):
        if os.geteuid() != 0:
            raise ProdWorldError("the prod profile test needs root (sshd, sudoers, /srv/atlasia, Docker)")
        WORLD_LOCK.parent.mkdir(parents=True, exist_ok=True)
        lock = open(WORLD_LOCK, "w")  # pylint: disable=consider-using-with  # closed in stop()
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another prod world on this machine: wait for its stop()
        except BaseException:  # interrupted while waiting (a test timeout): the world is another run's
            lock.close()
            raise
        self._lock = lock
        if SRV.exists() and not MARKER.exists():
            self._lock.close()
            self._lock = None  # so that stop() leaves that folder and its services alone
            raise ProdWorldError("%s exists and was not made by this test: refusing to use or remove it" % SRV)
        try:
            self._reset_srv()
            self.reports_before = set(self.report_files())
            self.workdir.mkdir(parents=True, exist_ok=True)
            os.chmod(self.workdir, 0o700)
            # its own folder under /tmp: the login user must traverse it to read its authorized_keys
            self.ssh = SshServer(port=self.ssh_port).start()
            self.bao = OpenBaoServer(directory=str(self.workdir / "openbao"))
            self.bao.setup()
            self.s3_cert, s3_key = make_tls_cert(str(self.workdir / "s3-tls"))
            # checking credentials, as a real server does: the profile's file sets go to the S3 file repository, and
            # restic's chunk-signed uploads are refused by a server that does not
            self.s3 = AuthenticatingTLSSeaweedS3Server(self.s3_cert, s3_key, directory=str(self.workdir / "s3")).start(
                bucket=PROFILE["dr_s3_bucket"])
            self._write_app_files()
            self._start_compose()
            self._ensure_metrics_dir()
            self._write_inventory()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        if self._lock is None:
            # start() never got the machine-wide lock: /srv/atlasia, the compose project and the container
            # belong to the world of another run, which must not be torn down from here
            return
        errors = []

        def attempt(action, *args):
            try:
                action(*args)
            except Exception as exc:  # keep cleaning up
                errors.append(exc)

        if self.compose_up or COMPOSE.exists():
            attempt(self._stop_compose)
        for server in (self.s3, self.bao, self.ssh):
            if server is not None:
                attempt(server.stop)
        self.s3 = self.bao = self.ssh = None
        for name in ("atlasia_dr.prom", "atlasia_dr_verify.prom", "atlasia_dr_monitor.prom"):
            attempt(lambda p: p.unlink() if p.exists() else None, METRICS_FILE.parent / name)
        for folder in reversed(self.made_metrics_dir):
            try:
                folder.rmdir()
            except OSError:
                pass
        self.made_metrics_dir = []
        if MARKER.exists():
            attempt(shutil.rmtree, SRV)
        for path in set(self.report_files()) - self.reports_before:
            attempt(lambda p: p.unlink() if p.exists() else None, path)
        if self._lock is not None:
            self._lock.close()  # releases the machine-wide lock
            self._lock = None
        if errors:
            raise errors[0]

    # -- the host's files and services ------------------------------------------------------------------------
    def _reset_srv(self):
        if MARKER.exists():  # left by an interrupted run of this test
            shutil.rmtree(SRV)
        SRV.mkdir(parents=True, mode=0o755)
        MARKER.write_text("made by tests/support/prodprofile.py; removed at the end of the test\n")

    def _write_app_files(self):
        DEPLOY_DIR.mkdir(parents=True, exist_ok=True)
        self.db_port = free_port()
        self.app_port = free_port()
        while self.app_port == self.db_port:
            self.app_port = free_port()
        (DEPLOY_DIR / ".env").write_text("DB_PASSWORD=%s\nDB_PORT=%d\nAPP_PORT=%d\n"
                                         % (self.db_password, self.db_port, self.app_port))
        (DEPLOY_DIR / ".env.prod").write_text("SPRING_PROFILES_ACTIVE=prod\nDB_PASSWORD=%s\n" % self.db_password)
        for name in (".env", ".env.prod"):
            (DEPLOY_DIR / name).chmod(0o600)
        www = DEPLOY_DIR / "health" / "api" / "health"
        www.mkdir(parents=True)
        (www / "ready").write_text('{"status":"UP"}\n')
        compose = {
            "services": {
                "db": {
                    "image": POSTGRES_IMAGE,
                    "container_name": PROFILE["dr_db_container"],
                    "network_mode": "host",
                    "environment": {"PGPORT": "${DB_PORT}", "POSTGRES_USER": PROFILE["dr_db_user"],
                                    "POSTGRES_DB": PROFILE["dr_db_name"], "POSTGRES_PASSWORD": "${DB_PASSWORD}",
                                    "PGDATA": "/var/lib/postgresql/data/pgdata"},
                    "command": ["postgres", "-c", "shared_buffers=32MB", "-c", "max_connections=40",
                                "-c", "fsync=off", "-c", "archive_mode=on"],
                    "volumes": ["pgdata:/var/lib/postgresql/data",
                                "pgbackrest-repo:%s" % PROFILE["dr_pgbackrest_repo1_path"],
                                "pgbackrest-conf:/etc/pgbackrest",
                                "./s3-ca.crt:%s:ro" % CONTAINER_S3_CA],
                    "stop_signal": "SIGINT",  # PostgreSQL's fast shutdown
                    "stop_grace_period": "20s",
                },
                # The application: a stand-in that answers the health URL (GET /api/health/ready).
                "ai-orchestrator": {
                    "image": APP_IMAGE,
                    "network_mode": "host",
                    "command": ["python3", "-m", "http.server", "--bind", "127.0.0.1", "--directory", "/srv/www",
                                "${APP_PORT}"],
                    "volumes": ["%s:/srv/www:ro" % (DEPLOY_DIR / "health")],
                    "depends_on": {"db": {"condition": "service_healthy"}},
                    "stop_signal": "SIGINT",  # http.server as PID 1 ignores SIGTERM
                    "stop_grace_period": "5s",
                },
            },
            "volumes": {name: {} for name in VOLUMES},
        }
        shutil.copyfile(self.s3_cert, DEPLOY_DIR / "s3-ca.crt")
        (DEPLOY_DIR / "docker-compose.yml").write_text(yaml.safe_dump(compose, sort_keys=False))
        (DEPLOY_DIR / "docker-compose.override.yml").write_text("services: {}\n")
        config = SRV / "config"
        config.mkdir()
        (config / "application.properties").write_text(
            "server.port=8080\nspring.datasource.url=jdbc:postgresql://localhost/aiteam_prod\n")
        (config / "application-prod.properties").write_text("logging.level.root=INFO\n")
        uploads = SRV / "data" / "uploads" / "2026" / "11"
        uploads.mkdir(parents=True)
        (uploads / "contract.pdf").write_bytes(os.urandom(8192))
        plugins = SRV / "data" / "plugins"
        plugins.mkdir(parents=True)
        (plugins / "persona-pack.jar").write_bytes(os.urandom(4096))
        logs = SRV / "logs"
        logs.mkdir()
        (logs / "app.log").write_text("started\n")
        old = logs / "app-2026-01-01.log"
        old.write_text("old\n")
        ten_days_ago = time.time() - 10 * 86400
        os.utime(old, (ten_days_ago, ten_days_ago))

    def compose(self, *args, check=True, timeout=300):
        return _run([COMPOSE, "--file", PROFILE["dr_compose_file"], "--project-directory", DEPLOY_DIR,
                     *args], check=check, timeout=timeout, env=venv_env())

    def _start_compose(self):
        for image in (POSTGRES_IMAGE, APP_IMAGE):
            if _run(["docker", "image", "inspect", image], check=False).returncode != 0:
                raise ProdWorldError("image %s is missing: scripts/build-images.sh builds it" % image)
        stale = _run(["docker", "inspect", PROFILE["dr_db_container"]], check=False)
        if stale.returncode == 0:
            raise ProdWorldError("a container named %s already exists on this machine" % PROFILE["dr_db_container"])
        self.compose_up = True
        self.compose("up", "--detach", "--wait", "--wait-timeout", "180", timeout=240)
        self.db = ContainerDatabase(PROFILE["dr_db_container"], self.db_port, PROFILE["dr_db_user"])
        self.db.psql(SAMPLE_SCHEMA.read_text(encoding="utf-8"), db=PROFILE["dr_db_name"])

    def _stop_compose(self):
        if COMPOSE.exists() and Path(PROFILE["dr_compose_file"]).exists():
            self.compose("down", "--volumes", "--remove-orphans", "--timeout", "10", check=False, timeout=180)
        # whatever compose could not remove (its file gone, or a failed start)
        _run(["docker", "rm", "-f", "-v", PROFILE["dr_db_container"]], check=False)
        _run(["docker", "volume", "rm", "-f"] + ["%s_%s" % (COMPOSE_PROJECT, name) for name in VOLUMES], check=False)
        self.compose_up = False

    def _ensure_metrics_dir(self):
        missing = []
        folder = METRICS_FILE.parent
        while not folder.exists():
            missing.append(folder)
            folder = folder.parent
        for folder in reversed(missing):
            folder.mkdir(mode=0o755)
            self.made_metrics_dir.append(folder)

    # -- the inventory ------------------------------------------------------------------------------------------
    def host_vars(self):
        """Host names and addresses: the connection, the servers' URLs and ports on 127.0.0.1, the S3 CA."""
        data = dict(self.ssh.inventory_vars())
        data.update(
            ansible_become=True,
            # The venv's Python: it resolves under /root, which atlasiaops cannot enter; every module runs as root
            # through become, and root runs it (boto3, cryptography, psycopg2 are there).
            ansible_python_interpreter=str(VENV_PYTHON),
            dr_db_port=self.db_port,
            dr_vault_url=self.bao.addr,
            dr_s3_endpoint_url=self.s3.endpoint_url,
            dr_s3_region=self.s3.region,
            dr_s3_ca_bundle=self.s3_cert,
            # SeaweedFS refuses boto3's checksum trailers over HTTPS (InvalidAccessKeyId on PutObject)
            dr_s3_checksum_calculation="when_required",
            dr_pgbackrest_s3_ca_file=CONTAINER_S3_CA,
            dr_health_urls=["http://127.0.0.1:%d/api/health/ready" % self.app_port],
        )
        return data

    def secrets(self):
        """The secrets, as users keep them: a vars file encrypted with ansible-vault."""
        return dict(
            vault_dr_db_password=self.db_password,
            vault_dr_vault_token=self.bao.token,
            vault_dr_encryption_key=self.encryption_key,
            vault_dr_s3_access_key=self.s3.access_key,
            vault_dr_s3_secret_key=self.s3.secret_key,
            dr_vault_recover_unseal_keys=[self.bao.unseal_key],
        )

    def _write_inventory(self):
        group_vars = self.inventory / "group_vars"
        # the shipped profile as it is (group_vars/prod/main.yml), the secrets beside it as the inventory says
        (group_vars / "prod").mkdir(parents=True)
        (self.inventory / "host_vars").mkdir()
        shutil.copyfile(SHIPPED_GROUP_VARS, group_vars / "prod" / "main.yml")
        hosts = {"prod": {"children": {"prod_db": {"hosts": {HOST_NAME: None}}, "new_hosts": {"hosts": {}}}}}
        (self.inventory / "hosts.yml").write_text(yaml.safe_dump(hosts, sort_keys=False))
        (self.inventory / "host_vars" / ("%s.yml" % HOST_NAME)).write_text(
            yaml.safe_dump(self.host_vars(), sort_keys=False))
        self.password_file.write_text(VAULT_PASSWORD + "\n")
        self.password_file.chmod(0o600)
        vault_file = self.vault_file
        vault_file.write_text(yaml.safe_dump(self.secrets(), sort_keys=False))
        vault_file.chmod(0o600)
        _run([VENV_BIN / "ansible-vault", "encrypt", "--vault-password-file", self.password_file, vault_file],
             env=venv_env())
        self.limits_file.write_text(yaml.safe_dump(MACHINE_LIMITS))

    @property
    def vault_file(self):
        return self.inventory / "group_vars" / "prod" / "vault.yml"

    def host_variables(self, inventory=None):
        """The variables Ansible gives the host with ``inventory`` (default: ours), from ansible-inventory."""
        proc = _run([VENV_BIN / "ansible-inventory", "-i", inventory or self.inventory, "--vault-password-file",
                     self.password_file, "--host", HOST_NAME], cwd=str(REPO_ROOT), env=venv_env())
        return json.loads(proc.stdout)

    # -- running the playbooks --------------------------------------------------------------------------------
    def playbook(self, name, *args, timeout=600):
        """``ansible-playbook -i INVENTORY playbooks/NAME -e env=prod ARGS``; the CompletedProcess (output kept)."""
        argv = [VENV_BIN / "ansible-playbook", "-i", self.inventory, "playbooks/%s" % name, "-e", "env=prod",
                "--vault-password-file", self.password_file, "-e", "@%s" % self.limits_file] + list(args)
        # profile_tasks: each task's duration in the kept log
        env = venv_env({"ANSIBLE_HOST_KEY_CHECKING": "True", "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
                        "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks"})
        proc = _run(argv, check=False, timeout=timeout, cwd=str(REPO_ROOT), env=env, stdin=subprocess.DEVNULL)
        log = self.workdir / "logs"
        log.mkdir(exist_ok=True)
        index = len(list(log.iterdir()))
        (log / ("%02d-%s.log" % (index, name))).write_text(" ".join(map(str, argv)) + "\n" + proc.stdout
                                                           + proc.stderr)
        return proc

    # -- what the tests read back ------------------------------------------------------------------------------
    @property
    def backup_root(self):
        return Path(PROFILE["dr_backup_root"])

    def sets(self):
        """Set ids recorded in daily/, oldest first."""
        daily = self.backup_root / "daily"
        return sorted(p.name[len("set_"):-len(".json")] for p in daily.glob("set_*.json")) if daily.exists() else []

    def manifest(self, set_id):
        return json.loads((self.backup_root / "daily" / ("set_%s.json" % set_id)).read_text())

    def s3_keys(self):
        client = self.s3.client()
        keys, token = [], None
        for _page in range(1000):
            kwargs = dict(Bucket=PROFILE["dr_s3_bucket"], Prefix=PROFILE["dr_s3_prefix"])
            if token:
                kwargs["ContinuationToken"] = token
            answer = client.list_objects_v2(**kwargs)
            keys += [o["Key"] for o in answer.get("Contents", [])]
            token = answer.get("NextContinuationToken")
            if not token:
                break
        return keys

    def report_files(self):
        reports = self.inventory / "reports"  # the role's default: beside the inventory
        return [p for p in reports.rglob("*") if p.is_file()] if reports.exists() else []

    def new_reports(self, pattern):
        """Reports matching ``pattern`` written during this test, oldest first."""
        return sorted((p for p in (self.inventory / "reports").rglob(pattern) if p not in self.reports_before),
                      key=lambda p: (p.stat().st_mtime, p.name))

    def app_files(self):
        """Content of the profile's config and file-data paths (what restores of config/files bring back)."""
        result = {}
        for top in (DEPLOY_DIR, SRV / "config", SRV / "data", SRV / "logs"):
            for path in sorted(top.rglob("*")):
                if path.is_file():
                    result[str(path)] = path.read_bytes()
        return result

    def replace_vault_with_a_fresh_server(self):
        """Vault's storage is lost: stop OpenBao (by PID), move its raft data aside, start an empty one at the
        same address. The original unseal key and root token stay known (they apply again after a restore)."""
        old = self.bao
        terminate_pid(old.pid, expect_in_cmdline="bao", process=old.process)
        os.rename(old.data_dir, old.data_dir + ".lost")
        fresh = OpenBaoServer(directory=old.dir, node_id=old.node_id, port=old.port, cluster_port=old.cluster_port)
        fresh.start()
        fresh.unseal_key, fresh.token = old.unseal_key, old.token
        self.bao = fresh
        return fresh


def make_workdir():
    """A private folder for the inventory, keys and servers (under /tmp: the checkout may be anywhere)."""
    return Path(tempfile.mkdtemp(prefix="atlasia-prod-profile-"))


def discard_workdir(workdir, name):
    """Remove a world's private folder, keeping its playbooks' output in ``TMP_ROOT/<name>/logs`` for a look after a
    failure (.tmp is git-ignored)."""
    kept = TMP_ROOT / name
    shutil.rmtree(kept, ignore_errors=True)
    if (workdir / "logs").is_dir():
        shutil.copytree(workdir / "logs", kept / "logs")
    shutil.rmtree(workdir, ignore_errors=True)
