# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Integration tests of dr_archive: the module run by the real ``ansible`` command on the real filesystem, with
the real GNU tar, pigz and zstd.

Results are checked on disk, with the system tools a person would use during an incident (``tar -t``,
``md5sum -c``, ``sha256sum -c``), not only through the module's return values.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import subprocess
import tarfile
import time

import pytest

from tests.support.ansible_run import ansible_env, run_module
from tests.support import REPO_ROOT, VENV_BIN, VENV_PYTHON

TS = "20261126_020000"
DAY = 86400


def rel(path):
    return str(path).lstrip("/")


def write(path, data=b"x", mode=None, mtime=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    if mode is not None:
        path.chmod(mode)
    if mtime is not None:
        os.utime(str(path), (mtime, mtime))
    return path


def snapshot(root):
    """Everything that must survive a round trip, per path relative to ``root``."""
    state = {}
    for directory, dirs, files in os.walk(str(root)):
        for name in dirs + files:
            path = os.path.join(directory, name)
            st = os.lstat(path)
            entry = dict(type=stat.S_IFMT(st.st_mode), uid=st.st_uid, gid=st.st_gid)
            if stat.S_ISLNK(st.st_mode):
                entry["link"] = os.readlink(path)
            else:
                entry["mode"] = oct(stat.S_IMODE(st.st_mode))
            if stat.S_ISREG(st.st_mode):
                entry.update(mtime=int(st.st_mtime), sha256=hashlib.sha256(open(path, "rb").read()).hexdigest(),
                             inode_group=st.st_nlink)
            state[os.path.relpath(path, str(root))] = entry
    return state


def tar_names(path):
    """Member names as GNU tar lists them (for names without control characters)."""
    out = subprocess.run(["tar", "--list", "--file", str(path)], check=True, capture_output=True).stdout
    return sorted(os.fsdecode(line).rstrip("/") for line in out.splitlines())


def python_names(path):
    """Member names read by Python's tarfile, an implementation independent of the module's (exact names)."""
    path = str(path)
    decompress = ["gzip", "-dc", path] if path.endswith(".gz") else ["zstd", "-qdc", path] if path.endswith(
        ".zst") else ["cat", path]
    proc = subprocess.Popen(decompress, stdout=subprocess.PIPE)
    with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
        names = sorted(member.name.rstrip("/") for member in tar)
    proc.stdout.close()
    assert proc.wait() == 0
    return names


@pytest.fixture
def app(tmp_path):
    """An application tree with everything tar must keep: modes, owners, links, odd names, empty dirs."""
    root = tmp_path / "srv" / "atlasia"
    write(root / ".env.prod", "DB_PASSWORD=s3cret\nJWT_SECRET=abc\n", 0o600)
    write(root / ".env", "MODE=prod\n", 0o640)
    write(root / "docker-compose.yml", "services:\n  db:\n    image: postgres:15\n")
    write(root / "bin" / "start.sh", "#!/bin/sh\necho start\n", 0o755)
    write(root / "config" / "application.properties", "server.port=8080\n")
    write(root / "data" / "uploads" / u"r\u00e9sum\u00e9 \u6587\u4ef6.pdf", os.urandom(50000))
    write(root / "data" / "uploads" / "with\nnewline.txt", "odd name\n")
    write(root / "data" / "uploads" / "-dash leading.txt", "dash\n")
    write(root / "data" / "uploads" / ("long-" + "n" * 200 + ".bin"), os.urandom(100))
    os.link(str(root / "data" / "uploads" / "-dash leading.txt"), str(root / "data" / "uploads" / "hardlink.txt"))
    (root / "data" / "empty").mkdir()
    (root / "data" / "private").mkdir(mode=0o700)
    os.chmod(str(root / "data" / "private"), 0o2750)
    write(root / "data" / "private" / "key.pem", "KEY\n", 0o400)
    os.symlink("../config/application.properties", str(root / "data" / "app.properties"))
    os.symlink("/nonexistent/target", str(root / "data" / "dangling"))
    os.chown(str(root / "config" / "application.properties"), 1234, 2345)
    os.lchown(str(root / "data" / "app.properties"), 1234, 2345)
    for path in (root / "docker-compose.yml", root / "data" / "uploads" / "-dash leading.txt"):
        os.utime(str(path), (1700000000, 1700000000))
    return root


@pytest.fixture
def dest(tmp_path):
    return tmp_path / "backups" / "daily"


def created(paths, dest, **extra):
    args = dict(paths=[str(p) for p in paths], prefix="config", dest=str(dest), timestamp=TS)
    args.update(extra)
    return run_module("dr_archive", args)


def extracted(src, target, check=False, **extra):
    args = dict(state="extracted", src=str(src), dest=str(target))
    args.update(extra)
    return run_module("dr_archive", args, check=check)


@pytest.mark.parametrize("comp, ext", [("gzip", "tar.gz"), ("zstd", "tar.zst"), ("none", "tar")])
def test_round_trip_keeps_contents_modes_owners_links_and_odd_names(app, dest, tmp_path, comp, ext):
    result = created([app], dest, compression=comp)
    assert not result.get("failed"), result.get("msg")
    name = "config_%s.%s" % (TS, ext)
    archive_path = dest / name
    assert result["path"] == str(archive_path) and result["changed"]
    assert sorted(os.listdir(str(dest))) == sorted([name, name + ".md5", name + ".sha256", "config_%s.json" % TS])
    assert stat.S_IMODE(os.stat(str(archive_path)).st_mode) == 0o600
    # the checksums verify with the standard tools, from the backup folder
    for tool, side in (("md5sum", ".md5"), ("sha256sum", ".sha256")):
        check = subprocess.run([tool, "-c", name + side], cwd=str(dest), capture_output=True, text=True,
                               check=False)
        assert check.returncode == 0 and check.stdout.strip() == "%s: OK" % name, check
    manifest = json.loads((dest / ("config_%s.json" % TS)).read_text())
    assert manifest["sha256"] == result["sha256"] == hashlib.sha256(archive_path.read_bytes()).hexdigest()
    assert manifest["files"] == result["files"] == 13 and result["directories"] == 7
    # exactly the tree, relative to /: names read back by Python's tarfile, count by GNU tar
    expected = sorted([rel(app)] + [rel(os.path.join(d, n)) for d, ds, fs in os.walk(str(app)) for n in ds + fs])
    assert python_names(archive_path) == expected
    assert len(tar_names(archive_path)) == len(expected) == 20

    target = tmp_path / "restore"
    result = extracted(archive_path, target)
    assert result["changed"] and result["written"] == 20 and result["checksums"] == {"md5": "ok", "sha256": "ok"}
    copy = target / rel(app)
    assert snapshot(copy) == snapshot(app)
    assert os.path.samefile(str(copy / "data" / "uploads" / "hardlink.txt"),
                            str(copy / "data" / "uploads" / "-dash leading.txt"))
    # a second extraction finds nothing to change
    again = extracted(archive_path, target)
    assert again["changed"] is False and again["written"] == 0 and not again.get("failed")


def test_configuration_globs_exclusions_and_missing_paths(app, dest):
    write(app / ".env.prod.bak", "old\n")
    write(app / "docker-compose.override.yml", "services: {}\n")
    result = created([app / ".env*", app / "docker-compose*.yml", app / "config", app / ".env.local"], dest,
                     exclude=["*.bak"])
    assert not result.get("failed"), result.get("msg")
    assert result["skipped_missing"] == [str(app / ".env.local")]
    assert any(".env.local" in w for w in result.get("warnings", []))
    assert result["omitted"]["excluded"] == 1
    assert tar_names(result["path"]) == sorted(rel(p) for p in (
        app / ".env", app / ".env.prod", app / "docker-compose.override.yml", app / "docker-compose.yml",
        app / "config", app / "config" / "application.properties"))
    assert json.loads((dest / ("config_%s.json" % TS)).read_text())["skipped_missing"] == [str(app / ".env.local")]


def test_missing_fail_and_nothing_matched_write_nothing(app, dest):
    result = created([app / ".env", app / "gone"], dest, missing="fail")
    assert result["failed"] and "missing=fail" in result["msg"] and str(app / "gone") in result["msg"]
    result = created([app / "*.nothing"], dest, missing="ignore")
    assert result["failed"] and "nothing to archive" in result["msg"]
    assert not dest.exists()


def test_logs_of_the_last_seven_days(tmp_path, dest):
    logs = tmp_path / "logs"
    now = time.time()
    write(logs / "app.log", "today\n", mtime=now - 600)
    write(logs / "app.log.3", "3 days\n", mtime=now - 3 * DAY)
    write(logs / "app.log.6", "6 days\n", mtime=now - 6.9 * DAY)
    write(logs / "app.log.8", "8 days\n", mtime=now - 8 * DAY)
    write(logs / "app.log.30", "30 days\n", mtime=now - 30 * DAY)
    write(logs / "archive" / "2026-10.log", "old\n", mtime=now - 40 * DAY)
    write(logs / "nginx" / "access.log", "recent\n", mtime=now - 2 * DAY)
    result = created([logs], dest, prefix="logs", max_age_days=7)
    assert not result.get("failed"), result.get("msg")
    assert tar_names(result["path"]) == sorted(rel(p) for p in (
        logs, logs / "app.log", logs / "app.log.3", logs / "app.log.6", logs / "nginx", logs / "nginx" / "access.log"))
    assert result["omitted"]["older"] == 3 and result["files"] == 4


def test_check_mode_reports_and_writes_nothing(app, dest):
    result = run_module("dr_archive", dict(paths=[str(app)], prefix="config", dest=str(dest), timestamp=TS),
                        check=True)
    assert result["changed"] and result["files"] == 13 and result["size"] == 0
    assert result["path"] == str(dest / ("config_%s.tar.gz" % TS))
    assert not dest.exists() and not dest.parent.exists()


def kill_tree(root_pid):
    """SIGKILL a process and all its descendants (Ansible's workers call setsid: a process group is not enough)."""
    for dummy in range(3):  # again, for processes started while killing
        parents = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open("/proc/%s/stat" % entry) as handle:
                        data = handle.read()
                except OSError:
                    continue
                parents[int(entry)] = int(data[data.rfind(")") + 2:].split()[1])
        family, frontier = {root_pid}, [root_pid]
        while frontier:
            children = [pid for pid, ppid in parents.items() if ppid in frontier and pid not in family]
            family.update(children)
            frontier = children
        for pid in family:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_killed_run_leaves_no_final_file(tmp_path, dest):
    big = tmp_path / "uploads"
    write(big / "blob.bin", os.urandom(96 * 1024 * 1024))
    args = dict(paths=[str(big)], prefix="uploads", dest=str(dest), timestamp=TS, compression_level=9,
                compression_threads=1)
    cmd = [str(VENV_BIN / "ansible"), "localhost", "-i", "localhost,", "-c", "local", "-m", "atlasia.dr.dr_archive",
           "-a", json.dumps(args), "-e", json.dumps({"ansible_python_interpreter": str(VENV_PYTHON)})]
    proc = subprocess.Popen(cmd, cwd=str(REPO_ROOT), env=ansible_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    temp = None
    deadline = time.time() + 60
    try:
        while time.time() < deadline and proc.poll() is None:
            temps = [n for n in (os.listdir(str(dest)) if dest.exists() else []) if ".tmp-" in n]
            if temps and os.path.getsize(str(dest / temps[0])) > 1024 * 1024:
                temp = temps[0]
                break
            time.sleep(0.02)
    finally:
        kill_tree(proc.pid)  # ansible, its worker, the module, tar and the compressor
        proc.wait()
    assert temp is not None, "the archive was not being written when expected"
    time.sleep(0.5)
    names = os.listdir(str(dest))
    assert [n for n in names if not n.startswith(".")] == [], names  # no archive, sidecar or manifest
    assert temp in names  # only the hidden temporary file of the killed run
    # the next run into the same folder removes it
    small = write(tmp_path / "small" / "f.txt", "x")
    result = created([small], dest, prefix="uploads", timestamp="20261126_030000")
    assert not result.get("failed"), result.get("msg")
    assert sorted(n for n in os.listdir(str(dest)) if n.startswith(".")) == []


def test_damaged_archive_is_refused_before_anything_is_touched(app, dest, tmp_path):
    result = created([app], dest)
    path = result["path"]
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0x55
    open(path, "wb").write(bytes(data))
    target = tmp_path / "restore"
    refused = extracted(path, target)
    assert refused["failed"] and refused["error_kind"] == "bad_archive"
    assert "SHA256 checksum mismatch" in refused["msg"] or "MD5 checksum mismatch" in refused["msg"]
    assert not target.exists()
    # without its sidecars, the damage is still found by reading the archive whole
    for side in (".md5", ".sha256"):
        os.unlink(path + side)
    refused = extracted(path, target)
    assert refused["failed"] and "cannot be read whole" in refused["msg"]
    assert not target.exists()


def test_restore_in_place_after_an_incident(app, dest):
    result = created([app / ".env*", app / "docker-compose.yml", app / "config"], dest)
    src = result["path"]
    os.unlink(str(app / ".env.prod"))
    write(app / "docker-compose.yml", "services: {broken: true}\n", mtime=1600000000)  # older than the archived
    write(app / ".env", "MODE=locally-edited\n", 0o640)
    os.utime(str(app / ".env"), (time.time() + 3600, time.time() + 3600))

    preview = extracted(src, "/", check=True, overwrite="older")
    assert preview["changed"] and sorted(preview["written_paths"]) == sorted(
        [str(app / ".env.prod"), str(app / "docker-compose.yml")])
    assert not (app / ".env.prod").exists()

    result = run_module("dr_archive", dict(state="extracted", src=src, overwrite="older", require_checksum=True))
    assert result["changed"] and result["dest"] == "/"
    assert (app / ".env.prod").read_text() == "DB_PASSWORD=s3cret\nJWT_SECRET=abc\n"
    assert stat.S_IMODE(os.stat(str(app / ".env.prod")).st_mode) == 0o600
    assert (app / "docker-compose.yml").read_text().startswith("services:\n  db:")
    assert (app / ".env").read_text() == "MODE=locally-edited\n"  # newer than the archived copy: kept
