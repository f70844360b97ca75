# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Compressors, decompressors and format detection for backup artifacts.

gzip output is produced by ``pigz`` when it is installed (parallel, byte-for-byte gzip-compatible:
``gunzip -t``, ``zcat`` and the plan's runbooks keep working) and by ``gzip`` otherwise.

:class:`GzipTester` is the gzip decompression test done in-process (zlib checks each member's CRC-32 and
length): fed block by block, it tests a stream while it is being written, or a file in one read.
"""

from __future__ import annotations

import os
import zlib

COMPRESSIONS = ("gzip", "zstd", "none")
FORMATS = ("plain", "custom", "directory")
DEFAULT_LEVEL = {"gzip": 5, "zstd": 3, "none": 0}
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
PGDMP_MAGIC = b"PGDMP"
PLAIN_TRAILER = b"-- PostgreSQL database dump complete"


def extension(fmt, compression):
    """File extension of a dump: ``sql.gz``, ``sql.zst``, ``sql``, ``dump``, ``dump.zst``, ``dir``."""
    if fmt == "plain":
        return {"gzip": "sql.gz", "zstd": "sql.zst", "none": "sql"}[compression]
    if fmt == "custom":
        return "dump.zst" if compression == "zstd" else "dump"
    return "dir"


def cpu_count():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _bin(module, name, required=True):
    return module.get_bin_path(name, required=required)


def compressor_argv(module, compression, level=None, threads=0):
    """argv of a stdin->stdout compressor, or ``None`` for ``none``."""
    if compression == "none":
        return None
    level = DEFAULT_LEVEL[compression] if level is None else level
    threads = threads or cpu_count()
    if compression == "gzip":
        pigz = _bin(module, "pigz", required=False)
        if pigz and threads > 1:
            return [pigz, "-%d" % level, "-p", str(threads), "-c"]
        return [_bin(module, "gzip"), "-%d" % level, "-c"]
    return [_bin(module, "zstd"), "-q", "-%d" % level, "-T%d" % threads, "-c"]


def decompressor_argv(module, compression, path=None):
    """argv that writes the decompressed content of ``path`` (or stdin) to stdout."""
    if compression == "gzip":
        tool = _bin(module, "pigz", required=False) or _bin(module, "gzip")
        argv = [tool, "-d", "-c"]
    elif compression == "zstd":
        argv = [_bin(module, "zstd"), "-q", "-d", "-c"]
    else:
        return None
    return argv + ([path] if path else [])


def detect(path):
    """``(format, compression)`` of an artifact from its content, or ``(None, None)`` when unknown."""
    if os.path.isdir(path):
        return ("directory", "gzip") if os.path.exists(os.path.join(path, "toc.dat")) else (None, None)
    with open(path, "rb") as handle:
        head = handle.read(8)
    if head.startswith(PGDMP_MAGIC):
        return "custom", "none"
    if head.startswith(GZIP_MAGIC):
        compression = "gzip"
    elif head.startswith(ZSTD_MAGIC):
        compression = "zstd"
    else:
        return ("plain", "none") if head else (None, None)
    name = os.path.basename(path)
    return ("custom" if ".dump" in name else "plain"), compression


class TailKeeper(object):
    """A pipeline sink that counts bytes and keeps only the last ``keep`` bytes (for trailer checks)."""

    def __init__(self, keep=512):
        self.keep = keep
        self.size = 0
        self.tail = b""

    def __call__(self, block):
        self.size += len(block)
        self.tail = (self.tail + block[-self.keep:])[-self.keep:]

    def plain_dump_complete(self):
        return PLAIN_TRAILER in self.tail


class DecompressionError(Exception):
    """A compressed stream is damaged or truncated."""


class GzipTester(object):
    """The gzip decompression test, in-process and streamed, in constant memory.

    :meth:`feed` compressed bytes as they come; zlib checks the CRC-32 and length trailer of every member
    (concatenated members are accepted, as by ``gzip -t``). :meth:`close` raises :class:`DecompressionError`
    unless the stream ended exactly at the end of a complete member. The decompressed bytes go to ``sink``
    (for example a :class:`TailKeeper`) in blocks of at most ``out_chunk`` bytes; ``size`` counts them.
    """

    def __init__(self, sink=None, out_chunk=256 * 1024):
        self.sink = sink
        self.out_chunk = out_chunk
        self.size = 0
        self.compressed_size = 0
        self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)

    def _emit(self, data):
        if data:
            self.size += len(data)
            if self.sink is not None:
                self.sink(data)

    def feed(self, data):
        self.compressed_size += len(data)
        try:
            while data:
                if self._inflater.eof:  # the next member of a multi-member file
                    self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
                inflater = self._inflater
                self._emit(inflater.decompress(data, self.out_chunk))
                while inflater.unconsumed_tail and not inflater.eof:
                    self._emit(inflater.decompress(inflater.unconsumed_tail, self.out_chunk))
                data = inflater.unused_data if inflater.eof else b""
        except zlib.error as exc:
            raise DecompressionError("invalid gzip data after %d compressed bytes (%s)" % (self.compressed_size, exc))

    def close(self):
        """Check that the stream ended cleanly; returns the decompressed size."""
        if self.compressed_size == 0:
            raise DecompressionError("no gzip data at all")
        if not self._inflater.eof:
            try:
                self._emit(self._inflater.flush())
            except zlib.error as exc:
                raise DecompressionError("invalid gzip data at the end (%s)" % exc)
        if not self._inflater.eof:
            raise DecompressionError("unexpected end of the gzip data after %d compressed bytes (truncated)"
                                     % self.compressed_size)
        return self.size
