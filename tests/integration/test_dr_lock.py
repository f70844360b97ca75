# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Integration tests of dr_lock: the module run by the real ``ansible`` and ``ansible-playbook`` commands on a
real lock file.

The pid check is exercised end to end: a play that takes the lock records the pid of its ``ansible-playbook``
process (not of the short-lived worker of the task), its lock blocks others while the play runs, and is recovered
at once when the play is gone.

A host reached over SSH is simulated: the module runs with Python directly (no ``ansible-playbook`` above it)
under a shell whose process title is that of an SSH session (``sshd: tester@notty``, as OpenSSH's per-connection
process shows it); that session is the holder, and killing it frees the lock once the lease is over.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time

import pytest

from tests.support import REPO_ROOT, VENV_BIN, VENV_PYTHON, venv_env
from tests.support.ansible_run import ansible_env, run_module
from tests.support.process import kill_tree


@pytest.fixture
def lock(tmp_path):
    return tmp_path / "locks" / "backup.lock"


def acquire(lock, owner, **extra):
    return run_module("dr_lock", dict(path=str(lock), owner=owner, **extra))


def release(lock, owner):
    return run_module("dr_lock", dict(path=str(lock), owner=owner, state="released"))


def on_disk(lock):
    return json.loads(lock.read_text())


def playbook(tmp_path, lock, owner, hold_until=None):
    """A play that takes the lock and, with ``hold_until``, keeps running until that file exists."""
    tasks = [{"name": "Take the lock", "atlasia.dr.dr_lock": {"path": str(lock), "owner": owner}}]
    if hold_until:
        tasks.append({"name": "Work while holding it", "ansible.builtin.wait_for": {
            "path": str(hold_until), "timeout": 120}})
        tasks.append({"name": "Give it back", "atlasia.dr.dr_lock": {
            "path": str(lock), "owner": owner, "state": "released"}})
    path = tmp_path / ("play-%s.yml" % owner)
    path.write_text(json.dumps([{"name": "Lock", "hosts": "localhost", "gather_facts": False, "tasks": tasks}]))
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps({"all": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": str(VENV_PYTHON)}}}}))
    return subprocess.Popen([str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), str(path)], cwd=str(REPO_ROOT),
                            env=ansible_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_acquire_and_release(lock):
    result = acquire(lock, "run-1")
    assert result["changed"] and result["acquired"] and not result.get("failed")
    record = on_disk(lock)
    assert record["owner"] == "run-1" and record == result["holder"]
    assert record["pid"] is None  # an ad-hoc command is not a run that outlives the task
    assert acquire(lock, "run-1")["changed"] is False
    released = release(lock, "run-1")
    assert released["changed"] and released["released"] and not lock.exists()
    again = release(lock, "run-1")
    assert again["changed"] is False and not again.get("failed")


def test_second_run_fails_fast_with_a_clear_message(lock):
    acquire(lock, "run-1")
    t0 = time.monotonic()
    result = acquire(lock, "run-2")
    assert time.monotonic() - t0 < 20
    assert result["failed"] and not result["acquired"]
    assert result["msg"].startswith("another run holds the lock %s since " % lock)
    assert "(owner run-1, pid unknown on host " in result["msg"]
    assert on_disk(lock)["owner"] == "run-1"
    other = release(lock, "run-2")
    assert other["changed"] is False and lock.exists()
    assert any("not held by run-2" in w for w in other.get("warnings", []))


def test_waiting_run_gets_the_lock_when_the_holder_releases(lock):
    acquire(lock, "run-1")
    box = {}
    waiter = threading.Thread(target=lambda: box.update(result=acquire(lock, "run-2", wait=60, poll_interval=0.2)))
    waiter.start()
    time.sleep(4)
    assert waiter.is_alive()  # still waiting
    assert release(lock, "run-1")["released"]
    waiter.join(60)
    result = box["result"]
    assert result["acquired"] and result["changed"] and not result["recovered"]
    assert 2 < result["waited"] < 60
    assert on_disk(lock)["owner"] == "run-2"


def test_stale_lock_by_age_is_recovered(lock):
    acquire(lock, "run-1")
    time.sleep(2.5)
    result = acquire(lock, "run-2", stale_after=2)
    assert result["acquired"] and result["recovered"] and result["recovered_reason"] == "age"
    assert result["previous_holder"]["owner"] == "run-1"
    assert any("took over the stale lock" in w for w in result.get("warnings", []))
    assert on_disk(lock)["owner"] == "run-2"


def test_playbook_pid_holds_the_lock_while_the_play_runs_and_frees_it_when_gone(lock, tmp_path):
    flag = tmp_path / "done"
    play = playbook(tmp_path, lock, "play-1", hold_until=flag)
    try:
        deadline = time.time() + 60
        while not lock.exists() and time.time() < deadline and play.poll() is None:
            time.sleep(0.1)
        record = on_disk(lock)
        assert record["pid"] == play.pid and record["process"] == "ansible-playbook"
        time.sleep(1)  # the worker of the first task is gone by now; the lock must still hold
        blocked = acquire(lock, "run-2")
        assert blocked["failed"] and "(owner play-1, pid %d on host " % play.pid in blocked["msg"]
    finally:
        flag.write_text("go")
        output = play.communicate(timeout=120)[0]
    assert play.returncode == 0, output
    assert not lock.exists()  # released by the play's last task


@pytest.mark.parametrize("end", ["finished", "killed"])
def test_lock_of_a_finished_or_killed_playbook_is_recovered_at_once(lock, tmp_path, end):
    if end == "finished":
        play = playbook(tmp_path, lock, "play-1")  # takes the lock and ends without releasing it
        output = play.communicate(timeout=120)[0]
        assert play.returncode == 0, output
    else:
        play = playbook(tmp_path, lock, "play-1", hold_until=tmp_path / "never")
        deadline = time.time() + 60
        while not lock.exists() and time.time() < deadline and play.poll() is None:
            time.sleep(0.1)
        kill_tree(play.pid)  # kill -9 of the whole run while it holds the lock
        play.communicate(timeout=60)
    assert on_disk(lock)["pid"] == play.pid
    result = acquire(lock, "run-2")
    assert result["acquired"] and result["recovered"] and result["recovered_reason"] == "dead_process"
    assert result["previous_holder"]["pid"] == play.pid and result["previous_holder"]["owner"] == "play-1"


def test_concurrent_runs_exactly_one_wins(lock, tmp_path):
    """Four plays ask at once; each holds what it gets until told to finish, so a winner that has not finished
    is never mistaken for a dead holder, however slowly the others start on a loaded machine."""
    owners = ["run-%d" % i for i in range(4)]
    release_file = tmp_path / "finish"
    plays = dict((o, playbook(tmp_path, lock, o, hold_until=release_file)) for o in owners)
    try:
        outputs = {}
        deadline = time.monotonic() + 300
        while len(outputs) < 3 and time.monotonic() < deadline:  # the three losers fail fast; the winner waits
            for owner, play in plays.items():
                if owner not in outputs and play.poll() is not None:
                    outputs[owner] = play.stdout.read()
            time.sleep(0.1)
        losers = sorted(outputs)
        assert len(losers) == 3, "plays that ended: %s" % losers
        winner = (set(owners) - set(losers)).pop()
        assert all(plays[o].returncode != 0 for o in losers), outputs
        assert on_disk(lock)["owner"] == winner
        for owner in losers:
            assert "owner %s" % winner in " ".join(outputs[owner].split()), outputs[owner]
        assert sorted(os.listdir(str(lock.parent))) == ["backup.lock"]
        release_file.write_text("done")
        out, dummy = plays[winner].communicate(timeout=120)
        assert plays[winner].returncode == 0, out
        assert not lock.exists()
    finally:
        release_file.write_text("done")
        for play in plays.values():
            if play.poll() is None:
                kill_tree(play.pid)
                play.wait(30)


def test_check_mode_changes_nothing(lock):
    result = run_module("dr_lock", dict(path=str(lock), owner="run-1"), check=True)
    assert result["acquired"] and result["changed"] and not lock.parent.exists()
    acquire(lock, "run-1")
    busy = run_module("dr_lock", dict(path=str(lock), owner="run-2", wait=30), check=True)
    assert not busy.get("failed") and busy["acquired"] is False and busy["waited"] < 5
    gone = run_module("dr_lock", dict(path=str(lock), owner="run-1", state="released"), check=True)
    assert gone["changed"] and lock.exists()


# --- a host reached over SSH ---------------------------------------------------------------------------------

SESSION_TITLE = "sshd: tester@notty"


def ssh_like_holder(tmp_path, lock, owner, **extra):
    """Take the lock like a task on a host reached over SSH: the module run by Python from a plain shell titled like
    OpenSSH's session process, which stays (``sleep``) as the connection of the run does. Returns ``(session,
    result)``."""
    call = len(list(tmp_path.glob("args-*.json")))
    args = tmp_path / ("args-%d.json" % call)
    args.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": dict(path=str(lock), owner=owner, **extra)}))
    out = tmp_path / ("out-%d.json" % call)
    env = venv_env({"PYTHONPATH": str(REPO_ROOT / ".collections"), "LOCK_MODULE": str(
        REPO_ROOT / "plugins" / "modules" / "dr_lock.py"), "LOCK_ARGS": str(args), "LOCK_OUT": str(out),
        "LOCK_PYTHON": str(VENV_PYTHON)})
    session = subprocess.Popen([SESSION_TITLE, "-c", '"$LOCK_PYTHON" "$LOCK_MODULE" "$LOCK_ARGS" > "$LOCK_OUT"; '
                                                     'sleep 600'],
                               executable="/bin/sh", env=env, cwd=str(tmp_path), start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        text = out.read_text() if out.exists() else ""
        if text.strip().endswith("}"):
            return session, json.loads(text)
        assert session.poll() is None, "the session ended before the module answered"
        time.sleep(0.05)
    kill_tree(session.pid)
    pytest.fail("the module run under the simulated SSH session did not answer")


def test_ssh_session_holds_the_lock_until_killed_then_it_is_recovered(lock, tmp_path):
    session, result = ssh_like_holder(tmp_path, lock, "remote-1")
    try:
        assert result["acquired"] and result["changed"], result
        record = on_disk(lock)
        assert record["pid"] == session.pid and record["process"] == "sshd"  # the session, not the module
        assert record["heartbeat_epoch"] == record["created_epoch"]
        time.sleep(2.2)
        # alive and older than stale_after and than the lease: never taken over because of its age
        blocked = acquire(lock, "run-2", stale_after=1, lease=1)
        assert blocked["failed"] and blocked["busy"] and not blocked["recovered"], blocked
        assert "(owner remote-1, pid %d on host " % session.pid in blocked["msg"]
        assert on_disk(lock) == record
    finally:
        kill_tree(session.pid)  # kill -9 of the session and the task under it
        session.wait(30)
    # gone, but its heartbeat is younger than the default lease (120 s): the run may be reconnecting
    within_lease = acquire(lock, "run-2")
    assert within_lease["failed"] and within_lease["busy"], within_lease
    # gone and its heartbeat older than the lease: dead, taken over at once
    t0 = time.monotonic()
    result = acquire(lock, "run-2", lease=2)
    assert time.monotonic() - t0 < 30
    assert result["acquired"] and result["recovered"] and result["recovered_reason"] == "dead_process", result
    assert result["previous_holder"]["pid"] == session.pid and result["previous_holder"]["owner"] == "remote-1"
    assert any("its SSH session is gone" in w for w in result.get("warnings", []))
    assert on_disk(lock)["owner"] == "run-2"


def test_ssh_holder_refreshes_its_heartbeat_and_session(lock, tmp_path):
    first, result = ssh_like_holder(tmp_path, lock, "remote-1")
    kill_tree(first.pid)  # the connection dropped (ControlPersist expired)...
    first.wait(30)
    time.sleep(1.2)
    second, again = ssh_like_holder(tmp_path, lock, "remote-1")  # ...and the run's next lock call reconnected
    try:
        assert again["acquired"] and again["changed"] is False, again
        record = on_disk(lock)
        assert record["pid"] == second.pid and record["process"] == "sshd"
        assert record["heartbeat_epoch"] > record["created_epoch"] + 1
        assert record["created_epoch"] == result["holder"]["created_epoch"]
        blocked = acquire(lock, "run-2", lease=0)
        assert blocked["failed"] and blocked["busy"], blocked  # its new session is alive
    finally:
        kill_tree(second.pid)
        second.wait(30)
    assert acquire(lock, "run-2", lease=0)["recovered_reason"] == "dead_process"
