# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""preflight: every check runs whatever the others answer; each problem has its fix (real servers in
tests/integration/test_preflight.py)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from ansible_collections.atlasia.dr.plugins.module_utils import s3
from ansible_collections.atlasia.dr.plugins.modules import preflight
from tests.support.modules import run_module


class FakeBucket(object):
    def __init__(self, refuse_encryption=False, deny_write=False):
        self.refuse_encryption = refuse_encryption
        self.deny_write = deny_write
        self.calls = []

    def head_bucket(self, Bucket):
        self.calls.append(("head", Bucket))

    def list_objects_v2(self, Bucket, Prefix, MaxKeys):
        self.calls.append(("list", Prefix))
        return {"KeyCount": 0}

    def put_object(self, Bucket, Key, Body, **extra):
        self.calls.append(("put", Key, extra))
        if self.deny_write:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "PutObject")
        if self.refuse_encryption and extra.get("ServerSideEncryption"):
            raise ClientError({"Error": {"Code": "InternalError", "Message": "We encountered an internal error"}},
                              "PutObject")

    def delete_object(self, Bucket, Key):
        self.calls.append(("delete", Key))


@pytest.fixture
def bucket(monkeypatch):
    box = {}

    def client(module):
        return box["bucket"]

    monkeypatch.setattr(s3, "get_s3_client", client)
    return box


def run(capsys, check_mode=False, **params):
    params.setdefault("fail_on_problems", False)
    return run_module(preflight.main, params, capsys, check_mode=check_mode)


def test_missing_python_module_tool_and_space_each_named_with_a_fix(tmp_path, capsys):
    result = run(capsys, python=["json", "no_such_module_xyz"], tools=["sh", "no-such-tool-xyz"],
                 paths=[dict(path=str(tmp_path / "not" / "yet"), min_free_bytes=1 << 62)])
    rows = dict(((r["check"], r["target"]), r) for r in result["checks"])
    assert rows[("python", "json")]["ready"] and rows[("tool", "sh")]["ready"]
    assert not rows[("python", "no_such_module_xyz")]["ready"]
    assert "apt-get install python3-no_such_module_xyz" in rows[("python", "no_such_module_xyz")]["fix"]
    assert not rows[("tool", "no-such-tool-xyz")]["ready"]
    assert not rows[("space", str(tmp_path / "not" / "yet"))]["ready"]
    assert result["problems"] == 3 and result["ready"] is False
    assert "| tool | no-such-tool-xyz | **NO** |" in result["table"]


def test_fail_on_problems_fails_after_running_every_check(capsys):
    result = run_module(preflight.main, dict(python=["no_such_module_xyz"], tools=["no-such-tool-xyz"]), capsys)
    assert result["failed"] and "2 of 2 preflight checks are not ready" in result["msg"]
    assert len(result["checks"]) == 2


def test_a_server_without_server_side_encryption_is_named_with_the_fix(bucket, capsys):
    bucket["bucket"] = FakeBucket(refuse_encryption=True)
    result = run(capsys, s3=dict(bucket="b"), s3_prefix="p/", s3_encryption="AES256")
    row = result["checks"][0]
    assert not row["ready"] and "InternalError on PutObject" in row["detail"]
    assert "set dr_s3_encryption: none" in row["fix"]
    bucket["bucket"] = FakeBucket(refuse_encryption=True)
    result = run(capsys, s3=dict(bucket="b"), s3_prefix="p/", s3_encryption="none")
    assert result["ready"], result["checks"]
    assert [c[0] for c in bucket["bucket"].calls] == ["head", "list", "put", "delete"]


def test_write_permission_and_check_mode(bucket, capsys):
    bucket["bucket"] = FakeBucket(deny_write=True)
    result = run(capsys, s3=dict(bucket="b"), s3_prefix="p/")
    assert "s3:PutObject and s3:DeleteObject" in result["checks"][0]["fix"]
    bucket["bucket"] = FakeBucket(deny_write=True)
    result = run(capsys, check_mode=True, s3=dict(bucket="b"), s3_prefix="p/")
    assert result["ready"] and [c[0] for c in bucket["bucket"].calls] == ["head", "list"]  # nothing written


def test_a_required_key_that_is_missing(capsys, tmp_path):
    result = run(capsys, encryption_required=True, root=str(tmp_path))
    assert not result["checks"][0]["ready"] and "set dr_encryption_key" in result["checks"][0]["fix"]
    result = run(capsys, encryption_key="k-123", encryption_required=True, root=str(tmp_path))
    assert result["checks"][0]["ready"] and "no authenticated set yet" in result["checks"][0]["detail"]


def test_a_file_repository_without_key_names_the_key_and_the_archive_choice(capsys, tmp_path):
    result = run(capsys, file_repository=True, root=str(tmp_path))
    (row,) = result["checks"]
    assert (row["check"], row["target"], row["ready"]) == ("key", "dr_encryption_key", False)
    assert "restic repository" in row["detail"]
    assert "set dr_encryption_key" in row["fix"] and "dr_backup_files_store: archive" in row["fix"]
    # one key row, whichever needs the key: the encryption's (unchanged) when the environment encrypts too
    result = run(capsys, file_repository=True, encryption_required=True, root=str(tmp_path))
    assert [r["fix"] for r in result["checks"]] == ["set dr_encryption_key (in the environment's ansible-vault file)"]
    result = run(capsys, file_repository=True, encryption_key="k-123", root=str(tmp_path))
    assert result["ready"] and "no authenticated set yet" in result["checks"][0]["detail"]
    # neither the encryption nor the file repository needs a key: no row
    assert run(capsys, root=str(tmp_path))["checks"] == []


def test_restic_missing_is_named_with_its_package(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    result = run(capsys, tools=["restic"])
    (row,) = result["checks"]
    assert (row["check"], row["target"], row["ready"]) == ("tool", "restic", False)
    assert row["fix"].startswith("apt-get install restic on ")
