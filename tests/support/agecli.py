"""Run Debian's ``age`` tool (or a documented shell command that calls it) with a passphrase typed at its prompt.

age reads passphrases from the terminal only (/dev/tty), never from stdin or the environment: the command runs
in its own session on a pseudo-terminal, and the passphrase is written to the terminal when age asks for it.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import time

AGE = shutil.which("age")


def run_with_passphrase(argv, passphrase, cwd=None, env=None, timeout=300, shell=False):
    """Run ``argv`` with a terminal; answer every passphrase prompt with ``passphrase``.

    Returns ``(returncode, terminal output, stdout, stderr)``. stdin, stdout and stderr are pipes or files as
    usual (age writes no data to the terminal), only /dev/tty is the pseudo-terminal.
    """
    master, slave = os.openpty()
    slave_name = os.ttyname(slave)

    def controlling_terminal():  # runs in the child, after setsid: the first tty opened becomes /dev/tty
        os.close(os.open(slave_name, os.O_RDWR))

    proc = subprocess.Popen(argv, cwd=cwd, env=env, shell=shell, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True, preexec_fn=controlling_terminal)
    screen = b""
    answered = 0
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            ready, dummy_w, dummy_x = select.select([master], [], [], 0.5)
            if not ready:
                continue
            try:
                data = os.read(master, 4096)
            except OSError:  # pragma: no cover - the parent keeps the slave open, so this is not expected
                break
            screen += data
            # one answer per prompt: "Enter passphrase", "Confirm passphrase"
            if screen.lower().count(b"passphrase") > answered and screen.rstrip().endswith(b":"):
                os.write(master, passphrase.encode("utf-8") + b"\r")
                answered = screen.lower().count(b"passphrase")
        stdout, stderr = proc.communicate(timeout=max(1, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
        os.close(slave)  # kept open until the end: a read of the master fails while no one holds the slave
    return proc.returncode, screen.decode("utf-8", "replace"), stdout.decode("utf-8", "replace"), \
        stderr.decode("utf-8", "replace")
