# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of dr_lock.

The process walk is tested on a fake ``/proc`` tree; staleness with fixed clocks, hosts, boot ids and pids;
``main()`` with ``patch_module_args`` on lock files in ``tmp_path``; the race between processes with
``multiprocessing`` (fork), many contenders released at once by a barrier. Real Ansible runs (ansible-playbook's
pid recorded, a killed play's lock recovered) are in tests/integration/test_dr_lock.py.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import subprocess
import threading
import time

import pytest
from ansible.module_utils.common import warnings as ansible_warnings

from tests.support.modules import run_module, warning_texts as warnings
from ansible_collections.atlasia.dr.plugins.modules import dr_lock

HOST = platform.node()


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    """Each module run is a new process in real life: no warning carried over from an earlier test."""
    monkeypatch.setattr(ansible_warnings, "_global_warnings", {})


def run_main(args, capsys, check_mode=False):
    return run_module(dr_lock.main, args, capsys, check_mode=check_mode)


@pytest.fixture
def lock(tmp_path):
    return tmp_path / "locks" / "backup.lock"


def write_lock(path, **fields):
    record = dict(version=1, owner="other-run", host=HOST, boot_id=dr_lock.boot_id(), pid=None, pid_starttime=None,
                  process=None, created="2026-11-26T02:00:00+00:00", created_epoch=time.time())
    record.update(fields)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return record


def dead_pid():
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


# --- fake /proc --------------------------------------------------------------------------------------------

def fake_process(proc, pid, ppid, argv, starttime=1000, comm="python3"):
    directory = proc / str(pid)
    directory.mkdir(parents=True)
    # the real format: pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
    # cutime cstime priority nice num_threads itrealvalue starttime ...
    fields = ["S", str(ppid)] + ["0"] * 17 + [str(starttime)] + ["0"] * 10
    (directory / "stat").write_text("%d (%s) %s\n" % (pid, comm, " ".join(fields)))
    (directory / "cmdline").write_bytes(b"\0".join(arg.encode() for arg in argv) + b"\0")


@pytest.fixture
def proc(tmp_path):
    root = tmp_path / "proc"
    (root / "sys" / "kernel" / "random").mkdir(parents=True)
    (root / "sys" / "kernel" / "random" / "boot_id").write_text("boot-1\n")
    (root / "self").mkdir()
    return root


def test_proc_stat_handles_odd_command_names(proc):
    fake_process(proc, 42, 7, ["x"], starttime=987, comm="a) (b c")
    assert dr_lock.proc_stat(42, str(proc)) == (7, 987)
    assert dr_lock.proc_stat(43, str(proc)) is None


@pytest.mark.parametrize("argv, program", [
    (["/venv/bin/python3.11", "/venv/bin/ansible-playbook", "-i", "inv", "site.yml"], "ansible-playbook"),
    (["/usr/bin/ansible-playbook", "site.yml"], "ansible-playbook"),
    (["python3", "/usr/local/bin/ansible-runner", "run", "/srv/job"], "ansible-runner"),
    (["/usr/bin/python3", "/usr/bin/ansible", "localhost", "-m", "ping"], None),
    (["/bin/sh", "-c", "python3 /root/.ansible/tmp/AnsiballZ_dr_lock.py"], None),
    (["vim", "x", "y", "ansible-playbook"], None),  # only the program (or the script of an interpreter) counts
    ([], None),
])
def test_run_program(argv, program):
    assert dr_lock.run_program(argv) == program


def test_find_run_process_returns_the_main_playbook_process_not_the_worker(proc):
    playbook = ["/venv/bin/python", "/venv/bin/ansible-playbook", "site.yml"]
    fake_process(proc, 10, 1, ["/bin/bash"])
    fake_process(proc, 20, 10, playbook, starttime=5000)  # ansible-playbook
    fake_process(proc, 30, 20, playbook, starttime=5100)  # its forked worker, same command line
    fake_process(proc, 40, 30, ["/bin/sh", "-c", "python AnsiballZ_dr_lock.py"])
    fake_process(proc, 50, 40, ["/venv/bin/python", "AnsiballZ_dr_lock.py"])
    assert dr_lock.find_run_process(50, str(proc)) == dict(pid=20, starttime=5000, program="ansible-playbook")


def test_find_run_process_prefers_ansible_runner_above_the_playbook(proc):
    fake_process(proc, 5, 1, ["python3", "/usr/bin/ansible-runner", "run", "/job"], starttime=100)
    fake_process(proc, 20, 5, ["python3", "/usr/bin/ansible-playbook", "main.yml"])
    fake_process(proc, 30, 20, ["python3", "/usr/bin/ansible-playbook", "main.yml"])
    fake_process(proc, 50, 30, ["python3", "AnsiballZ_dr_lock.py"])
    assert dr_lock.find_run_process(50, str(proc))["pid"] == 5


def test_find_run_process_none_for_ad_hoc_and_remote_runs(proc):
    fake_process(proc, 20, 1, ["python3", "/usr/bin/ansible", "localhost", "-m", "atlasia.dr.dr_lock"])
    fake_process(proc, 50, 20, ["python3", "AnsiballZ_dr_lock.py"])
    assert dr_lock.find_run_process(50, str(proc)) is None
    fake_process(proc, 60, 1, ["sshd: deploy@notty"])
    fake_process(proc, 70, 60, ["python3", "AnsiballZ_dr_lock.py"])
    assert dr_lock.find_run_process(70, str(proc)) is None


@pytest.mark.parametrize("argv, session", [
    (["sshd: deploy@notty"], True),
    (["sshd: deploy@pts/1"], True),
    (["sshd-session: deploy@notty"], True),            # OpenSSH 9.8+
    (["/usr/lib/openssh/sshd-session", "-R"], True),
    (["sshd: deploy [priv]"], True),
    (["/usr/sbin/sshd", "-D"], False),                 # the listening daemon outlives every run
    (["sshd:"], True),
    (["python3", "sshd: x"], False),
    ([""], False),
    ([], False),
])
def test_is_ssh_session(argv, session):
    assert dr_lock.is_ssh_session(argv) is session


def ssh_host(proc, sudo=False):
    """A host reached over SSH: listener 10, privileged 20, session 30, sh 40, [sudo 45, sh 46,] module 50."""
    fake_process(proc, 10, 1, ["/usr/sbin/sshd", "-D"], starttime=100, comm="sshd")
    fake_process(proc, 20, 10, ["sshd: deploy [priv]"], starttime=200, comm="sshd")
    fake_process(proc, 30, 20, ["sshd: deploy@notty"], starttime=300, comm="sshd")
    fake_process(proc, 40, 30, ["/bin/sh", "-c", "python3 AnsiballZ_dr_lock.py"], starttime=400, comm="sh")
    parent = 40
    if sudo:
        fake_process(proc, 45, 40, ["sudo", "-H", "-S", "-n", "-u", "root", "/bin/sh", "-c", "x"], starttime=450)
        fake_process(proc, 46, 45, ["/bin/sh", "-c", "python3 AnsiballZ_dr_lock.py"], starttime=460, comm="sh")
        parent = 46
    fake_process(proc, 50, parent, ["python3", "AnsiballZ_dr_lock.py"], starttime=500)


@pytest.mark.parametrize("sudo", [False, True], ids=["plain", "become"])
def test_find_session_process_is_the_nearest_ssh_session(proc, sudo):
    ssh_host(proc, sudo=sudo)
    assert dr_lock.find_session_process(50, str(proc)) == dict(pid=30, starttime=300, program="sshd")
    assert dr_lock.find_holder_process(50, str(proc)) == dict(pid=30, starttime=300, program="sshd")


def test_find_session_process_none_on_the_controller_or_without_ssh(proc):
    # an ad-hoc command typed in an operator's SSH login: the login is not the run
    fake_process(proc, 30, 1, ["sshd: admin@pts/0"], starttime=300)
    fake_process(proc, 31, 30, ["-bash"], starttime=310)
    fake_process(proc, 32, 31, ["python3", "/usr/bin/ansible", "localhost", "-m", "atlasia.dr.dr_lock"])
    fake_process(proc, 33, 32, ["python3", "AnsiballZ_dr_lock.py"])
    assert dr_lock.find_session_process(33, str(proc)) is None
    assert dr_lock.find_holder_process(33, str(proc)) is None
    fake_process(proc, 60, 1, ["/usr/sbin/cron", "-f"])  # no SSH at all (docker exec, cron, a shell on the host)
    fake_process(proc, 61, 60, ["python3", "AnsiballZ_dr_lock.py"])
    assert dr_lock.find_session_process(61, str(proc)) is None
    assert dr_lock.find_session_process(99, str(proc)) is None  # the module's own process is gone


def test_find_holder_process_prefers_the_playbook_over_the_login(proc):
    fake_process(proc, 30, 1, ["sshd: admin@pts/0"], starttime=300)
    fake_process(proc, 31, 30, ["-bash"], starttime=310)
    fake_process(proc, 32, 31, ["/venv/bin/python", "/venv/bin/ansible-playbook", "site.yml"], starttime=320)
    fake_process(proc, 33, 32, ["/venv/bin/python", "/venv/bin/ansible-playbook", "site.yml"], starttime=330)
    fake_process(proc, 34, 33, ["python3", "AnsiballZ_dr_lock.py"])
    assert dr_lock.find_holder_process(34, str(proc)) == dict(pid=32, starttime=320, program="ansible-playbook")


def test_refreshed_record_takes_the_new_session(monkeypatch):
    record = dict(owner="run-1", pid=30, pid_starttime=300, process="sshd", heartbeat_epoch=1.0, created_epoch=1.0)
    monkeypatch.setattr(dr_lock, "find_holder_process", lambda start_pid=None, proc="/proc": dict(
        pid=77, starttime=700, program="sshd"))
    fresh = dr_lock.refreshed_record(record, now=NOW)
    assert fresh["pid"] == 77 and fresh["pid_starttime"] == 700 and fresh["heartbeat_epoch"] == NOW
    assert fresh["created_epoch"] == 1.0 and record["pid"] == 30  # creation kept, input untouched
    monkeypatch.setattr(dr_lock, "find_holder_process", lambda start_pid=None, proc="/proc": None)
    kept = dr_lock.refreshed_record(record, now=NOW)
    assert kept["pid"] == 30 and kept["process"] == "sshd" and kept["heartbeat_epoch"] == NOW


def test_process_alive_checks_the_start_time(proc):
    fake_process(proc, 20, 1, ["ansible-playbook"], starttime=5000)
    assert dr_lock.process_alive(20, 5000, str(proc)) is True
    assert dr_lock.process_alive(20, None, str(proc)) is True
    assert dr_lock.process_alive(20, 4000, str(proc)) is False  # the pid was reused by another process
    assert dr_lock.process_alive(21, 5000, str(proc)) is False


def test_process_alive_real():
    assert dr_lock.process_alive(os.getpid())
    assert not dr_lock.process_alive(dead_pid())


def test_new_record(proc):
    record = dr_lock.new_record("run-1", now=1795658400.25, proc=str(proc))
    assert record["owner"] == "run-1" and record["host"] == HOST and record["boot_id"] == "boot-1"
    assert record["created"] == "2026-11-26T02:00:00+00:00" and record["created_epoch"] == 1795658400.25
    assert record["pid"] is None and record["module_pid"] == os.getpid()


# --- staleness ---------------------------------------------------------------------------------------------

NOW = 1795658400.0


@pytest.mark.parametrize("record, stale_after, reason", [
    (dict(created_epoch=NOW - 100, host=HOST, pid=None), 3600, None),
    (dict(created_epoch=NOW - 7200, host=HOST, pid=None), 3600, "age"),
    (dict(created_epoch=NOW - 7200, host=HOST, pid=None), 0, None),             # 0 disables the age check
    (dict(created_epoch=NOW - 100, host="elsewhere", pid=999999), 3600, None),  # pids of other hosts unchecked
    (dict(created_epoch=NOW - 100, host=HOST, boot_id="boot-0", pid=20), 3600, "rebooted"),
    (dict(created_epoch=NOW - 100, host=HOST, boot_id="boot-1", pid=20, pid_starttime=5000), 3600, None),
    (dict(created_epoch=NOW - 100, host=HOST, boot_id="boot-1", pid=20, pid_starttime=4000), 3600, "dead_process"),
    (dict(created_epoch=NOW - 100, host=HOST, boot_id="boot-1", pid=21), 3600, "dead_process"),
    (dict(corrupt=True), 3600, None),
    (dict(created_epoch="garbage", host=HOST), 3600, None),
])
def test_stale_reason(proc, record, stale_after, reason):
    fake_process(proc, 20, 1, ["ansible-playbook"], starttime=5000)
    assert dr_lock.stale_reason(record, NOW - 50, NOW, stale_after, host=HOST, proc=str(proc)) == reason


def live(**fields):
    return dict(dict(host=HOST, boot_id="boot-1"), **fields)


@pytest.mark.parametrize("record, stale_after, lease, reason", [
    # a holder that cannot be checked: by age only
    (live(created_epoch=NOW - 7200, host="elsewhere", pid=20, pid_starttime=5000), 3600, 120, "age"),
    (live(created_epoch=NOW - 7200, pid=None, process=None, heartbeat_epoch=NOW - 7200), 3600, 120, "age"),
    (live(created_epoch=NOW - 7200, pid=None, process=None, heartbeat_epoch=NOW - 7200), 0, 120, None),
    # the host rebooted: dead whatever the rest says
    (live(created_epoch=NOW - 10, boot_id="boot-0", pid=30, pid_starttime=300, process="sshd",
          heartbeat_epoch=NOW - 1), 3600, 120, "rebooted"),
    # a live holder is never taken over because of its age
    (live(created_epoch=NOW - 90000, pid=20, pid_starttime=5000, process="ansible-playbook",
          heartbeat_epoch=NOW - 90000), 3600, 120, None),
    (live(created_epoch=NOW - 90000, pid=30, pid_starttime=300, process="sshd", heartbeat_epoch=NOW - 90000),
     3600, 120, None),
    # ansible-playbook gone: dead at once, a fresh heartbeat does not matter
    (live(created_epoch=NOW - 5, pid=21, pid_starttime=5000, process="ansible-playbook", heartbeat_epoch=NOW - 1),
     3600, 120, "dead_process"),
    (live(created_epoch=NOW - 5, pid=20, pid_starttime=4000, process="ansible-playbook", heartbeat_epoch=NOW - 1),
     3600, 120, "dead_process"),  # the pid now belongs to another process
    # SSH session gone: dead once the heartbeat is older than the lease
    (live(created_epoch=NOW - 500, pid=31, pid_starttime=300, process="sshd", heartbeat_epoch=NOW - 60),
     3600, 120, None),
    (live(created_epoch=NOW - 500, pid=31, pid_starttime=300, process="sshd", heartbeat_epoch=NOW - 121),
     3600, 120, "dead_process"),
    (live(created_epoch=NOW - 500, pid=30, pid_starttime=299, process="sshd", heartbeat_epoch=NOW - 121),
     3600, 120, "dead_process"),  # pid reused
    (live(created_epoch=NOW - 500, pid=31, pid_starttime=300, process="sshd"), 3600, 120, "dead_process"),
    (live(created_epoch=NOW - 60, pid=31, pid_starttime=300, process="sshd"), 3600, 120, None),  # no heartbeat
    (live(created_epoch=NOW - 1, pid=31, pid_starttime=300, process="sshd", heartbeat_epoch=NOW - 1), 3600, 0,
     "dead_process"),  # lease 0: no grace
    (live(created_epoch=NOW - 1, pid=31, pid_starttime=300, process="sshd", heartbeat_epoch="x"), 3600, 0,
     "dead_process"),
])
def test_liveness(proc, record, stale_after, lease, reason):
    fake_process(proc, 20, 1, ["ansible-playbook"], starttime=5000)
    fake_process(proc, 30, 1, ["sshd: deploy@notty"], starttime=300)
    assert dr_lock.stale_reason(record, NOW - 50, NOW, stale_after, host=HOST, proc=str(proc), lease=lease) == reason


def test_stale_text():
    assert dr_lock.stale_text("dead_process", dict(process="sshd")) == dr_lock.SESSION_GONE
    assert dr_lock.stale_text("dead_process", dict(process="ansible-playbook")) == (
        "its ansible-playbook process is gone")
    assert dr_lock.stale_text("age", dict(process="sshd")) == "older than stale_after"


def test_stale_reason_corrupt_lock_by_file_age(proc):
    assert dr_lock.stale_reason(dict(corrupt=True), NOW - 7200, NOW, 3600, host=HOST, proc=str(proc)) == "age"


def test_describe():
    text = dr_lock.describe("/x.lock", dict(owner="run-9", pid=4242, host="backup01",
                                            created="2026-11-26T02:00:00+00:00"))
    assert text == ("another run holds the lock /x.lock since 2026-11-26T02:00:00+00:00 (owner run-9, pid 4242 on "
                    "host backup01)")
    assert "pid unknown" in dr_lock.describe("/x.lock", dict(owner="a", host="h", created="t"))
    assert "cannot be read" in dr_lock.describe("/x.lock", dict(corrupt=True))


# --- main() ------------------------------------------------------------------------------------------------

def test_acquire_creates_the_lock_then_is_idempotent(lock, capsys):
    result = run_main(dict(path=str(lock), owner="run-1"), capsys)
    assert result["changed"] and result["acquired"] and not result["recovered"] and result["waited"] < 1
    on_disk = json.loads(lock.read_text())
    assert on_disk == result["holder"]
    assert on_disk["owner"] == "run-1" and on_disk["host"] == HOST and on_disk["module_pid"] == os.getpid()
    assert oct(os.stat(str(lock)).st_mode & 0o777) == oct(0o644)
    assert os.listdir(str(lock.parent)) == ["backup.lock"]  # no temporary file left
    time.sleep(0.01)
    again = run_main(dict(path=str(lock), owner="run-1"), capsys)
    assert again["changed"] is False and again["acquired"] is True and again["busy"] is False
    refreshed = json.loads(lock.read_text())
    assert refreshed["heartbeat_epoch"] > on_disk["heartbeat_epoch"]  # the holder's call is its heartbeat
    assert dict(refreshed, heartbeat_epoch=None) == dict(on_disk, heartbeat_epoch=None)
    assert os.listdir(str(lock.parent)) == ["backup.lock"]


def test_second_owner_fails_at_once_with_a_clear_message(lock, capsys):
    holder = write_lock(lock, owner="run-1", pid=os.getpid(), pid_starttime=None)
    t0 = time.monotonic()
    result = run_main(dict(path=str(lock), owner="run-2"), capsys)
    assert time.monotonic() - t0 < 1
    assert result["failed"] and not result["acquired"]
    assert result["msg"] == ("another run holds the lock %s since 2026-11-26T02:00:00+00:00 (owner run-1, pid %d on "
                             "host %s)" % (lock, os.getpid(), HOST))
    assert result["holder"] == holder
    assert json.loads(lock.read_text()) == holder


def test_wait_gives_up_with_the_time_waited(lock, capsys):
    write_lock(lock, owner="run-1")
    result = run_main(dict(path=str(lock), owner="run-2", wait=0.6, poll_interval=0.1), capsys)
    assert result["failed"] and "gave up after waiting" in result["msg"]
    assert 0.5 <= result["waited"] < 2


def test_wait_acquires_when_the_holder_releases(lock, capsys):
    write_lock(lock, owner="run-1")
    timer = threading.Timer(0.5, lambda: os.unlink(str(lock)))
    timer.start()
    try:
        result = run_main(dict(path=str(lock), owner="run-2", wait=10, poll_interval=0.1), capsys)
    finally:
        timer.join()
    assert result["acquired"] and result["changed"] and not result["recovered"]
    assert 0.4 <= result["waited"] < 5
    assert json.loads(lock.read_text())["owner"] == "run-2"


@pytest.mark.parametrize("fields, reason", [
    (dict(created_epoch=time.time() - 30000), "age"),
    (dict(pid=None, boot_id="an-earlier-boot", pid_starttime=None), "rebooted"),
])
def test_stale_locks_are_recovered(lock, capsys, fields, reason):
    previous = write_lock(lock, **fields)
    result = run_main(dict(path=str(lock), owner="run-2"), capsys)
    assert result["acquired"] and result["changed"] and result["recovered"]
    assert result["recovered_reason"] == reason and result["previous_holder"] == previous
    assert any("took over the stale lock" in w for w in warnings(result))
    assert json.loads(lock.read_text())["owner"] == "run-2"


def test_lock_of_a_dead_process_is_recovered_at_once(lock, capsys):
    write_lock(lock, pid=dead_pid())
    result = run_main(dict(path=str(lock), owner="run-2", stale_after=0), capsys)
    assert result["recovered"] and result["recovered_reason"] == "dead_process"
    assert "its ansible-playbook process is gone" in warnings(result)[0]


def live_starttime(pid):
    return dr_lock.proc_stat(pid)[1]


def test_live_holder_older_than_stale_after_is_not_taken_over(lock, capsys):
    old = time.time() - 90000
    write_lock(lock, pid=os.getpid(), pid_starttime=live_starttime(os.getpid()), process="sshd",
               created_epoch=old, heartbeat_epoch=old)
    result = run_main(dict(path=str(lock), owner="run-2", stale_after=60), capsys)
    assert result["failed"] and result["busy"] and not result["acquired"] and not result["recovered"]
    assert "owner other-run, pid %d on host " % os.getpid() in result["msg"]
    assert json.loads(lock.read_text())["owner"] == "other-run"


def test_lock_of_a_gone_ssh_session_waits_for_the_lease(lock, capsys):
    gone = dead_pid()
    write_lock(lock, pid=gone, pid_starttime=1, process="sshd", heartbeat_epoch=time.time() - 30)
    held = run_main(dict(path=str(lock), owner="run-2"), capsys)  # default lease: 120 s
    assert held["failed"] and held["busy"]
    result = run_main(dict(path=str(lock), owner="run-2", lease=20), capsys)
    assert result["recovered"] and result["recovered_reason"] == "dead_process" and not result["busy"]
    assert "its SSH session is gone" in warnings(result)[0]


def test_custom_stale_after(lock, capsys):
    write_lock(lock, created_epoch=time.time() - 120)
    assert run_main(dict(path=str(lock), owner="run-2", stale_after=600), capsys)["failed"]
    assert run_main(dict(path=str(lock), owner="run-2", stale_after=60), capsys)["recovered"]


def test_corrupt_lock_is_busy_until_old(lock, capsys):
    lock.parent.mkdir(parents=True)
    lock.write_text("{not json")
    result = run_main(dict(path=str(lock), owner="run-2"), capsys)
    assert result["failed"] and "cannot be read" in result["msg"]
    os.utime(str(lock), (time.time() - 30000, time.time() - 30000))
    assert run_main(dict(path=str(lock), owner="run-2"), capsys)["recovered_reason"] == "age"


def test_release_own_lock(lock, capsys):
    run_main(dict(path=str(lock), owner="run-1"), capsys)
    result = run_main(dict(path=str(lock), owner="run-1", state="released"), capsys)
    assert result["changed"] and result["released"] and not result["acquired"]
    assert not lock.exists()
    again = run_main(dict(path=str(lock), owner="run-1", state="released"), capsys)
    assert again["changed"] is False and again["released"] is False and not again.get("failed")


def test_release_leaves_another_owners_lock(lock, capsys):
    holder = write_lock(lock, owner="run-1")
    result = run_main(dict(path=str(lock), owner="run-2", state="released"), capsys)
    assert result["changed"] is False and not result.get("failed") and result["holder"] == holder
    assert any("not held by run-2" in w for w in warnings(result))
    assert json.loads(lock.read_text()) == holder


def test_release_in_a_missing_directory(tmp_path, capsys):
    result = run_main(dict(path=str(tmp_path / "nowhere" / "x.lock"), owner="a", state="released"), capsys)
    assert result["changed"] is False and not (tmp_path / "nowhere").exists()


def test_check_mode_changes_nothing(lock, capsys):
    result = run_main(dict(path=str(lock), owner="run-1"), capsys, check_mode=True)
    assert result["acquired"] and result["changed"] and not lock.parent.exists()
    lock.parent.mkdir()
    result = run_main(dict(path=str(lock), owner="run-1"), capsys, check_mode=True)
    assert result["acquired"] and result["changed"] and not lock.exists()
    holder = write_lock(lock, owner="run-1")
    busy = run_main(dict(path=str(lock), owner="run-2", wait=30), capsys, check_mode=True)
    assert not busy.get("failed") and busy["acquired"] is False and busy["changed"] is False
    assert "could not be acquired now" in busy["msg"] and busy["waited"] < 1
    write_lock(lock, owner="run-1", created_epoch=time.time() - 30000)
    stale = run_main(dict(path=str(lock), owner="run-2"), capsys, check_mode=True)
    assert stale["acquired"] and stale["recovered"] and json.loads(lock.read_text())["owner"] == "run-1"
    released = run_main(dict(path=str(lock), owner="run-1", state="released"), capsys, check_mode=True)
    assert released["changed"] and released["released"] and lock.exists()
    assert holder["owner"] == "run-1"


@pytest.mark.parametrize("args, message", [(dict(owner=" "), "owner must not be empty"),
                                           (dict(owner="a", wait=-1), "0 or more"),
                                           (dict(owner="a", stale_after=-5), "0 or more"),
                                           (dict(owner="a", lease=-1), "0 or more")])
def test_bad_options(lock, capsys, args, message):
    result = run_main(dict(args, path=str(lock)), capsys)
    assert result["failed"] and message in result["msg"]


def test_unwritable_directory_is_a_clear_failure(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = run_main(dict(path=str(blocker / "x.lock"), owner="a"), capsys)
    assert result["failed"] and "cannot use the lock" in result["msg"]


# --- races between processes -------------------------------------------------------------------------------

def _contender(path, owner, barrier, results):
    barrier.wait()
    outcome = dr_lock.try_acquire(path, owner, 21600)
    results.put((owner, outcome["status"], outcome["previous"] is not None))


@pytest.mark.parametrize("stale", [False, True], ids=["free", "stale"])
def test_exactly_one_of_many_processes_wins(lock, stale):
    lock.parent.mkdir(parents=True)
    if stale:
        write_lock(lock, owner="dead-run", pid=dead_pid())
    ctx = multiprocessing.get_context("fork")
    count = 12
    barrier = ctx.Barrier(count)
    results = ctx.Queue()
    procs = [ctx.Process(target=_contender, args=(str(lock), "run-%d" % i, barrier, results)) for i in range(count)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=30) for dummy in procs]
    for p in procs:
        p.join(30)
    winners = [owner for owner, status, recovered in outcomes if status == "acquired"]
    assert len(winners) == 1, outcomes
    assert sorted(status for owner, status, recovered in outcomes).count("busy") == count - 1
    assert json.loads(lock.read_text())["owner"] == winners[0]
    assert [recovered for owner, status, recovered in outcomes if status == "acquired"] == [stale]
    assert sorted(os.listdir(str(lock.parent))) == ["backup.lock"]
