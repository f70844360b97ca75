# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of dr_archive and module_utils/archive.py.

Plain functions (selection, globs, exclusions, the age filter, tar listing parsing, the "file changed as we read
it" classification) are tested directly. ``main()`` is driven with ``patch_module_args`` on trees in
``tmp_path`` with the real GNU tar and compressors (fast: a few files each); failures of tar and of the
verification are injected by patching the stages. Real Ansible runs are in tests/integration/test_dr_archive.py.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import stat
import subprocess
import tarfile
import time

import pytest
from ansible.module_utils.common import warnings as ansible_warnings

from tests.support.modules import run_module, warning_texts as warnings
from ansible_collections.atlasia.dr.plugins.module_utils import archive
from ansible_collections.atlasia.dr.plugins.module_utils.pipeline import PipelineError
from ansible_collections.atlasia.dr.plugins.modules import dr_archive

TS = "20261126_020005"
DAY = 86400


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    """Each module run is a new process in real life: no warning carried over from an earlier test."""
    monkeypatch.setattr(ansible_warnings, "_global_warnings", {})


def run_main(args, capsys, check_mode=False):
    return run_module(dr_archive.main, args, capsys, check_mode=check_mode)


def listing(directory):
    return sorted(os.listdir(str(directory))) if os.path.isdir(str(directory)) else []


def write(path, text="x", mode=None, mtime=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if mode is not None:
        path.chmod(mode)
    if mtime is not None:
        os.utime(str(path), (mtime, mtime))
    return path


def rel(path):
    return str(path).lstrip("/")


@pytest.fixture
def tree(tmp_path):
    """An application directory: env files, compose files, config, an empty dir, a link and a socket."""
    app = tmp_path / "app"
    write(app / ".env.prod", "DB_PASSWORD=s3cret\n", 0o600)
    write(app / ".env", "MODE=dev\n", 0o640)
    write(app / "docker-compose.yml", "services: {}\n")
    write(app / "docker-compose.prod.yml", "services: {db: {}}\n")
    write(app / "config" / "application.properties", "server.port=8080\n")
    write(app / "config" / "application.properties.bak", "old\n")
    (app / "config" / "empty").mkdir()
    os.symlink("../.env.prod", str(app / "config" / "env-link"))
    return app


@pytest.fixture
def dest(tmp_path):
    return tmp_path / "backups"


# --- plain functions ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [("0600", 0o600), ("600", 0o600), ("0644", 0o644), ("2750", 0o2750),
                                             (0o640, 0o640), (384, 0o600)])
def test_parse_mode(value, expected):
    assert archive.parse_mode(value) == expected


@pytest.mark.parametrize("value", ["rw", "0800", "u+rw", "", "12", True, 0o17777])
def test_parse_mode_rejects(value):
    with pytest.raises(ValueError):
        archive.parse_mode(value)


@pytest.mark.parametrize("pattern, magic", [("/srv/app/.env*", True), ("/srv/app/[ab].yml", True),
                                            ("/srv/app/?.yml", True), ("/srv/app/.env.prod", False)])
def test_has_magic(pattern, magic):
    assert archive.has_magic(pattern) is magic


@pytest.mark.parametrize("path, patterns, expected", [
    ("/srv/app/a.tmp", ["*.tmp"], True),
    ("/srv/app/sub/a.tmp", ["*.tmp"], True),           # base-name patterns apply at any depth
    ("/srv/app/a.tmp.keep", ["*.tmp"], False),
    ("/srv/app/cache", ["/srv/app/cache"], True),      # a pattern with / matches the whole path
    ("/srv/other/cache", ["/srv/app/cache"], False),
    ("/srv/app/x/y/z.log", ["/srv/app/*.log"], True),  # in a full-path pattern, * matches / too
    ("/srv/app/Z.TMP", ["*.tmp"], False),              # case-sensitive
    ("/srv/app/a", [], False),
])
def test_excluded(path, patterns, expected):
    assert archive.excluded(path, patterns) is expected


def test_select_directory_tree(tree):
    sel = archive.select([str(tree)])
    names = [entry.path for entry in sel.entries]
    assert names[0] == str(tree)
    assert str(tree / "config" / "empty") in names  # empty directories are kept
    assert str(tree / "config" / "env-link") in names
    kinds = dict((entry.path, entry.kind) for entry in sel.entries)
    assert kinds[str(tree / "config" / "env-link")] == "link"
    assert kinds[str(tree / "config")] == "dir"
    assert sel.files == 7 and sel.directories == 3
    assert sel.total_bytes == sum(os.path.getsize(p) for p in names if kinds[p] == "file")
    assert names == sorted(names, key=lambda p: p.split("/"))  # deterministic, sorted walk
    assert sel.missing == [] and sel.names()[0] == rel(tree)


def test_select_globs_hidden_files_and_missing(tree):
    sel = archive.select([str(tree / ".env*"), str(tree / "docker-compose*.yml"), str(tree / "nope.yml"),
                          str(tree / "*.nothing")])
    assert [entry.path for entry in sel.entries] == [
        str(tree / ".env"), str(tree / ".env.prod"), str(tree / "docker-compose.prod.yml"),
        str(tree / "docker-compose.yml")]
    assert sel.missing == [str(tree / "nope.yml"), str(tree / "*.nothing")]


def test_select_star_does_not_match_dot_files(tree):
    sel = archive.select([str(tree / "*")])
    assert str(tree / ".env.prod") not in [entry.path for entry in sel.entries]


def test_select_recursive_glob(tree):
    sel = archive.select([str(tree / "**" / "*.properties")])
    assert [entry.path for entry in sel.entries] == [str(tree / "config" / "application.properties")]


def test_select_exclude_prunes_directories_and_counts(tree):
    sel = archive.select([str(tree)], exclude=["*.bak", str(tree / "config" / "empty")])
    names = [entry.path for entry in sel.entries]
    assert str(tree / "config" / "application.properties.bak") not in names
    assert str(tree / "config" / "empty") not in names
    assert sel.omitted["excluded"] == 2


def test_select_overlapping_paths_are_archived_once(tree):
    sel = archive.select([str(tree / ".env.prod"), str(tree), str(tree / "config")])
    names = [entry.path for entry in sel.entries]
    assert len(names) == len(set(names))
    assert names.count(str(tree / ".env.prod")) == 1


def test_select_literal_path_with_glob_characters(tmp_path):
    odd = write(tmp_path / "report[1].txt")
    write(tmp_path / "report1.txt")
    sel = archive.select([str(odd)])
    assert [entry.path for entry in sel.entries] == [str(odd)]


def test_select_max_age_days(tmp_path):
    now = time.time()
    logs = tmp_path / "logs"
    write(logs / "app.log", mtime=now - 3600)
    write(logs / "app.log.1", mtime=now - 3 * DAY)
    write(logs / "app.log.10", mtime=now - 10 * DAY)
    write(logs / "2026-10" / "old.log", mtime=now - 40 * DAY)  # a directory holding only old files is left out
    write(logs / "recent" / "new.log", mtime=now - 60)
    (logs / "emptydir").mkdir()
    sel = archive.select([str(logs)], max_age_days=7, now=now)
    assert [entry.path for entry in sel.entries] == [
        str(logs), str(logs / "app.log"), str(logs / "app.log.1"), str(logs / "recent"),
        str(logs / "recent" / "new.log")]
    assert sel.omitted["older"] == 2
    # without the filter everything is kept, empty directories too
    assert len(archive.select([str(logs)], now=now).entries) == 9


def test_select_max_age_zero_keeps_nothing_but_the_named_directory(tmp_path):
    write(tmp_path / "logs" / "a.log", mtime=time.time() - 10)
    sel = archive.select([str(tmp_path / "logs")], max_age_days=0)
    assert [entry.kind for entry in sel.entries] == ["dir"]


def test_select_skips_sockets(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(run / "app.sock"))
        sel = archive.select([str(run)])
    finally:
        sock.close()
    assert [entry.path for entry in sel.entries] == [str(run)]
    assert sel.omitted["sockets"] == 1


def test_select_reports_top_level_links_to_directories(tmp_path):
    (tmp_path / "real").mkdir()
    write(tmp_path / "real" / "f")
    os.symlink(str(tmp_path / "real"), str(tmp_path / "current"))
    sel = archive.select([str(tmp_path / "current")])
    assert [entry.kind for entry in sel.entries] == ["link"]
    assert sel.linked_dirs == [str(tmp_path / "current")]


@pytest.mark.parametrize("path, message", [("relative/path", "not absolute"), ("/", "whole filesystem")])
def test_select_rejects(path, message):
    with pytest.raises(archive.ArchiveError, match=message):
        archive.select([path])


@pytest.mark.parametrize("quoted, expected", [
    ("srv/app/.env", "srv/app/.env"),
    ("a\\\\b", "a\\b"),
    ('say \\"hi\\"', 'say "hi"'),
    ("line\\nbreak\\ttab", "line\nbreak\ttab"),
    ("\\303\\251t\\303\\251", u"\u00e9t\u00e9"),
    ("bad\\377byte", os.fsdecode(b"bad\xffbyte")),
])
def test_c_unquote(quoted, expected):
    assert archive.c_unquote(quoted) == expected


@pytest.mark.parametrize("perm, bits", [("rw-------", 0o600), ("rwxr-xr-x", 0o755), ("rwsr-x---", 0o4750),
                                        ("rwxr-S---", 0o2740), ("rwxrwxrwt", 0o1777), ("rw-r--r-T", 0o1644)])
def test_perm_bits(perm, bits):
    assert archive.perm_bits(perm) == bits


def test_parse_listing_all_member_kinds():
    text = "\n".join([
        'drwx------ 0/0               0 2026-11-26 02:00:00 "srv/app/"',
        '-rw-r----- 1000/1001        42 2026-11-26 02:00:01 "srv/app/a -> b"',
        'lrwxrwxrwx 0/0               0 2026-11-26 02:00:02 "srv/app/lnk" -> "../x -> y"',
        'hrw-r----- 0/0               0 2026-11-26 02:00:01 "srv/app/hard" link to "srv/app/a -> b"',
        '-rw-r--r-- 0/0               1 2026-11-26 02:00:03 "srv/\\303\\251 n\\nx"',
        'crw-rw-rw- 0/0             1,3 2026-11-26 02:00:04 "dev/null"',
        'prw-r--r-- 0/0               0 2026-11-26 02:00:05.123456789 "srv/fifo"',
    ]) + "\n"
    members = archive.parse_listing(text)
    assert [m.name for m in members] == ["srv/app", "srv/app/a -> b", "srv/app/lnk", "srv/app/hard",
                                         u"srv/\u00e9 n\nx", "dev/null", "srv/fifo"]
    assert [m.type for m in members] == ["d", "-", "l", "h", "-", "c", "p"]
    assert members[0].mode == 0o700 and members[1].mode == 0o640
    assert (members[1].uid, members[1].gid, members[1].size) == (1000, 1001, 42)
    assert members[1].mtime == 1795658401  # 2026-11-26 02:00:01 UTC
    assert members[1].mtime_ns == 1795658401 * 10 ** 9
    assert members[6].mtime_ns == 1795658405 * 10 ** 9 + 123456789
    assert members[2].link == "../x -> y" and members[3].link == "srv/app/a -> b"
    assert members[5].size == 0


def test_parse_listing_rejects_garbage():
    with pytest.raises(archive.ArchiveError, match="unexpected line"):
        archive.parse_listing("tar: something odd\n")


def _failure(*failures, **kwargs):
    return PipelineError(list(failures), kwargs.get("cause"))


EXITING = "tar: Exiting with failure status due to previous errors\n"


def _problems(changed=(), vanished=(), other=()):
    return dict(changed=list(changed), vanished=list(vanished), other=list(other))


@pytest.mark.parametrize("exc, expected", [
    (_failure(("tar", 1, "tar: srv/logs/app.log: file changed as we read it\n")), _problems(["srv/logs/app.log"])),
    (_failure(("tar", 1, "ged as we read it\ntar: a.log: file changed as we read it\n"
                         "tar: b.log: file changed as we read it\n")), _problems(["a.log", "b.log"])),
    (_failure(("tar", 1, "tar: a.log: File shrank by 10 bytes; padding with zeros\n")),
     _problems(other=["tar: a.log: File shrank by 10 bytes; padding with zeros"])),
    (_failure(("tar", 1, "")), _problems()),
    (_failure(("tar", 2, "tar: srv/logs/app.log.1: Cannot stat: No such file or directory\n"
                         "tar: srv/logs/app.log: file changed as we read it\n" + EXITING)),
     _problems(["srv/logs/app.log"], ["srv/logs/app.log.1"])),
    (_failure(("tar", 2, "tar: a.log: Cannot open: Permission denied\n" + EXITING)), None),
    (_failure(("tar", 2, "tar: a.log: Cannot stat: No such file or directory\n"
                         "tar: b.log: Cannot open: Permission denied\n" + EXITING)), None),
    (_failure(("tar", 2, "tar: a.log: file changed as we read it\n" + EXITING)), None),
    (_failure(("tar", 2, "at: No such file or directory\ntar: b: Cannot stat: No such file or directory\n")), None),
    (_failure(("tar", 2, "".join("tar: f%04d: Cannot stat: No such file or directory\n" % i for i in range(90)))),
     None),  # cut error output: other errors may be hidden
    (_failure(("tar", 1, "tar: a: file changed as we read it\n"), ("pigz", 1, "pigz: write error\n")), None),
    (_failure(("pigz", 1, "x: file changed as we read it\n")), None),
    (_failure(("tar", 1, "tar: a: file changed as we read it\n"), cause=OSError(28, "No space left")), None),
])
def test_tar_problems(exc, expected):
    assert archive.tar_problems(exc) == expected


def test_tar_problems_with_the_program_path_as_prefix():
    exc = _failure(("tar", 2, "/usr/bin/tar: a: Cannot stat: No such file or directory\n"
                              "/usr/bin/tar: Exiting with failure status due to previous errors\n"))
    assert archive.tar_problems(exc, "/usr/bin/tar") == _problems(vanished=["a"])
    assert archive.tar_problems(exc, "/bin/tar") is None


def test_verify_members_compares_names_not_only_counts():
    member = archive.Member("a", "-", 0o600, 0, 0, 1, 0, None, 0)
    archive.verify_members([member], ["a"])
    with pytest.raises(archive.ArchiveError, match="missing: b; unexpected: a"):
        archive.verify_members([member], ["b"])
    with pytest.raises(archive.ArchiveError, match="lists 1 entries where 2"):
        archive.verify_members([member], ["a", "a"])


def test_detect_compression(tmp_path):
    plain = tmp_path / "a.tar"
    with tarfile.open(str(plain), "w", format=tarfile.GNU_FORMAT) as tar:
        tar.addfile(tarfile.TarInfo("x"), io.BytesIO(b""))
    assert archive.detect_compression(str(plain)) == "none"
    subprocess.run(["gzip", "-k", str(plain)], check=True)
    assert archive.detect_compression(str(plain) + ".gz") == "gzip"
    subprocess.run(["zstd", "-q", str(plain)], check=True)
    assert archive.detect_compression(str(plain) + ".zst") == "zstd"
    write(tmp_path / "notes.txt", "hello")
    with pytest.raises(archive.ArchiveError, match="not a tar archive"):
        archive.detect_compression(str(tmp_path / "notes.txt"))


# --- main(): created ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("comp, ext, magic", [("gzip", "tar.gz", b"\x1f\x8b"), ("zstd", "tar.zst", b"\x28\xb5\x2f\xfd"),
                                              ("none", "tar", None)])
def test_created_writes_verified_private_archive_with_sidecars_and_manifest(tree, dest, capsys, comp, ext, magic):
    result = run_main(dict(paths=[str(tree)], prefix="config", dest=str(dest), timestamp=TS, compression=comp),
                      capsys)
    name = "config_%s.%s" % (TS, ext)
    assert result["changed"] is True
    assert result["path"] == str(dest / name)
    assert listing(dest) == sorted([name, name + ".md5", name + ".sha256", "config_%s.json" % TS])
    data = (dest / name).read_bytes()
    if magic:
        assert data.startswith(magic)
    assert stat.S_IMODE(os.stat(str(dest / name)).st_mode) == 0o600
    assert result["md5"] == hashlib.md5(data).hexdigest()
    assert result["sha256"] == hashlib.sha256(data).hexdigest()
    assert result["size"] == len(data)
    assert (dest / (name + ".md5")).read_text() == "%s  %s\n" % (result["md5"], name)
    assert (result["files"], result["directories"]) == (7, 3)
    manifest = json.loads((dest / ("config_%s.json" % TS)).read_text())
    assert manifest["type"] == "archive" and manifest["prefix"] == "config" and manifest["compression"] == comp
    assert manifest["sha256"] == result["sha256"] and manifest["files"] == 7 and manifest["members"] == 10
    assert manifest["paths"] == [str(tree)]
    assert set(manifest) >= {"started", "finished", "duration", "total_bytes", "size", "md5", "host"}
    # GNU tar reads it back with the relative names
    members = subprocess.run(["tar", "-tf", str(dest / name)], check=True, capture_output=True, text=True).stdout
    assert rel(tree / ".env.prod") in members.splitlines()


def test_created_mode_option(tree, dest, capsys):
    result = run_main(dict(paths=[str(tree / ".env")], prefix="config", dest=str(dest), timestamp=TS, mode="0640"),
                      capsys)
    assert stat.S_IMODE(os.stat(result["path"]).st_mode) == 0o640


def test_created_dest_made_private(tree, tmp_path, capsys):
    dest = tmp_path / "new" / "daily"
    run_main(dict(paths=[str(tree)], prefix="config", dest=str(dest), timestamp=TS), capsys)
    assert stat.S_IMODE(os.stat(str(dest)).st_mode) == 0o700


def test_created_check_mode_writes_nothing(tree, dest, capsys):
    result = run_main(dict(paths=[str(tree / ".env*"), str(tree / "config")], prefix="config", dest=str(dest),
                           timestamp=TS), capsys, check_mode=True)
    assert result["changed"] is True
    assert result["path"] == str(dest / ("config_%s.tar.gz" % TS))
    assert (result["files"], result["directories"], result["size"]) == (5, 2, 0)
    assert not dest.exists()


@pytest.mark.parametrize("missing, failed, warned", [
    ("ignore", False, False), ("warn", False, True), ("fail", True, False)])
def test_created_missing_paths(tree, dest, capsys, missing, failed, warned):
    result = run_main(dict(paths=[str(tree / ".env"), str(tree / "gone.yml")], prefix="config", dest=str(dest),
                           timestamp=TS, missing=missing), capsys)
    assert bool(result.get("failed")) is failed
    assert result["skipped_missing"] == [str(tree / "gone.yml")]
    assert any("gone.yml" in w for w in warnings(result)) is warned
    if failed:
        assert "missing=fail" in result["msg"] and listing(dest) == []
    else:
        manifest = json.loads((dest / ("config_%s.json" % TS)).read_text())
        assert manifest["skipped_missing"] == [str(tree / "gone.yml")]


def test_created_nothing_matched_fails_unless_allowed(tmp_path, dest, capsys):
    args = dict(paths=[str(tmp_path / "none*")], prefix="logs", dest=str(dest), timestamp=TS, missing="ignore")
    result = run_main(args, capsys)
    assert result["failed"] and "nothing to archive" in result["msg"]
    assert listing(dest) == []
    result = run_main(dict(args, allow_empty=True), capsys)
    assert result["changed"] and result["files"] == 0
    assert subprocess.run(["tar", "-tzf", result["path"]], check=True, capture_output=True).stdout == b""


def test_created_never_overwrites(tree, dest, capsys):
    args = dict(paths=[str(tree / ".env")], prefix="config", dest=str(dest), timestamp=TS)
    first = run_main(args, capsys)
    before = (dest / os.path.basename(first["path"])).read_bytes()
    result = run_main(args, capsys)
    assert result["failed"] and "already exists" in result["msg"]
    assert (dest / os.path.basename(first["path"])).read_bytes() == before


@pytest.mark.parametrize("extra, message", [
    (dict(timestamp="2026-11-26"), "not YYYYMMDD_HHMMSS"),
    (dict(prefix="bad prefix"), "invalid backup prefix"),
    (dict(mode="rw-------"), "octal file mode"),
    (dict(compression="gzip", compression_level=12), "out of range"),
    (dict(max_age_days=-1), "0 or more"),
    (dict(paths=["relative.txt"]), "not absolute"),
])
def test_created_rejects_bad_options(tree, dest, capsys, extra, message):
    args = dict(paths=[str(tree / ".env")], prefix="config", dest=str(dest), timestamp=TS)
    args.update(extra)
    result = run_main(args, capsys)
    assert result["failed"] and message in result["msg"]
    assert listing(dest) == []


def test_created_requires_its_options(capsys):
    result = run_main(dict(paths=["/etc/hostname"]), capsys)
    assert result["failed"] and "dest" in result["msg"] and "prefix" in result["msg"]


def _stage_patch(monkeypatch, wrap):
    real = archive.create_stages

    def fake(module, tar, list_path, opts):
        stages = real(module, tar, list_path, opts)
        return [(stages[0][0], wrap(stages[0][1]))] + stages[1:]

    monkeypatch.setattr(archive, "create_stages", fake)


def test_created_tar_failure_leaves_nothing(tree, dest, capsys, monkeypatch):
    _stage_patch(monkeypatch, lambda argv: ["sh", "-c", 'head -c 5000 /dev/urandom; echo "tar: boom: Cannot open" >&2; '
                                            'exit 2'])
    result = run_main(dict(paths=[str(tree)], prefix="config", dest=str(dest), timestamp=TS), capsys)
    assert result["failed"] and "nothing was written" in result["msg"] and "boom" in result["msg"]
    assert listing(dest) == []  # no archive, no sidecar, no manifest, no temporary file


def test_created_verification_failure_leaves_nothing(tree, dest, capsys, monkeypatch):
    real = archive.list_members
    monkeypatch.setattr(archive, "list_members", lambda *a: real(*a)[:-1])
    result = run_main(dict(paths=[str(tree)], prefix="config", dest=str(dest), timestamp=TS), capsys)
    assert result["failed"] and "lists 9 entries where 10 were added" in result["msg"]
    assert listing(dest) == []


@pytest.mark.parametrize("cut", [1024, 3000, 4096])
def test_created_truncated_stream_is_refused(tree, dest, capsys, monkeypatch, cut):
    # tar "succeeds" but its output is cut. GNU tar itself lists some truncated archives without an error
    # (exit 0 at 1024 and 3000 bytes here): the comparison of the member names catches those.
    _stage_patch(monkeypatch, lambda argv: ["sh", "-c", '"$@" | head -c %d' % cut, "sh"] + argv)
    result = run_main(dict(paths=[str(tree)], prefix="config", dest=str(dest), timestamp=TS, compression="none"),
                      capsys)
    assert result["failed"] and "nothing was written" in result["msg"]
    assert "cannot be read whole" in result["msg"] or "where 10 were added" in result["msg"]
    assert listing(dest) == []


def test_created_file_changed_while_read_is_a_warning(tree, dest, capsys, monkeypatch):
    _stage_patch(monkeypatch, lambda argv: ["sh", "-c", '"$@"; echo "tar: srv/app.log: file changed as we read it" >&2; '
                                            'exit 1', "sh"] + argv)
    result = run_main(dict(paths=[str(tree)], prefix="logs", dest=str(dest), timestamp=TS), capsys)
    assert result["changed"] and not result.get("failed")
    assert any("changed while they were archived" in w and "srv/app.log" in w for w in warnings(result))
    manifest = json.loads((dest / ("logs_%s.json" % TS)).read_text())
    assert manifest["changed_while_read"] == ["srv/app.log"]


def test_created_file_removed_while_archiving_is_left_out_with_a_warning(tree, dest, capsys, monkeypatch):
    gone = tree / "config" / "application.properties.bak"

    def remove_then_tar(argv):
        return ["sh", "-c", 'rm -f "$0"; "$@"', str(gone)] + argv

    _stage_patch(monkeypatch, remove_then_tar)
    result = run_main(dict(paths=[str(tree)], prefix="logs", dest=str(dest), timestamp=TS), capsys)
    assert not result.get("failed"), result["msg"]
    assert any("removed while the archive was made" in w and rel(gone) in w for w in warnings(result))
    manifest = json.loads((dest / ("logs_%s.json" % TS)).read_text())
    assert manifest["vanished_while_read"] == [rel(gone)]
    assert manifest["files"] == result["files"] == 6 and manifest["members"] == 9
    assert rel(gone) not in subprocess.run(["tar", "-tzf", result["path"]], check=True, capture_output=True,
                                           text=True).stdout


def test_created_removes_stale_temporaries(tree, dest, capsys):
    dest.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    leftover = dest / (".config_20261125_020000.tar.gz.tmp-%d-0123abcd" % dead.pid)
    leftover.write_bytes(b"partial")
    run_main(dict(paths=[str(tree / ".env")], prefix="config", dest=str(dest), timestamp=TS), capsys)
    assert not leftover.exists()


def test_gnu_tar_required(capsys, monkeypatch):
    class Module(object):
        def get_bin_path(self, name, required=False):
            return "/usr/bin/tar"

        def run_command(self, argv, environ_update=None):
            return 0, "bsdtar 3.6.2 - libarchive 3.6.2\n", ""

        def fail_json(self, **kwargs):
            raise RuntimeError(kwargs["msg"])

    with pytest.raises(RuntimeError, match="not GNU tar"):
        archive.gnu_tar(Module())


# --- main(): extracted -------------------------------------------------------------------------------------

@pytest.fixture
def made(tree, dest, capsys):
    """An archive of ``tree`` (gzip) and its path."""
    result = run_main(dict(paths=[str(tree)], prefix="config", dest=str(dest), timestamp=TS), capsys)
    return result["path"]


def test_extracted_round_trip_then_idempotent(tree, made, tmp_path, capsys):
    target = tmp_path / "restore"
    preview = run_main(dict(state="extracted", src=made, dest=str(target)), capsys, check_mode=True)
    assert preview["changed"] and preview["written"] == 10 and not target.exists()
    assert str(target) + str(tree / ".env.prod") in preview["written_paths"]
    result = run_main(dict(state="extracted", src=made, dest=str(target)), capsys)
    assert result["changed"] and result["written"] == 10 and result["checksums"] == {"md5": "ok", "sha256": "ok"}
    assert (result["files"], result["directories"]) == (7, 3)
    copy = target / rel(tree)
    assert (copy / ".env.prod").read_text() == "DB_PASSWORD=s3cret\n"
    assert stat.S_IMODE(os.stat(str(copy / ".env")).st_mode) == 0o640
    assert os.readlink(str(copy / "config" / "env-link")) == "../.env.prod"
    assert (copy / "config" / "empty").is_dir()
    assert int(os.stat(str(copy / "docker-compose.yml")).st_mtime) == int(os.stat(str(tree / "docker-compose.yml")).st_mtime)
    again = run_main(dict(state="extracted", src=made, dest=str(target)), capsys)
    assert again["changed"] is False and again["written"] == 0


@pytest.mark.parametrize("overwrite, kept", [("always", False), ("never", True), ("older", True)])
def test_extracted_overwrite_policies(made, tree, tmp_path, capsys, overwrite, kept):
    target = tmp_path / "restore"
    run_main(dict(state="extracted", src=made, dest=str(target)), capsys)
    local = target / rel(tree) / ".env.prod"
    local.write_text("LOCAL EDIT\n")  # newer than the archived copy
    os.utime(str(local), (time.time() + 60, time.time() + 60))
    (target / rel(tree) / ".env").unlink()
    result = run_main(dict(state="extracted", src=made, dest=str(target), overwrite=overwrite), capsys)
    assert result["changed"]
    assert (target / rel(tree) / ".env").read_text() == "MODE=dev\n"  # missing entries always come back
    assert (local.read_text() == "LOCAL EDIT\n") is kept
    expected = {str(target / rel(tree) / ".env")} | (set() if kept else {str(local)})
    assert set(result["written_paths"]) == expected


def test_extracted_older_replaces_older_files(made, tree, tmp_path, capsys):
    target = tmp_path / "restore"
    run_main(dict(state="extracted", src=made, dest=str(target)), capsys)
    local = target / rel(tree) / ".env.prod"
    local.write_text("STALE\n")
    os.utime(str(local), (1000000000, 1000000000))
    result = run_main(dict(state="extracted", src=made, dest=str(target), overwrite="older"), capsys)
    assert result["written_paths"] == [str(local)] and local.read_text() == "DB_PASSWORD=s3cret\n"


def test_extracted_refuses_damaged_archive_before_touching_anything(made, tmp_path, capsys):
    data = bytearray(open(made, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(made, "wb").write(bytes(data))
    target = tmp_path / "restore"
    result = run_main(dict(state="extracted", src=made, dest=str(target)), capsys)
    assert result["failed"] and result["error_kind"] == "bad_archive"
    assert "checksum mismatch" in result["msg"] and "nothing was changed" in result["msg"]
    assert not target.exists()


def test_extracted_refuses_truncated_archive_without_sidecars(made, tmp_path, capsys):
    for side in (".md5", ".sha256"):
        os.unlink(made + side)
    data = open(made, "rb").read()
    open(made, "wb").write(data[: len(data) // 2])
    target = tmp_path / "restore"
    result = run_main(dict(state="extracted", src=made, dest=str(target)), capsys)
    assert result["failed"] and "cannot be read whole" in result["msg"]
    assert result["checksums"] == {} and not target.exists()


def test_extracted_require_checksum(made, tmp_path, capsys):
    for side in (".md5", ".sha256"):
        os.unlink(made + side)
    result = run_main(dict(state="extracted", src=made, dest=str(tmp_path / "r"), require_checksum=True), capsys)
    assert result["failed"] and "no checksum sidecar" in result["msg"]
    result = run_main(dict(state="extracted", src=made, dest=str(tmp_path / "r")), capsys)
    assert result["changed"] and not result.get("failed")


def test_extracted_refuses_members_outside_dest(tmp_path, capsys):
    evil = tmp_path / "evil.tar"
    with tarfile.open(str(evil), "w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("../../etc/evil")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    result = run_main(dict(state="extracted", src=str(evil), dest=str(tmp_path / "r")), capsys)
    assert result["failed"] and "outside the destination" in result["msg"]
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("content, message", [(None, "does not exist"), (b"", "not a tar archive"),
                                              (b"just some text", "not a tar archive")])
def test_extracted_refuses_missing_or_foreign_files(tmp_path, capsys, content, message):
    src = tmp_path / "x.tar.gz"
    if content is not None:
        src.write_bytes(content)
    result = run_main(dict(state="extracted", src=str(src), dest=str(tmp_path / "r")), capsys)
    assert result["failed"] and message in result["msg"]


def test_extracted_plan_compares_types_and_links(tmp_path):
    dest = tmp_path / "d"
    write(dest / "f", "abc", 0o600, mtime=1000)
    os.symlink("x", str(dest / "l"))
    ns = 1000 * 10 ** 9
    members = [archive.Member("f", "-", 0o600, os.geteuid(), os.getegid(), 3, 1000, None, ns),
               archive.Member("l", "l", 0o777, 0, 0, 0, 1000, "x", ns),
               archive.Member("l2", "l", 0o777, 0, 0, 0, 1000, "x", ns),
               archive.Member("f", "d", 0o755, 0, 0, 0, 1000, None, ns)]
    written = archive.plan(members, str(dest), "always")
    assert [(m.name, m.type) for m in written] == [("l2", "l"), ("f", "d")]
    changed = members[0]._replace(mtime_ns=ns + 1)  # nanoseconds count: an edit within the same second
    assert archive.plan([changed], str(dest), "always") == [changed]
    assert archive.plan([changed], str(dest), "never") == []


def test_extracted_writes_only_what_differs(made, tree, tmp_path, capsys):
    target = tmp_path / "restore"
    run_main(dict(state="extracted", src=made, dest=str(target)), capsys)
    copy = target / rel(tree)
    untouched = os.stat(str(copy / "docker-compose.yml")).st_ino
    (copy / "config" / "application.properties").write_text("server.port=9999\n")
    os.chmod(str(copy / "config"), 0o700)
    result = run_main(dict(state="extracted", src=made, dest=str(target)), capsys)
    assert sorted(result["written_paths"]) == [str(copy / "config"), str(copy / "config" / "application.properties")]
    assert (copy / "config" / "application.properties").read_text() == "server.port=8080\n"
    assert stat.S_IMODE(os.stat(str(copy / "config")).st_mode) == 0o755
    assert os.stat(str(copy / "docker-compose.yml")).st_ino == untouched  # left alone, not rewritten


def test_extracted_keeps_hard_links_together(tmp_path, dest, capsys):
    data = tmp_path / "data"
    write(data / "a.bin", "shared")
    os.link(str(data / "a.bin"), str(data / "b.bin"))
    made = run_main(dict(paths=[str(data)], prefix="files", dest=str(dest), timestamp=TS), capsys)["path"]
    target = tmp_path / "restore"
    run_main(dict(state="extracted", src=made, dest=str(target)), capsys)
    copy = target / rel(data)
    with open(str(copy / "a.bin"), "w") as handle:  # changed in place: both names see it
        handle.write("changed!")
    result = run_main(dict(state="extracted", src=made, dest=str(target)), capsys)
    assert sorted(result["written_paths"]) == [str(copy / "a.bin"), str(copy / "b.bin")]
    assert (copy / "b.bin").read_text() == "shared"
    assert os.path.samefile(str(copy / "a.bin"), str(copy / "b.bin"))


def test_extracted_truncated_plain_tar_caught_by_the_manifest(tree, dest, tmp_path, capsys):
    made = run_main(dict(paths=[str(tree)], prefix="config", dest=str(dest), timestamp=TS, compression="none"),
                    capsys)["path"]
    for side in (".md5", ".sha256"):
        os.unlink(made + side)
    data = open(made, "rb").read()
    open(made, "wb").write(data[:3000])  # GNU tar 1.34 lists this without an error (exit 0)
    result = run_main(dict(state="extracted", src=made, dest=str(tmp_path / "r")), capsys)
    assert result["failed"] and "where its manifest records 10" in result["msg"]
    assert not (tmp_path / "r").exists()


def test_extracted_keeps_existing_links_to_directories(made, tree, tmp_path, capsys):
    target = tmp_path / "restore"
    elsewhere = target / "bigdisk" / "config"  # under dest: a link leading out of it is refused (test_archive_beneath)
    elsewhere.mkdir(parents=True)
    os.chmod(str(elsewhere), 0o755)
    (target / rel(tree)).mkdir(parents=True)
    os.symlink(str(elsewhere), str(target / rel(tree) / "config"))
    result = run_main(dict(state="extracted", src=made, dest=str(target)), capsys)
    assert str(target / rel(tree) / "config") not in result["written_paths"]
    assert os.path.islink(str(target / rel(tree) / "config"))
    assert (elsewhere / "application.properties").read_text() == "server.port=8080\n"
