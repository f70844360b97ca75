# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of plugins/module_utils/pipeline.py (run_pipeline, FeedPipeline) with real processes (sh, cat, gzip...)."""

from __future__ import annotations

import errno
import gzip
import os
import signal
import sys
import time

import pytest

from ansible_collections.atlasia.dr.plugins.module_utils.pipeline import FeedPipeline, PipelineError, run_pipeline

PY = sys.executable


def sh(script):
    return ["sh", "-c", script]


class Collect(object):
    def __init__(self):
        self.blocks = []

    def __call__(self, block):
        self.blocks.append(block)

    @property
    def data(self):
        return b"".join(self.blocks)


def test_single_stage_to_sink():
    sink = Collect()
    tails = run_pipeline([("echo", ["echo", "hello"])], sink=sink)
    assert sink.data == b"hello\n"
    assert tails == [""]


def test_three_stages_and_chunking():
    sink = Collect()
    size = 3 * 1024 * 1024 + 5
    run_pipeline([
        ("gen", [PY, "-c", "import sys; sys.stdout.buffer.write(b'a' * %d)" % size]),
        ("gzip", ["gzip", "-1", "-c"]),
        ("gunzip", ["gzip", "-d", "-c"]),
    ], sink=sink, chunk_size=65536)
    assert len(sink.data) == size
    assert set(sink.data) == {ord("a")}
    assert max(len(b) for b in sink.blocks) <= 65536


def test_stdin_path_feeds_first_stage(tmp_path):
    src = tmp_path / "in.gz"
    src.write_bytes(gzip.compress(b"line1\nline2\n"))
    sink = Collect()
    run_pipeline([("gzip -d", ["gzip", "-d", "-c"]), ("wc", ["wc", "-l"])], sink=sink, stdin_path=str(src))
    assert sink.data.strip() == b"2"


def test_without_sink_output_is_discarded():
    assert run_pipeline([("echo", sh("echo discarded; echo err >&2"))]) == ["err\n"]


def test_env_update_reaches_every_stage_without_argv():
    sink = Collect()
    argv1 = sh('printf "%s|" "$SECRET_FOR_TEST"')
    argv2 = sh('cat; printf "%s" "$SECRET_FOR_TEST"')
    run_pipeline([("one", argv1), ("two", argv2)], sink=sink, env_update={"SECRET_FOR_TEST": "s3cr3t", "NONE": None,
                                                                          "NUM": 5})
    assert sink.data == b"s3cr3t|s3cr3t"
    assert "s3cr3t" not in " ".join(argv1 + argv2)
    assert "SECRET_FOR_TEST" not in os.environ


def test_first_stage_failure_is_reported_even_when_last_stage_succeeds():
    """pg_dump | gzip in a shell reports gzip's status; here pg_dump's failure must win."""
    sink = Collect()
    with pytest.raises(PipelineError) as info:
        run_pipeline([("pg_dump", sh("echo partial; echo 'pg_dump: error: connection lost' >&2; exit 1")),
                      ("gzip", ["gzip", "-c"])], sink=sink)
    assert info.value.failures == [("pg_dump", 1, "pg_dump: error: connection lost\n")]
    assert "pg_dump failed (exit status 1): pg_dump: error: connection lost" in str(info.value)
    assert gzip.decompress(sink.data) == b"partial\n"  # gzip itself closed cleanly
    assert info.value.stderr == "pg_dump: error: connection lost\n"


def test_stage_killed_by_signal():
    with pytest.raises(PipelineError) as info:
        run_pipeline([("victim", sh("echo started; kill -9 $$")), ("cat", ["cat"])], sink=Collect())
    name, returncode, tail = info.value.failures[0]
    assert (name, returncode) == ("victim", -signal.SIGKILL)
    assert "victim failed (killed by signal 9)" in str(info.value)


def test_upstream_sigpipe_is_not_a_cause_when_downstream_failed():
    with pytest.raises(PipelineError) as info:
        run_pipeline([("yes", ["yes"]), ("reader", sh("head -c 10 >/dev/null; echo 'reader broke' >&2; exit 4"))],
                     sink=Collect())
    assert [(name, rc) for name, rc, tail in info.value.failures] == [("reader", 4)]


def test_upstream_sigpipe_without_downstream_failure_is_reported():
    """A stage that dies of SIGPIPE while the next one exited 0 lost data: that is a failure."""
    with pytest.raises(PipelineError) as info:
        run_pipeline([("yes", ["yes"]), ("head", ["head", "-c", "10"])], sink=Collect())
    assert [(name, rc) for name, rc, tail in info.value.failures] == [("yes", -signal.SIGPIPE)]


def test_every_failing_stage_is_named_in_order():
    with pytest.raises(PipelineError) as info:
        run_pipeline([("first", sh("echo one >&2; exit 2")), ("second", sh("cat >/dev/null; echo two >&2; exit 3"))],
                     sink=Collect())
    assert [(n, rc) for n, rc, t in info.value.failures] == [("first", 2), ("second", 3)]
    assert str(info.value).index("first failed") < str(info.value).index("second failed")


def test_error_message_keeps_last_three_stderr_lines_and_stderr_tail_is_bounded():
    script = "i=0; while [ $i -lt 2000 ]; do echo \"noise line $i\" >&2; i=$((i+1)); done; echo final >&2; exit 1"
    with pytest.raises(PipelineError) as info:
        run_pipeline([("noisy", sh(script))])
    message = str(info.value)
    assert message.endswith("noise line 1998 | noise line 1999 | final")
    assert len(info.value.failures[0][2]) <= 4000


def test_sink_error_kills_stages_and_is_the_cause():
    calls = []

    def sink(block):
        calls.append(len(block))
        raise OSError(errno.ENOSPC, "No space left on device")

    started = time.monotonic()
    with pytest.raises(PipelineError) as info:
        run_pipeline([("yes", ["yes"]), ("cat", ["cat"])], sink=sink)
    assert time.monotonic() - started < 10
    assert len(calls) == 1
    assert isinstance(info.value.cause, OSError) and info.value.cause.errno == errno.ENOSPC
    assert "No space left on device" in str(info.value)
    # the stages we killed ourselves are not reported as causes
    assert all(rc != -signal.SIGKILL for name, rc, tail in info.value.failures)


def test_sink_base_exception_propagates_as_is():
    def sink(block):
        raise KeyboardInterrupt()

    with pytest.raises(KeyboardInterrupt):
        run_pipeline([("yes", ["yes"])], sink=sink)


def test_missing_program_raises_and_stops_started_stages(tmp_path):
    marker = tmp_path / "marker"
    with pytest.raises(OSError):
        run_pipeline([("sleeper", sh("sleep 20; touch %s" % marker)),
                      ("missing", [str(tmp_path / "no-such-program")])], sink=Collect())
    time.sleep(0.2)
    assert not marker.exists()


def test_missing_stdin_path(tmp_path):
    with pytest.raises(OSError):
        run_pipeline([("cat", ["cat"])], stdin_path=str(tmp_path / "missing"))


def test_stdin_defaults_to_devnull():
    sink = Collect()
    run_pipeline([("cat", ["cat"])], sink=sink)  # would hang if stdin were inherited from a terminal
    assert sink.data == b""


def test_pipeline_error_without_stderr():
    error = PipelineError([("x", 3, "")])
    assert str(error) == "x failed (exit status 3)"
    assert error.stderr == ""
    assert str(PipelineError([], cause=OSError(28, "full"))) == "[Errno 28] full"


# --- FeedPipeline: stages fed by the caller (checks made while a file is written) ----------------------------
def test_feed_pipeline_passes_every_byte_through():
    sink = Collect()
    data = os.urandom(3 * 1024 * 1024 + 11)
    feeder = FeedPipeline([("gzip", ["gzip", "-1", "-c"]), ("gunzip", ["gzip", "-d", "-c"])], sink=sink,
                          chunk_size=65536)
    for start in range(0, len(data), 100000):
        assert feeder.feed(data[start:start + 100000]) is True
    assert feeder.accepting
    assert feeder.close() == ["", ""]
    assert sink.data == data
    assert max(len(b) for b in sink.blocks) <= 65536


def test_feed_pipeline_without_sink_discards_output():
    feeder = FeedPipeline([("cat", ["cat"])])
    feeder.feed(b"x" * 100000)
    assert feeder.close() == [""]


def test_feed_pipeline_env_update():
    sink = Collect()
    feeder = FeedPipeline([("env", sh('cat >/dev/null; printf "%s" "$FEED_SECRET"'))], sink=sink,
                          env_update={"FEED_SECRET": "s3cr3t"})
    feeder.feed(b"ignored")
    feeder.close()
    assert sink.data == b"s3cr3t"


def test_feed_pipeline_reports_a_failing_check():
    feeder = FeedPipeline([("gzip -d", ["gzip", "-d", "-c"])], sink=Collect())
    feeder.feed(b"this is not gzip data at all" * 1000)
    with pytest.raises(PipelineError) as info:
        feeder.close()
    assert info.value.failures[0][0] == "gzip -d"
    assert info.value.failures[0][1] != 0


def test_feed_pipeline_stage_that_stops_reading_early_never_blocks_the_writer():
    """A check that fails mid-stream stops reading: feed() must not raise or hang; close() reports it."""
    feeder = FeedPipeline([("checker", sh("head -c 10 >/dev/null; echo 'checker: bad header' >&2; exit 3"))])
    block = b"y" * 65536
    started = time.monotonic()
    results = [feeder.feed(block) for _index in range(200)]  # far more than a pipe buffer holds
    assert time.monotonic() - started < 20
    assert results[-1] is False and not feeder.accepting
    with pytest.raises(PipelineError) as info:
        feeder.close()
    assert [(n, rc) for n, rc, t in info.value.failures] == [("checker", 3)]
    assert "checker: bad header" in str(info.value)


def test_feed_pipeline_sink_error_is_the_cause():
    def sink(block):
        raise OSError(errno.ENOSPC, "No space left on device")

    feeder = FeedPipeline([("cat", ["cat"])], sink=sink)
    for _index in range(50):
        if not feeder.feed(b"z" * 65536):
            break
    with pytest.raises(PipelineError) as info:
        feeder.close()
    assert isinstance(info.value.cause, OSError)


def test_feed_pipeline_abort_kills_every_stage(tmp_path):
    marker = tmp_path / "finished"
    feeder = FeedPipeline([("cat", ["cat"]), ("slow", sh("cat >/dev/null; sleep 20; touch %s" % marker))])
    feeder.feed(b"partial")
    started = time.monotonic()
    feeder.abort()
    assert time.monotonic() - started < 10
    time.sleep(0.2)
    assert not marker.exists()


def test_feed_pipeline_missing_program(tmp_path):
    with pytest.raises(OSError):
        FeedPipeline([("cat", ["cat"]), ("missing", [str(tmp_path / "no-such-program")])])
