# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""s3_backup_transfer: the pure parts (listing grouping, sidecar keys, checksum parsing, part sizes, path
safety), argument validation through main(), and uploads of several sources (srcs) through main() against an
in-memory S3 (order, all-or-nothing decisions, check mode)."""

from __future__ import annotations

import hashlib
import os

import pytest

from tests.support.fakes3 import FakeS3
from tests.support.modules import run_module
from ansible_collections.atlasia.dr.plugins.module_utils import checksum
from ansible_collections.atlasia.dr.plugins.module_utils.checksum import ChecksumError
from ansible_collections.atlasia.dr.plugins.module_utils.s3 import MiB
from ansible_collections.atlasia.dr.plugins.module_utils import s3_transfer as engine
from ansible_collections.atlasia.dr.plugins.modules import s3_backup_transfer as transfer


def obj(key, size=10):
    return dict(key=key, size=size, storage_class="STANDARD_IA", last_modified="2026-11-25T02:00:00+00:00", etag="x")


def test_group_listing_groups_by_stem_newest_first():
    objects = [obj("p/backup_20261124_020000.sql.gz", 100), obj("p/backup_20261124_020000.sql.gz.sha256"),
               obj("p/backup_20261124_020000.json"), obj("p/backup_20261125_020000.sql.gz", 200),
               obj("p/backup_20261125_020000.sql.gz.md5"), obj("p/schema_20261125_020000.sql", 5),
               obj("p/schema_20261125_020000.json"), obj("p/README.md")]
    backups, ignored = engine.group_listing(objects, ["p/vault_20261123_020000.dir/", "p/old/"])
    assert [(b["series"], b["stem"]) for b in backups] == [
        ("backup", "backup_20261125_020000"), ("schema", "schema_20261125_020000"),
        ("backup", "backup_20261124_020000"), ("vault", "vault_20261123_020000")]
    newest = backups[0]
    assert newest["complete"] is False and newest["manifest"] is None  # its manifest is not there (yet)
    assert newest["artifacts"] == [dict(key="p/backup_20261125_020000.sql.gz", name="backup_20261125_020000.sql.gz",
                                        directory=False, size=200, storage_class="STANDARD_IA",
                                        last_modified="2026-11-25T02:00:00+00:00", sha256=None, md5=None)]
    assert newest["sidecars"] == ["p/backup_20261125_020000.sql.gz.md5"]
    assert newest["timestamp"] == "2026-11-25T02:00:00+00:00"
    older = backups[2]
    assert older["complete"] is True and older["manifest"] == "p/backup_20261124_020000.json"
    vault = backups[3]
    assert vault["artifacts"][0]["directory"] is True and vault["artifacts"][0]["key"] == "p/vault_20261123_020000.dir"
    assert ignored == ["p/README.md", "p/old/"]


def test_group_listing_series_filter():
    objects = [obj("backup_20261125_020000.sql.gz"), obj("schema_20261125_020000.sql")]
    backups, ignored = engine.group_listing(objects, [], series=["schema"])
    assert [b["stem"] for b in backups] == ["schema_20261125_020000"]


@pytest.mark.parametrize("key,expected", [
    ("dr/backup_20261125_020000.sql.gz", dict(md5="dr/backup_20261125_020000.sql.gz.md5",
                                              sha256="dr/backup_20261125_020000.sql.gz.sha256",
                                              manifest="dr/backup_20261125_020000.json")),
    ("backup_20261125_020000.dir", dict(md5="backup_20261125_020000.dir.md5", sha256="backup_20261125_020000.dir.sha256",
                                        manifest="backup_20261125_020000.json")),
    ("dr/legacy.sql.gz", dict(md5="dr/legacy.sql.gz.md5", sha256="dr/legacy.sql.gz.sha256", manifest=None)),
])
def test_sidecar_keys(key, expected):
    assert engine.sidecar_keys(key) == expected


@pytest.mark.parametrize("text,expected", [
    ("d41d8cd98f00b204e9800998ecf8427e  backup_x.sql.gz\n", [("d41d8cd98f00b204e9800998ecf8427e", "backup_x.sql.gz")]),
    ("D41D8CD98F00B204E9800998ECF8427E *backup_x.sql.gz", [("d41d8cd98f00b204e9800998ecf8427e", "backup_x.sql.gz")]),
    ("\naa  d/a\nbb  d/sub/b\n\n", [("aa", "d/a"), ("bb", "d/sub/b")]),
])
def test_parse_checksum_text(text, expected):
    assert engine.parse_checksum_text(text) == expected


@pytest.mark.parametrize("text", ["", "\n\n", "nothex  file", "onlyonefield"])
def test_parse_checksum_text_rejects_garbage(text):
    with pytest.raises(ChecksumError):
        engine.parse_checksum_text(text)


def test_listing_entries_drops_the_artifact_folder():
    text = "aa  backup_x.dir/toc.dat\nbb  backup_x.dir/3001.dat.gz\n"
    assert engine.listing_entries(text) == {"toc.dat": "aa", "3001.dat.gz": "bb"}
    with pytest.raises(ChecksumError):
        engine.listing_entries("aa  toc.dat\n")


@pytest.mark.parametrize("size,part_mb,expected", [
    (12 * MiB, 5, 5 * MiB),
    (0, 64, 64 * MiB),
    (64 * MiB * 10000, 64, 64 * MiB),
    (64 * MiB * 10000 + 1, 64, 65 * MiB),  # more than 10000 parts: raised
    (1024 * 1024 * MiB, 5, 105 * MiB),     # 1 TiB with 5 MiB parts
])
def test_effective_part_size(size, part_mb, expected):
    part = engine.effective_part_size(size, part_mb)
    assert part == expected
    assert -(-size // part) <= 10000


@pytest.mark.parametrize("rel", ["../etc/passwd", "/abs", "a/../../b", "a//b", "./a", ""])
def test_safe_relative_refuses_escapes(rel):
    with pytest.raises(engine.TransferError):
        engine.safe_relative(rel)


def test_safe_relative_accepts_nested():
    assert engine.safe_relative("blobs/3001.dat.gz") == "blobs/3001.dat.gz"


# -- argument validation through main() --------------------------------------------------------------------


def run_main(monkeypatch, capsys, args):
    monkeypatch.setattr(transfer, "get_s3_client", lambda module: None)
    params = dict(bucket="b", endpoint_url="http://127.0.0.1:9", access_key="test-access", secret_key="test-secret")
    params.update(args)
    params = dict((k, v) for k, v in params.items() if v is not None)
    return run_module(transfer.main, params, capsys)


@pytest.mark.parametrize("args,message", [
    (dict(mode="upload", src="/x"), "any of the following are missing: key, prefix"),
    (dict(mode="upload", key="a", prefix="b", src="/x"), "mutually exclusive"),
    (dict(mode="download", key="a"), "dest"),
    (dict(mode="exists"), "key"),
    (dict(mode="upload", src="/nonexistent/backup_20261125_020000.sql.gz", prefix="p"), "does not exist"),
    (dict(mode="list", access_key="only-access", secret_key=None), "parameters are required together"),
])
def test_main_validates_arguments(monkeypatch, capsys, tmp_path, args, message):
    result = run_main(monkeypatch, capsys, args)
    assert result["failed"] is True
    assert message in result["msg"]


@pytest.mark.parametrize("args,message", [
    (dict(part_size_mb=4), "part_size_mb must be at least 5"),
    (dict(kms_key_id="alias/x"), "kms_key_id needs encryption=aws:kms"),
    (dict(metadata={"SHA256": "x"}), "reserved"),
    (dict(concurrency=0), "concurrency must be at least 1"),
])
def test_main_validates_upload_settings(monkeypatch, capsys, tmp_path, args, message):
    src = tmp_path / "backup_20261125_020000.sql.gz"
    src.write_bytes(b"x")
    args = dict(args, mode="upload", src=str(src), prefix="p")
    result = run_main(monkeypatch, capsys, args)
    assert result["failed"] is True
    assert message in result["msg"]


# -- upload of several sources (srcs) against an in-memory S3 ---------------------------------------------------


def run_upload(monkeypatch, capsys, client, args, check=False):
    monkeypatch.setattr(transfer, "get_s3_client", lambda module: client)
    params = dict(bucket="b", endpoint_url="http://127.0.0.1:9", access_key="test-access", secret_key="test-secret",
                  mode="upload")
    params.update(args)
    return run_module(transfer.main, params, capsys, check_mode=check)


def make_artifact(directory, name, data):
    """An artifact with its md5sum-format sidecars and the manifest of its stem."""
    path = directory / name
    path.write_bytes(data)
    for algo in ("md5", "sha256"):
        (directory / (name + "." + algo)).write_text("%s  %s\n" % (hashlib.new(algo, data).hexdigest(), name))
    (directory / (name.split(".", 1)[0] + ".json")).write_text('{"artifact": "%s"}\n' % name)
    return str(path)


def set_of_three(tmp_path):
    return [make_artifact(tmp_path, "backup_20261125_020000.sql.gz", b"dump" * 100),
            make_artifact(tmp_path, "globals_20261125_020000.sql", b"roles"),
            make_artifact(tmp_path, "vault_20261125_020000.snap", b"snapshot" * 7)]


def expected_keys(prefix, srcs):
    keys = []
    for src in srcs:
        name = os.path.basename(src)
        keys += [prefix + name, prefix + name + ".md5", prefix + name + ".sha256",
                 prefix + name.split(".", 1)[0] + ".json"]
    return keys


def test_srcs_uploads_every_source_in_order_with_sidecars_and_manifests(monkeypatch, capsys, tmp_path):
    srcs = set_of_three(tmp_path)
    client = FakeS3()
    result = run_upload(monkeypatch, capsys, client, dict(srcs=srcs, prefix="dr"))
    assert result.get("failed") is not True, result.get("msg")
    assert result["changed"] is True
    keys = expected_keys("dr/", srcs)
    assert client.uploads() == keys  # artifact, its sidecars, then its manifest, source after source
    assert result["transferred"] == keys and result["keys"] == keys and result["skipped_keys"] == []
    assert result["verified"] == ["metadata"]
    assert result["bytes_transferred"] == sum(os.path.getsize(tmp_path / k[3:]) for k in keys)
    for src in srcs:
        data = open(src, "rb").read()
        key = "dr/" + os.path.basename(src)
        assert client.objects[key][0] == data
        assert client.objects[key][1] == dict(sha256=hashlib.sha256(data).hexdigest(), md5=hashlib.md5(data).hexdigest())
    assert [a["key"] for a in result["artifacts"]] == ["dr/" + os.path.basename(s) for s in srcs]
    first = result["artifacts"][0]
    data = open(srcs[0], "rb").read()
    assert first == dict(src=srcs[0], key="dr/backup_20261125_020000.sql.gz", size=len(data),
                         sha256=hashlib.sha256(data).hexdigest(), md5=hashlib.md5(data).hexdigest())
    for name in ("key", "size", "sha256", "md5"):  # only with src
        assert name not in result
    # nothing uploaded before every key was looked at
    first_upload = [call for call, key in client.calls].index("upload_file")
    assert [key for call, key in client.calls[:first_upload]] == keys

    again = run_upload(monkeypatch, capsys, client, dict(srcs=srcs, prefix="dr"))
    assert again["changed"] is False and again["transferred"] == [] and again["skipped_keys"] == keys


def test_srcs_conflict_in_the_second_source_sends_nothing(monkeypatch, capsys, tmp_path):
    srcs = set_of_three(tmp_path)
    client = FakeS3({"dr/globals_20261125_020000.sql": (b"other", dict(sha256="0" * 64, md5="0" * 32))})
    result = run_upload(monkeypatch, capsys, client, dict(srcs=srcs, prefix="dr"))
    assert result["failed"] is True
    assert "refusing to replace" in result["msg"] and "dr/globals_20261125_020000.sql" in result["msg"]
    assert client.uploads() == [] and [c for c, k in client.calls if c != "head_object"] == []
    assert sorted(client.objects) == ["dr/globals_20261125_020000.sql"]
    assert result["transferred"] == []


def test_srcs_damaged_second_source_sends_nothing(monkeypatch, capsys, tmp_path):
    srcs = set_of_three(tmp_path)
    with open(srcs[1], "ab") as handle:
        handle.write(b"truncated? no: grown after its sidecars were written")
    client = FakeS3()
    result = run_upload(monkeypatch, capsys, client, dict(srcs=srcs, prefix="dr"))
    assert result["failed"] is True
    assert "does not match its" in result["msg"] and srcs[1] in result["msg"]
    assert client.calls == []


def test_srcs_check_mode_reports_and_sends_nothing(monkeypatch, capsys, tmp_path):
    srcs = set_of_three(tmp_path)
    done = open(srcs[0], "rb").read()
    client = FakeS3({"dr/backup_20261125_020000.sql.gz": (done, dict(sha256=hashlib.sha256(done).hexdigest()))})
    result = run_upload(monkeypatch, capsys, client, dict(srcs=srcs, prefix="dr"), check=True)
    assert result.get("failed") is not True, result.get("msg")
    assert result["changed"] is True
    keys = expected_keys("dr/", srcs)
    assert result["skipped_keys"] == ["dr/backup_20261125_020000.sql.gz"]
    assert result["transferred"] == keys[1:]
    assert result["bytes_transferred"] == sum(os.path.getsize(tmp_path / k[3:]) for k in keys[1:])
    assert len(result["artifacts"]) == 3
    assert [c for c, k in client.calls if c != "head_object"] == []
    assert sorted(client.objects) == ["dr/backup_20261125_020000.sql.gz"]


def test_srcs_sharing_a_manifest_upload_it_once_after_both(monkeypatch, capsys, tmp_path):
    one = make_artifact(tmp_path, "backup_20261125_020000.sql.gz", b"dump")
    two = make_artifact(tmp_path, "backup_20261125_020000.dir.tar", b"tar")
    client = FakeS3()
    result = run_upload(monkeypatch, capsys, client, dict(srcs=[one, two], prefix="dr"))
    assert result.get("failed") is not True, result.get("msg")
    assert client.uploads() == ["dr/backup_20261125_020000.sql.gz", "dr/backup_20261125_020000.sql.gz.md5",
                                "dr/backup_20261125_020000.sql.gz.sha256", "dr/backup_20261125_020000.dir.tar",
                                "dr/backup_20261125_020000.dir.tar.md5", "dr/backup_20261125_020000.dir.tar.sha256",
                                "dr/backup_20261125_020000.json"]


def test_srcs_naming_one_key_twice_is_refused(monkeypatch, capsys, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one = make_artifact(tmp_path / "a", "backup_20261125_020000.sql.gz", b"one")
    two = make_artifact(tmp_path / "b", "backup_20261125_020000.sql.gz", b"two")
    client = FakeS3()
    result = run_upload(monkeypatch, capsys, client, dict(srcs=[one, two], prefix="dr"))
    assert result["failed"] is True
    assert "would both be uploaded to dr/backup_20261125_020000.sql.gz" in result["msg"]
    assert client.calls == []


def test_srcs_empty_uploads_nothing(monkeypatch, capsys):
    client = FakeS3()
    result = run_upload(monkeypatch, capsys, client, dict(srcs=[], prefix="dr"))
    assert result.get("failed") is not True, result.get("msg")
    assert result["changed"] is False and result["artifacts"] == [] and result["transferred"] == []
    assert client.calls == []


def test_src_still_returns_the_artifact_at_top_level(monkeypatch, capsys, tmp_path):
    src = make_artifact(tmp_path, "backup_20261125_020000.sql.gz", b"dump")
    client = FakeS3()
    result = run_upload(monkeypatch, capsys, client, dict(src=src, prefix="dr"))
    assert result["key"] == "dr/backup_20261125_020000.sql.gz" and result["size"] == 4
    assert result["sha256"] == hashlib.sha256(b"dump").hexdigest()
    assert result["artifacts"] == [dict(src=src, key=result["key"], size=4, sha256=result["sha256"], md5=result["md5"])]
    assert result["transferred"] == expected_keys("dr/", [src])


@pytest.mark.parametrize("args,message", [
    (dict(key="dr/x"), "key names a single object: it cannot be used with srcs"),
    (dict(prefix="dr", src="/x"), "parameters are mutually exclusive: src|srcs"),
])
def test_srcs_refuses_key_and_src(monkeypatch, capsys, tmp_path, args, message):
    src = make_artifact(tmp_path, "backup_20261125_020000.sql.gz", b"dump")
    client = FakeS3()
    result = run_upload(monkeypatch, capsys, client, dict(args, srcs=[src]))
    assert result["failed"] is True
    assert message in result["msg"]
    assert client.calls == []


def test_upload_needs_src_or_srcs(monkeypatch, capsys):
    result = run_upload(monkeypatch, capsys, FakeS3(), dict(prefix="dr"))
    assert result["failed"] is True
    assert "src, srcs" in result["msg"]


# -- what a download returns (the module's own facts, not the stat of dest) -----------------------------------


def run_download(monkeypatch, capsys, client, args, check=False):
    return run_upload(monkeypatch, capsys, client, dict(args, mode="download"), check=check)


def stored(data):
    """An object and its metadata as the module uploads it."""
    return data, dict(sha256=hashlib.sha256(data).hexdigest(), md5=hashlib.md5(data).hexdigest())


def test_download_returns_its_mode_and_the_object_size(monkeypatch, capsys, tmp_path):
    name = "backup_20261125_020000.sql.gz"
    data = b"dump" * 1000
    sidecar = "%s  %s\n" % (hashlib.sha256(data).hexdigest(), name)
    client = FakeS3({"dr/" + name: stored(data), "dr/" + name + ".sha256": stored(sidecar.encode())})
    result = run_download(monkeypatch, capsys, client, dict(key="dr/" + name, dest=str(tmp_path) + "/"))
    assert result.get("failed") is not True, result.get("msg")
    assert result["mode"] == "download"  # not the file's permissions ("0600")
    assert result["dest"] == str(tmp_path / name) and (tmp_path / name).read_bytes() == data
    assert result["size"] == len(data) and result["sha256"] == hashlib.sha256(data).hexdigest()
    assert not set(result) & {"owner", "group", "uid", "gid", "state"}  # no stat facts of dest
    assert result["verified"] == ["metadata", "sidecar"]
    assert sorted(result["transferred"]) == ["dr/" + name, "dr/" + name + ".sha256"]


def test_download_of_a_directory_artifact_returns_the_size_of_its_files(monkeypatch, capsys, tmp_path):
    name = "backup_20261125_020000.dir"
    files = {"toc.dat": b"toc" * 7, "3001.dat.gz": b"rows" * 3000, "blobs/1.dat": b"b"}
    listing = "".join("%s  %s/%s\n" % (hashlib.sha256(files[rel]).hexdigest(), name, rel) for rel in sorted(files))
    objects = dict(("dr/%s/%s" % (name, rel), stored(data)) for rel, data in files.items())
    objects["dr/%s.sha256" % name] = stored(listing.encode())
    client = FakeS3(objects)
    result = run_download(monkeypatch, capsys, client, dict(key="dr/" + name, dest=str(tmp_path) + "/"))
    assert result.get("failed") is not True, result.get("msg")
    final = tmp_path / name
    assert result["mode"] == "download" and result["dest"] == str(final)
    assert result["size"] == sum(len(data) for data in files.values()) != final.stat().st_size
    digests, size = checksum.artifact_digests(str(final))[:2]
    assert (result["sha256"], result["md5"], result["size"]) == (digests["sha256"], digests["md5"], size)
    assert result["bytes_transferred"] == size + len(listing)
    assert (final / "blobs" / "1.dat").read_bytes() == b"b"


def test_upload_verify_full_reads_the_object_back_without_counting_it(monkeypatch, capsys, tmp_path):
    src = make_artifact(tmp_path, "backup_20261125_020000.sql.gz", b"dump" * 10)
    client = FakeS3()
    result = run_upload(monkeypatch, capsys, client, dict(src=src, prefix="dr", verify="full", with_sidecars=False))
    assert result.get("failed") is not True, result.get("msg")
    assert result["verified"] == ["metadata", "download"]
    assert ("get_object", "dr/backup_20261125_020000.sql.gz") in client.calls
    assert result["bytes_transferred"] == 40
