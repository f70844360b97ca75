# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""s3_backup_transfer: the pure parts (listing grouping, sidecar keys, checksum parsing, part sizes, path
safety) and argument validation through main()."""

from __future__ import annotations

import datetime
import json

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.atlasia.dr.plugins.module_utils.checksum import ChecksumError
from ansible_collections.atlasia.dr.plugins.module_utils.s3 import MiB
from ansible_collections.atlasia.dr.plugins.modules import s3_backup_transfer as transfer

UTC = datetime.timezone.utc


def obj(key, size=10):
    return dict(key=key, size=size, storage_class="STANDARD_IA", last_modified="2026-11-25T02:00:00+00:00", etag="x")


def test_group_listing_groups_by_stem_newest_first():
    objects = [obj("p/backup_20261124_020000.sql.gz", 100), obj("p/backup_20261124_020000.sql.gz.sha256"),
               obj("p/backup_20261124_020000.json"), obj("p/backup_20261125_020000.sql.gz", 200),
               obj("p/backup_20261125_020000.sql.gz.md5"), obj("p/schema_20261125_020000.sql", 5),
               obj("p/schema_20261125_020000.json"), obj("p/README.md")]
    backups, ignored = transfer.group_listing(objects, ["p/vault_20261123_020000.dir/", "p/old/"])
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
    backups, ignored = transfer.group_listing(objects, [], series=["schema"])
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
    assert transfer.sidecar_keys(key) == expected


@pytest.mark.parametrize("text,expected", [
    ("d41d8cd98f00b204e9800998ecf8427e  backup_x.sql.gz\n", [("d41d8cd98f00b204e9800998ecf8427e", "backup_x.sql.gz")]),
    ("D41D8CD98F00B204E9800998ECF8427E *backup_x.sql.gz", [("d41d8cd98f00b204e9800998ecf8427e", "backup_x.sql.gz")]),
    ("\naa  d/a\nbb  d/sub/b\n\n", [("aa", "d/a"), ("bb", "d/sub/b")]),
])
def test_parse_checksum_text(text, expected):
    assert transfer.parse_checksum_text(text) == expected


@pytest.mark.parametrize("text", ["", "\n\n", "nothex  file", "onlyonefield"])
def test_parse_checksum_text_rejects_garbage(text):
    with pytest.raises(ChecksumError):
        transfer.parse_checksum_text(text)


def test_listing_entries_drops_the_artifact_folder():
    text = "aa  backup_x.dir/toc.dat\nbb  backup_x.dir/3001.dat.gz\n"
    assert transfer.listing_entries(text) == {"toc.dat": "aa", "3001.dat.gz": "bb"}
    with pytest.raises(ChecksumError):
        transfer.listing_entries("aa  toc.dat\n")


@pytest.mark.parametrize("size,part_mb,expected", [
    (12 * MiB, 5, 5 * MiB),
    (0, 64, 64 * MiB),
    (64 * MiB * 10000, 64, 64 * MiB),
    (64 * MiB * 10000 + 1, 64, 65 * MiB),  # more than 10000 parts: raised
    (1024 * 1024 * MiB, 5, 105 * MiB),     # 1 TiB with 5 MiB parts
])
def test_effective_part_size(size, part_mb, expected):
    part = transfer.effective_part_size(size, part_mb)
    assert part == expected
    assert -(-size // part) <= 10000


@pytest.mark.parametrize("rel", ["../etc/passwd", "/abs", "a/../../b", "a//b", "./a", ""])
def test_safe_relative_refuses_escapes(rel):
    with pytest.raises(transfer.TransferError):
        transfer.safe_relative(rel)


def test_safe_relative_accepts_nested():
    assert transfer.safe_relative("blobs/3001.dat.gz") == "blobs/3001.dat.gz"


# -- argument validation through main() --------------------------------------------------------------------


def run_main(monkeypatch, capsys, args):
    monkeypatch.setattr(transfer, "get_s3_client", lambda module: None)
    params = dict(bucket="b", endpoint_url="http://127.0.0.1:9", access_key="test-access", secret_key="test-secret")
    params.update(args)
    params = dict((k, v) for k, v in params.items() if v is not None)
    with patch_module_args(params):
        with pytest.raises(SystemExit):
            transfer.main()
    return json.loads(capsys.readouterr().out)


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
