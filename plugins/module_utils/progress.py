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

    @classmethod
    def from_module(cls, module, **kwargs):
        return cls(module.params.get("progress_file"), **kwargs)

    @property
    def enabled(self):
        return self._next is not None

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
        return state

    def write(self, now=None):
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
        """Removes the state file (also done at the module's exit)."""
        if self.path:
            _unlink(self.path)


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
    return "%s: %s" % (label, ", ".join(parts))
