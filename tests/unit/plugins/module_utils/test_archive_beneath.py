# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the "nothing outside the destination" rule of archive extraction (module_utils/archive.py).

:func:`archive.resolve_beneath` (a path resolved component by component through the links on disk and those of
the archive) and :func:`archive.check_beneath` (every member of an archive) on trees in ``tmp_path``;
:func:`archive.plan` and dr_archive's ``main()`` (tests/support/modules.py) refuse the archive, check mode
included. Real two-archive restores through Ansible are in tests/integration/test_dr_archive.py.
"""

from __future__ import annotations

import io
import os
import tarfile

import pytest

from ansible_collections.atlasia.dr.plugins.module_utils import archive
from ansible_collections.atlasia.dr.plugins.modules import dr_archive
from tests.support.modules import run_module


def member(name, kind="-", link=None):
    return archive.Member(name, kind, 0o644 if kind != "d" else 0o755, 0, 0, 0, 1000, link, 1000 * 10 ** 9)


@pytest.fixture
def dest(tmp_path):
    """A destination holding a directory, a file and links: inside, absolute inside, outside, escaping, a loop."""
    root = tmp_path / "dest"
    (root / "uploads" / "sub").mkdir(parents=True)
    (root / "uploads" / "file").write_text("x")
    (tmp_path / "outside").mkdir()
    os.symlink("sub", str(root / "uploads" / "in"))
    os.symlink(str(root / "uploads" / "sub"), str(root / "uploads" / "abs-in"))
    os.symlink(str(tmp_path / "outside"), str(root / "uploads" / "out"))
    os.symlink("../../outside", str(root / "uploads" / "up"))
    os.symlink("in/../../..", str(root / "uploads" / "climb"))
    os.symlink("loop-b", str(root / "uploads" / "loop-a"))
    os.symlink("loop-a", str(root / "uploads" / "loop-b"))
    return root


@pytest.mark.parametrize("path, follow, expected", [
    ("uploads/file", False, "uploads/file"),
    ("uploads/new/deeper/x", False, "uploads/new/deeper/x"),  # missing components taken as written
    ("uploads/sub/../file", False, "uploads/file"),
    ("./uploads//sub/.", False, "uploads/sub"),
    ("uploads/in/x", False, "uploads/sub/x"),
    ("uploads/abs-in/x", False, "uploads/sub/x"),  # an absolute target under dest is under dest
    ("uploads/in", False, "uploads/in"),  # the last component is not followed...
    ("uploads/in", True, "uploads/sub"),  # ...unless asked
    ("uploads/out", False, "uploads/out"),  # a link out of dest is harmless as long as nothing goes through it
    ("", False, ""),
])
def test_resolve_beneath_inside(dest, path, follow, expected):
    assert archive.resolve_beneath(str(dest), path, follow=follow) == expected


@pytest.mark.parametrize("path, link, target", [
    ("uploads/out/pwned", "uploads/out", "OUTSIDE"),
    ("uploads/up/pwned", "uploads/up", "../../outside"),
    ("uploads/climb/etc/passwd", "uploads/climb", "in/../../.."),
    ("uploads/in/../../../x", None, None),  # the ".." of the path itself, not of a link target
    ("../x", None, None),
    ("uploads/../../x", None, None),
])
def test_resolve_beneath_outside(dest, tmp_path, path, link, target):
    with pytest.raises(archive._Outside) as exc:
        archive.resolve_beneath(str(dest), path)
    assert exc.value.link == link and not exc.value.loop
    assert exc.value.target == (str(tmp_path / "outside") if target == "OUTSIDE" else target)


def test_resolve_beneath_absolute_paths_are_read_from_the_real_root(dest, tmp_path):
    assert archive.resolve_beneath(str(dest), str(dest / "uploads" / "x")) == "uploads/x"
    with pytest.raises(archive._Outside) as exc:
        archive.resolve_beneath(str(dest), "/etc/passwd")
    assert exc.value.link is None and exc.value.target == "/etc/passwd"
    # with dest = /, every absolute target is inside: tar writes link targets verbatim, the kernel reads them from /
    assert archive.resolve_beneath("/", str(dest / "uploads" / "out" / "x")) == str(tmp_path / "outside" / "x")[1:]


def test_resolve_beneath_link_loop_is_refused(dest):
    with pytest.raises(archive._Outside) as exc:
        archive.resolve_beneath(str(dest), "uploads/loop-a/x")
    assert exc.value.loop and exc.value.link in ("uploads/loop-a", "uploads/loop-b")


def test_resolve_beneath_archive_links_override_the_disk(dest):
    # the archive replaces uploads/out (on disk: a link out of dest) by a link inside, and adds its own link out
    links = {"uploads/out": "sub", "uploads/new": "/etc"}
    assert archive.resolve_beneath(str(dest), "uploads/out/x", links) == "uploads/sub/x"
    with pytest.raises(archive._Outside) as exc:
        archive.resolve_beneath(str(dest), "uploads/new/shadow", links)
    assert (exc.value.link, exc.value.target) == ("uploads/new", "/etc")


def test_resolve_beneath_dest_reached_through_a_link(dest, tmp_path):
    os.symlink(str(dest), str(tmp_path / "alias"))
    root = os.path.realpath(str(tmp_path / "alias"))
    assert archive.resolve_beneath(root, "uploads/abs-in/y") == "uploads/sub/y"
    archive.check_beneath([member("uploads/abs-in/y")], str(tmp_path / "alias"))


def refused(members, dest, written=None):
    with pytest.raises(archive.UnsafeMember) as exc:
        archive.check_beneath(members, str(dest), written)
    return exc.value


def test_check_beneath_link_then_file_in_two_archives(tmp_path):
    """The attack: each archive alone looks harmless, the second writes through the link of the first."""
    dest = tmp_path / "dest"
    (dest / "uploads").mkdir(parents=True)
    os.symlink("/outside", str(dest / "uploads" / "link"))  # what the first archive left
    exc = refused([member("uploads", "d"), member("uploads/link/pwned")], dest)
    assert exc.name == "uploads/link/pwned" and (exc.link, exc.target) == ("uploads/link", "/outside")
    assert str(exc) == ("the member uploads/link/pwned resolves outside the destination %s through the symbolic "
                        "link uploads/link -> /outside" % dest)


@pytest.mark.parametrize("target", ["/outside", "../../outside", "../..", "sub/../../../etc"])
def test_check_beneath_symbolic_link_members_pointing_out(tmp_path, target):
    exc = refused([member("uploads", "d"), member("uploads/link", "l", target)], tmp_path / "dest")
    assert exc.name == "uploads/link" and "(a symbolic link to %s)" % target in str(exc)
    assert "resolves outside the destination" in str(exc)


def test_check_beneath_link_then_file_in_one_archive(tmp_path):
    dest = tmp_path / "dest"
    # relative targets that stay inside on paper, but lead out through a link already on disk
    (dest / "uploads").mkdir(parents=True)
    os.symlink(str(tmp_path), str(dest / "uploads" / "base"))
    exc = refused([member("uploads/link", "l", "base"), member("uploads/link/pwned")], dest)
    assert exc.name == "uploads/link" and (exc.link, exc.target) == ("uploads/base", str(tmp_path))
    # a link of the archive that stays inside, then a link out through it
    exc = refused([member("uploads/a", "l", "b"), member("uploads/b", "l", "../.."),
                   member("uploads/a/x")], dest)
    assert exc.name == "uploads/b"


def test_check_beneath_links_written_by_the_archive_count_for_later_members(tmp_path):
    dest = tmp_path / "dest"
    (dest / "uploads" / "sub").mkdir(parents=True)
    os.symlink(str(tmp_path), str(dest / "uploads" / "link"))  # on disk: out of dest
    members = [member("uploads/link", "l", "sub"), member("uploads/link/file")]
    archive.check_beneath(members, str(dest))  # the archive replaces the link before writing through it
    exc = refused(members, dest, written=["uploads/link/file"])  # not replaced (overwrite=never): the disk's
    assert exc.name == "uploads/link/file" and exc.link == "uploads/link"


def test_check_beneath_hard_links(tmp_path):
    dest = tmp_path / "dest"
    (dest / "uploads").mkdir(parents=True)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("root:x:0:0\n")
    os.symlink(str(tmp_path / "etc"), str(dest / "uploads" / "etc"))
    exc = refused([member("uploads/pw", "h", "uploads/etc/passwd")], dest)
    assert exc.name == "uploads/pw" and "(a hard link to uploads/etc/passwd)" in str(exc)
    assert (exc.link, exc.target) == ("uploads/etc", str(tmp_path / "etc"))
    # a hard link to a symbolic link is that link, read from the hard link's directory
    os.symlink("../../..", str(dest / "uploads" / "up3"))
    exc = refused([member("uploads/sub", "d"), member("uploads/sub/h", "h", "uploads/up3")], dest)
    assert exc.name == "uploads/sub/h" and exc.link is None
    # same archive: a link, then a hard link through it
    exc = refused([member("uploads/e2", "l", str(tmp_path / "etc")), member("uploads/pw", "h", "uploads/e2/passwd")],
                  dest)
    assert exc.name == "uploads/e2"


def test_check_beneath_directory_members_follow_kept_links(tmp_path):
    dest = tmp_path / "dest"
    (dest / "srv").mkdir(parents=True)
    (tmp_path / "bigdisk").mkdir()
    os.symlink(str(tmp_path / "bigdisk"), str(dest / "srv" / "data"))
    exc = refused([member("srv", "d"), member("srv/data", "d")], dest)
    assert exc.name == "srv/data" and exc.link == "srv/data"


def test_check_beneath_accepts_what_stays_inside(tmp_path):
    dest = tmp_path / "dest"
    (dest / "srv" / "bigdisk").mkdir(parents=True)
    os.symlink("bigdisk", str(dest / "srv" / "data"))
    members = [member("srv", "d"), member("srv/data", "d"), member("srv/data/f"),
               member("uploads", "d"), member("uploads/a.pdf"), member("uploads/latest", "l", "a.pdf"),
               member("uploads/abs", "l", str(dest / "uploads" / "a.pdf")), member("uploads/up", "l", "../srv/data"),
               member("uploads/h", "h", "uploads/a.pdf"), member("uploads/dangling", "l", "gone/../../x"),
               member("uploads/latest2", "l", "latest"), member("uploads/via/x", "-"), member("uploads/via", "l", ".")]
    assert archive.check_beneath(members, str(dest)) is None
    assert archive.plan(members, str(dest), "always")  # nothing refused


def test_check_beneath_everything_is_inside_slash():
    members = [member("srv/app/link", "l", "/etc"), member("srv/app/h", "h", "etc/hostname"),
               member("srv/app/up", "l", "../../../..")]
    assert archive.check_beneath(members, "/") is None


def test_plan_refuses_and_check_mode_reports(tmp_path, capsys):
    dest = tmp_path / "dest"
    (dest / "uploads").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    os.symlink(str(tmp_path / "outside"), str(dest / "uploads" / "link"))
    members = [member("uploads", "d"), member("uploads/link/pwned")]
    with pytest.raises(archive.UnsafeMember):
        archive.plan(members, str(dest), "always")
    with pytest.raises(archive.UnsafeMember):
        archive.plan(members, str(dest), "never")

    src = tmp_path / "second.tar"
    with tarfile.open(str(src), "w", format=tarfile.PAX_FORMAT) as tar:
        for name in ("uploads/keep.txt", "uploads/link/pwned"):
            info = tarfile.TarInfo(name)
            info.size = 5
            tar.addfile(info, io.BytesIO(b"pwned"))
    for check_mode in (True, False):
        result = run_module(dr_archive.main, dict(state="extracted", src=str(src), dest=str(dest)), capsys,
                            check_mode=check_mode)
        assert result["failed"] and result["error_kind"] == "unsafe_member" and not result.get("changed")
        assert "nothing was changed" in result["msg"]
        assert "the member uploads/link/pwned resolves outside the destination %s through the symbolic link " \
               "uploads/link -> %s" % (dest, tmp_path / "outside") in result["msg"]
        assert os.listdir(str(tmp_path / "outside")) == []
        assert not (dest / "uploads" / "keep.txt").exists()  # nothing extracted from that archive
