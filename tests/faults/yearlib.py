"""Helpers of the simulated year (tests/faults/test_simulated_year.py).

- :class:`ModuleRunner` runs a module's ``main()`` as its own process: forked from the test (the imports are
  already loaded, so a run costs what the module does, not Python's start-up), its arguments patched in, its
  JSON result read back. A run can be killed (SIGKILL of the module and every process below it, as a crash
  would) either at a random moment of its measured duration, or at the n-th file-system or S3 operation it
  makes inside a window (the whole module, or named functions such as ``backupset.link_into``), which reaches
  the short phases (tier linking, one rename of a key rotation) that a timer rarely hits.
- :func:`expected_kept` is the retention policy written again, by brute force, independently of
  ``module_utils/retention.py``: the oracle the kept sets are compared with.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import io
import json
import os
import select
import shutil
import signal
import sys
import time
import traceback

from ansible.module_utils.testing import patch_module_args

from ansible_collections.atlasia.dr.plugins.module_utils import backupset, crypto, setauth

from tests.faults import faultlib as fl

RUN_TIMEOUT = 120  # seconds one module run may take before the test gives up (bounded waits)


class Killed(Exception):
    """A module run that was SIGKILLed on purpose."""


class ModuleFailed(AssertionError):
    """A module run that failed (or crashed) without being killed."""


# --- the window of a kill by operation count ----------------------------------------------------------------
_OPS = ("link", "rename", "replace", "unlink", "remove", "rmdir", "fsync", "mkdir", "symlink")


class _Tripwire(object):
    """Installed in the forked child: counts the operations made inside the window and SIGKILLs at the n-th."""

    def __init__(self, windows, kill_at):
        self.windows = windows  # [(module object, function name)] or [] for the whole run
        self.kill_at = kill_at  # None: only count
        self.depth = 0 if windows else 1
        self.count = 0

    def fire(self):
        self.count += 1
        if self.kill_at is not None and self.count >= self.kill_at:
            die()

    def install(self):
        for name in _OPS:
            original = getattr(os, name)
            setattr(os, name, self._counted(original))
        real_open = builtins.open

        @functools.wraps(real_open)
        def counted_open(file, mode="r", *args, **kwargs):
            if any(flag in mode for flag in "wxa+") and self.depth:
                self.fire()
            return real_open(file, mode, *args, **kwargs)

        builtins.open = counted_open
        io.open = counted_open
        from botocore.client import BaseClient

        BaseClient._make_api_call = self._counted(BaseClient._make_api_call)
        for owner, name in self.windows:
            setattr(owner, name, self._window(getattr(owner, name)))

    def _counted(self, original):
        @functools.wraps(original)
        def wrapper(*args, **kwargs):
            if self.depth:
                self.fire()
            return original(*args, **kwargs)
        return wrapper

    def _window(self, original):
        @functools.wraps(original)
        def wrapper(*args, **kwargs):
            self.depth += 1
            try:
                return original(*args, **kwargs)
            finally:
                self.depth -= 1
        return wrapper


def die():
    """SIGKILL this process and every process below it (pg_dump, gzip...), at once."""
    me = os.getpid()
    for pid in sorted(fl.descendants(me) - {me}):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    os.kill(me, signal.SIGKILL)


# --- running modules ------------------------------------------------------------------------------------------
class ModuleRunner(object):
    """Run module ``main()`` functions in forked children; see the module docstring."""

    def __init__(self, scratch):
        self.scratch = str(scratch)
        os.makedirs(self.scratch, exist_ok=True)
        self.runs = 0

    def run(self, main, params, kill=None, windows=(), timeout=RUN_TIMEOUT):
        """Run ``main`` with ``params``.

        ``kill``: None, ``("time", seconds)`` or ``("op", n)`` (the n-th operation inside ``windows``).
        Returns ``(result, seconds, ops)``; raises :class:`Killed` when the kill happened before the module
        ended, :class:`ModuleFailed` when it failed on its own.
        """
        self.runs += 1
        out_path = os.path.join(self.scratch, "out.json")
        ops_path = os.path.join(self.scratch, "ops")
        for path in (out_path, ops_path):
            if os.path.exists(path):
                os.unlink(path)
        sys.stdout.flush()
        sys.stderr.flush()
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:  # the module's process
            code = 70
            try:
                os.setpgid(0, 0)
                signal.signal(signal.SIGALRM, signal.SIG_DFL)
                null = os.open(os.devnull, os.O_RDWR)
                os.dup2(null, 0)
                handle = open(out_path, "w")
                os.dup2(handle.fileno(), 1)
                os.dup2(handle.fileno(), 2)
                sys.stdout = sys.stderr = handle
                tripwire = _Tripwire(list(windows), kill[1] if kill and kill[0] == "op" else None)
                tripwire.install()
                try:
                    with patch_module_args(params):
                        main()
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else 1
                with open(ops_path, "w") as counted:
                    counted.write(str(tripwire.count))
            except BaseException:
                traceback.print_exc()
            finally:
                try:
                    sys.stdout.flush()
                finally:
                    os._exit(code)
        try:
            if kill and kill[0] == "time" and not _wait_exit(pid, kill[1]):
                fl.kill_tree(pid)  # still running at the drawn moment
            if not _wait_exit(pid, timeout):
                fl.kill_tree(pid)
                os.waitpid(pid, 0)
                raise ModuleFailed("%s did not end within %ss (killed)" % (main.__module__, timeout))
            dummy, status = os.waitpid(pid, 0)
        except BaseException:
            fl.kill_tree(pid)
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
            raise
        seconds = time.monotonic() - started
        if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
            raise Killed("%s killed after %.3fs" % (main.__module__.rsplit(".", 1)[-1], seconds))
        text = open(out_path).read() if os.path.exists(out_path) else ""
        ops = int(open(ops_path).read()) if os.path.exists(ops_path) else 0
        result = _result_of(text)
        if result is None or result.get("failed") or os.WEXITSTATUS(status) != 0:
            raise ModuleFailed("%s failed (exit %s): %s" % (
                main.__module__.rsplit(".", 1)[-1], os.WEXITSTATUS(status) if os.WIFEXITED(status) else status,
                (result or {}).get("msg") or text[-3000:]))
        return result, seconds, ops


def _wait_exit(pid, seconds):
    """Wait (on the process itself, through a pidfd) until ``pid`` exits or ``seconds`` pass; True when it exited."""
    fd = os.pidfd_open(pid)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(max(0, int(seconds * 1000))))
    finally:
        os.close(fd)


def _result_of(text):
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return None


# --- what is computed once -----------------------------------------------------------------------------------
@contextlib.contextmanager
def computed_once():
    """Pure, deterministic work done once in the test process and inherited by every forked module.

    - scrypt of a passphrase into its public key id (``crypto.key_id``) and its MAC key (``setauth.mac_key``):
      deliberately slow (~0.1 s each), the same answer every time for the same passphrase. The per-file keys
      (random salts) are derived by each module as always.
    - botocore's JSON service models (``JSONFileLoader.load_file``), read and parsed by every new session.

    Nothing a module decides or writes differs; a module run costs what its own work costs. Restored on exit.
    """
    from botocore.loaders import JSONFileLoader

    saved = (crypto.key_id, setauth.mac_key, JSONFileLoader.load_file)
    parsed = {}

    def load_file(self, file_path):
        if file_path not in parsed:
            parsed[file_path] = saved[2](self, file_path)
        return parsed[file_path]

    crypto.key_id = functools.lru_cache(maxsize=8)(saved[0])
    setauth.mac_key = functools.lru_cache(maxsize=8)(saved[1])
    JSONFileLoader.load_file = load_file
    try:
        yield
    finally:
        crypto.key_id, setauth.mac_key, JSONFileLoader.load_file = saved


# --- the retention oracle -------------------------------------------------------------------------------------
def _bucket_of(rule, moment):
    if rule == "daily":
        return (moment.year, moment.month, moment.day)
    if rule == "weekly":
        iso = moment.isocalendar()
        return (iso[0], iso[1])
    return (moment.year, moment.month)


def expected_kept(moments, keep_last=0, keep_daily=0, keep_weekly=0, keep_monthly=0):
    """The set ids (datetimes) a restic-``forget`` policy keeps out of ``moments``, by brute force.

    For each rule, a moment is kept when no other moment is newer in its period (day, ISO week, month) and fewer
    than N periods holding moments are newer than its own; ``keep_last`` keeps the N newest; -1 is unlimited.
    """
    moments = sorted(set(moments))
    kept = set()
    for moment in moments:
        newer = [m for m in moments if m > moment]
        if keep_last == -1 or len(newer) < keep_last:
            kept.add(moment)
        for rule, limit in (("daily", keep_daily), ("weekly", keep_weekly), ("monthly", keep_monthly)):
            if limit == 0:
                continue
            mine = _bucket_of(rule, moment)
            if any(_bucket_of(rule, m) == mine for m in newer):
                continue  # not the newest of its period
            periods_after = set(_bucket_of(rule, m) for m in newer)
            if limit == -1 or len(periods_after) < limit:
                kept.add(moment)
    return kept


# --- small things -----------------------------------------------------------------------------------------
def set_ids_in(directory):
    """Set ids of the set manifests in a folder."""
    if not os.path.isdir(directory):
        return set()
    return set(name[len("set_"):-len(".json")] for name in os.listdir(directory)
               if name.startswith("set_") and name.endswith(".json"))


def remove_tree(path):
    if os.path.isdir(path):
        shutil.rmtree(path)


def load_set(path):
    return backupset.load(path)
