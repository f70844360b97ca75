# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of plugins/module_utils/checksum.py: streamed digests, sidecars, verification."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess

import pytest

from ansible_collections.atlasia.dr.plugins.module_utils import checksum

NAME = "backup_20261126_020005.sql.gz"


def _write(path, data):
    with open(path, "wb") as handle:
        handle.write(data)
    return path


@pytest.fixture
def artifact(tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 17)  # several chunks, not a multiple of the chunk size
    return _write(str(tmp_path / NAME), data), data


@pytest.fixture
def dir_artifact(tmp_path):
    root = tmp_path / "backup_20261126_020005.dir"
    (root / "sub").mkdir(parents=True)
    _write(str(root / "toc.dat"), b"PGDMP toc")
    _write(str(root / "3001.dat.gz"), os.urandom(5000))
    _write(str(root / "sub" / "nested.dat"), b"nested")
    return str(root)


def test_multihasher_matches_hashlib():
    hasher = checksum.MultiHasher()
    parts = [b"", b"abc", os.urandom(100000)]
    for part in parts:
        hasher.update(part)
    data = b"".join(parts)
    assert hasher.size == len(data)
    assert hasher.hexdigests() == {"md5": hashlib.md5(data).hexdigest(), "sha256": hashlib.sha256(data).hexdigest()}


def test_multihasher_custom_algorithms():
    hasher = checksum.MultiHasher(("sha1",))
    hasher.update(b"x")
    assert hasher.hexdigests() == {"sha1": hashlib.sha1(b"x").hexdigest()}


@pytest.mark.parametrize("chunk_size", [1, 7, 1024 * 1024, 10 * 1024 * 1024])
def test_file_digests_any_chunk_size(tmp_path, chunk_size):
    data = os.urandom(20000) if chunk_size > 1 else b"small file"
    path = _write(str(tmp_path / "f"), data)
    digests, size = checksum.file_digests(path, chunk_size=chunk_size)
    assert size == len(data)
    assert digests["md5"] == hashlib.md5(data).hexdigest()
    assert digests["sha256"] == hashlib.sha256(data).hexdigest()


def test_file_digests_empty_file(tmp_path):
    digests, size = checksum.file_digests(_write(str(tmp_path / "empty"), b""))
    assert size == 0
    assert digests["md5"] == hashlib.md5(b"").hexdigest()


def test_sidecar_text_is_coreutils_format():
    assert checksum.sidecar_text("ab" * 16, "/x/y/" + NAME) == "%s  %s\n" % ("ab" * 16, NAME)


def test_artifact_digests_file(artifact):
    path, data = artifact
    digests, size, texts = checksum.artifact_digests(path)
    assert size == len(data)
    assert digests["sha256"] == hashlib.sha256(data).hexdigest()
    assert texts["md5"] == "%s  %s\n" % (hashlib.md5(data).hexdigest(), NAME)


def test_artifact_digests_directory_lists_every_file(dir_artifact):
    digests, size, texts = checksum.artifact_digests(dir_artifact)
    lines = texts["sha256"].splitlines()
    assert [line.split("  ", 1)[1] for line in lines] == [
        "backup_20261126_020005.dir/3001.dat.gz",
        "backup_20261126_020005.dir/toc.dat",
        "backup_20261126_020005.dir/sub/nested.dat",
    ]
    assert size == 5000 + len(b"PGDMP toc") + len(b"nested")
    # the digest reported for a directory is the digest of its listing
    assert digests["md5"] == hashlib.md5(texts["md5"].encode()).hexdigest()
    assert digests["sha256"] == hashlib.sha256(texts["sha256"].encode()).hexdigest()


def _coreutils_check(tool, directory, sidecar):
    if not shutil.which(tool):
        pytest.skip("%s is not installed" % tool)
    return subprocess.run([tool, "-c", "--strict", sidecar], cwd=directory, capture_output=True, text=True,
                          check=False)


def test_write_sidecars_file_passes_md5sum_and_sha256sum(artifact):
    path, data = artifact
    digests, size, texts = checksum.artifact_digests(path)
    written = checksum.write_sidecars(path, texts)
    assert sorted(written) == ["md5", "sha256"]
    assert written["md5"] == path + ".md5"
    assert oct(os.stat(written["md5"]).st_mode & 0o777) == "0o644"
    directory = os.path.dirname(path)
    for tool, algo in (("md5sum", "md5"), ("sha256sum", "sha256")):
        proc = _coreutils_check(tool, directory, os.path.basename(written[algo]))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "%s: OK" % NAME in proc.stdout


def test_write_sidecars_names_the_final_file_not_the_temporary_one(tmp_path):
    temp = _write(str(tmp_path / (".%s.tmp-1-0a1b2c3d" % NAME)), b"payload")
    digests, size, texts = checksum.artifact_digests(temp)
    assert ".tmp-" in texts["md5"]
    written = checksum.write_sidecars(temp, texts, final_name=NAME)
    assert written["sha256"] == str(tmp_path / (NAME + ".sha256"))
    with open(written["sha256"]) as handle:
        assert handle.read() == "%s  %s\n" % (hashlib.sha256(b"payload").hexdigest(), NAME)
    assert not os.path.exists(temp + ".md5")


def test_write_sidecars_directory_listing_renamed_to_final(tmp_path, dir_artifact):
    temp = str(tmp_path / ".backup_20261126_020005.dir.tmp-1-0a1b2c3d")
    os.rename(dir_artifact, temp)
    digests, size, texts = checksum.artifact_digests(temp)
    checksum.write_sidecars(temp, texts, final_name="backup_20261126_020005.dir")
    os.rename(temp, dir_artifact)
    with open(dir_artifact + ".md5") as handle:
        text = handle.read()
    assert ".tmp-" not in text
    assert text.count("backup_20261126_020005.dir/") == 3
    for tool, suffix in (("md5sum", ".md5"), ("sha256sum", ".sha256")):
        proc = _coreutils_check(tool, str(tmp_path), os.path.basename(dir_artifact) + suffix)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert checksum.verify_sidecars(dir_artifact) == ({"md5": "ok", "sha256": "ok"}, None)


def test_write_sidecars_only_given_algorithms(artifact):
    path, data = artifact
    written = checksum.write_sidecars(path, {"sha256": "x  y\n"})
    assert list(written) == ["sha256"]
    assert not os.path.exists(path + ".md5")


def test_verify_sidecars_ok(artifact):
    path, data = artifact
    checksum.write_sidecars(path, checksum.artifact_digests(path)[2])
    status, computed = checksum.verify_sidecars(path, required=True)
    assert status == {"md5": "ok", "sha256": "ok"}
    assert computed == {"md5": hashlib.md5(data).hexdigest(), "sha256": hashlib.sha256(data).hexdigest()}


def test_verify_sidecars_missing(artifact):
    path, data = artifact
    assert checksum.verify_sidecars(path) == ({"md5": "missing", "sha256": "missing"}, None)


def test_verify_sidecars_required_but_missing(artifact):
    with pytest.raises(checksum.ChecksumError, match="no checksum sidecar"):
        checksum.verify_sidecars(artifact[0], required=True)


@pytest.mark.parametrize("present", ["md5", "sha256"])
def test_verify_sidecars_one_sidecar_is_enough(artifact, present):
    path, data = artifact
    texts = checksum.artifact_digests(path)[2]
    checksum.write_sidecars(path, {present: texts[present]})
    status, computed = checksum.verify_sidecars(path, required=True)
    assert status[present] == "ok"
    assert list(computed) == [present]
    assert set(status.values()) == {"ok", "missing"}


@pytest.mark.parametrize("damage", ["flip", "truncate", "append"])
def test_verify_sidecars_detects_damage(artifact, damage):
    path, data = artifact
    checksum.write_sidecars(path, checksum.artifact_digests(path)[2])
    if damage == "flip":
        middle = len(data) // 2
        data = data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1:]
    elif damage == "truncate":
        data = data[:-1]
    else:
        data += b"\0"
    _write(path, data)
    with pytest.raises(checksum.ChecksumError, match="checksum mismatch for .*%s" % NAME.replace(".", r"\.")):
        checksum.verify_sidecars(path)


def test_verify_sidecars_mismatch_message_names_both_digests(artifact):
    path, data = artifact
    _write(path + ".sha256", ("0" * 64 + "  " + NAME + "\n").encode())
    with pytest.raises(checksum.ChecksumError) as info:
        checksum.verify_sidecars(path)
    assert "0" * 64 in str(info.value)
    assert hashlib.sha256(data).hexdigest() in str(info.value)


@pytest.mark.parametrize("text, match", [
    ("", "empty checksum file"),
    ("\n\n", "empty checksum file"),
    ("deadbeef\n", "malformed"),
])
def test_verify_sidecars_malformed(artifact, text, match):
    path, data = artifact
    _write(path + ".md5", text.encode())
    with pytest.raises(checksum.ChecksumError, match=match):
        checksum.verify_sidecars(path)


def test_verify_sidecars_accepts_binary_marker_and_uppercase(artifact):
    path, data = artifact
    _write(path + ".md5", ("%s *%s\n" % (hashlib.md5(data).hexdigest().upper(), NAME)).encode())
    assert checksum.verify_sidecars(path)[0]["md5"] == "ok"


def test_verify_sidecars_directory_detects_changed_missing_and_extra_files(tmp_path, dir_artifact):
    checksum.write_sidecars(dir_artifact, checksum.artifact_digests(dir_artifact)[2])
    assert checksum.verify_sidecars(dir_artifact)[0] == {"md5": "ok", "sha256": "ok"}

    extra = os.path.join(dir_artifact, "9999.dat.gz")
    _write(extra, b"x")
    with pytest.raises(checksum.ChecksumError, match="does not list.*9999.dat.gz"):
        checksum.verify_sidecars(dir_artifact)
    os.unlink(extra)

    _write(os.path.join(dir_artifact, "toc.dat"), b"PGDMP toc changed")
    with pytest.raises(checksum.ChecksumError, match="mismatch.*toc.dat"):
        checksum.verify_sidecars(dir_artifact)

    os.unlink(os.path.join(dir_artifact, "toc.dat"))
    with pytest.raises(checksum.ChecksumError, match="toc.dat, which is missing"):
        checksum.verify_sidecars(dir_artifact)


def test_directory_digest_of_temporary_name_matches_final_listing(tmp_path, dir_artifact):
    """The digest reported while the dump still has its hidden name equals the digest of the final listing
    (what the sidecar holds, and what s3_backup_transfer recomputes from the final directory)."""
    final_name = os.path.basename(dir_artifact)
    temp = str(tmp_path / (".%s.tmp-1-0a1b2c3d" % final_name))
    os.rename(dir_artifact, temp)
    digests, size, texts = checksum.artifact_digests(temp, final_name=final_name)
    assert ".tmp-" not in texts["md5"]
    checksum.write_sidecars(temp, texts, final_name=final_name)
    os.rename(temp, dir_artifact)
    assert checksum.artifact_digests(dir_artifact) == (digests, size, texts)
    with open(dir_artifact + ".sha256") as handle:
        assert hashlib.sha256(handle.read().encode()).hexdigest() == digests["sha256"]


def test_file_digest_with_final_name(tmp_path):
    temp = _write(str(tmp_path / (".%s.tmp-1-0a1b2c3d" % NAME)), b"payload")
    digests, size, texts = checksum.artifact_digests(temp, final_name=NAME)
    assert texts["md5"] == "%s  %s\n" % (hashlib.md5(b"payload").hexdigest(), NAME)
