# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of plugins/module_utils/compression.py: tool choice, argv, format detection, trailer check."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess

import pytest

from ansible_collections.atlasia.dr.plugins.module_utils import compression


class FakeModule(object):
    """get_bin_path over a fixed set of installed tools."""

    def __init__(self, installed=("gzip", "pigz", "zstd")):
        self.installed = set(installed)

    def get_bin_path(self, name, required=False):
        if name in self.installed:
            return "/usr/bin/" + name
        if required:
            raise SystemExit("Failed to find required executable %s" % name)
        return None


@pytest.mark.parametrize("fmt, comp, ext", [
    ("plain", "gzip", "sql.gz"),
    ("plain", "zstd", "sql.zst"),
    ("plain", "none", "sql"),
    ("custom", "gzip", "dump"),
    ("custom", "none", "dump"),
    ("custom", "zstd", "dump.zst"),
    ("directory", "gzip", "dir"),
    ("directory", "none", "dir"),
])
def test_extension(fmt, comp, ext):
    assert compression.extension(fmt, comp) == ext


def test_cpu_count_positive():
    assert compression.cpu_count() >= 1


@pytest.mark.parametrize("installed, threads, expected", [
    (("gzip", "pigz"), 4, ["/usr/bin/pigz", "-5", "-p", "4", "-c"]),
    (("gzip", "pigz"), 1, ["/usr/bin/gzip", "-5", "-c"]),       # one thread: plain gzip
    (("gzip",), 4, ["/usr/bin/gzip", "-5", "-c"]),               # no pigz installed
])
def test_compressor_argv_gzip(installed, threads, expected):
    assert compression.compressor_argv(FakeModule(installed), "gzip", threads=threads) == expected


def test_compressor_argv_threads_zero_means_every_cpu(monkeypatch):
    monkeypatch.setattr(compression, "cpu_count", lambda: 3)
    assert compression.compressor_argv(FakeModule(), "gzip", level=9) == ["/usr/bin/pigz", "-9", "-p", "3", "-c"]
    assert compression.compressor_argv(FakeModule(), "zstd") == ["/usr/bin/zstd", "-q", "-3", "-T3", "-c"]


def test_compressor_argv_zstd_level_and_none():
    assert compression.compressor_argv(FakeModule(), "zstd", level=19, threads=2) == [
        "/usr/bin/zstd", "-q", "-19", "-T2", "-c"]
    assert compression.compressor_argv(FakeModule(), "none") is None


def test_compressor_argv_zstd_missing_is_an_error():
    with pytest.raises(SystemExit, match="zstd"):
        compression.compressor_argv(FakeModule(("gzip",)), "zstd")


@pytest.mark.parametrize("installed, comp, path, expected", [
    (("gzip", "pigz"), "gzip", "/b/x.sql.gz", ["/usr/bin/pigz", "-d", "-c", "/b/x.sql.gz"]),
    (("gzip",), "gzip", "/b/x.sql.gz", ["/usr/bin/gzip", "-d", "-c", "/b/x.sql.gz"]),
    (("zstd",), "zstd", "/b/x.sql.zst", ["/usr/bin/zstd", "-q", "-d", "-c", "/b/x.sql.zst"]),
    (("zstd",), "zstd", None, ["/usr/bin/zstd", "-q", "-d", "-c"]),
    (("gzip",), "none", "/b/x.sql", None),
])
def test_decompressor_argv(installed, comp, path, expected):
    assert compression.decompressor_argv(FakeModule(installed), comp, path) == expected


@pytest.mark.parametrize("tool", ["gzip", "pigz", "zstd"])
def test_real_tools_round_trip(tmp_path, tool):
    """The argv built here work with the real programs (when installed)."""
    if not shutil.which(tool):
        pytest.skip("%s is not installed" % tool)
    installed = ("gzip", "pigz", "zstd") if tool != "gzip" else ("gzip", "zstd")
    comp = "zstd" if tool == "zstd" else "gzip"

    class Real(FakeModule):
        def get_bin_path(self, name, required=False):
            return shutil.which(name) if name in self.installed else None

    module = Real(installed)
    data = os.urandom(1000) * 50
    packed = subprocess.run(compression.compressor_argv(module, comp, threads=2), input=data, capture_output=True,
                            check=True).stdout
    path = tmp_path / "x"
    path.write_bytes(packed)
    assert compression.detect(str(path))[1] == comp
    out = subprocess.run(compression.decompressor_argv(module, comp, str(path)), capture_output=True, check=True).stdout
    assert out == data


@pytest.mark.parametrize("name, content, expected", [
    ("backup_1.sql.gz", gzip.compress(b"SELECT 1;", mtime=0), ("plain", "gzip")),
    ("backup_1.sql.zst", compression.ZSTD_MAGIC + b"\0\0\0\0", ("plain", "zstd")),
    ("backup_1.dump.zst", compression.ZSTD_MAGIC + b"\0\0\0\0", ("custom", "zstd")),
    ("backup_1.dump.gz", gzip.compress(b"PGDMP", mtime=0), ("custom", "gzip")),
    ("backup_1.dump", b"PGDMP\x01\x0e\x00", ("custom", "none")),
    ("renamed.bin", b"PGDMP\x01\x0e\x00", ("custom", "none")),  # content decides, not the name
    ("backup_1.sql", b"--\n-- PostgreSQL database dump\n", ("plain", "none")),
    ("backup_1.sql", b"x", ("plain", "none")),
    ("backup_1.sql.gz", b"", (None, None)),  # empty
])
def test_detect_file(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_bytes(content)
    assert compression.detect(str(path)) == expected


def test_detect_directory(tmp_path):
    dump = tmp_path / "backup_1.dir"
    dump.mkdir()
    assert compression.detect(str(dump)) == (None, None)
    (dump / "toc.dat").write_bytes(b"PGDMP")
    assert compression.detect(str(dump)) == ("directory", "gzip")


def test_detect_missing_file(tmp_path):
    with pytest.raises(OSError):
        compression.detect(str(tmp_path / "missing"))


TRAILER = b"\n--\n-- PostgreSQL database dump complete\n--\n\n"


@pytest.mark.parametrize("block_size", [1, 3, 7, 64, 511, 512, 513, 4096])
def test_tail_keeper_finds_trailer_across_blocks(block_size):
    data = b"x" * 10000 + TRAILER
    keeper = compression.TailKeeper()
    for start in range(0, len(data), block_size):
        keeper(data[start:start + block_size])
    assert keeper.size == len(data)
    assert keeper.plain_dump_complete()
    assert len(keeper.tail) <= keeper.keep


@pytest.mark.parametrize("data", [
    b"",
    b"x" * 10000,
    TRAILER[:-20],                        # cut inside the trailer
    TRAILER + b"y" * 600,                 # trailer followed by more than the kept tail: not at the end
    b"-- PostgreSQL database dump\n",
])
def test_tail_keeper_incomplete(data):
    keeper = compression.TailKeeper()
    keeper(data)
    assert not keeper.plain_dump_complete()
    assert keeper.size == len(data)


# --- GzipTester: the gzip decompression test, in-process and streamed -------------------------------------
def _feed_all(tester, data, block_size):
    for start in range(0, len(data), block_size):
        tester.feed(data[start:start + block_size])


@pytest.mark.parametrize("block_size", [1, 10, 4096, 1 << 20])
def test_gzip_tester_accepts_a_complete_stream(block_size):
    payload = (b"INSERT INTO t VALUES (1);\n" * 2000) + TRAILER
    packed = gzip.compress(payload)
    keeper = compression.TailKeeper()
    tester = compression.GzipTester(keeper)
    _feed_all(tester, packed if block_size > 1 else packed[:2000], block_size)
    if block_size == 1:
        _feed_all(tester, packed[2000:], 997)
    assert tester.close() == len(payload)
    assert tester.compressed_size == len(packed)
    assert keeper.plain_dump_complete() and keeper.size == len(payload)


def test_gzip_tester_accepts_concatenated_members_like_gzip_t():
    packed = gzip.compress(b"first\n") + gzip.compress(b"second\n")
    sink = []
    tester = compression.GzipTester(sink.append)
    _feed_all(tester, packed, 7)
    assert tester.close() == len(b"first\nsecond\n")
    assert b"".join(sink) == b"first\nsecond\n"


@pytest.mark.parametrize("cut", [1, 8, 100, -1, -4, -8])
def test_gzip_tester_refuses_a_truncated_stream(cut):
    packed = gzip.compress(os.urandom(5000) + TRAILER)
    tester = compression.GzipTester()
    with pytest.raises(compression.DecompressionError):
        tester.feed(packed[:cut])
        tester.close()


@pytest.mark.parametrize("where", [0.3, 0.5, 0.9, -6])
def test_gzip_tester_refuses_a_damaged_stream(where):
    packed = bytearray(gzip.compress(b"".join(b"row %d\n" % i for i in range(20000))))
    index = int(len(packed) * where) if where > 0 else len(packed) + where  # -6: inside the CRC-32 trailer
    packed[index] ^= 0xFF
    tester = compression.GzipTester()
    with pytest.raises(compression.DecompressionError):
        _feed_all(tester, bytes(packed), 4096)
        tester.close()


def test_gzip_tester_refuses_trailing_garbage_and_non_gzip():
    tester = compression.GzipTester()
    with pytest.raises(compression.DecompressionError):
        tester.feed(gzip.compress(b"ok") + b"garbage after the member")
        tester.close()
    with pytest.raises(compression.DecompressionError):
        compression.GzipTester().feed(b"-- PostgreSQL database dump\n")


def test_gzip_tester_empty_stream():
    with pytest.raises(compression.DecompressionError, match="no gzip data"):
        compression.GzipTester().close()


def test_gzip_tester_bounded_output_blocks():
    """A highly compressible stream never decompresses into one huge block (constant memory)."""
    packed = gzip.compress(b"\0" * (20 * 1024 * 1024))
    sizes = []
    tester = compression.GzipTester(lambda block: sizes.append(len(block)), out_chunk=65536)
    tester.feed(packed)
    assert tester.close() == 20 * 1024 * 1024
    assert max(sizes) <= 65536


def test_gzip_tester_agrees_with_pigz_output(tmp_path):
    if not shutil.which("pigz"):
        pytest.skip("pigz is not installed")
    data = os.urandom(200000) * 3
    packed = subprocess.run(["pigz", "-p", "2", "-c"], input=data, capture_output=True, check=True).stdout
    tester = compression.GzipTester()
    _feed_all(tester, packed, 65536)
    assert tester.close() == len(data)
