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
