# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of plugins/module_utils/artifact.py: the one writer of an artifact and the common manifest."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import stat
import time

import pytest

from ansible_collections.atlasia.dr.plugins.module_utils import artifact, atomic, checksum

NAME = "backup_20261126_020005.sql.gz"
MANIFEST = "backup_20261126_020005.json"
STARTED = datetime.datetime(2026, 11, 26, 2, 0, 5, tzinfo=datetime.timezone.utc)


def _digests(data):
    return dict((algo, hashlib.new(algo, data).hexdigest()) for algo in ("md5", "sha256"))


def _manifest(out):
    return artifact.base_manifest(out.name, "test", "atlasia.dr.test", out.size, out.digests, STARTED, time.time(),
                                  extra="value")


def _read(path):
    with open(path, "rb") as handle:
        return handle.read()


def test_commit_writes_artifact_sidecars_and_manifest(tmp_path):
    final = str(tmp_path / NAME)
    with artifact.Writer(final, manifest_path=str(tmp_path / MANIFEST), manifest=_manifest) as out:
        assert os.path.dirname(out.temp_path) == str(tmp_path)
        assert os.path.basename(out.temp_path).startswith("." + NAME)
        out.write(b"hello ")
        out.write(b"world")
        assert not os.path.exists(final)
    data = b"hello world"
    digests = _digests(data)
    assert _read(final) == data
    assert sorted(os.listdir(str(tmp_path))) == sorted([NAME, NAME + ".md5", NAME + ".sha256", MANIFEST])
    assert _read(final + ".sha256").decode() == "%s  %s\n" % (digests["sha256"], NAME)
    assert _read(final + ".md5").decode() == "%s  %s\n" % (digests["md5"], NAME)
    assert checksum.verify_sidecars(final, required=True)[0] == {"md5": "ok", "sha256": "ok"}
    with open(str(tmp_path / MANIFEST)) as handle:
        manifest = json.load(handle)
    assert manifest == out.manifest
    assert manifest["artifact"] == NAME and manifest["type"] == "test" and manifest["tool"] == "atlasia.dr.test"
    assert manifest["size"] == len(data) and manifest["md5"] == digests["md5"]
    assert manifest["sha256"] == digests["sha256"] and manifest["extra"] == "value"
    assert manifest["host"] == platform.node() and manifest["started"] == STARTED.isoformat()
    assert out.digests == digests and out.size == len(data)
    assert stat.S_IMODE(os.stat(final).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(str(tmp_path / MANIFEST)).st_mode) == 0o644
    assert stat.S_IMODE(os.stat(final + ".sha256").st_mode) == 0o644


def test_base_manifest_holds_the_common_fields():
    t0 = time.time() - 2
    finished = STARTED + datetime.timedelta(seconds=3)
    manifest = artifact.base_manifest(NAME, "postgresql", "atlasia.dr.pg_dump_backup", 12,
                                      dict(md5="m", sha256="s"), STARTED, t0, finished=finished, kind="full")
    assert set(manifest) == set(["artifact", "type", "size", "md5", "sha256", "started", "finished", "duration",
                                 "host", "tool", "kind"])
    assert manifest["finished"] == finished.isoformat() and manifest["kind"] == "full"
    assert 2 <= manifest["duration"] < 60


@pytest.mark.parametrize("exc_type", [RuntimeError, KeyboardInterrupt, OSError, SystemExit])
def test_failure_in_the_middle_leaves_nothing(tmp_path, exc_type):
    final = str(tmp_path / NAME)
    aborted = []
    with pytest.raises(exc_type):
        with artifact.Writer(final, manifest_path=str(tmp_path / MANIFEST), manifest=_manifest) as out:
            out.on_failure(lambda: aborted.append(True))
            out.write(b"half")
            raise exc_type("boom")
    assert os.listdir(str(tmp_path)) == []
    assert aborted == [True]


@pytest.mark.parametrize("step", ["write_json", "commit"])
def test_failure_after_the_sidecars_removes_them_and_the_manifest(tmp_path, monkeypatch, step):
    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic, step, boom)
    with pytest.raises(OSError):
        with artifact.Writer(str(tmp_path / NAME), manifest_path=str(tmp_path / MANIFEST), manifest=_manifest) as out:
            out.write(b"data")
    assert os.listdir(str(tmp_path)) == []


def test_verification_hook_runs_on_the_written_temporary_file_before_the_rename(tmp_path):
    final = str(tmp_path / NAME)
    seen = {}

    def verify(out):
        seen["content"] = _read(out.temp_path)  # flushed: the hook reads what was written
        seen["final exists"] = os.path.exists(final)
        seen["sidecar exists"] = os.path.exists(final + ".sha256")
        return "verified"

    def manifest(out):
        seen["verified"] = out.verified
        return _manifest(out)

    with artifact.Writer(final, manifest_path=str(tmp_path / MANIFEST), verify=verify, manifest=manifest) as out:
        out.write(b"payload")
    assert seen == {"content": b"payload", "final exists": False, "sidecar exists": False, "verified": "verified"}


def test_verification_hook_failure_leaves_nothing(tmp_path):
    def verify(out):
        raise ValueError("damaged")

    with pytest.raises(ValueError, match="damaged"):
        with artifact.Writer(str(tmp_path / NAME), manifest_path=str(tmp_path / MANIFEST), verify=verify,
                             manifest=_manifest) as out:
            out.write(b"payload")
    assert os.listdir(str(tmp_path)) == []


def test_existing_final_name_is_never_replaced_and_keeps_its_sidecars(tmp_path):
    final = str(tmp_path / NAME)
    with artifact.Writer(final) as out:
        out.write(b"old")
    with pytest.raises(FileExistsError):
        with artifact.Writer(final, manifest_path=str(tmp_path / MANIFEST), manifest=_manifest) as out:
            out.write(b"new")
    assert _read(final) == b"old"
    # refused before the sidecars of the file that holds the name were touched; no temporary file is left
    assert sorted(os.listdir(str(tmp_path))) == [NAME, NAME + ".md5", NAME + ".sha256"]
    assert checksum.verify_sidecars(final, required=True)[0] == {"md5": "ok", "sha256": "ok"}


def test_overwrite_without_sidecars(tmp_path):
    final = str(tmp_path / NAME)
    with open(final, "wb") as handle:
        handle.write(b"old")
    with artifact.Writer(final, mode=0o640, overwrite=True, sidecars=False) as out:
        out.write(b"new")
    assert _read(final) == b"new"
    assert os.listdir(str(tmp_path)) == [NAME]
    assert stat.S_IMODE(os.stat(final).st_mode) == 0o640


@pytest.mark.parametrize("mode, expected", [(0o644, 0o644), ("0640", 0o640), ("600", 0o600)])
def test_mode_applied_despite_umask(tmp_path, mode, expected):
    old = os.umask(0o077)
    try:
        with artifact.Writer(str(tmp_path / NAME), mode=mode) as out:
            out.write(b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(str(tmp_path / NAME)).st_mode) == expected


def test_malformed_mode_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError):
        artifact.Writer(str(tmp_path / NAME), mode="rw-r--r--")
    assert os.listdir(str(tmp_path)) == []


def test_directory_artifact(tmp_path):
    final = str(tmp_path / "backup_20261126_020005.dir")
    with artifact.Writer(final, directory=True, manifest_path=str(tmp_path / MANIFEST), manifest=_manifest) as out:
        assert not os.path.exists(out.temp_path)  # the producer creates it
        os.mkdir(out.temp_path)
        with open(os.path.join(out.temp_path, "toc.dat"), "wb") as handle:
            handle.write(b"toc")
        with open(os.path.join(out.temp_path, "3001.dat.gz"), "wb") as handle:
            handle.write(b"rows")
    assert sorted(os.listdir(final)) == ["3001.dat.gz", "toc.dat"]
    assert stat.S_IMODE(os.stat(final).st_mode) == 0o700
    digests, size, texts = checksum.artifact_digests(final)
    assert _read(final + ".sha256").decode() == texts["sha256"]
    assert "backup_20261126_020005.dir/toc.dat" in texts["sha256"]
    assert out.digests == digests and out.size == size == 7
    assert checksum.verify_sidecars(final, required=True)[0] == {"md5": "ok", "sha256": "ok"}
    with open(str(tmp_path / MANIFEST)) as handle:
        assert json.load(handle)["sha256"] == digests["sha256"]


def test_directory_artifact_failure_leaves_nothing(tmp_path):
    final = str(tmp_path / "backup_20261126_020005.dir")
    with pytest.raises(RuntimeError):
        with artifact.Writer(final, directory=True, manifest_path=str(tmp_path / MANIFEST),
                             manifest=_manifest) as out:
            os.makedirs(os.path.join(out.temp_path, "sub"))
            raise RuntimeError("pg_dump failed")
    assert os.listdir(str(tmp_path)) == []


def test_recorded_digests_replace_the_hasher(tmp_path):
    final = str(tmp_path / NAME)
    with artifact.Writer(final) as out:
        out.handle.write(b"written elsewhere")
        out.record(_digests(b"written elsewhere"), 17)
    assert checksum.verify_sidecars(final, required=True)[0] == {"md5": "ok", "sha256": "ok"}


def test_order_fsync_then_sidecars_then_rename_then_directory_fsync(tmp_path, monkeypatch):
    final = str(tmp_path / NAME)
    calls = []
    real_fsync, real_rename, real_write_text = os.fsync, os.rename, atomic.write_text
    real_fsync_dir = atomic.fsync_dir

    def fsync(fd):
        calls.append(("fsync", os.readlink("/proc/self/fd/%d" % fd)))
        return real_fsync(fd)

    def rename(src, dst):
        calls.append(("rename", os.path.basename(dst)))
        return real_rename(src, dst)

    def write_text(path, *args, **kwargs):
        calls.append(("write", os.path.basename(path)))
        return real_write_text(path, *args, **kwargs)

    def fsync_dir(path):
        calls.append(("fsync_dir", path))
        return real_fsync_dir(path)

    with artifact.Writer(final, manifest_path=str(tmp_path / MANIFEST), manifest=_manifest) as out:
        out.write(b"data")
        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "rename", rename)
        monkeypatch.setattr(atomic, "write_text", write_text)
        monkeypatch.setattr(checksum, "write_text", write_text)
        monkeypatch.setattr(atomic, "fsync_dir", fsync_dir)
        temp = out.temp_path
    ours = [call for call in calls if call[0] in ("write", "fsync_dir") or call[1] in (temp, NAME, final)]
    assert ours[0] == ("fsync", temp)  # the data is on disk before anything names it
    names = [call[1] for call in ours if call[0] == "write"]
    assert sorted(names) == sorted([NAME + ".md5", NAME + ".sha256", MANIFEST])
    rename_at = ours.index(("rename", NAME))
    assert all(ours.index(("write", name)) < rename_at for name in names)
    assert ours[rename_at - 1] == ("fsync", temp)  # fsynced again just before the rename
    assert ours[rename_at + 1] == ("fsync_dir", str(tmp_path))  # the rename is made durable


def test_write_stream(tmp_path):
    final = str(tmp_path / NAME)
    digests, size, result = artifact.write_stream(final, lambda sink: (sink(b"abc"), "done")[1])
    assert (digests, size, result) == (_digests(b"abc"), 3, "done")
    assert checksum.verify_sidecars(final, required=True)[0] == {"md5": "ok", "sha256": "ok"}


def test_write_stream_verification_failure_keeps_the_name_free(tmp_path):
    final = str(tmp_path / NAME)

    def verify(out):
        if out.digests["sha256"] != "expected":
            raise ValueError("mismatch")

    with pytest.raises(ValueError):
        artifact.write_stream(final, lambda sink: sink(b"abc"), verify=verify)
    assert os.listdir(str(tmp_path)) == []


def test_remove_takes_the_artifact_its_sidecars_and_its_manifest(tmp_path):
    final = str(tmp_path / NAME)
    with artifact.Writer(final, manifest_path=str(tmp_path / MANIFEST), manifest=_manifest) as out:
        out.write(b"data")
    (tmp_path / "other.txt").write_text("kept")
    artifact.remove(final, str(tmp_path / MANIFEST))
    assert os.listdir(str(tmp_path)) == ["other.txt"]
    artifact.remove(final, str(tmp_path / MANIFEST))  # already gone: not an error


def test_prepare_creates_dest_and_removes_dead_runs_temporaries(tmp_path):
    dest = tmp_path / "new" / "dest"
    artifact.prepare(str(dest))
    assert stat.S_IMODE(os.stat(str(dest)).st_mode) == 0o700
    stale = dest / (".%s.tmp-999999999-0123abcd" % NAME)
    stale.write_bytes(b"x")
    artifact.prepare(str(dest))
    assert os.listdir(str(dest)) == []
