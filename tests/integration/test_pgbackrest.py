"""pgBackRest end to end: WAL archiving, physical backups to a local and an S3 repository, point-in-time restores.

Real servers on 127.0.0.1: a PostgreSQL 15 with production-like durability and commit timestamps, and the
SeaweedFS S3 server over HTTPS (pgBackRest speaks HTTPS only to S3) with a certificate the test makes. Both
repositories are encrypted (aes-256-cbc). Everything runs through Ansible like an operator runs it:
playbooks/pgbackrest.yml (set up), the role's backup.yml and verify.yml entry points (as the backup and verify
roles include them), playbooks/pitr.yml.

The story, in order (one cluster, module-scoped):

1. set-up switches archiving on, creates the stanza in both repositories, passes `check`; a second run changes
   nothing;
2. a writer commits rows continuously; a full backup goes to both repositories; the writer keeps going; a time T
   is noted; more rows; the table is dropped. pitr.yml to T brings back exactly the rows whose commit timestamp
   is <= T (read from the source before the drop), into a new data directory swapped in; the old one is kept;
3. the writer runs again on the new timeline; the server crashes (immediate stop); pitr.yml target=latest brings
   back every row archived, losing at most the last archive_timeout's worth (the measured RPO).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tests.support import REPO_ROOT, TMP_ROOT, VENV_BIN, VENV_PYTHON, venv_env
from tests.support.ansible_run import run_module
from tests.support.pgbackrest import ARCHIVE_SETTINGS, TLSSeaweedS3Server, make_tls_cert
from tests.support.postgres import PG_BINDIR, PostgresServer, _reachable_by_others, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

DB = "app"
BUCKET = "atlasia-backups"
ARCHIVE_TIMEOUT = 5
CIPHER_PASS = "pgbackrest-test-cipher-passphrase-0123456789"
ROOT = TMP_ROOT / "it-pgbackrest"
if os.geteuid() == 0 and not _reachable_by_others(ROOT):
    # pgBackRest and PostgreSQL run as another user, who cannot reach a checkout under a private folder (mktemp -d,
    # a 0700 home): the stack then lives under /tmp, and its logs are copied back into the checkout at the end
    ROOT = Path(tempfile.gettempdir()) / ("atlasia-it-pgbackrest-%s" % hashlib.sha1(str(TMP_ROOT).encode()).hexdigest()[:8])


def os_user():
    return "atlasia-pg" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name


def playbook(path, vars_file, *args, timeout=600):
    argv = [str(VENV_BIN / "ansible-playbook"), str(path), "-e", "env=local", "-e", "@%s" % vars_file,
            "-e", "ansible_python_interpreter=%s" % VENV_PYTHON] + list(args)
    started = time.monotonic()
    env = venv_env({"ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks"})
    proc = subprocess.run(argv, cwd=str(REPO_ROOT), env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    proc.seconds = time.monotonic() - started
    logs = ROOT / "logs"
    logs.mkdir(exist_ok=True)
    (logs / ("%02d-%s.log" % (len(list(logs.iterdir())), Path(path).stem))).write_text(proc.stdout + proc.stderr)
    return proc


def recap_changed(stdout):
    match = re.search(r"localhost\s+:\s+ok=\d+\s+changed=(\d+)", stdout)
    return int(match.group(1)) if match else None


def write_playbook(name, tasks_from, extra_tasks=""):
    path = ROOT / "playbooks" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "---\n- name: pgBackRest %s\n  hosts: local_db\n  gather_facts: false\n  tasks:\n"
        "    - name: Include atlasia.dr.dr_pgbackrest %s\n      ansible.builtin.include_role:\n"
        "        name: atlasia.dr.dr_pgbackrest\n        tasks_from: %s\n%s"
        % (tasks_from, tasks_from, tasks_from, extra_tasks))
    return path


class Writer(object):
    """Commits one row at a time (autocommit) into ``table`` until stopped; remembers what was committed."""

    def __init__(self, server, table, interval=0.01):
        self.server = server
        self.table = table
        self.interval = interval
        self.committed = []  # (id, client time after the commit returned)
        self.error = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        try:
            conn = self.server.connect(db=DB)
            conn.autocommit = True
            with conn.cursor() as cur:
                while not self._stop.is_set():
                    cur.execute("INSERT INTO %s (payload) VALUES (md5(random()::text)) RETURNING id" % self.table)
                    self.committed.append((cur.fetchone()[0], time.time()))
                    time.sleep(self.interval)
            conn.close()
        except Exception as exc:  # the crash test kills the server under the writer
            self.error = exc

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=30)


@pytest.fixture(scope="module")
def stack():
    if ROOT.exists():
        shutil.rmtree(ROOT)
    ROOT.mkdir(parents=True)
    os.chmod(ROOT, 0o755)
    cert, key = make_tls_cert(str(ROOT / "tls"))
    s3 = TLSSeaweedS3Server(cert, key, directory=str(ROOT / "s3"))
    pg = PostgresServer(base_dir=ROOT / "pg", settings=ARCHIVE_SETTINGS)
    try:
        s3.start(bucket=BUCKET)
        pg.start()
        pg.createdb(DB)
        values = dict(
            dr_backup_root=str(ROOT / "backups"),
            dr_reports_dir=str(ROOT / "reports"),
            dr_lock_file=str(ROOT / "backups" / ".atlasia-dr.lock"),
            dr_db_name=DB, dr_db_user=pg.user, dr_db_password=pg.password, dr_db_host=pg.host, dr_db_port=pg.port,
            dr_db_socket=pg.socket_dir, dr_pg_bin_dir=str(PG_BINDIR),
            dr_s3_enabled=True, dr_s3_bucket=BUCKET, dr_s3_endpoint_url=s3.endpoint_url, dr_s3_region=s3.region,
            dr_s3_access_key=s3.access_key, dr_s3_secret_key=s3.secret_key,
            dr_encryption_enabled=True, dr_encryption_key=CIPHER_PASS,
            dr_key_tables=["ticks"], dr_timestamp_columns={"ticks": "written_at"},
            dr_pgbackrest_install=False,
            dr_pgbackrest_os_user=os_user(),
            dr_pgbackrest_config_dir=str(ROOT / "pgbackrest-conf"),
            dr_pgbackrest_log_path=str(ROOT / "pgbackrest-log"),
            dr_pgbackrest_spool_path=str(ROOT / "pgbackrest-spool"),
            dr_pgbackrest_lock_path=str(ROOT / "pgbackrest-lock"),
            dr_pgbackrest_s3_ca_file=cert,
            dr_pgbackrest_pg_data=str(pg.data_dir),
            dr_pgbackrest_pg_log=str(pg.log_file),
            dr_pgbackrest_scratch_port=free_port(),
            dr_pgbackrest_archive_timeout=ARCHIVE_TIMEOUT,
            dr_pgbackrest_start_timeout=120,
        )
        vars_file = ROOT / "vars.json"
        vars_file.write_text(json.dumps(values, indent=2))
        vars_file.chmod(0o600)
        yield dict(pg=pg, s3=s3, vars_file=vars_file, values=values, cert=cert, measurements={})
    finally:
        try:
            keep_logs(pg)
            pg.stop()
        finally:
            s3.stop()
            if not str(ROOT).startswith(str(TMP_ROOT)):
                logs = TMP_ROOT / "it-pgbackrest-logs"
                shutil.rmtree(logs, ignore_errors=True)
                if (ROOT / "logs").is_dir():
                    shutil.copytree(ROOT / "logs", logs)
                shutil.rmtree(ROOT, ignore_errors=True)


def keep_logs(pg):
    """Copy the server's and the restored copies' logs out of the cluster directory before it is removed."""
    logs = ROOT / "logs"
    logs.mkdir(exist_ok=True)
    for path in [pg.log_file] + sorted(Path(p) for p in glob.glob(str(pg.data_dir) + ".pitr-*.log")):
        if path.is_file():
            shutil.copy(path, logs / path.name)


@pytest.fixture(scope="module")
def setup_run(stack):
    first = playbook("playbooks/pgbackrest.yml", stack["vars_file"])
    assert first.returncode == 0, first.stdout[-6000:] + first.stderr[-3000:]
    second = playbook("playbooks/pgbackrest.yml", stack["vars_file"])
    return dict(first=first, second=second)


def test_setup_switches_archiving_on_and_is_idempotent(stack, setup_run):
    pg = stack["pg"]
    conf = Path(stack["values"]["dr_pgbackrest_config_dir"]) / "pgbackrest.conf"
    assert pg.scalar("SHOW archive_command") == (
        "pgbackrest --config=%s --stanza=atlasia archive-push %%p" % conf)
    assert pg.scalar("SHOW archive_timeout") == "%ds" % ARCHIVE_TIMEOUT
    assert int(pg.scalar("SELECT archived_count FROM pg_stat_archiver")) > 0
    assert oct(conf.stat().st_mode & 0o777) == "0o640"
    text = conf.read_text()
    assert "repo2-type=s3" in text and "repo1-cipher-type=aes-256-cbc" in text
    # the stanza exists in the S3 repository, under its own prefix, encrypted
    keys = [o["Key"] for o in stack["s3"].client().list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert any(k.startswith("pgbackrest/local/archive/atlasia/") for k in keys), keys[:20]
    assert any(k.startswith("pgbackrest/local/backup/atlasia/backup.info") for k in keys)
    # secrets never reach the output
    for proc in (setup_run["first"], setup_run["second"]):
        assert stack["s3"].secret_key not in proc.stdout + proc.stderr
        assert CIPHER_PASS not in proc.stdout + proc.stderr
    second = setup_run["second"]
    assert second.returncode == 0, second.stdout[-4000:]
    assert recap_changed(second.stdout) == 0, second.stdout[-4000:]
    stack["measurements"]["setup_playbook_seconds"] = round(setup_run["first"].seconds, 1)


def module_args(stack, **kwargs):
    values = stack["values"]
    args = dict(stanza="atlasia", config=str(Path(values["dr_pgbackrest_config_dir"]) / "pgbackrest.conf"),
                os_user=values["dr_pgbackrest_os_user"])
    args.update(kwargs)
    return args


def test_module_check_mode_changes_nothing(stack, setup_run):
    before = run_module("pgbackrest", module_args(stack, command="info"))
    assert not before.get("failed"), before.get("msg")
    assert before["status"]["code"] in (0, 2)  # ok, or no backup yet
    assert [r["cipher"] for r in before["repos"]] == ["aes-256-cbc", "aes-256-cbc"]
    assert before["newest_archived"] and before["archive"][0]["max_archived_time"]
    created = run_module("pgbackrest", module_args(stack, command="stanza-create"), check=True)
    assert created["changed"] is False, created
    backup = run_module("pgbackrest", module_args(stack, command="backup", backup_type="full"), check=True)
    assert backup["changed"] is True and "backup" not in backup
    after = run_module("pgbackrest", module_args(stack, command="info"))
    assert [b["label"] for b in after["backups"]] == [b["label"] for b in before["backups"]]
    refused = run_module("pgbackrest", module_args(stack, command="info", options={"repo2-s3-key-secret": "x"}))
    assert refused.get("failed") and "secrets" in refused["msg"]


@pytest.fixture(scope="module")
def backup_run(stack, setup_run):
    """The writer commits rows; a full backup into both repositories is taken meanwhile."""
    pg = stack["pg"]
    pg.psql("CREATE TABLE ticks (id bigserial PRIMARY KEY, written_at timestamptz NOT NULL DEFAULT clock_timestamp(), "
            "payload text)", db=DB)
    writer = Writer(pg, "ticks").start()
    time.sleep(1)
    record = ROOT / "physical-backup.json"
    path = write_playbook("backup.yml", "backup.yml", (
        "    - name: Save the record for the test\n"
        "      ansible.builtin.copy:\n"
        "        content: \"{{ dr_pgbackrest_backup | to_nice_json }}\"\n"
        "        dest: %s\n"
        "        mode: \"0600\"\n") % record)
    proc = playbook(path, stack["vars_file"], "-e", "dr_pgbackrest_backup_type=full")
    if proc.returncode != 0:
        writer.stop()
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    stack["measurements"]["backup_playbook_seconds"] = round(proc.seconds, 1)
    return dict(writer=writer, record=json.loads(record.read_text()))


def test_backup_goes_to_both_repositories_and_is_recorded(stack, backup_run):
    record = backup_run["record"]
    assert record["tool"] == "pgbackrest" and record["type"] == "full"
    assert sorted(b["repo"] for b in record["backups"]) == [1, 2]
    for backup in record["backups"]:
        assert backup["type"] == "full" and re.match(r"^\d{8}-\d{6}F$", backup["label"])
        assert backup["size"] > 0 and backup["stop"] >= backup["start"]
    assert record["newest_archived_time"]


def test_verify_checks_repositories_and_restores_the_backup(stack, backup_run):
    path = write_playbook("verify.yml", "verify.yml", (
        "    - name: Save the checks for the test\n"
        "      ansible.builtin.copy:\n"
        "        content: \"{{ dr_pgbackrest_verify_checks | to_nice_json }}\"\n"
        "        dest: %s\n"
        "        mode: \"0600\"\n") % (ROOT / "verify-checks.json"))
    proc = playbook(path, stack["vars_file"])
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    checks = json.loads((ROOT / "verify-checks.json").read_text())
    names = [c["name"] for c in checks]
    assert "pgbackrest verify repo1" in names and "pgbackrest verify repo2" in names
    assert any(n.startswith("physical restore test ") for n in names)
    assert all(c["ok"] for c in checks), checks
    # the scratch copy is gone, the live cluster untouched
    assert not glob.glob(str(stack["pg"].data_dir) + ".restore-test-*")
    stack["measurements"]["verify_playbook_seconds"] = round(proc.seconds, 1)


def test_pitr_refuses_a_target_no_backup_covers_and_leaves_the_cluster_alone(stack, backup_run):
    pg = stack["pg"]
    pid = pg.pid()
    proc = playbook("playbooks/pitr.yml", stack["vars_file"], "-e", "target_time=2000-01-01T00:00:00+00")
    assert proc.returncode != 0
    assert "the oldest backup ended at" in proc.stdout and "after the target" in proc.stdout
    assert "The live data directory was not touched" in proc.stdout
    assert pg.pid() == pid and pg.scalar("SELECT pg_is_in_recovery()") == "f"
    assert not glob.glob(str(pg.data_dir) + ".pitr-*")
    report = json.loads(sorted((ROOT / "reports").glob("restore-*.json"))[-1].read_text())
    assert report["status"] == "failed" and report["method"] == "pitr"
    assert [p["status"] for p in report["phases"]] == ["failed"]


def test_pitr_to_a_noted_time_returns_exactly_the_rows_committed_before_it(stack, backup_run):
    pg = stack["pg"]
    writer = backup_run["writer"]
    time.sleep(2)  # keep writing after the backup
    target = pg.scalar("SELECT clock_timestamp()")  # e.g. 2026-11-26 10:41:00.123456+00
    time.sleep(2)  # and after the noted time
    writer.stop()
    assert writer.error is None, writer.error
    expected = [int(r[0]) for r in pg.rows(
        "SELECT id FROM ticks WHERE pg_xact_commit_timestamp(xmin) <= '%s'::timestamptz ORDER BY id" % target, db=DB)]
    every = [int(r[0]) for r in pg.rows("SELECT id FROM ticks ORDER BY id", db=DB)]
    assert 0 < len(expected) < len(every)
    assert every == sorted(row[0] for row in writer.committed)
    pg.psql("DROP TABLE ticks", db=DB)  # the mistake the restore undoes

    proc = playbook("playbooks/pitr.yml", stack["vars_file"], "-e", "target_time='%s'" % target)
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-2000:]

    restored = [int(r[0]) for r in pg.rows("SELECT id FROM ticks ORDER BY id", db=DB)]
    assert restored == expected
    assert pg.scalar("SELECT pg_is_in_recovery()") == "f"
    assert int(pg.scalar("SELECT timeline_id FROM pg_control_checkpoint()")) >= 2
    previous = glob.glob(str(pg.data_dir) + ".previous-*")
    assert len(previous) == 1 and os.path.exists(os.path.join(previous[0], "PG_VERSION"))
    assert [os.path.basename(p) for p in glob.glob(str(pg.data_dir) + ".pitr-*")] == [
        os.path.basename(previous[0]).replace("previous", "pitr") + ".log"]  # only the recovery log is kept
    assert "restore_command" not in (pg.data_dir / "postgresql.auto.conf").read_text()

    report = json.loads(sorted((ROOT / "reports").glob("restore-*.json"))[-1].read_text())
    assert report["verified"] is True and report["status"] == "succeeded"
    assert report["method"] == "pitr" and report["recovery_target"] == target
    assert [p["name"] for p in report["phases"]] == ["assessment", "preparation", "restoration", "verification",
                                                     "post-recovery"]
    assert report["target_gap_seconds"] == 0  # the archive covered the target
    assert any(c["name"] == "WAL archiving on the new timeline" and c["ok"] for c in report["checks"])
    assert report["rto_seconds"] > 0 and report["rpo_seconds"] >= 0
    assert "Achieved RTO" in proc.stdout
    stack["measurements"]["pitr_time"] = dict(
        rows_expected=len(expected), rows_after_target=len(every) - len(expected),
        rto_seconds=report["rto_seconds"], playbook_seconds=round(proc.seconds, 1),
        phases={p["name"]: p["duration_seconds"] for p in report["phases"]})


def test_pitr_latest_after_a_crash_loses_at_most_the_archive_timeout(stack, backup_run):
    pg = stack["pg"]
    writer = Writer(pg, "ticks").start()
    time.sleep(0.5)
    first_segment = pg.scalar("SELECT pg_walfile_name(pg_current_wal_insert_lsn())")  # holds new rows
    # Write until archive_timeout has shipped a segment holding new rows (pitr.yml's CHECKPOINT after the swap
    # makes archive_timeout apply at once), then half an archive_timeout longer.
    deadline = time.monotonic() + 6 * ARCHIVE_TIMEOUT
    while pg.scalar("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver") < first_segment:
        assert time.monotonic() < deadline, (pg.scalar("SHOW archive_timeout"),
                                             pg.rows("SELECT * FROM pg_stat_archiver"), first_segment)
        time.sleep(0.2)
    time.sleep(ARCHIVE_TIMEOUT / 2.0)
    owner = ["runuser", "-u", os_user(), "--"] if os.geteuid() == 0 else []
    subprocess.run(owner + [str(PG_BINDIR / "pg_ctl"), "-D", str(pg.data_dir), "-m", "immediate", "-w", "stop"],
                   check=True, capture_output=True, cwd="/")
    writer.stop()
    committed = sorted(writer.committed)
    assert committed and writer.error is not None  # the crash cut the writer off

    proc = playbook("playbooks/pitr.yml", stack["vars_file"], "-e", "target=latest")
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-2000:]

    restored = [int(r[0]) for r in pg.rows("SELECT id FROM ticks ORDER BY id", db=DB)]
    new_ids = [row[0] for row in committed]
    kept = [i for i in restored if i >= new_ids[0]]
    # An INSERT whose commit was in flight at the crash may or may not be back (its answer never came): at
    # most one such row, after every row the writer saw committed.
    if kept and kept[-1] not in set(new_ids):
        kept = kept[:-1]
    # no hole: what comes back is every row up to some point, then nothing
    assert kept == new_ids[:len(kept)]
    assert kept, "no row written on the new timeline came back"
    lost = committed[len(kept):]
    rpo = committed[-1][1] - committed[len(kept) - 1][1]
    assert rpo <= ARCHIVE_TIMEOUT + 5, (rpo, len(lost))
    report = json.loads(sorted((ROOT / "reports").glob("restore-*.json"))[-1].read_text())
    assert report["verified"] is True and report["recovery_target"] == "latest"
    assert report["rpo_seconds"] <= ARCHIVE_TIMEOUT + 60
    stack["measurements"]["pitr_latest_after_crash"] = dict(
        rows_committed=len(committed), rows_lost=len(lost), measured_rpo_seconds=round(rpo, 2),
        reported_rpo_seconds=report["rpo_seconds"], rto_seconds=report["rto_seconds"],
        archive_timeout=ARCHIVE_TIMEOUT, playbook_seconds=round(proc.seconds, 1),
        phases={p["name"]: p["duration_seconds"] for p in report["phases"]})
    (ROOT / "measurements.json").write_text(json.dumps(stack["measurements"], indent=2))
    print(json.dumps(stack["measurements"], indent=2))
