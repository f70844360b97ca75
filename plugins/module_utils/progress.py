# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Progress of a long step (dump, load, upload, download, decryption), for the playbook output.

Module side: :class:`Reporter` counts the bytes a streaming loop has handled and, at most once per
:data:`WRITE_EVERY` seconds, replaces a tiny JSON state file (temporary file + rename, so a reader never sees half
a file; mode 0644, so the login user can read what a become user wrote; it holds only byte counts and times). The
path comes from the internal ``progress_file`` option, which the collection's action plugin sets
(``plugins/plugin_utils/progress_action.py``); when it is unset the reporter does nothing and costs one comparison
per block. The file is removed when the module exits.

Controller side: :func:`format_line` turns two successive states into the line the action plugin prints, e.g.
``pg_dump_backup on db1: 1.2 GiB of about 3.4 GiB dumped, 85 MiB/s, about 26 s left, 210 MiB written``.

A step whose bytes pass through a program rather than through the module's own loop (psql or pg_restore reading
the dump, gzip decompressing it) is measured from outside: :class:`FileReads` reads the file position of every
descriptor the module's process and its children hold on the file (``/proc/<pid>/fdinfo/<fd>``, Linux), and
:class:`Watch` feeds that count to the reporter from a thread while the step runs. A step that runs beside another
(the safety dump beside the load of a restore) reports through :meth:`Reporter.child`: its state rides in the
main one's file, under ``also``, and is printed after it.
"""

from __future__ import annotations

import atexit
import json
import os
import tempfile
import threading
import time

WRITE_EVERY = 1.0


def progress_argument_spec():
    """The internal option every module that reports progress accepts (doc fragment ``atlasia.dr.progress``)."""
    return dict(progress_file=dict(type="path"))


class Reporter(object):
    """Counts bytes and writes ``{"done", "total", "estimate", "verb", "started", "updated"[, "written"]}``.

    ``total`` is the expected number of bytes (None when unknown); ``estimate`` says it is a guess (a database's
    size for a dump) rather than a file's size. Writing never fails the module: a state that cannot be written
    (permissions, disk full) turns the reporter off.
    """

    def __init__(self, path, total=None, estimate=False, verb="written", clock=time.time, measure=None):
        self.path = path
        self.total = total
        self.estimate = estimate
        self.verb = verb
        # when what is compared with ``total`` is not the bytes counted here (a compressed dump's output is
        # counted, its uncompressed size is measured): the counted bytes are then reported as ``written``
        self.measure = measure
        self.done = 0
        self._clock = clock
        self._started = clock()
        self._next = self._started + WRITE_EVERY if path else None
        self._registered = False
        self._lock = threading.Lock()
        self.parent = None
        self.label = None
        self.finished = False
        self._children = []

    @classmethod
    def from_module(cls, module, **kwargs):
        return cls(module.params.get("progress_file"), **kwargs)

    @property
    def enabled(self):
        return self._next is not None

    def child(self, label, verb="written"):
        """A reporter for a step running beside this one (``label`` names it, e.g. ``safety dump``): its state is
        written inside this reporter's file, under ``also``; it is enabled when this one is."""
        kid = Reporter(None, verb=verb, clock=self._clock)
        kid.label = label
        if self._next is not None:
            kid.parent = self
            kid._next = kid._started + WRITE_EVERY
        self._children.append(kid)
        return kid

    def restart(self, verb, total=None, estimate=False):
        """A new step under the same file: counts, rate and start time begin again."""
        with self._lock:
            self.verb = verb
            self.total = total
            self.estimate = estimate
            self.measure = None
            self.done = 0
            self._started = self._clock()

    def update(self, done):
        """The step has handled ``done`` bytes in all (a measured count); writes the state when it is due."""
        with self._lock:
            self.done = done
            if self._next is None:
                return
            now = self._clock()
            if now < self._next:
                return
            self._next = now + WRITE_EVERY
            self.write(now)

    def set_total(self, total, estimate=False):
        self.total = total
        self.estimate = estimate

    def add(self, count):
        """``count`` more bytes handled; writes the state when it is due. Thread-safe (boto3 calls it from its
        transfer threads)."""
        with self._lock:
            self.done += count
            if self._next is None:
                return
            now = self._clock()
            if now < self._next:
                return
            self._next = now + WRITE_EVERY
            self.write(now)

    def __call__(self, block):
        """Usable as a sink beside others: counts ``len(block)``."""
        self.add(len(block))

    def state(self, now=None):
        state = {"done": self.done, "total": self.total, "estimate": bool(self.estimate), "verb": self.verb,
                 "started": self._started, "updated": self._clock() if now is None else now}
        if self.measure is not None:
            state["done"], state["written"] = self.measure(), self.done
        if self.finished:
            state["finished"] = True
        also = [dict(kid.state(now), label=kid.label) for kid in self._children if kid.done or kid.finished]
        if also:
            state["also"] = also
        return state

    def write(self, now=None):
        if self.parent is not None:
            self.parent.write(now)
            return
        if self._next is None:
            return
        temp = None
        try:
            fd, temp = tempfile.mkstemp(prefix=".%s." % os.path.basename(self.path), suffix=".tmp",
                                        dir=os.path.dirname(self.path) or ".")
            with os.fdopen(fd, "w") as handle:
                json.dump(self.state(now), handle)
            os.chmod(temp, 0o644)
            os.rename(temp, self.path)
        except (OSError, ValueError):
            self._next = None  # progress is a convenience: never a reason to fail
            if temp:
                _unlink(temp)
            return
        if not self._registered:
            self._registered = True
            atexit.register(_unlink, self.path)

    def close(self):
        """Removes the state file (also done at the module's exit); a child is marked finished instead."""
        if self.parent is not None or self.label is not None:
            self.finished = True
            self.write()
        elif self.path:
            _unlink(self.path)


def _family(root):
    """``root`` and every process descending from it (Linux ``/proc``); just ``[root]`` elsewhere."""
    children = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return [root]
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as handle:
                fields = handle.read().rpartition(b")")[2].split()
            children.setdefault(int(fields[1]), []).append(int(name))
        except (OSError, IndexError, ValueError):
            continue
    family, todo = [], [root]
    while todo and len(family) < 10000:
        pid = todo.pop()
        family.append(pid)
        todo.extend(children.get(pid, ()))
    return family


def _position(pid, fd):
    try:
        with open("/proc/%d/fdinfo/%s" % (pid, fd), "rb") as handle:
            for line in handle:
                if line.startswith(b"pos:"):
                    return int(line.split()[1])
    except (OSError, IndexError, ValueError):
        pass
    return None


class FileReads(object):
    """How far this process and its children have read ``paths`` (files, or every file under a directory).

    Calling it returns the sum, over those files, of the furthest file position seen on a descriptor open on the
    file, each at most the file's size; a file seen open and closed since counts as read to its end (the readers
    here read sequentially, and a reader that stops early fails the step). A program reading the file through its
    standard input (``psql < dump``), a decompressor opening it by name, pg_restore's parallel workers (the
    furthest of them) and a loop of the module itself are all seen. Between two calls a file opened, read and
    closed is missed, so the count can lag; it never goes back. :attr:`total` is the size of the files.
    """

    def __init__(self, paths, pid=None):
        self.pid = os.getpid() if pid is None else pid
        self.sizes = {}
        for path in paths:
            if os.path.isdir(path):
                for folder, dummy, files in os.walk(path):
                    for name in files:
                        self._add(os.path.join(folder, name))
            else:
                self._add(path)
        self.total = sum(self.sizes.values())
        self._seen = {}
        self._open = set()

    def _add(self, path):
        try:
            st = os.stat(path)
        except OSError:
            return
        self.sizes[(st.st_dev, st.st_ino)] = st.st_size

    def __call__(self):
        open_now = set()
        for pid in _family(self.pid):
            folder = "/proc/%d/fd" % pid
            try:
                fds = os.listdir(folder)
            except OSError:
                continue
            for fd in fds:
                try:
                    st = os.stat(os.path.join(folder, fd))
                except OSError:
                    continue
                key = (st.st_dev, st.st_ino)
                if key not in self.sizes:
                    continue
                open_now.add(key)
                pos = _position(pid, fd)
                if pos is not None and pos > self._seen.get(key, 0):
                    self._seen[key] = min(pos, self.sizes[key])
        for key in self._open - open_now:  # read and closed since: the readers here read to the end
            self._seen[key] = self.sizes[key]
        self._open = open_now
        return sum(self._seen.values())


class Watch(object):
    """While the ``with`` block runs, feeds ``measure()`` (a byte count, or ``(count, total)``) to ``reporter``
    every ``every`` seconds from a thread. Does nothing when the reporter is off; a failing measure stops the feeding, never the step."""

    def __init__(self, reporter, measure, every=WRITE_EVERY):
        self.reporter = reporter
        self.measure = measure
        self.every = every
        self._stop = threading.Event()
        self._thread = None

    def _run(self):
        while not self._stop.wait(self.every):
            try:
                done = self.measure()
                if isinstance(done, tuple):  # (done, total): a total learnt while the step runs
                    done, total = done
                    self.reporter.set_total(total)
                self.reporter.update(done)
            except Exception:  # pylint: disable=broad-except
                return

    def __enter__(self):
        if self.reporter.enabled:
            self._thread = threading.Thread(target=self._run, name="atlasia-dr-progress")
            self._thread.daemon = True
            self._thread.start()
        return self

    def __exit__(self, *exc_info):
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        return False


def _unlink(path):
    try:
        os.unlink(path)
    except OSError:
        pass


_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human_bytes(count):
    """``1288490188`` -> ``'1.2 GiB'``; whole bytes below 1 KiB."""
    value = float(count)
    for unit in _UNITS:
        if value < 1024 or unit == _UNITS[-1]:
            if unit == "B":
                return "%d B" % value
            return ("%.1f %s" if value < 100 else "%.0f %s") % (value, unit)
        value /= 1024.0
    return "%d B" % count  # not reached


def human_duration(seconds):
    """``26`` -> ``'26 s'``, ``125`` -> ``'2 min 5 s'``, ``7300`` -> ``'2 h 2 min'``."""
    seconds = int(round(max(seconds, 0)))
    if seconds < 60:
        return "%d s" % seconds
    if seconds < 3600:
        return "%d min %d s" % (seconds // 60, seconds % 60)
    return "%d h %d min" % (seconds // 3600, (seconds % 3600) // 60)


def rate_of(state, previous=None):
    """Bytes per second: since ``previous`` when there is one and time passed, else since the start."""
    if previous and state["updated"] > previous["updated"] and state["done"] >= previous["done"]:
        return (state["done"] - previous["done"]) / (state["updated"] - previous["updated"])
    elapsed = state["updated"] - state["started"]
    return state["done"] / elapsed if elapsed > 0 else None


def format_line(label, state, previous=None):
    """The line printed for ``state`` (a reporter's state); ``label`` names the step, e.g. ``pg_dump_backup on db1``."""
    done = state.get("done") or 0
    total = state.get("total")
    estimate = state.get("estimate")
    verb = state.get("verb") or "done"
    if total:
        amount = "%s of %s%s %s" % (human_bytes(done), "about " if estimate else "", human_bytes(total), verb)
    else:
        amount = "%s %s" % (human_bytes(done), verb)
    parts = [amount]
    rate = rate_of(state, previous)
    if rate:
        parts.append("%s/s" % human_bytes(rate))
        if total and total > done:
            parts.append("about %s left" % human_duration((total - done) / rate))
    if state.get("written") is not None:
        parts.append("%s written" % human_bytes(state["written"]))
    line = "%s: %s" % (label, ", ".join(parts))
    before = dict((item.get("label"), item) for item in (previous or {}).get("also") or () if isinstance(item, dict))
    for item in state.get("also") or ():
        if not isinstance(item, dict) or "done" not in item:
            continue
        name = item.get("label") or "also"
        if item.get("finished"):
            line += "; %s: %s %s, finished" % (name, human_bytes(item.get("done") or 0), item.get("verb") or "done")
        else:
            line += "; " + format_line(name, dict(item, also=None), before.get(name))
    return line
