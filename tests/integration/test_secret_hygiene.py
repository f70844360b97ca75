"""No secret leaks: backup.yml and restore.yml at -vvvv with known secret values.

The DB password, the Vault token and unseal key, and the S3 secret key must not appear in the playbook
output, in reports, manifests or any file the runs write, nor in the argument list of any process started
while the runs go on (sampled from /proc). Files that hold secrets on purpose (the configuration archive,
the dumps) must not be readable by others.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time

import pytest

from tests.support import REPO_ROOT, TMP_ROOT, VENV_BIN, VENV_PYTHON, venv_env
from tests.support.localenv import ENCRYPTION_KEY, LocalEnvironment

pytestmark = pytest.mark.integration

DB_PASSWORD = "Db-S3cr3t-7f1c9a2e"
S3_SECRET = "S3-S3cr3t-b84d21c0"


class ArgvSampler(threading.Thread):
    """Collects the command lines of every process on the machine until stopped."""

    def __init__(self):
        super().__init__(daemon=True)
        self.seen = set()
        self.samples = 0
        self._halt = threading.Event()

    def run(self):
        deadline = time.monotonic() + 900  # bounded
        while not self._halt.is_set() and time.monotonic() < deadline:
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    with open("/proc/%s/cmdline" % pid, "rb") as handle:
                        cmdline = handle.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
                except OSError:
                    continue
                if cmdline:
                    self.seen.add(cmdline)
            self.samples += 1
            time.sleep(0.02)

    def stop(self):
        self._halt.set()
        self.join(10)


@pytest.fixture(scope="module")
def env():
    local = LocalEnvironment(root=TMP_ROOT / "it-secrets", db_password=DB_PASSWORD, s3_secret_key=S3_SECRET)
    local.start()
    try:
        yield local
    finally:
        local.stop()


def run(name, vars_file, *args):
    argv = [str(VENV_BIN / "ansible-playbook"), "-vvvv", "playbooks/%s" % name, "-e", "env=local",
            "-e", "@%s" % vars_file, "-e", "ansible_python_interpreter=%s" % VENV_PYTHON] + list(args)
    return subprocess.run(argv, cwd=str(REPO_ROOT), env=venv_env(), capture_output=True, text=True, timeout=900, check=False)


def test_no_secret_in_output_files_or_process_arguments(env):
    # the environment's key travels in every run where file sets go to the file repository (the default)
    secrets = {"db password": DB_PASSWORD, "s3 secret key": S3_SECRET, "vault token": env.bao.token,
               "vault unseal key": env.bao.unseal_key, "encryption key": ENCRYPTION_KEY}
    vars_file = env.write_vars(dr_reports_dir=str(env.root / "reports"))
    sampler = ArgvSampler()
    sampler.start()
    try:
        backup = run("backup.yml", vars_file)
        env.disaster()
        restore = run("restore.yml", vars_file, "-e", "dr_restore_config=true", "-e", "dr_restore_files=true")
    finally:
        sampler.stop()
    assert backup.returncode == 0, backup.stdout[-3000:]
    assert restore.returncode == 0, restore.stdout[-3000:]
    assert sampler.samples > 10
    assert any("pg_dump" in argv for argv in sampler.seen), "the sampler never saw pg_dump running"

    leaks = []
    for label, value in secrets.items():
        for stream_name, text in (("backup output", backup.stdout + backup.stderr),
                                  ("restore output", restore.stdout + restore.stderr)):
            if value in text:
                leaks.append("%s in %s" % (label, stream_name))
        for argv in sampler.seen:
            if value in argv:
                leaks.append("%s in the arguments of: %s" % (label, argv.replace(value, "<SECRET>")[:200]))
    written = [p for p in (env.root / "backups").rglob("*") if p.is_file()]
    written += [p for p in (env.root / "reports").rglob("*") if p.is_file()]
    written += [p for p in (env.root / "metrics").rglob("*") if p.is_file()]
    assert written
    for path in written:
        data = path.read_bytes()
        for label, value in secrets.items():
            if value.encode() in data:
                leaks.append("%s in %s" % (label, path))
    assert not leaks, leaks


def test_backup_artifacts_are_private(env):
    loose = []
    for path in (env.root / "backups").rglob("*"):
        if not path.is_file():
            continue
        name = path.name
        if name.endswith((".md5", ".sha256", ".json")):
            continue  # checksums and manifests hold no data
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            loose.append("%s has mode %o" % (path, mode))
    for directory in ("daily", "weekly", "monthly"):
        mode = (env.root / "backups" / directory).stat().st_mode & 0o777
        if mode & 0o077:
            loose.append("%s has mode %o" % (directory, mode))
    assert not loose, loose
