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
import stat
import subprocess
import tarfile
import time

import pytest

from tests.support.ansible_run import ansible_env, run_module
from tests.support.process import kill_tree
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
    os.symlink("../nonexistent/target", str(root / "data" / "dangling"))  # absolute targets: in place, below
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
    # absolute link targets are kept verbatim; restored in place (dest /), they point where they pointed
    os.symlink(str(app / "config" / "application.properties"), str(app / "config" / "current.properties"))
    os.symlink("/nonexistent/target", str(app / "config" / "dangling"))
    result = created([app / ".env*", app / "docker-compose.yml", app / "config"], dest)
    src = result["path"]
    os.unlink(str(app / ".env.prod"))
    os.unlink(str(app / "config" / "current.properties"))
    os.unlink(str(app / "config" / "dangling"))
    write(app / "docker-compose.yml", "services: {broken: true}\n", mtime=1600000000)  # older than the archived
    write(app / ".env", "MODE=locally-edited\n", 0o640)
    os.utime(str(app / ".env"), (time.time() + 3600, time.time() + 3600))

    preview = extracted(src, "/", check=True, overwrite="older")
    assert preview["changed"] and sorted(preview["written_paths"]) == sorted(
        [str(app / ".env.prod"), str(app / "docker-compose.yml"), str(app / "config" / "current.properties"),
         str(app / "config" / "dangling")])
    assert not (app / ".env.prod").exists()

    result = run_module("dr_archive", dict(state="extracted", src=src, overwrite="older", require_checksum=True))
    assert result["changed"] and result["dest"] == "/"
    assert (app / ".env.prod").read_text() == "DB_PASSWORD=s3cret\nJWT_SECRET=abc\n"
    assert stat.S_IMODE(os.stat(str(app / ".env.prod")).st_mode) == 0o600
    assert (app / "docker-compose.yml").read_text().startswith("services:\n  db:")
    assert (app / ".env").read_text() == "MODE=locally-edited\n"  # newer than the archived copy: kept
    assert os.readlink(str(app / "config" / "current.properties")) == str(app / "config" / "application.properties")
    assert os.readlink(str(app / "config" / "dangling")) == "/nonexistent/target"


# --- nothing is written outside the destination, through links ---------------------------------------------

def gnu_tar(stage, archive_path, names, delete=()):
    """A real archive made by GNU tar from the tree ``stage`` (members relative to it), as an attacker or a
    damaged backup would hand it over; ``delete`` removes members afterwards (a hard link left without its
    target)."""
    subprocess.run(["tar", "--create", "--file", str(archive_path), "--directory", str(stage), "--format=posix",
                    "--no-recursion"] + list(names), check=True)
    for name in delete:
        subprocess.run(["tar", "--delete", "--file", str(archive_path), name], check=True)
    return archive_path


def tree_of(root):
    """Every path under ``root`` (links not followed), relative to it."""
    return sorted(os.path.relpath(os.path.join(d, n), str(root)) for d, ds, fs in os.walk(str(root)) for n in ds + fs)


@pytest.fixture
def outside(tmp_path):
    """A directory next to the destination, with a passwd-like file: nothing may ever appear in it."""
    path = tmp_path / "outside"
    write(path / "passwd", "root:x:0:0:root:/root:/bin/bash\n", 0o644)
    return path


def assert_untouched(outside):
    assert tree_of(outside) == ["passwd"]
    assert os.stat(str(outside / "passwd")).st_nlink == 1
    assert (outside / "passwd").read_text() == "root:x:0:0:root:/root:/bin/bash\n"


def test_a_link_from_one_archive_and_a_file_through_it_from_the_next(tmp_path, outside):
    """The attack: the first archive holds uploads/link -> outside, the second uploads/link/pwned; each looks
    harmless alone; one restore extracts both into the same destination."""
    stage = tmp_path / "stage"
    write(stage / "uploads" / "readme.txt", "first\n")
    os.symlink(str(outside), str(stage / "uploads" / "link"))
    first = gnu_tar(stage, tmp_path / "first.tar", ["uploads", "uploads/readme.txt", "uploads/link"])
    os.unlink(str(stage / "uploads" / "link"))
    write(stage / "uploads" / "link" / "pwned", "pwned\n")
    second = gnu_tar(stage, tmp_path / "second.tar", ["uploads/link/pwned"])
    target = tmp_path / "restore"

    for check in (True, False):
        result = extracted(first, target, check=check)
        assert result["failed"] and result["error_kind"] == "unsafe_member" and not result.get("changed")
        assert ("the member uploads/link (a symbolic link to %s) resolves outside the destination %s"
                % (outside, target)) in result["msg"]
    assert not target.exists()  # nothing extracted from that archive, not even readme.txt
    result = extracted(second, target)  # alone, the second archive is harmless: it makes a directory
    assert not result.get("failed"), result.get("msg")
    assert not os.path.islink(str(target / "uploads" / "link"))
    assert (target / "uploads" / "link" / "pwned").read_text() == "pwned\n"
    assert_untouched(outside)


def test_a_link_already_on_disk_is_not_written_through(tmp_path, outside):
    """Whoever made it (an earlier restore, the application, an attacker): a link under the destination that
    leads out of it is refused, as a directory of the archive (kept by --keep-directory-symlink) or as a parent."""
    stage = tmp_path / "stage"
    write(stage / "uploads" / "keep.txt", "keep\n")
    write(stage / "uploads" / "link" / "pwned", "pwned\n")
    src = gnu_tar(stage, tmp_path / "uploads.tar",
                  ["uploads", "uploads/keep.txt", "uploads/link", "uploads/link/pwned"])
    target = tmp_path / "restore"
    (target / "uploads").mkdir(parents=True)
    os.symlink(str(outside), str(target / "uploads" / "link"))
    for check in (True, False):
        result = extracted(src, target, check=check)
        assert result["failed"] and result["error_kind"] == "unsafe_member" and not result.get("changed")
        assert ("the member uploads/link resolves outside the destination %s through the symbolic link "
                "uploads/link -> %s" % (target, outside)) in result["msg"]
    assert tree_of(target) == ["uploads", "uploads/link"] and os.path.islink(str(target / "uploads" / "link"))
    # the same with a relative link, and the file member alone (no directory member)
    os.unlink(str(target / "uploads" / "link"))
    os.symlink("../../outside", str(target / "uploads" / "link"))
    src = gnu_tar(stage, tmp_path / "file-only.tar", ["uploads/keep.txt", "uploads/link/pwned"])
    result = extracted(src, target)
    assert result["failed"] and ("the member uploads/link/pwned resolves outside the destination %s through the "
                                 "symbolic link uploads/link -> ../../outside" % target) in result["msg"]
    assert tree_of(target) == ["uploads", "uploads/link"]
    assert_untouched(outside)


def test_a_hard_link_to_a_file_outside_is_refused(tmp_path, outside):
    """uploads/pw is a hard link to uploads/etc/passwd, and uploads/etc leads out of the destination: the hard
    link would share the data (and the later writes) of the file outside."""
    stage = tmp_path / "stage"
    write(stage / "uploads" / "etc" / "passwd", "x\n")
    os.link(str(stage / "uploads" / "etc" / "passwd"), str(stage / "uploads" / "pw"))
    src = gnu_tar(stage, tmp_path / "hardlink.tar", ["uploads/etc/passwd", "uploads/pw"],
                  delete=["uploads/etc/passwd"])
    assert "uploads/pw link to uploads/etc/passwd" in subprocess.run(
        ["tar", "-tvf", str(src)], check=True, capture_output=True, text=True).stdout
    target = tmp_path / "restore"
    (target / "uploads").mkdir(parents=True)
    os.symlink(str(outside), str(target / "uploads" / "etc"))
    for check in (True, False):
        result = extracted(src, target, check=check)
        assert result["failed"] and result["error_kind"] == "unsafe_member"
        assert ("the member uploads/pw (a hard link to uploads/etc/passwd) resolves outside the destination %s "
                "through the symbolic link uploads/etc -> %s" % (target, outside)) in result["msg"]
    assert tree_of(target) == ["uploads", "uploads/etc"]
    assert_untouched(outside)


def test_links_that_stay_inside_are_restored(tmp_path, outside):
    """Links between entries of the destination still extract, and later archives write through them."""
    stage = tmp_path / "stage"
    write(stage / "uploads" / "a.pdf", "pdf\n")
    write(stage / "shared" / "readme.txt", "shared\n")
    os.symlink("a.pdf", str(stage / "uploads" / "latest"))
    os.symlink("../shared", str(stage / "uploads" / "docs"))
    first = gnu_tar(stage, tmp_path / "first.tar", ["uploads", "uploads/a.pdf", "uploads/latest", "uploads/docs",
                                                    "shared", "shared/readme.txt"])
    os.unlink(str(stage / "uploads" / "docs"))
    write(stage / "uploads" / "docs" / "manual.txt", "manual\n")
    second = gnu_tar(stage, tmp_path / "second.tar", ["uploads/docs/manual.txt"])
    target = tmp_path / "restore"
    preview = extracted(first, target, check=True)
    assert preview["changed"] and preview["written"] == 6 and not target.exists()
    for src in (first, second):
        result = extracted(src, target)
        assert result["changed"] and not result.get("failed"), result.get("msg")
    assert os.readlink(str(target / "uploads" / "latest")) == "a.pdf"
    assert (target / "uploads" / "latest").read_text() == "pdf\n"
    assert os.readlink(str(target / "uploads" / "docs")) == "../shared"
    assert (target / "shared" / "manual.txt").read_text() == "manual\n"  # through the link, inside
    assert extracted(first, target)["changed"] is False  # the second run finds nothing to change
    assert_untouched(outside)
