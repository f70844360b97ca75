# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""atlasia.dr.s3_backup_transfer through real Ansible against a real SeaweedFS S3 on 127.0.0.1.

Every assertion on what the module returned is backed by a look at the real state: the objects and their
metadata in the bucket (boto3), the files on disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid

import pytest

from tests.support.ansible_run import run_module
from tests.support.seaweedfs import SeaweedS3Server, closed_port

from ansible_collections.atlasia.dr.plugins.module_utils.checksum import artifact_digests, write_sidecars

MiB = 1024 * 1024
STEM = "backup_20261125_020000"


@pytest.fixture(scope="module")
def s3_server():
    server = SeaweedS3Server()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def bucket(s3_server):
    name = "t-%s" % uuid.uuid4().hex[:12]
    s3_server.client().create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3(s3_server):
    return s3_server.client()


def transfer(server, bucket, check=False, **args):
    params = server.module_args(bucket)
    params.update(args)
    return run_module("s3_backup_transfer", params, check=check)


def make_backup(directory, stem=STEM, size=1000, ext="sql.gz", sidecars=True, manifest=True):
    """A random artifact with its .md5/.sha256 sidecars (md5sum format) and a manifest."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / ("%s.%s" % (stem, ext))
    data = os.urandom(size)
    path.write_bytes(data)
    if sidecars:
        for algo in ("md5", "sha256"):
            (directory / (path.name + "." + algo)).write_text("%s  %s\n" % (hashlib.new(algo, data).hexdigest(), path.name))
    if manifest:
        (directory / (stem + ".json")).write_text(json.dumps({"stem": stem, "files": [path.name]}) + "\n")
    return path, data


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def seed(s3, bucket, key, data, sidecars=True, manifest=True):
    """Put a backup set in the bucket the way the module stores it (boto3 directly: faster than Ansible)."""
    meta = dict(sha256=sha256(data), md5=hashlib.md5(data).hexdigest())
    s3.put_object(Bucket=bucket, Key=key, Body=data, Metadata=meta)
    name = key.rsplit("/", 1)[-1]
    if sidecars:
        for algo in ("md5", "sha256"):
            s3.put_object(Bucket=bucket, Key=key + "." + algo, Body=("%s  %s\n" % (meta[algo], name)).encode())
    if manifest:
        stem = name.split(".", 1)[0]
        s3.put_object(Bucket=bucket, Key=key.rsplit("/", 1)[0] + "/" + stem + ".json", Body=b"{}")


def keys_of(s3, bucket, prefix=""):
    return sorted(o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
                  for o in page.get("Contents", []))


def leftovers(directory):
    """Hidden temporary files (a download that failed must leave none)."""
    return [name for name in os.listdir(directory) if name.startswith(".")]


# -- upload / download ----------------------------------------------------------------------------------------


def test_multipart_round_trip_with_sidecars(s3_server, s3, bucket, tmp_path):
    src, data = make_backup(tmp_path / "src", size=12 * MiB + 12345)
    key = "dr/daily/%s.sql.gz" % STEM

    result = transfer(s3_server, bucket, mode="upload", src=str(src), prefix="dr/daily", part_size_mb=5, concurrency=3)
    assert result.get("failed") is not True, result.get("msg")
    assert result["changed"] is True
    assert result["key"] == key
    assert result["sha256"] == sha256(data) and result["size"] == len(data)
    assert result["transferred"] == [key, key + ".md5", key + ".sha256", "dr/daily/%s.json" % STEM]  # manifest last
    assert result["bytes_transferred"] > len(data)
    # the real object: multipart (3 parts of 5 MiB), our checksums in the metadata, class and encryption applied
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ContentLength"] == len(data)
    assert head["Metadata"]["sha256"] == sha256(data)
    assert head["Metadata"]["md5"] == hashlib.md5(data).hexdigest()
    assert head["ETag"].strip('"').endswith("-3")  # the ETag is no MD5: never used as a checksum
    assert head["StorageClass"] == "STANDARD_IA"
    assert head["ServerSideEncryption"] == "AES256"
    assert keys_of(s3, bucket) == sorted(result["transferred"])
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data

    again = transfer(s3_server, bucket, mode="upload", src=str(src), prefix="dr/daily", part_size_mb=5)
    assert again["changed"] is False
    assert again["transferred"] == []
    assert sorted(again["skipped_keys"]) == sorted(result["transferred"])
    assert "skipped" not in again  # Ansible would show the task as skipped

    dest = tmp_path / "restore"
    down = transfer(s3_server, bucket, mode="download", key=key, dest=str(dest) + "/")
    assert down.get("failed") is not True, down.get("msg")
    assert down["changed"] is True
    assert down["dest"] == str(dest / src.name)
    assert set(down["verified"]) == {"metadata", "sidecar"}
    assert (dest / src.name).read_bytes() == data
    assert sorted(os.listdir(dest)) == sorted([src.name, src.name + ".md5", src.name + ".sha256", STEM + ".json"])
    for name in (src.name + ".md5", src.name + ".sha256", STEM + ".json"):
        assert (dest / name).read_bytes() == (src.parent / name).read_bytes()
    assert oct((dest / src.name).stat().st_mode & 0o777) == "0o600"

    again = transfer(s3_server, bucket, mode="download", key=key, dest=str(dest))
    assert again["changed"] is False
    assert len(again["skipped_keys"]) == 4


def test_srcs_uploads_two_artifacts_with_sidecars_in_one_call(s3_server, s3, bucket, tmp_path):
    directory = tmp_path / "set"
    dump, dump_data = make_backup(directory, stem=STEM, size=3 * MiB + 17)
    vault, vault_data = make_backup(directory, stem="vault_20261125_020000", size=4321, ext="snap")
    keys = []
    for path, stem in ((dump, STEM), (vault, "vault_20261125_020000")):
        key = "dr/daily/" + path.name
        keys += [key, key + ".md5", key + ".sha256", "dr/daily/%s.json" % stem]

    check = transfer(s3_server, bucket, check=True, mode="upload", srcs=[str(dump), str(vault)], prefix="dr/daily")
    assert check.get("failed") is not True, check.get("msg")
    assert check["changed"] is True and check["transferred"] == keys
    assert keys_of(s3, bucket) == []

    result = transfer(s3_server, bucket, mode="upload", srcs=[str(dump), str(vault)], prefix="dr/daily", part_size_mb=5)
    assert result.get("failed") is not True, result.get("msg")
    assert result["changed"] is True
    assert result["transferred"] == keys  # in order, each artifact followed by its sidecars and manifest
    assert result["artifacts"] == [
        dict(src=str(dump), key=keys[0], size=len(dump_data), sha256=sha256(dump_data),
             md5=hashlib.md5(dump_data).hexdigest()),
        dict(src=str(vault), key=keys[4], size=len(vault_data), sha256=sha256(vault_data),
             md5=hashlib.md5(vault_data).hexdigest())]
    assert "key" not in result and "sha256" not in result
    assert keys_of(s3, bucket) == sorted(keys)
    for key, data in ((keys[0], dump_data), (keys[4], vault_data)):
        assert s3.head_object(Bucket=bucket, Key=key)["Metadata"]["sha256"] == sha256(data)

    again = transfer(s3_server, bucket, mode="upload", srcs=[str(dump), str(vault)], prefix="dr/daily")
    assert again["changed"] is False and again["skipped_keys"] == keys

    dest = tmp_path / "restore"
    for path, data in ((dump, dump_data), (vault, vault_data)):
        down = transfer(s3_server, bucket, mode="download", key="dr/daily/" + path.name, dest=str(dest) + "/")
        assert down.get("failed") is not True, down.get("msg")
        assert set(down["verified"]) == {"metadata", "sidecar"}
        assert down["sha256"] == sha256(data)
        assert (dest / path.name).read_bytes() == data
        for name in (path.name + ".md5", path.name + ".sha256"):
            assert (dest / name).read_bytes() == (directory / name).read_bytes()
    assert sorted(os.listdir(dest)) == sorted(os.listdir(directory))


def test_srcs_conflict_in_the_second_artifact_uploads_nothing(s3_server, s3, bucket, tmp_path):
    directory = tmp_path / "set"
    dump, dump_data = make_backup(directory, stem=STEM)
    vault, vault_data = make_backup(directory, stem="vault_20261125_020000", ext="snap")
    s3.put_object(Bucket=bucket, Key="dr/" + vault.name, Body=b"another snapshot")
    result = transfer(s3_server, bucket, mode="upload", srcs=[str(dump), str(vault)], prefix="dr")
    assert result["failed"] is True
    assert "refusing to replace" in result["msg"] and "dr/" + vault.name in result["msg"]
    assert keys_of(s3, bucket) == ["dr/" + vault.name]  # not even the first artifact was sent


def test_verify_full_and_explicit_key(s3_server, s3, bucket, tmp_path):
    src, data = make_backup(tmp_path, size=6 * MiB, sidecars=False, manifest=False)
    result = transfer(s3_server, bucket, mode="upload", src=str(src), key="other/name.bin", verify="full",
                      part_size_mb=5, storage_class="STANDARD", encryption="none", metadata={"host": "db1"})
    assert result.get("failed") is not True, result.get("msg")
    assert result["verified"] == ["metadata", "download"]
    head = s3.head_object(Bucket=bucket, Key="other/name.bin")
    assert head["Metadata"] == {"sha256": sha256(data), "md5": hashlib.md5(data).hexdigest(), "host": "db1"}
    assert "ServerSideEncryption" not in head
    assert keys_of(s3, bucket) == ["other/name.bin"]


def test_check_mode_transfers_nothing(s3_server, s3, bucket, tmp_path):
    src, data = make_backup(tmp_path / "src")
    result = transfer(s3_server, bucket, check=True, mode="upload", src=str(src), prefix="dr")
    assert result["changed"] is True
    assert len(result["transferred"]) == 4
    assert keys_of(s3, bucket) == []

    up = transfer(s3_server, bucket, mode="upload", src=str(src), prefix="dr")
    assert up["changed"] is True, json.dumps(dict((k, v) for k, v in up.items() if k != "invocation"))
    dest = tmp_path / "restore"
    dest.mkdir()
    result = transfer(s3_server, bucket, check=True, mode="download", key="dr/" + src.name, dest=str(dest))
    assert result["changed"] is True, json.dumps(dict((k, v) for k, v in result.items() if k != "invocation"))
    assert os.listdir(dest) == []


def test_corrupted_remote_object_is_detected_and_nothing_is_written(s3_server, s3, bucket, tmp_path):
    data = os.urandom(3 * MiB)
    key = "dr/%s.sql.gz" % STEM
    seed(s3, bucket, key, data, sidecars=False, manifest=False)
    # same size, same metadata, different bytes: only hashing the content can tell
    damaged = bytearray(data)
    damaged[len(damaged) // 2] ^= 0xFF
    head = s3.head_object(Bucket=bucket, Key=key)
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(damaged), Metadata=head["Metadata"])
    assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] == len(data)

    dest = tmp_path / "restore"
    dest.mkdir()
    result = transfer(s3_server, bucket, mode="download", key=key, dest=str(dest))
    assert result["failed"] is True
    assert "corrupt" in result["msg"] and sha256(data) in result["msg"]
    assert os.listdir(dest) == []  # no final file, no temporary file

    # an existing good copy is not replaced by the damaged object either
    (dest / (STEM + ".sql.gz")).write_bytes(data)
    result = transfer(s3_server, bucket, mode="download", key=key, dest=str(dest), overwrite="always")
    assert result["failed"] is True
    assert (dest / (STEM + ".sql.gz")).read_bytes() == data
    assert leftovers(dest) == []


def test_sidecar_object_disagreeing_with_content_is_detected(s3_server, s3, bucket, tmp_path):
    key = "dr/%s.sql.gz" % STEM
    seed(s3, bucket, key, b"content", sidecars=False, manifest=False)
    s3.put_object(Bucket=bucket, Key=key + ".sha256", Body=("%s  %s.sql.gz\n" % ("0" * 64, STEM)).encode())
    dest = tmp_path / "restore"
    dest.mkdir()
    result = transfer(s3_server, bucket, mode="download", key=key, dest=str(dest))
    assert result["failed"] is True
    assert "sidecar" in result["msg"]
    assert os.listdir(dest) == []


def test_damaged_local_backup_is_not_uploaded(s3_server, s3, bucket, tmp_path):
    src, data = make_backup(tmp_path / "src")
    src.write_bytes(data[:-10])  # truncated after its sidecars were written
    result = transfer(s3_server, bucket, mode="upload", src=str(src), prefix="dr")
    assert result["failed"] is True
    assert "does not match its" in result["msg"] and "sidecar" in result["msg"]
    assert keys_of(s3, bucket) == []


def test_existing_object_with_other_content_is_not_replaced_silently(s3_server, s3, bucket, tmp_path):
    src, data = make_backup(tmp_path / "src", sidecars=False, manifest=False)
    key = "dr/" + src.name
    s3.put_object(Bucket=bucket, Key=key, Body=b"something else")
    result = transfer(s3_server, bucket, mode="upload", src=str(src), prefix="dr")
    assert result["failed"] is True
    assert "refusing to replace" in result["msg"]
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"something else"

    result = transfer(s3_server, bucket, mode="upload", src=str(src), prefix="dr", overwrite="different")
    assert result["changed"] is True
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data


def test_download_without_any_checksum_is_refused_unless_allowed(s3_server, s3, bucket, tmp_path):
    s3.put_object(Bucket=bucket, Key="legacy/backup_20250101_020000.sql.gz", Body=b"old dump")
    dest = tmp_path / "restore"
    dest.mkdir()
    args = dict(mode="download", key="legacy/backup_20250101_020000.sql.gz", dest=str(dest))
    result = transfer(s3_server, bucket, **args)
    assert result["failed"] is True
    assert "nothing to verify" in result["msg"]
    assert os.listdir(dest) == []
    result = transfer(s3_server, bucket, require_checksum=False, **args)
    assert result["changed"] is True
    assert (dest / "backup_20250101_020000.sql.gz").read_bytes() == b"old dump"


def test_directory_artifact_round_trip(s3_server, s3, bucket, tmp_path):
    src = tmp_path / "src" / (STEM + ".dir")
    (src / "blobs").mkdir(parents=True)
    files = {"toc.dat": os.urandom(2000), "3001.dat.gz": os.urandom(7 * MiB), "blobs/blob_1.dat": b"\x00" * 10}
    for rel, content in files.items():
        (src / rel).write_bytes(content)
    digests, size, texts = artifact_digests(str(src))
    write_sidecars(str(src), texts)

    result = transfer(s3_server, bucket, mode="upload", src=str(src), prefix="dr", part_size_mb=5)
    assert result.get("failed") is not True, result.get("msg")
    assert result["sha256"] == digests["sha256"] and result["size"] == size
    expected_keys = sorted(["dr/%s.dir/%s" % (STEM, rel) for rel in files] + ["dr/%s.dir.md5" % STEM,
                                                                              "dr/%s.dir.sha256" % STEM])
    assert keys_of(s3, bucket) == expected_keys
    assert s3.head_object(Bucket=bucket, Key="dr/%s.dir/toc.dat" % STEM)["Metadata"]["sha256"] == sha256(files["toc.dat"])

    assert transfer(s3_server, bucket, mode="upload", src=str(src), prefix="dr")["changed"] is False

    exists = transfer(s3_server, bucket, mode="exists", key="dr/%s.dir" % STEM)
    assert exists["exists"] is True and exists["directory"] is True and exists["size"] == size

    listing = transfer(s3_server, bucket, mode="list", prefix="dr")
    assert listing["latest"]["backup"]["artifacts"][0]["directory"] is True
    assert listing["latest"]["backup"]["size"] == size

    dest = tmp_path / "restore"
    down = transfer(s3_server, bucket, mode="download", key="dr/%s.dir" % STEM, dest=str(dest) + "/")
    assert down.get("failed") is not True, down.get("msg")
    assert down["sha256"] == digests["sha256"]
    for rel, content in files.items():
        assert (dest / (STEM + ".dir") / rel).read_bytes() == content
    assert (dest / (STEM + ".dir.sha256")).read_text() == texts["sha256"]
    assert transfer(s3_server, bucket, mode="download", key="dr/%s.dir" % STEM, dest=str(dest))["changed"] is False

    # one damaged file in the bucket: the whole download is refused, nothing appears
    s3.put_object(Bucket=bucket, Key="dr/%s.dir/toc.dat" % STEM, Body=os.urandom(2000),
                  Metadata=s3.head_object(Bucket=bucket, Key="dr/%s.dir/toc.dat" % STEM)["Metadata"])
    other = tmp_path / "restore2"
    other.mkdir()
    result = transfer(s3_server, bucket, mode="download", key="dr/%s.dir" % STEM, dest=str(other))
    assert result["failed"] is True
    assert "corrupt" in result["msg"] and "toc.dat" in result["msg"]
    assert os.listdir(other) == []


# -- list / exists ------------------------------------------------------------------------------------------------


def test_list_finds_the_newest_complete_set(s3_server, s3, bucket, tmp_path):
    for key in ("dr/backup_20261123_020000.sql.gz", "dr/backup_20261124_020000.sql.gz", "dr/schema_20261124_020000.sql"):
        seed(s3, bucket, key, os.urandom(100))
    # an interrupted upload: artifact without manifest
    src, data = make_backup(tmp_path / "partial", stem="backup_20261125_020000", manifest=False)
    assert transfer(s3_server, bucket, mode="upload", src=str(src), prefix="dr")["changed"] is True
    s3.put_object(Bucket=bucket, Key="dr/README.txt", Body=b"hello")
    s3.put_object(Bucket=bucket, Key="elsewhere/backup_20261126_020000.sql.gz", Body=b"not under the prefix")

    result = transfer(s3_server, bucket, mode="list", prefix="dr")
    assert result["changed"] is False
    assert [b["stem"] for b in result["backups"]] == ["backup_20261125_020000", "backup_20261124_020000",
                                                      "schema_20261124_020000", "backup_20261123_020000"]
    newest = result["backups"][0]
    assert newest["complete"] is False
    assert newest["artifacts"][0]["sha256"] == sha256(data)
    assert sorted(result["latest"]) == ["backup", "schema"]
    assert result["ignored"] == ["dr/README.txt"]
    complete = [b for b in result["backups"] if b["series"] == "backup" and b["complete"]]
    assert complete[0]["stem"] == "backup_20261124_020000"
    assert complete[0]["manifest"] == "dr/backup_20261124_020000.json"

    only = transfer(s3_server, bucket, mode="list", prefix="dr", series=["schema"])
    assert [b["stem"] for b in only["backups"]] == ["schema_20261124_020000"]


def test_exists(s3_server, s3, bucket, tmp_path):
    data = os.urandom(1000)
    seed(s3, bucket, "dr/%s.sql.gz" % STEM, data, sidecars=False, manifest=False)
    yes = transfer(s3_server, bucket, mode="exists", key="dr/%s.sql.gz" % STEM)
    assert yes["exists"] is True and yes["changed"] is False
    assert yes["size"] == len(data) and yes["sha256"] == sha256(data) and yes["storage_class"] == "STANDARD"
    no = transfer(s3_server, bucket, mode="exists", key="dr/backup_19990101_000000.sql.gz")
    assert no["exists"] is False and no.get("failed") is not True


# -- errors ------------------------------------------------------------------------------------------------------


def test_missing_bucket_and_key_are_named(s3_server, tmp_path):
    result = transfer(s3_server, "no-such-bucket-%s" % uuid.uuid4().hex[:8], mode="list", prefix="dr")
    assert result["failed"] is True
    assert result["error"]["code"] == "NoSuchBucket"
    assert "does not exist" in result["msg"]


def test_download_missing_key(s3_server, bucket, tmp_path):
    result = transfer(s3_server, bucket, mode="download", key="dr/backup_19990101_000000.sql.gz", dest=str(tmp_path))
    assert result["failed"] is True
    assert "NoSuchKey" in result["msg"]


def test_unreachable_endpoint_fails_within_timeout(tmp_path):
    src, data = make_backup(tmp_path, sidecars=False, manifest=False)
    port = closed_port()
    args = dict(bucket="dr", endpoint_url="http://127.0.0.1:%d" % port, access_key="dr-test-access",
                secret_key="dr-test-secret", mode="upload", src=str(src), prefix="dr", timeout=4, max_attempts=2)
    started = time.monotonic()
    result = run_module("s3_backup_transfer", args)
    elapsed = time.monotonic() - started
    assert result["failed"] is True
    assert result["error"]["code"] == "EndpointConnectionError"
    assert "cannot connect to http://127.0.0.1:%d" % port in result["msg"]
    assert result["duration"] <= 4 + 2  # timeout plus retry backoff
    assert elapsed < 4 + 20  # plus Ansible's own start-up
