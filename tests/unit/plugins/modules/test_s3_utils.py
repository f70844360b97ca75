# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""module_utils/s3.py: client settings, error codes and hints, prefixes, batched deletes."""

from __future__ import annotations

import pytest

from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from ansible_collections.atlasia.dr.plugins.module_utils import s3


class FailJson(Exception):
    pass


class FakeModule(object):
    def __init__(self, **params):
        self.params = dict(bucket="dr", endpoint_url=None, region="eu-west-3")
        self.params.update(params)

    def fail_json(self, **kwargs):
        raise FailJson(kwargs)


def client_error(code, operation="ListObjectsV2", status=400, message="boom"):
    return ClientError({"Error": {"Code": code, "Message": message},
                        "ResponseMetadata": {"HTTPStatusCode": status, "RequestId": "r1"}}, operation)


@pytest.mark.parametrize("prefix,expected", [
    (None, ""), ("", ""), ("/", ""), ("dr", "dr/"), ("dr/", "dr/"), ("/dr/prod//", "dr/prod/"), (" dr ", "dr/"),
])
def test_normalize_prefix(prefix, expected):
    assert s3.normalize_prefix(prefix) == expected


@pytest.mark.parametrize("timeout,attempts,connect", [(60, 3, 20.0), (5, 2, 2.5), (2, 5, 1.0), (10, 1, 10.0)])
def test_client_settings_bound_connecting_by_timeout(timeout, attempts, connect):
    settings = s3.client_settings(dict(timeout=timeout, max_attempts=attempts, addressing_style="path"))
    assert settings["connect_timeout"] == connect
    assert settings["read_timeout"] == float(timeout)
    assert settings["retries"] == {"total_max_attempts": attempts, "mode": "standard"}
    assert settings["s3"] == {"addressing_style": "path"}


@pytest.mark.parametrize("exc,code,hint_part", [
    (client_error("NoSuchBucket"), "NoSuchBucket", "does not exist"),
    (client_error("404", "HeadBucket", 404), "NoSuchBucket", "create it"),
    (client_error("404", "HeadObject", 404), "NoSuchKey", "object does not exist"),
    (client_error("403", "HeadObject", 403), "Forbidden", "bucket policy"),
    (client_error("AccessDenied", status=403), "AccessDenied", "s3:PutObject"),
    (client_error("InvalidAccessKeyId", status=403), "InvalidAccessKeyId", "access_key"),
    (client_error("SignatureDoesNotMatch", status=403), "SignatureDoesNotMatch", "secret_key"),
    (EndpointConnectionError(endpoint_url="http://127.0.0.1:1/dr"), "EndpointConnectionError", "cannot connect"),
    (NoCredentialsError(), "NoCredentialsError", "access_key/secret_key"),
    (S3UploadFailedError("Failed to upload /x to dr/x: An error occurred (AccessDenied) when calling the "
                         "PutObject operation: Access Denied"), "AccessDenied", "s3:PutObject"),
    (client_error("SomethingNew"), "SomethingNew", None),
])
def test_describe_error(exc, code, hint_part):
    got_code, hint = s3.describe_error(exc, bucket="dr", endpoint="http://127.0.0.1:1")
    assert got_code == code
    if hint_part is None:
        assert hint is None
    else:
        assert hint_part in hint


def test_fail_json_aws_carries_code_hint_and_response():
    module = FakeModule(endpoint_url="http://127.0.0.1:1")
    with pytest.raises(FailJson) as caught:
        s3.fail_json_aws(module, client_error("NoSuchBucket", message="The specified bucket does not exist"),
                         msg="rotation of s3://dr/ failed", prefix="p/")
    result = caught.value.args[0]
    assert result["msg"].startswith("rotation of s3://dr/ failed: ")
    assert "NoSuchBucket" in result["msg"] and "'dr' does not exist at http://127.0.0.1:1" in result["msg"]
    assert result["error"]["code"] == "NoSuchBucket"
    assert result["error"]["http_status"] == 400
    assert result["error"]["operation"] == "ListObjectsV2"
    assert result["response"]["error"]["code"] == "NoSuchBucket"
    assert result["prefix"] == "p/"
    assert "boto3_version" in result and "botocore_version" in result


def test_fail_json_aws_endpoint_unreachable():
    module = FakeModule(endpoint_url="http://127.0.0.1:1")
    with pytest.raises(FailJson) as caught:
        s3.fail_json_aws(module, EndpointConnectionError(endpoint_url="http://127.0.0.1:1/dr"))
    result = caught.value.args[0]
    assert result["error"]["code"] == "EndpointConnectionError"
    assert "cannot connect to http://127.0.0.1:1" in result["msg"]


class BatchClient(object):
    def __init__(self, fail_batch=None, refuse=()):
        self.calls = []
        self.fail_batch = fail_batch
        self.refuse = set(refuse)

    def delete_objects(self, Bucket, Delete):
        self.calls.append(Delete)
        if len(self.calls) == self.fail_batch:
            raise client_error("AccessDenied", "DeleteObjects", 403, "Access Denied")
        return dict(Errors=[dict(Key=o["Key"], VersionId=o.get("VersionId"), Code="AccessDenied", Message="no")
                            for o in Delete["Objects"] if o["Key"] in self.refuse])


def test_delete_batch_chunks_and_reports_per_key():
    objects = [dict(Key="k%04d" % i) for i in range(2500)] + [dict(Key="v", VersionId="3", IsLatest=False)]
    client = BatchClient(fail_batch=2, refuse=["k0007"])
    deleted, errors = s3.delete_batch(client, "dr", objects)
    assert [len(call["Objects"]) for call in client.calls] == [1000, 1000, 501]
    assert all(call["Quiet"] is True for call in client.calls)
    assert client.calls[2]["Objects"][-1] == dict(Key="v", VersionId="3")  # only Key/VersionId are sent
    assert len(errors) == 1 + 1000
    assert errors[0] == dict(key="k0007", version_id=None, code="AccessDenied", message="no")
    assert all(err["code"] == "AccessDenied" for err in errors)
    assert len(deleted) == 2501 - len(errors)
    assert dict(Key="k0007") not in deleted


def test_head_object_missing_is_none():
    class Client(object):
        def head_object(self, Bucket, Key):
            raise client_error("404", "HeadObject", 404)

    assert s3.head_object(Client(), "dr", "x") is None


def test_validate_connection_params():
    with pytest.raises(FailJson):
        s3.validate_connection_params(FakeModule(endpoint_url="127.0.0.1:9000"))
    with pytest.raises(FailJson):
        s3.validate_connection_params(FakeModule(timeout=0))
    s3.validate_connection_params(FakeModule(endpoint_url="https://s3.example.org", timeout=5, max_attempts=1))
