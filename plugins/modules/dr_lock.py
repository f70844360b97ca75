#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: dr_lock
short_description: Hold a lock file so that two backup or restore runs never overlap
version_added: 0.1.0
description:
  - O(state=acquired) creates the lock file O(path) for the run O(owner), and O(state=released) removes it. The
    lock is a file, so it holds across the tasks (and plays) of a run, until released or found stale.
  - The lock file appears atomically with its whole content (written and fsynced under a temporary name, then
    hard-linked to O(path), which fails when the name exists, like C(O_EXCL)). It records the owner, the host,
    the time, the boot id of the host, a heartbeat time, and the process that lives as long as the run on the host
    where the module runs (the holder process), found by walking up the module's parent processes in C(/proc)
    (see O(lease)).
  - "The holder process is the C(ansible-playbook) (or C(ansible-runner)) process of the run when the module runs
    on the controller (C(process: ansible-playbook)); on a host reached over SSH, where every task is a new short
    process and there is no C(ansible-playbook), it is the SSH session that runs the task (C(sshd: user@...),
    C(process: sshd)): with OpenSSH multiplexing (C(ControlPersist), on by default in Ansible's ssh connection)
    one session serves all the tasks of the run on that host, and it ends (at most C(ControlPersist) seconds)
    after the run is killed."
  - A lock held by another owner makes the task wait up to O(wait) seconds, then fail with a message naming the
    holder (owner, since when, pid, host).
  - "Liveness of a lock taken on this host: it is dead (RV(recovered_reason)) when the host rebooted since
    (V(rebooted), the boot id differs); when its C(ansible-playbook) process is gone (V(dead_process), at once);
    when its SSH session is gone B(and) its heartbeat is older than O(lease) (V(dead_process): the run may be
    between two SSH connections for a moment). A lock whose holder process still runs is never taken over
    because of its age."
  - O(stale_after) applies only to locks whose holder cannot be checked (taken on another host sharing the
    folder, by an ad-hoc command, with no holder process found, or unreadable); they are taken over (V(age)) once
    older than O(stale_after) seconds.
  - Every acquire by the holder (the same O(owner) again) refreshes the heartbeat and records its current SSH
    session, so a run that reconnected keeps its lock.
  - "Clearing a lock by hand: the file is O(path) (for the roles, C(dr_lock_file), by default
    C(<dr_backup_root>/.atlasia-dr.lock)), a JSON document. Its holder is dead when C(boot_id) differs from
    C(/proc/sys/kernel/random/boot_id), or when no process C(pid) runs on C(host) (C(ps -p PID)), or one runs
    whose start time (field 22 of C(/proc/PID/stat)) differs from C(pid_starttime). Then remove the file
    (C(rm PATH)); never remove it while the holder runs: the next run would overlap it."
  - Acquiring a lock already held by the same O(owner) succeeds without change (C(changed=false); only its
    heartbeat and holder process are refreshed). Releasing removes only a lock
    held by O(owner); a lock of another owner is left in place and reported. Releasing a missing lock succeeds
    without change.
  - Creating, taking over and removing the lock are serialized by an C(flock) on the lock's directory, so two
    runs finding the same stale lock never both take it.
author:
  - atlasia DevOps team (@atlasia-devops)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reports whether the lock could be acquired (or would be released) at once, without waiting; the lock
      file is not changed.
  diff_mode:
    support: none
  platform:
    support: full
    platforms: posix
    details: The process check reads C(/proc) (Linux); elsewhere locks are freed by age only.
options:
  path:
    description:
      - Path of the lock file. Its directory is created (mode 0755) when missing.
    type: path
    required: true
  state:
    description:
      - V(acquired) takes the lock for O(owner); V(released) gives it back.
    type: str
    default: acquired
    choices: [acquired, released]
  owner:
    description:
      - Identifier of the run, the same for acquiring and releasing, for example a UUID generated once at the start
        of the play (C({{ lookup('ansible.builtin.password', '/dev/null', chars=['ascii_lowercase', 'digits'],
        length=16) }}) set with M(ansible.builtin.set_fact)) or C(ansible_run_id) of an C(ansible-runner) job.
    type: str
    required: true
  wait:
    description:
      - Seconds to wait for a lock held by another owner. V(0) fails at once.
    type: float
    default: 0
  poll_interval:
    description:
      - Seconds between two attempts while waiting.
    type: float
    default: 1
  stale_after:
    description:
      - Age in seconds after which a lock of another owner whose holder cannot be checked (no holder process
        recorded, another host, unreadable file) is taken over (its run is assumed dead). Set it above the longest
        run. V(0) disables the age check. A lock whose holder process is known to run is never taken over by age.
    type: int
    default: 21600
  lease:
    description:
      - Seconds a lock held through an SSH session (C(process=sshd)) stays valid after its session is gone,
        counted from its last heartbeat (its last acquire). It covers a run between two SSH connections; after
        it, a lock whose session is gone is dead and taken over at once.
    type: int
    default: 120
    version_added: 0.2.0
notes:
  - On the controller (C(connection=local) or C(delegate_to=localhost)) the holder is the C(ansible-playbook)
    process. On a host reached over SSH it is the SSH session; with C(ControlPersist) disabled every task opens a
    new session, so a task running longer than O(lease) without a lock call leaves a lock that looks dead; keep
    Ansible's default multiplexing, or raise O(lease) above the longest task. A lock taken by an ad-hoc
    C(ansible) command records no pid (the command ends right after the task) and is freed by O(stale_after)
    only.
  - Release the lock in an C(always) section so a failed run does not keep it until it is stale.
seealso:
  - module: atlasia.dr.dr_archive
  - module: atlasia.dr.pg_dump_backup
"""

EXAMPLES = r"""
- name: Back up, never two runs at once
  block:
    - name: Take the backup lock (wait up to 10 minutes for a running backup)
      atlasia.dr.dr_lock:
        path: /srv/atlasia/backups/.backup.lock
        owner: "{{ backup_run_id }}"
        wait: 600

    - name: Dump the database
      atlasia.dr.pg_dump_backup:
        db: aiteam_prod
        dest: /srv/atlasia/backups/daily
  always:
    - name: Give the backup lock back
      atlasia.dr.dr_lock:
        path: /srv/atlasia/backups/.backup.lock
        owner: "{{ backup_run_id }}"
        state: released

- name: Fail at once when another restore is running
  atlasia.dr.dr_lock:
    path: /srv/atlasia/backups/.restore.lock
    owner: "{{ restore_run_id }}"
    stale_after: 7200
  register: restore_lock
"""

RETURN = r"""
acquired:
  description:
    - Whether O(owner) holds the lock after the task (with O(state=acquired)); in check mode whether it could
      acquire it at once.
    - Always V(false) after O(state=released).
  returned: always
  type: bool
  sample: true
recovered:
  description: Whether a stale lock of another owner was taken over (or would be, in check mode).
  returned: always
  type: bool
  sample: false
recovered_reason:
  description:
    - Why the previous lock was stale (V(age), V(dead_process), V(rebooted)), or null.
    - V(dead_process) when its C(ansible-playbook) process is gone, or its SSH session is gone and its heartbeat
      is older than O(lease).
  returned: always
  type: str
  sample: dead_process
previous_holder:
  description: Content of the stale lock that was taken over, or null.
  returned: always
  type: dict
  sample: {"owner": "3b1d0c6e", "pid": 81234, "host": "backup01", "created": "2026-11-26T02:00:00+00:00"}
holder:
  description:
    - Content of the lock file after the task (owner, host, pid of the C(ansible-playbook) process or null,
      creation time); null when there is no lock.
    - When acquiring fails, or when a lock of another owner was left in place on release, the other holder.
  returned: always
  type: dict
  sample: {"owner": "9f0c2a1e", "pid": 4242, "host": "backup01", "created": "2026-11-26T02:00:00+00:00",
           "created_epoch": 1795658400.0, "heartbeat_epoch": 1795658460.0, "process": "ansible-playbook",
           "boot_id": "0d9f...", "user": "root"}
busy:
  description:
    - Whether the lock was refused because another run holds it (the task fails, or in check mode reports
      RV(acquired=false)); V(false) for every other failure (unwritable folder...), so a caller can tell a run
      refused by the lock from a failed one.
  returned: always
  type: bool
  sample: false
  version_added: 0.2.0
waited:
  description: Seconds spent waiting for another owner's lock.
  returned: always
  type: float
  sample: 0.0
released:
  description: Whether the task removed the lock (or would, in check mode).
  returned: always
  type: bool
  sample: false
path:
  description: Path of the lock file.
  returned: always
  type: str
  sample: /srv/atlasia/backups/.backup.lock
"""

import contextlib
import datetime
import errno
import fcntl
import getpass
import json
import os
import platform
import time

from ansible.module_utils.common.text.converters import to_native
from ansible_collections.atlasia.dr.plugins.module_utils import atomic
from ansible_collections.atlasia.dr.plugins.module_utils.common import DRModule

RUN_PROGRAMS = ("ansible-playbook", "ansible-runner")
SESSION_PROGRAM = "sshd"
LOCK_VERSION = 1
DEFAULT_LEASE = 120
STALE_REASONS = dict(
    age="older than stale_after",
    rebooted="the host rebooted since",
    dead_process="its ansible-playbook process is gone",
)
SESSION_GONE = "its SSH session is gone and its heartbeat is older than the lease"


# --- processes ---------------------------------------------------------------------------------------------

def proc_stat(pid, proc="/proc"):
    """``(ppid, starttime)`` of a process from ``/proc/<pid>/stat``, or ``None`` when it does not exist."""
    try:
        with open(os.path.join(proc, str(pid), "stat"), "rb") as handle:
            data = handle.read().decode("utf-8", "replace")
    except (OSError, IOError):
        return None
    # the command name (field 2) is in parentheses and may hold spaces or parentheses: split after the last ')'
    fields = data[data.rfind(")") + 2:].split()
    try:
        return int(fields[1]), int(fields[19])
    except (IndexError, ValueError):
        return None


def proc_cmdline(pid, proc="/proc"):
    """Arguments of a process, or ``[]``."""
    try:
        with open(os.path.join(proc, str(pid), "cmdline"), "rb") as handle:
            data = handle.read()
    except (OSError, IOError):
        return []
    return [to_native(arg, errors="surrogate_or_replace") for arg in data.split(b"\0") if arg]


def run_program(argv):
    """``ansible-playbook`` or ``ansible-runner`` when ``argv`` runs one of them (directly or through python)."""
    for arg in argv[:3]:
        base = os.path.basename(arg)
        for name in RUN_PROGRAMS:
            if base == name or base.startswith(name + "-"):  # ansible-playbook-3.11 style names too
                return name
    return None


def find_run_process(start_pid=None, proc="/proc"):
    """The process of the run owning this module: ``dict(pid, starttime, program)`` or ``None``.

    Walks up from the parent of ``start_pid`` (default: this process). Ansible runs each task in a forked worker
    whose command line is the same as the main ``ansible-playbook`` process, so the walk goes on through the chain
    of matching processes and returns the outermost one (``ansible-runner`` above ``ansible-playbook`` too).
    """
    pid = os.getpid() if start_pid is None else start_pid
    found = None
    seen = set()
    while pid and pid > 1 and pid not in seen:
        info = proc_stat(pid, proc)
        if info is None:
            break
        ppid, starttime = info
        if seen:  # the starting process itself (the module) is not the run
            program = run_program(proc_cmdline(pid, proc))
            if program:
                found = dict(pid=pid, starttime=starttime, program=program)
            elif found:
                break
        seen.add(pid)
        pid = ppid
    return found


def is_ssh_session(argv):
    """Whether ``argv`` is the per-connection process of OpenSSH's server (``sshd: user@notty``, ``sshd: user@pts/1``,
    ``sshd-session: ...``), never the listening daemon (``/usr/sbin/sshd -D``), which outlives every run."""
    if not argv:
        return False
    words = argv[0].split()
    name = os.path.basename(words[0]) if words else ""
    return name == "sshd:" or name.startswith("sshd-session")


def is_ansible_controller(argv):
    """Whether ``argv`` runs one of Ansible's commands (``ansible``, ``ansible-playbook``, ``ansible-runner``...)."""
    for arg in argv[:2]:
        base = os.path.basename(arg)
        if base == "ansible" or base.startswith("ansible-"):
            return True
    return False


def find_session_process(start_pid=None, proc="/proc"):
    """The SSH session running this module on a host reached over SSH: ``dict(pid, starttime, program='sshd')``.

    The nearest ``sshd:`` ancestor. ``None`` when there is none, or when an Ansible command is an ancestor first
    (the module runs on the controller: an ad-hoc command started from an operator's SSH login is not a run that
    lives as long as that login).
    """
    pid = os.getpid() if start_pid is None else start_pid
    seen = set()
    while pid and pid > 1 and pid not in seen:
        info = proc_stat(pid, proc)
        if info is None:
            return None
        ppid, starttime = info
        if seen:
            argv = proc_cmdline(pid, proc)
            if is_ansible_controller(argv):
                return None
            if is_ssh_session(argv):
                return dict(pid=pid, starttime=starttime, program=SESSION_PROGRAM)
        seen.add(pid)
        pid = ppid
    return None


def find_holder_process(start_pid=None, proc="/proc"):
    """The process that lives as long as the run on this host: ``ansible-playbook``/``ansible-runner`` on the
    controller, else the SSH session on a remote host, else ``None``."""
    return find_run_process(start_pid, proc) or find_session_process(start_pid, proc)


def boot_id(proc="/proc"):
    """This boot's id (changes at each reboot), or ``None``."""
    try:
        with open(os.path.join(proc, "sys", "kernel", "random", "boot_id")) as handle:
            return handle.read().strip() or None
    except (OSError, IOError):
        return None


def process_alive(pid, starttime=None, proc="/proc"):
    """Whether ``pid`` runs and is the same process (same start time) as when the lock was taken."""
    info = proc_stat(pid, proc)
    if info is None:
        if os.path.isdir(proc) and os.path.exists(os.path.join(proc, "self")):
            return False
        try:  # no /proc: fall back on signal 0
            os.kill(pid, 0)
        except OSError as exc:
            return exc.errno == errno.EPERM
        return True
    return starttime is None or info[1] == starttime


# --- lock file ---------------------------------------------------------------------------------------------

def new_record(owner, now=None, proc="/proc"):
    """Content of a lock taken now by ``owner``."""
    now = time.time() if now is None else now
    run = find_holder_process(proc=proc)
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = None
    return dict(
        version=LOCK_VERSION,
        owner=owner,
        host=platform.node(),
        boot_id=boot_id(proc),
        pid=run["pid"] if run else None,
        pid_starttime=run["starttime"] if run else None,
        process=run["program"] if run else None,
        module_pid=os.getpid(),
        user=user,
        created=datetime.datetime.fromtimestamp(int(now), datetime.timezone.utc).isoformat(),
        created_epoch=round(now, 3),
        heartbeat_epoch=round(now, 3),
    )


def refreshed_record(record, now=None, proc="/proc"):
    """``record`` with a new heartbeat and, when one is found, the holder process of this call (a run over SSH may
    have reconnected since: its new session holds the lock now)."""
    now = time.time() if now is None else now
    record = dict(record, heartbeat_epoch=round(now, 3))
    run = find_holder_process(proc=proc)
    if run:
        record.update(pid=run["pid"], pid_starttime=run["starttime"], process=run["program"], module_pid=os.getpid())
    return record


def read_lock(path):
    """``(record, mtime)`` of the lock file; ``(None, None)`` when there is none.

    An unreadable or malformed file is returned as ``{'corrupt': True}`` (it stays a lock, stale by age only).
    """
    try:
        with open(path, "rb") as handle:
            mtime = os.fstat(handle.fileno()).st_mtime
            data = handle.read()
    except (OSError, IOError) as exc:
        if exc.errno == errno.ENOENT:
            return None, None
        raise
    try:
        record = json.loads(data.decode("utf-8"))
        if not isinstance(record, dict):
            raise ValueError("not an object")
    except ValueError:
        record = dict(corrupt=True)
    return record, mtime


def _epoch(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def lock_age(record, mtime, now):
    created = _epoch(record.get("created_epoch"))
    return max(0.0, now - (mtime if created is None else created))


def heartbeat_age(record, mtime, now):
    """Seconds since the holder's last lock call (its creation for a lock written before heartbeats)."""
    beat = _epoch(record.get("heartbeat_epoch"))
    return lock_age(record, mtime, now) if beat is None else max(0.0, now - beat)


def stale_reason(record, mtime, now, stale_after, host=None, current_boot=None, proc="/proc", lease=DEFAULT_LEASE):
    """Why the lock ``record`` is stale (``age``, ``rebooted``, ``dead_process``) or ``None`` when it holds.

    A holder that can be checked (taken on this host with a holder process) is judged by its liveness only: dead
    when the host rebooted since, when its ``ansible-playbook`` is gone, or when its SSH session is gone and its
    heartbeat is older than ``lease``; never by age. ``stale_after`` (``0``: never) applies to the others.
    """
    by_age = "age" if stale_after and lock_age(record, mtime, now) > stale_after else None
    host = platform.node() if host is None else host
    if record.get("corrupt") or record.get("host") != host:
        return by_age
    current_boot = boot_id(proc) if current_boot is None else current_boot
    if record.get("boot_id") and current_boot and record["boot_id"] != current_boot:
        return "rebooted"
    pid = record.get("pid")
    if not (isinstance(pid, int) and not isinstance(pid, bool) and pid > 0):
        return by_age
    if process_alive(pid, record.get("pid_starttime"), proc):
        return None
    if record.get("process") == SESSION_PROGRAM and heartbeat_age(record, mtime, now) <= lease:
        return None  # a run over SSH between two connections
    return "dead_process"


def stale_text(reason, record):
    """Why a lock was taken over, in words."""
    if reason == "dead_process" and record.get("process") == SESSION_PROGRAM:
        return SESSION_GONE
    return STALE_REASONS.get(reason, reason)


def holder_text(record):
    """``since <T> (owner X, pid Y on host Z)``."""
    pid = record.get("pid")
    return "since %s (owner %s, %s on host %s)" % (
        record.get("created", "an unknown time"), record.get("owner", "unknown"),
        ("pid %s" % pid) if pid else "pid unknown", record.get("host", "unknown"))


def describe(path, record):
    """``another run holds the lock <path> since <T> (owner X, pid Y on host Z)``."""
    if record.get("corrupt"):
        return "the lock %s exists but cannot be read (remove it by hand if no run holds it)" % path
    return "another run holds the lock %s %s" % (path, holder_text(record))


@contextlib.contextmanager
def guard(directory):
    """Exclusive ``flock`` on ``directory`` for the duration of a check-and-change of the lock file.

    Held for microseconds, never while waiting. Filesystems without flock on directories fall back on the atomic
    link alone.
    """
    fd = os.open(directory, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            pass
        yield
    finally:
        os.close(fd)  # releases the flock


def rewrite_lock(path, record):
    """Replace the content of the existing lock ``path`` with ``record`` atomically (under the guard)."""
    temp = atomic.temp_path_for(path)
    try:
        with open(temp, "xb", opener=lambda name, flags: os.open(name, flags, 0o644)) as handle:
            handle.write((json.dumps(record, indent=2, sort_keys=True) + "\n").encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(temp, path)
        atomic.fsync_dir(os.path.dirname(path))
    finally:
        atomic.remove_path(temp)


def create_lock(path, record):
    """Create ``path`` holding ``record`` atomically; ``False`` when it already exists."""
    temp = atomic.temp_path_for(path)
    try:
        with open(temp, "xb", opener=lambda name, flags: os.open(name, flags, 0o644)) as handle:
            handle.write((json.dumps(record, indent=2, sort_keys=True) + "\n").encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temp, path)
        except OSError as exc:
            if exc.errno == errno.EEXIST:
                return False
            raise
        atomic.fsync_dir(os.path.dirname(path))
        return True
    finally:
        atomic.remove_path(temp)


def try_acquire(path, owner, stale_after, check=False, now=None, proc="/proc", lease=DEFAULT_LEASE):
    """One attempt. Returns ``dict(status, holder, previous, reason)``.

    ``status`` is ``acquired`` (created, or taken over when ``previous`` is set), ``held_by_us`` (heartbeat
    refreshed) or ``busy`` (``holder`` is the other owner's record). With ``check`` nothing is written.
    """
    directory = os.path.dirname(path)
    with guard(directory):
        now = time.time() if now is None else now
        record, mtime = read_lock(path)
        previous = reason = None
        if record is not None:
            if not record.get("corrupt") and record.get("owner") == owner:
                if not check:
                    record = refreshed_record(record, now, proc)
                    rewrite_lock(path, record)
                return dict(status="held_by_us", holder=record, previous=None, reason=None)
            reason = stale_reason(record, mtime, now, stale_after, proc=proc, lease=lease)
            if reason is None:
                return dict(status="busy", holder=record, previous=None, reason=None)
            previous = record
        mine = new_record(owner, now, proc)
        if check:
            return dict(status="acquired", holder=mine, previous=previous, reason=reason)
        if previous is not None:
            atomic.remove_path(path)
        if not create_lock(path, mine):  # only a process outside the guard (no flock support) gets here
            record, mtime = read_lock(path)
            return dict(status="busy", holder=record or {}, previous=None, reason=None)
        return dict(status="acquired", holder=mine, previous=previous, reason=reason)


def release(path, owner, check=False):
    """Remove the lock when ``owner`` holds it. Returns ``dict(status, holder)``: ``released``, ``absent`` or
    ``other_owner``."""
    with guard(os.path.dirname(path)):
        record, mtime = read_lock(path)
        if record is None:
            return dict(status="absent", holder=None)
        if record.get("corrupt") or record.get("owner") != owner:
            return dict(status="other_owner", holder=record)
        if not check:
            os.unlink(path)
            atomic.fsync_dir(os.path.dirname(path))
        return dict(status="released", holder=record)


# --- module ------------------------------------------------------------------------------------------------

def run_acquire(module, path):
    params = module.params
    result = dict(path=path, acquired=False, recovered=False, recovered_reason=None, previous_holder=None,
                  holder=None, waited=0.0, released=False, changed=False, busy=False)
    start = time.monotonic()
    deadline = start + max(0.0, params["wait"])
    interval = max(0.05, params["poll_interval"])
    while True:
        attempt = try_acquire(path, params["owner"], params["stale_after"], check=module.check_mode,
                              lease=params["lease"])
        waited = round(time.monotonic() - start, 3)
        result["holder"] = attempt["holder"]
        if attempt["status"] == "held_by_us":
            result.update(acquired=True, waited=waited)
            module.exit_json(**result)
        if attempt["status"] == "acquired":
            result.update(acquired=True, changed=True, waited=waited, recovered=attempt["previous"] is not None,
                          recovered_reason=attempt["reason"], previous_holder=attempt["previous"])
            if attempt["previous"] is not None:
                module.warn("took over the stale lock %s (%s), held %s" % (
                    path, stale_text(attempt["reason"], attempt["previous"]), holder_text(attempt["previous"])))
            module.exit_json(**result)
        result["busy"] = True
        if module.check_mode:
            result.update(waited=waited, msg="%s; the lock could not be acquired now" % describe(path, attempt["holder"]))
            module.exit_json(**result)
        now = time.monotonic()
        if now >= deadline:
            msg = describe(path, attempt["holder"])
            if params["wait"] > 0:
                msg += "; gave up after waiting %ds" % round(now - start)
            result["waited"] = waited
            module.fail_json(msg=msg, **result)
        time.sleep(min(interval, deadline - now))


def run_release(module, path):
    result = dict(path=path, acquired=False, recovered=False, recovered_reason=None, previous_holder=None,
                  holder=None, waited=0.0, released=False, changed=False, busy=False)
    if not os.path.isdir(os.path.dirname(path)):
        module.exit_json(**result)
    outcome = release(path, module.params["owner"], check=module.check_mode)
    if outcome["status"] == "released":
        result.update(released=True, changed=True)
    elif outcome["status"] == "other_owner":
        result["holder"] = outcome["holder"]
        module.warn("the lock %s is not held by %s and was left in place: %s" % (
            path, module.params["owner"], describe(path, outcome["holder"])))
    module.exit_json(**result)


def main():
    module = DRModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            state=dict(type="str", default="acquired", choices=["acquired", "released"]),
            owner=dict(type="str", required=True),
            wait=dict(type="float", default=0),
            poll_interval=dict(type="float", default=1),
            stale_after=dict(type="int", default=21600),
            lease=dict(type="int", default=DEFAULT_LEASE),
        ),
        supports_check_mode=True,
    )
    path = os.path.abspath(module.params["path"])
    if not module.params["owner"].strip():
        module.fail_json(msg="owner must not be empty")
    if module.params["stale_after"] < 0 or module.params["wait"] < 0 or module.params["lease"] < 0:
        module.fail_json(msg="wait, stale_after and lease must be 0 or more")
    directory = os.path.dirname(path)
    try:
        if module.params["state"] == "released":
            run_release(module, path)
        elif not os.path.isdir(directory) and module.check_mode:
            module.exit_json(path=path, acquired=True, recovered=False, recovered_reason=None, previous_holder=None,
                             holder=new_record(module.params["owner"]), waited=0.0, released=False, changed=True,
                             busy=False)
        else:
            if not os.path.isdir(directory):
                os.makedirs(directory, 0o755, exist_ok=True)  # two runs may create it at once
            run_acquire(module, path)
    except (OSError, IOError) as exc:
        module.fail_json(msg="cannot use the lock %s: %s" % (path, to_native(exc)), path=path, busy=False)


if __name__ == "__main__":
    main()
