# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Run ``a | b | c`` without a shell and check every stage.

``pg_dump | gzip`` in a shell reports gzip's status: a pg_dump that dies mid-stream still "succeeds".
:func:`run_pipeline` starts each stage from an argument list, streams the last stage's output to a
Python callable in fixed-size chunks (constant memory), waits for every stage, and raises
:class:`PipelineError` naming each stage that failed with the tail of its stderr. A stage killed by
SIGPIPE because a later stage failed is not reported as a cause.

:class:`FeedPipeline` is the same for stages whose first one reads what the caller feeds it: checks made
while a file is being written (a decompression test, ``pg_restore --file=/dev/null``) read the very bytes
that are written, without a second pass over the file.
"""

from __future__ import annotations

import errno
import os
import queue
import signal
import subprocess
import tempfile
import threading

try:
    import fcntl
except ImportError:  # not a POSIX system: pipes keep their default size
    fcntl = None

CHUNK_SIZE = 1024 * 1024
# Pipes between stages hold this much (Linux default: 64 KiB): fewer context switches per GB, and a stage
# that pauses (the Python reader hashing a block) does not stall the ones before it at once.
PIPE_SIZE = 1024 * 1024
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


def _widen(pipe):
    """Grow a pipe to :data:`PIPE_SIZE` when the system allows it (best effort, Linux only)."""
    setter = getattr(fcntl, "F_SETPIPE_SZ", None) if fcntl is not None else None
    if setter is None or pipe is None:
        return
    try:
        fcntl.fcntl(pipe.fileno(), setter, PIPE_SIZE)
    except (OSError, ValueError):
        pass


def _sigpipe(returncode):
    return returncode in (-signal.SIGPIPE, 128 + signal.SIGPIPE)


def run_pipeline(stages, sink=None, stdin_path=None, env_update=None, chunk_size=CHUNK_SIZE):
    """Run ``stages`` (a list of ``(name, argv)``) connected by pipes.

    ``stdin_path`` feeds the first stage from a file; ``sink(bytes)`` receives the last stage's output
    (discarded when ``sink`` is None). ``env_update`` is added to the environment of every stage (secrets
    such as ``PGPASSWORD`` travel this way, never in argv). Returns the list of stderr tails per stage.
    """
    env = _environ(env_update)
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
            _widen(previous)
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
    return _outcome(procs, errs, cause)


def _environ(env_update):
    env = dict(os.environ)
    if env_update:
        env.update(dict((k, str(v)) for k, v in env_update.items() if v is not None))
    return env


def _outcome(procs, errs, cause):
    """Stderr tails of finished stages; raises :class:`PipelineError` (or a non-Exception ``cause``)."""
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


class BackgroundSink(object):
    """Hand each block to ``consumers`` in a worker thread, in order, through a bounded queue.

    The reader of a pipeline then only reads and writes, and never stalls the stages before it while a
    block is hashed or decompressed (hashlib and zlib release the GIL, so the work runs on another CPU).
    At most ``depth`` blocks wait: memory stays constant. :meth:`close` waits for the worker and re-raises
    its exception; :meth:`abort` drops what is left.
    """

    def __init__(self, consumers, depth=4):
        self._consumers = list(consumers)
        self._queue = queue.Queue(maxsize=depth)
        self._error = None
        self._dropping = False
        self._thread = threading.Thread(target=self._work)
        self._thread.daemon = True
        self._thread.start()

    def _work(self):
        while True:
            block = self._queue.get()
            if block is None:
                return
            if self._error is not None or self._dropping:
                continue
            try:
                for consumer in self._consumers:
                    consumer(block)
            except BaseException as exc:  # re-raised by close()
                self._error = exc

    def __call__(self, block):
        if self._error is not None:
            raise self._error
        self._queue.put(block)

    def close(self):
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        if self._error is not None:
            raise self._error

    def abort(self):
        self._dropping = True
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None


class FeedPipeline(object):
    """Stages ``a | b`` started now, whose first stage reads the bytes passed to :meth:`feed`.

    The last stage's output goes to ``sink`` from a reader thread (discarded without ``sink``), so a stage
    that writes much never blocks the caller. A stage that stops reading early (it failed) does not make
    :meth:`feed` raise: the rest is dropped and :meth:`close` reports the failure. :meth:`close` ends the
    input, waits for every stage and raises :class:`PipelineError` like :func:`run_pipeline`; :meth:`abort`
    kills every stage (the producer failed). Memory stays constant: one block in flight.
    """

    def __init__(self, stages, sink=None, env_update=None, chunk_size=CHUNK_SIZE):
        env = _environ(env_update)
        self._procs = []
        self._errs = []
        self._stdin = None
        self._broken = False
        self._cause = None
        self._reader = None
        try:
            previous = subprocess.PIPE
            for index, (name, argv) in enumerate(stages):
                last = index == len(stages) - 1
                err = tempfile.TemporaryFile()
                self._errs.append(err)
                proc = subprocess.Popen(
                    argv, stdin=previous,
                    stdout=subprocess.PIPE if (not last or sink is not None) else subprocess.DEVNULL,
                    stderr=err, env=env, close_fds=True)
                if index == 0:
                    self._stdin = proc.stdin
                    _widen(proc.stdin)
                else:
                    previous.close()  # the child holds it
                self._procs.append((name, proc))
                previous = proc.stdout
                _widen(previous)
        except BaseException:
            self.abort()
            raise
        if sink is not None:
            out = self._procs[-1][1].stdout
            self._reader = threading.Thread(target=self._drain, args=(out, sink, chunk_size))
            self._reader.daemon = True
            self._reader.start()

    def _drain(self, out, sink, chunk_size):
        try:
            while True:
                block = out.read(chunk_size)
                if not block:
                    break
                sink(block)
        except BaseException as exc:  # reported by close(); stop the stages so nothing blocks
            self._cause = exc
            for name, proc in self._procs:
                if proc.poll() is None:
                    proc.kill()
        finally:
            out.close()

    @property
    def accepting(self):
        """False once the first stage stopped reading (its failure is reported by :meth:`close`)."""
        return not self._broken

    def feed(self, block):
        if self._broken:
            return False
        try:
            self._stdin.write(block)
        except (BrokenPipeError, ValueError):
            self._broken = True
        except OSError as exc:
            if exc.errno != errno.EPIPE:
                raise
            self._broken = True
        return not self._broken

    def _close_stdin(self):
        if self._stdin is not None:
            try:
                self._stdin.close()
            except (BrokenPipeError, ValueError):
                pass
            except OSError as exc:
                if exc.errno != errno.EPIPE:
                    raise
            self._stdin = None

    def close(self):
        """End the input, wait for every stage; returns the stderr tails or raises :class:`PipelineError`."""
        try:
            self._close_stdin()
            if self._reader is not None:
                self._reader.join()
            for name, proc in self._procs:
                proc.wait()
        except BaseException:
            self.abort()
            raise
        return _outcome(self._procs, self._errs, self._cause)

    def abort(self):
        """Kill every stage and wait for them; nothing is reported."""
        for name, proc in self._procs:
            if proc.poll() is None:
                proc.kill()
        try:
            self._close_stdin()
        except OSError:
            pass
        for name, proc in self._procs:
            proc.wait()
        if self._reader is not None:
            self._reader.join()
            self._reader = None
        for err in self._errs:
            err.close()
        self._errs = []
