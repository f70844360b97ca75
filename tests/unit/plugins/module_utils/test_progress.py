# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of plugins/module_utils/progress.py: the state file a module writes and the line printed from it."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from ansible_collections.atlasia.dr.plugins.module_utils import progress


class Clock(object):
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


def test_reporter_without_path_does_nothing(tmp_path):
    report = progress.Reporter(None)
    assert not report.enabled
    report.add(10)
    report(b"abc")
    report.write()
    assert report.done == 13
    assert list(tmp_path.iterdir()) == []


def test_reporter_writes_at_most_once_a_second(tmp_path):
    path = tmp_path / "progress.json"
    clock = Clock()
    report = progress.Reporter(str(path), total=4096, estimate=True, verb="written", clock=clock)
    report.add(100)
    assert not path.exists()  # less than a second since the start
    clock.now += 1.0
    report.add(100)
    state = json.loads(path.read_text())
    assert state["done"] == 200 and state["total"] == 4096 and state["estimate"] is True
    assert state["verb"] == "written" and state["started"] == 1000.0 and state["updated"] == 1001.0
    clock.now += 0.5
    report.add(100)
    assert json.loads(path.read_text())["done"] == 200  # not due yet
    clock.now += 0.6
    report.add(100)
    assert json.loads(path.read_text())["done"] == 400
    assert sorted(p.name for p in tmp_path.iterdir()) == ["progress.json"]  # no temporary file left


def test_reporter_turns_itself_off_when_it_cannot_write(tmp_path):
    clock = Clock()
    report = progress.Reporter(str(tmp_path / "missing" / "progress.json"), clock=clock)
    clock.now += 2
    report.add(1)  # must not raise
    assert not report.enabled
    clock.now += 2
    report.add(1)
    assert report.done == 2


@pytest.mark.parametrize("count, text", [
    (0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1288490188, "1.2 GiB"), (150 * 1024 ** 2, "150 MiB"),
    (5 * 1024 ** 5, "5.0 PiB"), (3 * 1024 ** 6, "3072 PiB"),
])
def test_human_bytes(count, text):
    assert progress.human_bytes(count) == text


@pytest.mark.parametrize("seconds, text", [(0, "0 s"), (26.4, "26 s"), (125, "2 min 5 s"), (7300, "2 h 1 min"),
                                           (-3, "0 s")])
def test_human_duration(seconds, text):
    assert progress.human_duration(seconds) == text


def state(done, updated, total=None, estimate=False, started=0.0, verb="written"):
    return {"done": done, "total": total, "estimate": estimate, "verb": verb, "started": started,
            "updated": updated, "pgid": 1}


def test_line_with_an_estimated_total():
    mib = 1024 ** 2
    line = progress.format_line("pg_dump_backup on db1", state(1200 * mib, 10.0, total=3380 * mib, estimate=True),
                                state(350 * mib, 0.0))
    assert line == "pg_dump_backup on db1: 1.2 GiB of about 3.3 GiB written, 85.0 MiB/s, about 26 s left"


def test_line_with_an_exact_total_and_the_rate_since_the_start():
    halfway = state(50 * 1024 ** 2, 5.0, total=100 * 1024 ** 2, verb="uploaded")
    line = progress.format_line("s3_backup_transfer on db1", halfway)
    assert line == "s3_backup_transfer on db1: 50.0 MiB of 100 MiB uploaded, 10.0 MiB/s, about 5 s left"


def test_line_without_total_or_rate():
    assert progress.format_line("x on h", state(0, 0.0)) == "x on h: 0 B written"
    assert progress.format_line("x on h", state(2048, 2.0)) == "x on h: 2.0 KiB written, 1.0 KiB/s"


def test_line_when_the_estimate_is_exceeded():
    line = progress.format_line("x on h", state(3000, 1.0, total=2000, estimate=True))
    assert line == "x on h: 2.9 KiB of about 2.0 KiB written, 2.9 KiB/s"


def test_state_file_is_world_readable_and_removed_by_close(tmp_path):
    path = tmp_path / "progress.json"
    clock = Clock()
    report = progress.Reporter(str(path), clock=clock)
    clock.now += 1
    report.add(5)
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    report.close()
    assert not path.exists()


def test_measured_progress_reports_the_counted_bytes_as_written(tmp_path):
    path = tmp_path / "progress.json"
    clock = Clock()
    plain = {"size": 0}
    report = progress.Reporter(str(path), total=10 * 1024 ** 2, estimate=True, verb="dumped", clock=clock,
                               measure=lambda: plain["size"])
    plain["size"] = 4 * 1024 ** 2
    clock.now += 2
    report.add(1024 ** 2)
    state = json.loads(path.read_text())
    assert (state["done"], state["written"]) == (4 * 1024 ** 2, 1024 ** 2)
    assert progress.format_line("pg_dump_backup on db1", state) == (
        "pg_dump_backup on db1: 4.0 MiB of about 10.0 MiB dumped, 2.0 MiB/s, about 3 s left, 1.0 MiB written")


def test_a_child_rides_in_the_parent_file_and_is_printed_after_it(tmp_path):
    path = tmp_path / "progress.json"
    clock = Clock()
    report = progress.Reporter(str(path), total=1000, verb="loaded", clock=clock)
    kid = report.child("safety dump", verb="dumped")
    assert kid.enabled
    kid.set_total(4096, estimate=True)
    clock.now += 1.0
    kid.add(1024)  # the child's write is the parent's file
    state = json.loads(path.read_text())
    assert state["done"] == 0 and state["also"][0]["label"] == "safety dump" and state["also"][0]["done"] == 1024
    report.add(500)
    clock.now += 1.0
    report.add(0)
    line = progress.format_line("pg_restore_db on db1", json.loads(path.read_text()), state)
    assert line.startswith("pg_restore_db on db1: 500 B of 1000 B loaded, ")
    assert "; safety dump: 1.0 KiB of about 4.0 KiB dumped" in line
    kid.close()
    assert progress.format_line("x", json.loads(path.read_text())).endswith("; safety dump: 1.0 KiB dumped, finished")
    assert path.exists()  # closing a child keeps the parent's file


def test_a_child_of_a_reporter_that_is_off_is_off():
    kid = progress.Reporter(None).child("safety dump")
    assert not kid.enabled
    kid.add(10)
    kid.close()
    assert kid.done == 10


def test_restart_begins_a_new_step(tmp_path):
    clock = Clock()
    report = progress.Reporter(str(tmp_path / "p.json"), total=10, verb="checked", clock=clock)
    report.add(10)
    clock.now += 5
    report.restart("loaded", 20)
    state = report.state()
    assert (state["done"], state["total"], state["verb"], state["started"]) == (0, 20, "loaded", clock.now)


def test_file_reads_follow_a_child_process_reading_its_stdin(tmp_path):
    src = tmp_path / "dump.sql"
    src.write_bytes(b"x" * (1 << 20))
    reads = progress.FileReads([str(src)])
    assert reads.total == 1 << 20 and reads() == 0
    with open(src, "rb") as handle:
        # reads 64 KiB of its stdin (the file), then waits for its stdin to be closed... it never is: killed
        proc = subprocess.Popen(["sh", "-c", "head -c 65536 >/dev/null; sleep 30"], stdin=handle)
    try:
        for dummy in range(500):
            if reads() == 65536:
                break
            time.sleep(0.01)
        assert reads() == 65536
    finally:
        proc.kill()
        proc.wait()
    assert reads() == 1 << 20  # seen open, now closed by every reader: read to its end


def test_file_reads_of_this_process_and_of_a_directory(tmp_path):
    folder = tmp_path / "dir"
    folder.mkdir()
    (folder / "a").write_bytes(b"a" * 100)
    (folder / "b").write_bytes(b"b" * 300)
    reads = progress.FileReads([str(folder)])
    assert reads.total == 400
    with open(folder / "b", "rb") as handle:
        handle.raw.read(120)
        assert reads() == 120
        handle.raw.read(1000)
        assert reads() == 300
    assert reads() == 300
    with open(folder / "a", "rb") as handle:
        handle.raw.read(10)
        assert reads() == 310


def test_watch_feeds_the_reporter_and_stops(tmp_path):
    path = tmp_path / "p.json"
    report = progress.Reporter(str(path), total=100, verb="decrypted")
    counts = iter(range(1, 1000))
    with progress.Watch(report, lambda: next(counts) * 10, every=0.01) as watch:
        for dummy in range(500):
            if path.exists():
                break
            watch._stop.wait(0.01)
    assert json.loads(path.read_text())["verb"] == "decrypted"
    seen = report.done
    watch._stop.wait(0.05)
    assert report.done == seen  # stopped with the block


def test_watch_does_nothing_when_progress_is_off():
    with progress.Watch(progress.Reporter(None), None) as watch:
        assert watch._thread is None
