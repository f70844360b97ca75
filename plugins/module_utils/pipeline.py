# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Run ``a | b | c`` without a shell and check every stage.

``pg_dump | gzip`` in a shell reports gzip's status: a pg_dump that dies mid-stream still "succeeds".
:func:`run_pipeline` starts each stage from an argument list, streams the last stage's output to a
Python callable in fixed-size chunks (constant memory), waits for every stage, and raises
:class:`PipelineError` naming each stage that failed with the tail of its stderr. A stage killed by
SIGPIPE because a later stage failed is not reported as a cause.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile

CHUNK_SIZE = 1024 * 1024
_STDERR_TAIL = 4000


class PipelineError(Exception):
    """One or more stages failed. ``failures`` is a list of ``(stage_name, returncode, stderr_tail)``."""

    def __init__(self, failures, cause=None):
        self.failures = failures
        self.cause = cause
        parts = []
        for name, returncode, stderr in failures:
            if returncode is not None and returncode < 0:
                status = "killed by signal %d" % -returncode
            else:
                status = "exit status %s" % returncode
            detail = stderr.strip().splitlines()[-3:] if stderr else []
            parts.append("%s failed (%s)%s" % (name, status, (": " + " | ".join(detail)) if detail else ""))
        if cause is not None:
            parts.append(str(cause))
        super(PipelineError, self).__init__("; ".join(parts))

    @property
    def stderr(self):
        return "\n".join(stderr for name, rc, stderr in self.failures if stderr)


def _read_tail(handle):
    handle.seek(0, os.SEEK_END)
    size = handle.tell()
    handle.seek(max(0, size - _STDERR_TAIL))
    return handle.read().decode("utf-8", "replace")


def _sigpipe(returncode):
    return returncode in (-signal.SIGPIPE, 128 + signal.SIGPIPE)


def run_pipeline(stages, sink=None, stdin_path=None, env_update=None, chunk_size=CHUNK_SIZE):
    """Run ``stages`` (a list of ``(name, argv)``) connected by pipes.

    ``stdin_path`` feeds the first stage from a file; ``sink(bytes)`` receives the last stage's output
    (discarded when ``sink`` is None). ``env_update`` is added to the environment of every stage (secrets
    such as ``PGPASSWORD`` travel this way, never in argv). Returns the list of stderr tails per stage.
    """
    env = dict(os.environ)
    if env_update:
        env.update(dict((k, str(v)) for k, v in env_update.items() if v is not None))
    procs = []
    errs = []
    stdin_handle = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
    cause = None
    try:
        previous = stdin_handle
        for index, (name, argv) in enumerate(stages):
            last = index == len(stages) - 1
            err = tempfile.TemporaryFile()
            errs.append(err)
            proc = subprocess.Popen(
                argv, stdin=previous,
                stdout=subprocess.PIPE if (not last or sink is not None) else subprocess.DEVNULL,
                stderr=err, env=env, close_fds=True)
            if index > 0 and previous is not None:
                previous.close()  # the child holds it; our copy would keep the pipe open
            procs.append((name, proc))
            previous = proc.stdout
        if sink is not None:
            out = procs[-1][1].stdout
            try:
                while True:
                    block = out.read(chunk_size)
                    if not block:
                        break
                    sink(block)
            except BaseException as exc:  # disk full, interrupted: stop every stage, then report
                cause = exc
                for name, proc in procs:
                    if proc.poll() is None:
                        proc.kill()
            finally:
                out.close()
        for name, proc in procs:
            proc.wait()
    except BaseException:
        for name, proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        raise
    finally:
        if stdin_handle not in (None, subprocess.DEVNULL):
            stdin_handle.close()
    tails = []
    for err in errs:
        tails.append(_read_tail(err))
        err.close()
    failures = []
    downstream_failed = False
    for (name, proc), tail in reversed(list(zip(procs, tails))):
        if proc.returncode != 0:
            if not (downstream_failed and _sigpipe(proc.returncode)) and not (cause is not None and proc.returncode == -signal.SIGKILL):
                failures.append((name, proc.returncode, tail))
            downstream_failed = True
    failures.reverse()
    if cause is not None and not isinstance(cause, Exception):
        raise cause
    if failures or cause is not None:
        raise PipelineError(failures, cause)
    return tails
