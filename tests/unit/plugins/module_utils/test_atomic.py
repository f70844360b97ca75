# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of plugins/module_utils/atomic.py: temporary name, fsync, rename; cleanup of dead runs."""

from __future__ import annotations

import datetime
import json
import os
import stat
import subprocess
import sys
import time

import pytest

from ansible_collections.atlasia.dr.plugins.module_utils import atomic, naming

NAME = "backup_20261126_020005.sql.gz"


def _hidden(directory):
    return sorted(name for name in os.listdir(directory) if name.startswith("."))


def _dead_pid():
    """PID of a process that has exited (and was reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temp_path_for_is_hidden_in_same_directory(tmp_path):
    final = str(tmp_path / NAME)
    temp = atomic.temp_path_for(final)
    assert os.path.dirname(temp) == str(tmp_path)
    assert os.path.basename(temp).startswith("." + NAME + naming.TEMP_MARKER)
    assert naming.temp_owner_pid(temp) == os.getpid()


def test_temp_path_for_relative_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert os.path.dirname(atomic.temp_path_for(NAME)) == str(tmp_path)


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o644])
def test_atomic_file_success(tmp_path, mode):
    final = str(tmp_path / NAME)
    with atomic.atomic_file(final, mode=mode) as handle:
        assert handle.name != final
        assert not os.path.exists(final)  # nothing under the final name while writing
        assert os.path.dirname(handle.name) == str(tmp_path)
        handle.write(b"data")
    with open(final, "rb") as result:
        assert result.read() == b"data"
    assert stat.S_IMODE(os.stat(final).st_mode) == mode
    assert _hidden(tmp_path) == []


def test_atomic_file_mode_applies_despite_umask(tmp_path):
    old = os.umask(0o077)
    try:
        with atomic.atomic_file(str(tmp_path / NAME), mode=0o644) as handle:
            handle.write(b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(str(tmp_path / NAME)).st_mode) == 0o644


def test_atomic_file_temp_dir_keeps_the_final_folder_free_of_partial_files(tmp_path):
    # restic reads every file of its keys/ folder: the key being written stays in the repository's root
    keys = tmp_path / "keys"
    keys.mkdir()
    final = str(keys / NAME)
    with atomic.atomic_file(final, mode=0o400, temp_dir=str(tmp_path)) as handle:
        assert os.path.dirname(handle.name) == str(tmp_path) and naming.temp_owner_pid(handle.name) == os.getpid()
        assert os.listdir(str(keys)) == []
        handle.write(b"key")
    assert os.listdir(str(keys)) == [NAME] and _hidden(tmp_path) == []
    assert stat.S_IMODE(os.stat(final).st_mode) == 0o400
    with pytest.raises(RuntimeError):
        with atomic.atomic_file(str(keys / "other"), temp_dir=str(tmp_path)) as handle:
            handle.write(b"half")
            raise RuntimeError("boom")
    assert os.listdir(str(keys)) == [NAME] and _hidden(tmp_path) == []


@pytest.mark.parametrize("exc_type", [RuntimeError, KeyboardInterrupt, OSError])
def test_atomic_file_failure_leaves_nothing(tmp_path, exc_type):
    final = str(tmp_path / NAME)
    with pytest.raises(exc_type):
        with atomic.atomic_file(final) as handle:
            handle.write(b"half")
            raise exc_type("boom")
    assert os.listdir(str(tmp_path)) == []


def test_atomic_file_never_replaces_silently(tmp_path):
    final = str(tmp_path / NAME)
    with open(final, "wb") as handle:
        handle.write(b"old")
    with pytest.raises(FileExistsError):
        with atomic.atomic_file(final) as handle:
            handle.write(b"new")
    with open(final, "rb") as handle:
        assert handle.read() == b"old"
    assert _hidden(tmp_path) == []


def test_atomic_file_overwrite(tmp_path):
    final = str(tmp_path / NAME)
    with open(final, "wb") as handle:
        handle.write(b"old")
    with atomic.atomic_file(final, overwrite=True) as handle:
        handle.write(b"new")
    with open(final, "rb") as handle:
        assert handle.read() == b"new"


def test_atomic_file_refuses_existing_symlink(tmp_path):
    final = str(tmp_path / NAME)
    os.symlink(str(tmp_path / "nowhere"), final)
    with pytest.raises(FileExistsError):
        with atomic.atomic_file(final) as handle:
            handle.write(b"x")
    assert not os.path.exists(str(tmp_path / "nowhere"))


def test_write_text_and_write_json(tmp_path):
    text_path = str(tmp_path / "a.txt")
    atomic.write_text(text_path, u"ünï ✓\n", mode=0o644)
    with open(text_path, "rb") as handle:
        assert handle.read() == u"ünï ✓\n".encode("utf-8")
    atomic.write_text(text_path, "second\n")  # overwrite is the default for small metadata files
    with open(text_path) as handle:
        assert handle.read() == "second\n"
    assert stat.S_IMODE(os.stat(text_path).st_mode) == 0o600

    json_path = str(tmp_path / "backup_20261126_020005.json")
    when = datetime.datetime(2026, 11, 26, 2, 0, 5, tzinfo=datetime.timezone.utc)
    atomic.write_json(json_path, {"b": 1, "a": [1, 2], "when": when})
    with open(json_path) as handle:
        text = handle.read()
    assert text.endswith("\n")
    assert text.index('"a"') < text.index('"b"')  # sorted keys
    assert json.loads(text) == {"a": [1, 2], "b": 1, "when": str(when)}
    assert _hidden(tmp_path) == []


def test_commit_file_and_directory(tmp_path):
    temp_file = str(tmp_path / ".f.tmp")
    with open(temp_file, "wb") as handle:
        handle.write(b"x")
    atomic.commit(temp_file, str(tmp_path / "f"))
    assert os.path.isfile(str(tmp_path / "f")) and not os.path.exists(temp_file)

    temp_dir = tmp_path / ".d.tmp"
    (temp_dir / "sub").mkdir(parents=True)
    (temp_dir / "sub" / "x.dat").write_bytes(b"1")
    atomic.commit(str(temp_dir), str(tmp_path / "d"))
    assert (tmp_path / "d" / "sub" / "x.dat").read_bytes() == b"1"

    (tmp_path / ".e.tmp").mkdir()
    with pytest.raises(FileExistsError):
        atomic.commit(str(tmp_path / ".e.tmp"), str(tmp_path / "d"))
    assert (tmp_path / "d" / "sub" / "x.dat").exists()


def test_remove_path(tmp_path):
    (tmp_path / "d" / "s").mkdir(parents=True)
    (tmp_path / "d" / "s" / "f").write_bytes(b"x")
    (tmp_path / "f").write_bytes(b"x")
    atomic.remove_path(str(tmp_path / "d"))
    atomic.remove_path(str(tmp_path / "f"))
    atomic.remove_path(str(tmp_path / "gone"))  # already gone is not an error
    assert os.listdir(str(tmp_path)) == []


def test_remove_path_symlink_to_directory_removes_only_the_link(tmp_path):
    (tmp_path / "target").mkdir()
    (tmp_path / "target" / "keep").write_bytes(b"x")
    os.symlink(str(tmp_path / "target"), str(tmp_path / "link"))
    atomic.remove_path(str(tmp_path / "link"))
    assert (tmp_path / "target" / "keep").exists()
    assert not os.path.lexists(str(tmp_path / "link"))


def test_cleanup_stale_temps(tmp_path):
    dead = _dead_pid()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        names = {
            "dead_file": ".%s.tmp-%d-0a1b2c3d" % (NAME, dead),
            "dead_dir": ".backup_20261126_020005.dir.tmp-%d-0a1b2c3e" % dead,
            "live": ".%s.tmp-%d-0a1b2c3f" % (NAME, live.pid),
            "ours": ".%s.tmp-%d-0a1b2c40" % (NAME, os.getpid()),
            "final": NAME,
            "other_hidden": ".keep-me",
            "lookalike": ".%s.tmp-%d-zz" % (NAME, dead),
        }
        for key, name in names.items():
            if key == "dead_dir":
                (tmp_path / name).mkdir()
                (tmp_path / name / "toc.dat").write_bytes(b"x")
            else:
                (tmp_path / name).write_bytes(b"x")
        removed = atomic.cleanup_stale_temps(str(tmp_path))
        assert sorted(removed) == sorted(str(tmp_path / names[k]) for k in ("dead_file", "dead_dir"))
        assert sorted(os.listdir(str(tmp_path))) == sorted(
            names[k] for k in ("live", "ours", "final", "other_hidden", "lookalike"))
    finally:
        live.kill()
        live.wait()


def test_cleanup_stale_temps_missing_directory(tmp_path):
    assert atomic.cleanup_stale_temps(str(tmp_path / "missing")) == []


def test_fsync_helpers(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "f").write_bytes(b"x")
    atomic.fsync_dir(str(tmp_path))
    atomic.fsync_tree(str(tmp_path / "a"))


def test_cleanup_stale_temps_treats_zombie_owner_as_dead(tmp_path):
    """A killed run that nobody reaped yet (a zombie) no longer writes: its temporaries are stale."""
    if not os.path.exists("/proc/self/stat"):
        pytest.skip("needs /proc")
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        for _attempt in range(100):  # wait until it has exited, without reaping it
            with open("/proc/%d/stat" % zombie.pid) as handle:
                if handle.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
            time.sleep(0.05)
        else:
            pytest.fail("the child did not exit")
        stale = tmp_path / (".%s.tmp-%d-0a1b2c3d" % (NAME, zombie.pid))
        stale.write_bytes(b"x")
        assert atomic.cleanup_stale_temps(str(tmp_path)) == [str(stale)]
    finally:
        zombie.wait()


# --- parse_mode: the one parser of the modules' ``mode`` option -----------------------------------------

@pytest.mark.parametrize("value, expected", [("0600", 0o600), ("600", 0o600), (" 0644 ", 0o644), ("2750", 0o2750),
                                             ("07777", 0o7777), (0o640, 0o640), (384, 0o600), (0, 0)])
def test_parse_mode(value, expected):
    assert atomic.parse_mode(value) == expected


@pytest.mark.parametrize("value", ["rw", "rw-all", "0800", "u+rw", "", "12", "0o600", "-600", None, True, False,
                                   -1, 0o17777])
def test_parse_mode_rejects(value):
    with pytest.raises(ValueError, match="mode"):
        atomic.parse_mode(value)


def test_archive_uses_the_one_parser():
    from ansible_collections.atlasia.dr.plugins.module_utils import archive

    assert archive.parse_mode is atomic.parse_mode


def test_image_bundle_uses_the_one_parser():
    from ansible_collections.atlasia.dr.plugins.modules import image_bundle

    assert image_bundle._mode("0640") == 0o640
    with pytest.raises(image_bundle.BundleError, match="octal file mode"):
        image_bundle._mode("0o640")


def test_vault_snapshot_uses_the_one_parser():
    from ansible_collections.atlasia.dr.plugins.modules import vault_snapshot

    failures = []

    class Module(object):
        def fail_json(self, **kwargs):
            failures.append(kwargs)
            raise SystemExit(1)

    assert vault_snapshot._file_mode(Module(), "0640") == 0o640
    with pytest.raises(SystemExit):
        vault_snapshot._file_mode(Module(), "7")
    assert failures[0]["error_kind"] == "invalid_argument" and "octal file mode" in failures[0]["msg"]
