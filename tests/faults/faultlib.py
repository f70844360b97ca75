"""Helpers of the fault-injection suite: playbook runs, process-tree kills, and the "nothing lost" checks.

- :func:`run_playbook` runs ``playbooks/<name>`` like an operator (``-e env=local -e @vars``) and returns a
  :class:`Run` (exit code and the merged output, also kept in a log file for the post-mortem);
- :func:`start_playbook` starts one in the background; :func:`wait_for_process` watches ``/proc`` for a
  descendant process (``pg_dump``, ``pigz``, ``AnsiballZ_s3_backup_transfer.py`` ...) and
  :func:`kill_tree` SIGKILLs the whole run, the module processes included (Ansible's workers call setsid,
  so a process group is not enough: the tree is found by parent pids and frozen with SIGSTOP first, so
  nothing started meanwhile escapes);
- :func:`inspect_backups` checks what a backup root holds: every final-named artifact verifies against its
  sidecars and its content is complete, every set manifest's artifacts verify, and lists hidden temporary
  files and orphan sidecars.

Every wait is bounded; every process is found from the pid of a run this suite started.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import tarfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from ansible_collections.atlasia.dr.plugins.module_utils import backupset, checksum, naming

from tests.support import REPO_ROOT, TMP_ROOT, VENV_BIN, VENV_PYTHON, venv_env
from tests.support.process import kill_tree as shared_kill_tree
from tests.support.process import process_family

#: Where the suite's environments, logs and mounts live (git-ignored scratch space).
FAULTS_ROOT = TMP_ROOT / "faults"
PLAYBOOK_TIMEOUT = 600
PLAIN_TRAILER = b"-- PostgreSQL database dump complete"
TIERS = ("daily", "weekly", "monthly")


# --- running playbooks ---------------------------------------------------------------------------------------
@dataclass
class Run:
    """One playbook run: ``rc`` and ``output`` (stdout and stderr merged), ``seconds``, ``log`` (its file)."""

    name: str
    rc: int
    output: str
    seconds: float
    log: Path

    @property
    def flat(self):
        """The output with every run of whitespace made one space (the YAML callback wraps long lines)."""
        return " ".join(self.output.split())

    def failure(self, head="Backup of local on localhost failed during"):
        """The run's final error, from ``head`` on: the ``[ERROR]`` line Ansible prints, as the operator sees it."""
        lines = self.output.splitlines()
        for index in range(len(lines) - 1, -1, -1):
            if lines[index].startswith("[ERROR]") and head in lines[index]:
                text = [lines[index][lines[index].index(head):]]
                for line in lines[index + 1:]:  # a message with a line break goes on until a blank line
                    if not line.strip() or line.startswith(("[", "fatal:", "PLAY", "TASK")):
                        break
                    text.append(line.strip())
                return " ".join(text)
        index = self.flat.rfind(head)
        return self.flat[index:] if index >= 0 else ""

    def tail(self, size=6000):
        return "%s exited %s after %.1fs; log %s\n...%s" % (self.name, self.rc, self.seconds, self.log, self.output[-size:])


def playbook_argv(name, vars_file, *args):
    return [str(VENV_BIN / "ansible-playbook"), "playbooks/%s" % name, "-e", "env=local", "-e", "@%s" % vars_file,
            "-e", "ansible_python_interpreter=%s" % VENV_PYTHON] + [str(a) for a in args]


def _log_path(log_dir, name):
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    stem = "%s-%s" % (time.strftime("%H%M%S"), name.replace(".yml", ""))
    path = log_dir / (stem + ".log")
    index = 1
    while path.exists():
        index += 1
        path = log_dir / ("%s-%d.log" % (stem, index))
    return path


def run_playbook(name, vars_file, *args, log_dir, timeout=PLAYBOOK_TIMEOUT, env=None):
    """Run a playbook to its end (bounded by ``timeout``); returns a :class:`Run`."""
    proc = start_playbook(name, vars_file, *args, log_dir=log_dir, env=env)
    return finish(proc, timeout=timeout)


def start_playbook(name, vars_file, *args, log_dir, env=None):
    """Start a playbook in the background, its output going to a log file. Returns the Popen."""
    log = _log_path(log_dir, name)
    handle = open(log, "wb")
    try:
        proc = subprocess.Popen(playbook_argv(name, vars_file, *args), cwd=str(REPO_ROOT), env=venv_env(env),
                                stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT)
    finally:
        handle.close()
    proc.fault_log = log
    proc.fault_name = name
    proc.fault_started = time.monotonic()
    return proc


def finish(proc, timeout=PLAYBOOK_TIMEOUT):
    """Wait for a started playbook (kill its tree when it overruns ``timeout``); returns a :class:`Run`."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid)
        proc.wait(timeout=60)
        raise AssertionError("%s did not finish within %ss (killed); log %s" % (proc.fault_name, timeout, proc.fault_log))
    return Run(proc.fault_name, proc.returncode, proc.fault_log.read_text(errors="replace"),
               time.monotonic() - proc.fault_started, proc.fault_log)


# --- processes --------------------------------------------------------------------------------------------
def descendants(root_pid):
    """Pids of ``root_pid`` and all its descendants (by parent pid, so setsid does not hide any)."""
    return process_family(root_pid)


def proc_info(pid):
    """``(comm, cmdline)`` of a live process, or ``None``."""
    try:
        with open("/proc/%d/comm" % pid) as handle:
            comm = handle.read().strip()
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            cmdline = handle.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
        with open("/proc/%d/stat" % pid) as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None
    if state == "Z":
        return None
    return comm, cmdline


def kill_tree(root_pid):
    """SIGKILL a run and every process below it, frozen first (:func:`tests.support.process.kill_tree`)."""
    return set(shared_kill_tree(root_pid))


def module_matcher(module):
    """Predicate for the process running an Ansible module (``AnsiballZ_<module>.py``)."""
    marker = "AnsiballZ_%s.py" % module

    def match(comm, cmdline):
        return marker in cmdline and not cmdline.startswith("/bin/sh")

    match.label = module
    return match


def program_matcher(*names, argv_contains=None):
    """Predicate for a program by its process name (``pg_dump``, ``pigz``, ``psql`` ...)."""

    def match(comm, cmdline):
        return comm in names and (argv_contains is None or argv_contains in cmdline)

    match.label = "/".join(names) + (" (%s)" % argv_contains if argv_contains else "")
    return match


def wait_for_process(proc, match, timeout=300, occurrence=1, poll=0.005):
    """Watch the descendants of ``proc`` until the ``occurrence``-th distinct process matching ``match`` runs.

    Returns its pid, or ``None`` when the playbook ended (or ``timeout`` passed) first.
    """
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        for pid in sorted(descendants(proc.pid) - {proc.pid}):
            if pid in seen:
                continue
            info = proc_info(pid)
            if info is not None and match(*info):
                seen.append(pid)
                if len(seen) >= occurrence:
                    return pid
        time.sleep(poll)
    return None


def alive(pid):
    return proc_info(pid) is not None


def sleep_while_alive(pid, seconds, poll=0.002):
    """Sleep ``seconds`` or until ``pid`` is gone; returns True when it was still alive at the end."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive(pid):
            return False
        time.sleep(poll)
    return alive(pid)


# --- what a backup root holds -----------------------------------------------------------------------------
@dataclass
class Inspection:
    """Result of :func:`inspect_backups`. ``problems`` must stay empty; the rest is for the report."""

    problems: list = field(default_factory=list)
    artifacts: list = field(default_factory=list)
    sets: list = field(default_factory=list)
    temps: list = field(default_factory=list)
    orphans: list = field(default_factory=list)


def _check_gzip(path, want_trailer):
    """Full decompression test (every member's CRC and length) and, for dumps, pg_dump's last line."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    tail = b""
    with open(path, "rb") as handle:
        while True:
            block = handle.read(1 << 20)
            if not block:
                break
            while block:
                out = inflater.decompress(block)
                tail = (tail + out)[-512:]
                if inflater.eof:
                    block = inflater.unused_data
                    if block:
                        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
                else:
                    block = b""
    if not inflater.eof:
        return "truncated gzip stream"
    if want_trailer and PLAIN_TRAILER not in tail:
        return "lacks pg_dump's completion line"
    return None


def _check_tar(path):
    try:
        with tarfile.open(path, "r:*") as archive:
            for member in archive:
                if member.isfile():
                    reader = archive.extractfile(member)
                    while reader.read(1 << 20):
                        pass
    except (tarfile.TarError, OSError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        return "unreadable archive: %s" % exc
    return None


def check_artifact_content(path):
    """A decompression/format test of an artifact by its name; ``None`` when it is complete."""
    name = path.name
    if name.endswith(".enc") or path.is_dir():
        return None  # ciphertext: the sidecars are the check
    if name.endswith(".sql.gz"):
        return _check_gzip(path, want_trailer=True)
    if name.startswith("globals_") and name.endswith(".sql"):
        with open(path, "rb") as handle:  # the cluster globals script (pg_globals) ends with its own line
            handle.seek(max(0, path.stat().st_size - 512))
            return None if b"-- atlasia.dr globals complete\n" in handle.read() else "lacks its completion line"
    if name.endswith(".sql"):
        with open(path, "rb") as handle:
            handle.seek(max(0, path.stat().st_size - 512))
            return None if PLAIN_TRAILER in handle.read() else "lacks pg_dump's completion line"
    if name.endswith((".tar.gz", ".tgz", ".tar.zst", ".tar")):
        return _check_tar(path) if not name.endswith(".zst") else None
    if name.endswith(".snap"):
        return _check_tar(path)  # a raft snapshot is a gzip'd tar
    return None


def inspect_backups(root, tiers=TIERS):
    """Check every tier (or the given sub-folders, ``safety`` for example) of a backup root. See :class:`Inspection`."""
    root = Path(root)
    result = Inspection()
    for tier in tiers:
        directory = root / tier
        if not directory.is_dir():
            continue
        names = sorted(os.listdir(directory))
        for name in names:
            path = directory / name
            if naming.temp_owner_pid(name) is not None or naming.TEMP_MARKER in name:
                result.temps.append(str(path))
                continue
            parsed = naming.parse_backup_name(name)
            if parsed is None:
                continue
            if parsed.role in ("md5", "sha256"):
                if parsed.artifact not in names:
                    result.orphans.append(str(path))
                continue
            if parsed.role == "manifest":
                try:
                    json.loads(path.read_text())
                except ValueError as exc:
                    result.problems.append("%s: unreadable manifest (%s)" % (path, exc))
                    continue
                if parsed.prefix == backupset.SET_PREFIX:
                    data = backupset.load(str(path))
                    problems = backupset.verify(str(directory), data)
                    result.sets.append(dict(path=str(path), set_id=data["set_id"], offsite=data.get("offsite"),
                                            problems=problems))
                    result.problems.extend("set %s: %s" % (path, p) for p in problems)
                elif not any(n.startswith(parsed.stem + ".") and n != name and
                             naming.parse_backup_name(n) and naming.parse_backup_name(n).role == "artifact"
                             for n in names):
                    result.orphans.append(str(path))
                continue
            result.artifacts.append(str(path))
            try:
                checksum.verify_sidecars(str(path), required=True)
            except (checksum.ChecksumError, OSError) as exc:
                result.problems.append("%s: %s" % (path, exc))
                continue
            damage = check_artifact_content(path)
            if damage:
                result.problems.append("%s: %s although its sidecars match" % (path, damage))
    return result


def set_ids(root, tier="daily"):
    directory = Path(root) / tier
    return sorted(p.name[len("set_"):-len(".json")] for p in directory.glob("set_*.json")) if directory.is_dir() else []


def load_set(root, set_id, tier="daily"):
    return json.loads((Path(root) / tier / ("set_%s.json" % set_id)).read_text())


def bucket_keys(s3_server, bucket):
    client = s3_server.client()
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys.extend(item["Key"] for item in page.get("Contents", []))
    return keys


def sets_in_bucket(s3_server, bucket):
    """Set ids whose set manifest is in the bucket (uploaded last, so the set is complete there)."""
    return sorted(k.rsplit("/", 1)[-1][len("set_"):-len(".json")] for k in bucket_keys(s3_server, bucket)
                  if k.rsplit("/", 1)[-1].startswith("set_") and k.endswith(".json"))


def file_tree(root):
    """``{relative path: (size, mtime_ns)}`` of every file below ``root`` (to prove nothing was deleted)."""
    root = Path(root)
    result = {}
    for path in root.rglob("*"):
        if path.is_file():
            stat = path.stat()
            result[str(path.relative_to(root))] = (stat.st_size, stat.st_mtime_ns)
    return result


def newest_report(reports_dir, kind="restore"):
    reports = sorted(Path(reports_dir).glob("%s-*.json" % kind))
    return json.loads(reports[-1].read_text()) if reports else None


# --- servers ----------------------------------------------------------------------------------------------
def authenticating_s3_server_class():
    """The S3 test server that checks credentials (see :class:`tests.support.seaweedfs.AuthenticatingS3Server`)."""
    from tests.support.seaweedfs import AuthenticatingS3Server

    return AuthenticatingS3Server


def closed_port():
    """A 127.0.0.1 port with nothing listening (bound then released)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_down(pg):
    """Stop a :class:`tests.support.postgres.PostgresServer` but keep its data (fast shutdown)."""
    proc = pg._run_as_owner([pg._bin("pg_ctl"), "-D", pg.data_dir, "-m", "fast", "-w", "-t", "60", "stop"],
                            timeout=90)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def postgres_up(pg):
    """Start it again on the same port and wait until it answers."""
    assert pg._pg_ctl_start(), "PostgreSQL did not start again; see %s" % pg.log_file
    pg._wait_ready()
    pg._pid = pg.pid()


def wait_until(proc, condition, timeout=300, poll=0.01):
    """Poll ``condition()`` while the playbook ``proc`` runs; True once it holds, False when the run ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if condition():
            return True
        time.sleep(poll)
    return False
