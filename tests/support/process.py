"""Process and port helpers shared by the throwaway servers of tests/support (PostgreSQL, OpenBao, SeaweedFS)."""

from __future__ import annotations

import os
import signal
import socket
import time

HOST = "127.0.0.1"


def free_port(host: str = HOST) -> int:
    """A TCP port with nothing listening on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (a child that exited but was not reaped yet) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open("/proc/%d/stat" % pid, encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def pid_cmdline(pid: int) -> str:
    """The command line of ``pid`` ('' when it is gone)."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def terminate_pid(pid, grace=5.0, expect_in_cmdline=None, process=None, poll=0.05):
    """SIGTERM ``pid``, SIGKILL after ``grace`` seconds; returns True when it was running.

    ``expect_in_cmdline`` guards against a recycled PID (nothing is signalled unless the command line
    contains it). ``process`` (a Popen) is reaped when given. Every wait is bounded.
    """
    def reap():
        if process is not None:
            process.poll()

    if not pid_alive(pid):
        reap()
        return False
    if expect_in_cmdline and expect_in_cmdline not in pid_cmdline(pid):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    for sig, wait in ((None, grace), (signal.SIGKILL, 10.0)):
        if sig is not None:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return True
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            reap()
            if not pid_alive(pid):
                return True
            time.sleep(poll)
    return True


def _parents():
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as handle:
                data = handle.read()
        except OSError:
            continue
        parents[int(entry)] = int(data[data.rfind(")") + 2:].split()[1])
    return parents


def process_family(root_pid):
    """Pids of ``root_pid`` and all its descendants (by parent pid, so setsid does not hide any)."""
    parents = _parents()
    family, frontier = {root_pid}, [root_pid]
    while frontier:
        children = [pid for pid, ppid in parents.items() if ppid in frontier and pid not in family]
        family.update(children)
        frontier = children
    return family


def _running(pid):
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kill_tree(root_pid, include_root=True):
    """SIGKILL a run and every process below it, as a crash or the OOM killer would; returns the pids, sorted.

    The family is frozen with SIGSTOP until no new member appears (a stopped process cannot fork, and a stopped
    parent keeps its children attached), then killed: nothing started while killing escapes, and no child is
    orphaned to init before it is found. Bounded to 20 rounds.
    """
    stopped = set()
    for dummy in range(20):
        family = set(pid for pid in process_family(root_pid) - stopped if _running(pid))
        if not include_root:
            family.discard(root_pid)
        if not family:
            break
        for pid in family:
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:
                pass
        stopped |= family
    for pid in stopped:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return sorted(stopped)
