# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Parallel load of a plain SQL dump written by ``pg_dump``, over several ``psql`` sessions.

The dump is read once, as a stream, and cut at pg_dump's own entry headers (``-- Name: ...; Type: ...``):

1. the pre-data part (everything before the first ``TABLE DATA`` or ``SEQUENCE SET`` entry) goes, as written,
   to one session, which must finish before any data is loaded;
2. the data part goes over ``jobs`` sessions: every ``COPY`` block is cut at row boundaries into pieces, each
   piece its own ``COPY ... FROM stdin`` in whichever session has the least pending; sequence values go to
   any session. Every session starts with the dump's preamble (its ``SET`` lines);
3. the post-data part is held in memory (it is statements, no data): its ``INDEX`` and ``CONSTRAINT`` entries
   (primary keys, unique, check and exclusion constraints; not foreign keys) run over ``jobs`` sessions, each
   entry with the ``default_tablespace`` / ``default_table_access_method`` in effect where it stood; then every
   other post-data entry (foreign keys, triggers, attachments, comments, grants...) runs in one session in the
   dump's order.

Every session runs with ``ON_ERROR_STOP``; the first failure stops all of them. The tables get the same rows,
indexes and constraints as one ``psql`` replaying the file; only the physical order of rows of a table loaded
in several pieces may differ.

A dump this cannot cut safely raises :class:`Unsupported` before any session starts (psql commands such as
``\\connect`` in its preamble, or a dump taken with ``--create``); the caller loads those with one ``psql``.
Other lines starting with a backslash (inside function bodies, for instance) go to the sessions as written.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import threading

try:
    import queue
except ImportError:  # pragma: no cover - Python 2
    import Queue as queue  # type: ignore


HEADER = re.compile(br"^-- (?:Data for )?Name: .*; Type: ([A-Z ]+); Schema: .*; Owner: .*$")
DATA_TYPES = (b"TABLE DATA", b"SEQUENCE SET", b"BLOBS", b"BLOB DATA", b"LARGE OBJECTS")
PARALLEL_POST_TYPES = (b"INDEX", b"CONSTRAINT")
STATE_SET = re.compile(br"^SET (default_tablespace|default_table_access_method) = .*;$")
# psql meta-commands pg_dump writes that keep the load in one database: \restrict / \unrestrict (15.14+)
ALLOWED_META = re.compile(br"^\\(restrict|unrestrict) ")
PIECE = 4 * 1024 * 1024
READ = 1024 * 1024


class LoadError(Exception):
    def __init__(self, message, stderr=""):
        super(LoadError, self).__init__(message)
        self.stderr = stderr


class Unsupported(Exception):
    """The dump holds something a parallel load cannot reproduce exactly; load it with one psql."""


class _Session(object):
    """One ``psql`` fed by its own writer thread; ``pending`` counts bytes queued and not yet written."""

    def __init__(self, argv, env, name):
        self.name = name
        self.err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self.err,
                                     env=env, close_fds=True)
        self.queue = queue.Queue(maxsize=4)
        self.pending = 0
        self.lock = threading.Lock()
        self.broken = None
        self.thread = threading.Thread(target=self._write)
        self.thread.daemon = True
        self.thread.start()

    def _write(self):
        stdin = self.proc.stdin
        while True:
            block = self.queue.get()
            if block is None:
                break
            if self.broken is None:
                try:
                    stdin.write(block)
                except (OSError, ValueError) as exc:
                    self.broken = exc
            with self.lock:
                self.pending -= len(block)
        try:
            stdin.close()
        except (OSError, ValueError) as exc:
            self.broken = self.broken or exc

    def send(self, block):
        if not block:
            return
        with self.lock:
            self.pending += len(block)
        while True:
            try:
                self.queue.put(block, timeout=1)
                return
            except queue.Full:
                if self.proc.poll() is not None:
                    raise self.failure()

    def finish(self):
        """Close the input and wait; raises :class:`LoadError` when psql failed."""
        self.queue.put(None)
        self.thread.join()
        self.proc.wait()
        if self.proc.returncode != 0 or self.broken is not None:
            raise self.failure()

    def failure(self):
        self.proc.wait()
        self.err.seek(0)
        stderr = self.err.read().decode("utf-8", "replace")
        lines = stderr.strip().splitlines()
        return LoadError("psql (%s) failed (exit status %s): %s" % (
            self.name, self.proc.returncode, " | ".join(lines[-3:]) or "no error output"), stderr=stderr)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


class _Reader(object):
    def __init__(self, stream):
        self.stream = stream
        self.buf = b""
        self.pos = 0
        self.eof = False

    def _fill(self):
        if self.eof:
            return False
        block = self.stream.read(READ)
        if not block:
            self.eof = True
            return False
        self.buf = self.buf[self.pos:] + block
        self.pos = 0
        return True

    def line(self):
        """The next line with its newline, or ``b""`` at the end."""
        while True:
            cut = self.buf.find(b"\n", self.pos)
            if cut >= 0:
                line, self.pos = self.buf[self.pos:cut + 1], cut + 1
                return line
            if not self._fill():
                line, self.buf, self.pos = self.buf[self.pos:], b"", 0
                return line

    def copy_rows(self, piece=PIECE):
        """Yield the rows of a COPY block in pieces ending at row boundaries; consumes the ``\\.`` line."""
        self.buf, self.pos = self.buf[self.pos:], 0
        start = 0  # the terminator is not in self.buf[:start - 3]
        while True:
            # self.buf always starts at a row boundary
            if self.buf.startswith(b"\\.\n"):
                self.buf = self.buf[3:]
                return
            end = self.buf.find(b"\n\\.\n", max(0, start - 3))
            if end >= 0:
                rows, self.buf = self.buf[:end + 1], self.buf[end + 4:]
                while len(rows) > piece:
                    cut = rows.rfind(b"\n", 0, piece) + 1 or len(rows)
                    yield rows[:cut]
                    rows = rows[cut:]
                if rows:
                    yield rows
                return
            if len(self.buf) >= piece:
                cut = self.buf.rfind(b"\n", 0, len(self.buf) - 3) + 1
                if cut > 0:
                    yield self.buf[:cut]
                    self.buf = self.buf[cut:]
                    start = 0
                    continue
            start = len(self.buf)
            if not self._fill():
                raise LoadError("the dump ends inside a COPY block (no \\. line): it is truncated")


def load(stream, session_factory, jobs, piece=PIECE):
    """Load the plain dump read from ``stream`` (a binary file object).

    ``session_factory(name)`` returns ``(argv, env)`` of a ``psql`` reading SQL from its stdin with
    ``ON_ERROR_STOP``. Returns a dict of counts. Raises :class:`LoadError` (a session failed, or the dump is
    truncated) or :class:`Unsupported` (before any session started: load the dump with one psql).
    """
    reader = _Reader(stream)
    sessions = []
    stats = dict(sessions=jobs, copy_pieces=0, parallel_post=0, serial_post=0)

    def start(name):
        argv, env = session_factory(name)
        session = _Session(argv, env, name)
        sessions.append(session)
        return session

    try:
        preamble = []
        state = {}
        # preamble: up to the first entry header
        line = reader.line()
        while line and not HEADER.match(line.rstrip(b"\n")):
            _check_meta(line)
            preamble.append(line)
            line = reader.line()
        first = HEADER.match(line.rstrip(b"\n"))
        if first and first.group(1) == b"DATABASE":
            # pg_dump --create: CREATE DATABASE, then \connect to it; only one psql follows that
            raise Unsupported("a dump taken with --create")
        head = b"".join(preamble)
        pre = start("pre-data")
        pre.send(head)
        phase = "pre"
        data = []
        post = []  # (type, state prefix, text)
        current = None

        def choose():
            return min(data, key=lambda s: s.pending)

        while line:
            text = line.rstrip(b"\n")
            match = HEADER.match(text)
            if match:
                kind = match.group(1)
                if phase == "pre" and kind in DATA_TYPES:
                    pre.finish()
                    phase = "data"
                    for number in range(max(1, jobs)):
                        session = start("data %d" % (number + 1))
                        session.send(head)
                        data.append(session)
                elif phase == "data" and kind not in DATA_TYPES:
                    phase = "post"
                    for session in data:
                        session.finish()
                if phase == "post":
                    current = [kind, _prefix(state), [b"--\n", line]]
                    post.append(current)
                    line = reader.line()
                    continue
                if phase == "data":
                    # the header itself, then the entry's body: COPY blocks streamed in pieces
                    line = _data_entry(reader, line, choose, stats, piece, state)
                    continue
            if STATE_SET.match(text):
                state[STATE_SET.match(text).group(1)] = line
            if phase == "pre":
                pre.send(line)
            elif phase == "data":
                choose().send(line)
            else:
                if current is None:
                    current = [b"", _prefix(state), []]
                    post.append(current)
                current[2].append(line)
            line = reader.line()
        if phase == "pre":
            pre.finish()
        elif phase == "data":
            for session in data:
                session.finish()
        _run_post(post, head, start, jobs, stats)
        return stats
    except BaseException:
        for session in sessions:
            session.kill()
        raise


def load_file(path, decompressor, session_factory, jobs, piece=PIECE):
    """:func:`load` of the dump at ``path``, read through ``decompressor`` (an argv writing it to stdout) or
    directly when that is None. A decompressor that fails raises :class:`LoadError` too."""
    if not decompressor:
        with open(path, "rb") as stream:
            return load(stream, session_factory, jobs, piece)
    err = tempfile.TemporaryFile()
    proc = subprocess.Popen(decompressor, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, close_fds=True)
    done = False
    try:
        try:
            stats = load(proc.stdout, session_factory, jobs, piece)
            done = True
        finally:
            proc.stdout.close()
    finally:
        if not done and proc.poll() is None:
            proc.kill()
        proc.wait()
    if proc.returncode != 0:
        err.seek(0)
        raise LoadError("%s failed (exit status %d) while reading %s: %s" % (
            decompressor[0].rsplit("/", 1)[-1], proc.returncode, path,
            err.read().decode("utf-8", "replace").strip()[-500:] or "no error output"))
    return stats


def _check_meta(line):
    if line.startswith(b"\\") and not ALLOWED_META.match(line):
        raise Unsupported("psql command %s" % line.strip().decode("utf-8", "replace"))


def _prefix(state):
    return b"".join(state[key] for key in sorted(state))


def _data_entry(reader, header, choose, stats, piece, state):
    """Route one data entry; returns the first line after it (the next header, or the end)."""
    lines = [b"--\n", header]
    line = reader.line()
    while line and (line.strip() == b"" or line.startswith(b"--")) and not HEADER.match(line.rstrip(b"\n")):
        lines.append(line)
        line = reader.line()
    if line.startswith(b"COPY ") and line.rstrip().endswith(b"FROM stdin;"):
        copy = line
        for rows in reader.copy_rows(piece):
            choose().send(b"".join(lines) + copy + rows + b"\\.\n")
            lines = []
            stats["copy_pieces"] += 1
        if lines:  # an empty table
            choose().send(b"".join(lines) + copy + b"\\.\n")
            stats["copy_pieces"] += 1
        return reader.line()
    # anything else (sequence values, INSERT statements): the entry as written, to one session, up to the next
    # header (comment lines in between are harmless wherever they go)
    target = choose()
    target.send(b"".join(lines))
    while line and not HEADER.match(line.rstrip(b"\n")):
        setting = STATE_SET.match(line.rstrip(b"\n"))
        if setting:
            state[setting.group(1)] = line
        target.send(line)
        line = reader.line()
    return line


def _run_post(post, head, start, jobs, stats):
    parallel = [entry for entry in post if entry[0] in PARALLEL_POST_TYPES]
    serial = [entry for entry in post if entry[0] not in PARALLEL_POST_TYPES]
    if parallel:
        sessions = [start("post-data %d" % (number + 1)) for number in range(max(1, min(jobs, len(parallel))))]
        for session in sessions:
            session.send(head)
        # the largest first would need sizes; the dump's order spreads tables well enough
        for index, entry in enumerate(parallel):
            sessions[index % len(sessions)].send(entry[1] + b"".join(entry[2]))
            stats["parallel_post"] += 1
        for session in sessions:
            session.finish()
    if serial:
        session = start("post-data")
        session.send(head)
        for entry in serial:
            session.send(entry[1] + b"".join(entry[2]))
            stats["serial_post"] += 1
        session.finish()
