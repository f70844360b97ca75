"""backup.yml --check on the local environment (real PostgreSQL, OpenBao, S3 server): a dry run.

With encryption, Vault and S3 enabled, ``ansible-playbook playbooks/backup.yml --check`` must run to the end,
write nothing (no artifact, set manifest, lock file, metrics textfile, S3 object or webhook call) and say what a
real run would write, upload and rotate.
"""

from __future__ import annotations

import hashlib
import http.server
import re
import subprocess
import threading
from pathlib import Path

import pytest

from tests.support import REPO_ROOT, VENV_BIN, VENV_PYTHON, venv_env
from tests.support.localenv import BUCKET, running

pytestmark = pytest.mark.integration

ENCRYPTION_KEY = "check-mode-test-passphrase"
# the names a real run of the local environment gives its artifacts, encrypted; its file sets (uploads, logs) go to
# the file repository (dr_backup_files_store, by default repository), local and in S3, not into the set
ARTIFACTS = [r"backup_{ts}\.sql\.gz\.enc", r"globals_{ts}\.sql\.enc", r"schema_{ts}\.sql\.enc", r"vault_{ts}\.snap\.enc",
             r"config_{ts}\.tar\.gz\.enc"]
FILE_SETS = ["uploads", "logs"]


def playbook(name, vars_file, *args):
    argv = [str(VENV_BIN / "ansible-playbook"), "playbooks/%s" % name, "-e", "env=local", "-e", "@%s" % vars_file,
            "-e", "ansible_python_interpreter=%s" % VENV_PYTHON] + list(args)
    return subprocess.run(argv, cwd=str(REPO_ROOT), env=venv_env(), capture_output=True, text=True, timeout=900,
                          check=False)


class Webhook(object):
    """An HTTP endpoint on 127.0.0.1 that records every request made to it."""

    def __init__(self):
        calls = self.calls = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                calls.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/alert" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def webhook():
    hook = Webhook()
    try:
        yield hook
    finally:
        hook.stop()


@pytest.fixture(scope="module")
def local_env():
    with running("it-check-mode") as env:
        yield env


@pytest.fixture(scope="module")
def vars_file(local_env, webhook):
    return local_env.write_vars(dr_reports_dir=str(local_env.root / "reports"), dr_encryption_enabled=True,
                                dr_encryption_key=ENCRYPTION_KEY, dr_webhook_url=webhook.url)


def tree(path):
    """Every entry under ``path``: kind, mode, size, modification time and (files) content digest."""
    path = Path(path)
    if not path.exists():
        return None
    entries = {}
    for entry in sorted([path] + list(path.rglob("*"))):
        stat = entry.lstat()
        digest = hashlib.sha256(entry.read_bytes()).hexdigest() if entry.is_file() else None
        entries[str(entry.relative_to(path))] = (stat.st_mode, stat.st_size, stat.st_mtime_ns, digest)
    return entries


def bucket(env):
    pages = env.s3.client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
    return sorted((o["Key"], o["Size"], o["ETag"], o["LastModified"].isoformat())
                  for page in pages for o in page.get("Contents", []))


def state(env):
    return dict(backups=tree(env.root / "backups"), metrics=tree(env.root / "metrics"), bucket=bucket(env))


def planned_set(stdout):
    """The set id of the manifest the check-mode summary says a real run would write."""
    found = re.search(r"set: (\S+)/set_(\d{8}_\d{6})\.json", stdout)
    assert found, "the check-mode summary names no set manifest:\n" + stdout[-4000:]
    return Path(found.group(1)), found.group(2)


def summary_entry(stdout, key):
    """The text of one key of the check-mode summary, up to the next key at the same indentation (the output
    callback prints the keys sorted, and folds long lines)."""
    found = re.search(r"\n( +)%s:" % key, stdout)
    assert found, "the check-mode summary has no %s:\n%s" % (key, stdout[-4000:])
    rest = stdout[found.start() + 1:]
    following = re.search(r"\n%s[a-z_]+:" % found.group(1), rest)
    return rest[:following.start()] if following else rest


def assert_summary(stdout, env):
    directory, stamp = planned_set(stdout)
    assert directory == env.root / "backups" / "daily"
    assert not (directory / ("set_%s.json" % stamp)).exists()
    written = summary_entry(stdout, "would_write")
    for pattern in ARTIFACTS:
        name = pattern.format(ts=stamp)
        assert re.search(re.escape(str(directory)) + "/" + name, written), name
    assert not re.search(r"(uploads|logs)_%s" % stamp, written), written  # no tarball of the file sets
    # the output callback folds long lines: compare on the words
    snapshots = " ".join(summary_entry(stdout, "would_snapshot_files").split())
    for name in FILE_SETS:
        assert "%s into %s" % (name, env.root / "backups" / "files-repository") in snapshots, snapshots
        assert re.search(r"%s into s3:\S+/%s/" % (name, BUCKET), snapshots), snapshots
    assert "would_upload_to: s3://%s/" % BUCKET in stdout
    assert re.search(r"would_upload_sets:\s*\n\s*- '%s'" % stamp, stdout)
    assert "would_delete_locally:" in stdout and "would_delete_in_s3:" in stdout
    assert "would_export_metrics_to: %s" % (env.root / "metrics" / "atlasia_dr.prom") in stdout
    return stamp


def test_check_mode_writes_nothing_and_says_what_it_would_do(local_env, vars_file, webhook):
    before = state(local_env)
    assert before["backups"] is None and before["metrics"] is None and before["bucket"] == []
    result = playbook("backup.yml", vars_file, "--check")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert state(local_env) == before  # no backup root, no lock file, no metrics folder, nothing in S3
    assert webhook.calls == []
    assert_summary(result.stdout, local_env)


def test_check_mode_after_a_real_backup_changes_nothing(local_env, vars_file, webhook):
    result = playbook("backup.yml", vars_file)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    before = state(local_env)
    sets = sorted(name for name in before["backups"] if re.match(r"daily/set_\d{8}_\d{6}\.json$", name))
    assert len(sets) == 1 and before["bucket"] and "atlasia_dr.prom" in before["metrics"]
    assert not any(name.endswith(".lock") for name in before["backups"])

    result = playbook("backup.yml", vars_file, "--check")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert state(local_env) == before  # the set, its tiers, the metrics and the bucket are untouched
    assert webhook.calls == []
    stamp = assert_summary(result.stdout, local_env)
    # the real run's set is already offsite: only the new one would be uploaded
    assert "set_%s.json" % stamp not in sets
    uploads = re.search(r"would_upload_sets:\s*\n((?:\s*- '\d{8}_\d{6}'\n)+)", result.stdout).group(1)
    assert re.findall(r"\d{8}_\d{6}", uploads) == [stamp]
