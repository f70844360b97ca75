# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""S3 plumbing shared by the atlasia.dr S3 modules: argument spec, boto3 client, listing, batched
deletes and error reporting (in the spirit of amazon.aws ``fail_json_aws``: the SDK's error code, the
response, and a sentence that says what to check).

boto3 is optional at import time (``HAS_BOTO3``); modules call :func:`ensure_boto3` first, which fails
with ``missing_required_lib``. The exception names below exist even without botocore so ``except``
clauses in modules stay valid.
"""

from __future__ import annotations

import re
import time
import traceback

from ansible.module_utils.basic import missing_required_lib
from ansible.module_utils.common.dict_transformations import camel_dict_to_snake_dict
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.atlasia.dr.plugins.module_utils import s3_options

try:
    import boto3
    import botocore
    from boto3.exceptions import Boto3Error
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:
    HAS_BOTO3 = False
    BOTO3_IMPORT_ERROR = traceback.format_exc()

    class BotoCoreError(Exception):  # type: ignore[no-redef]
        """Placeholder: botocore is not installed."""

    class ClientError(Exception):  # type: ignore[no-redef]
        """Placeholder: botocore is not installed."""

    class Boto3Error(Exception):  # type: ignore[no-redef]
        """Placeholder: boto3 is not installed."""
else:
    HAS_BOTO3 = True
    BOTO3_IMPORT_ERROR = None

AWS_ERRORS = (ClientError, BotoCoreError, Boto3Error)
"""Every exception the SDK raises for a failed call (catch these around S3 calls)."""

DELETE_BATCH = 1000
"""``DeleteObjects`` accepts at most 1000 keys per request."""

MiB = 1024 * 1024

STORAGE_CLASSES = ["STANDARD", "REDUCED_REDUNDANCY", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING",
                   "GLACIER", "GLACIER_IR", "DEEP_ARCHIVE"]

NOT_FOUND_CODES = ("404", "NoSuchKey", "NotFound", "Not Found", "NoSuchVersion")

_HINTS = {
    "NoSuchBucket": "bucket {bucket!r} does not exist at {endpoint}: create it, or fix bucket/endpoint_url/region",
    "NoSuchKey": "the object does not exist in bucket {bucket!r} (check key/prefix)",
    "AccessDenied": ("the credentials were refused for this operation: check access_key/secret_key (or the "
                     "credential chain), and that the IAM/bucket policy allows s3:ListBucket, s3:GetObject, "
                     "s3:PutObject, s3:DeleteObject (and kms:GenerateDataKey/kms:Decrypt with aws:kms)"),
    "Forbidden": ("the credentials were refused (HTTP 403): check access_key/secret_key and the bucket policy; a "
                  "bucket owned by another account also answers 403"),
    "InvalidAccessKeyId": "the endpoint does not know this access key: check access_key and endpoint_url",
    "SignatureDoesNotMatch": "secret_key does not match access_key (or the clock of this host is wrong)",
    "RequestTimeTooSkewed": "the clock of this host is too far from the endpoint's: fix NTP",
    "ExpiredToken": "session_token has expired: get fresh temporary credentials",
    "InvalidToken": "session_token is invalid for these credentials",
    "AuthorizationHeaderMalformed": "region does not match the bucket's region: set region",
    "PermanentRedirect": "the bucket lives in another region: set region (or endpoint_url) accordingly",
    "InvalidStorageClass": "the endpoint does not support this storage_class",
    "InvalidObjectState": "the object is archived (GLACIER/DEEP_ARCHIVE): restore it before downloading",
    "KMS.NotFoundException": "kms_key_id does not exist in this region",
    "KMS.DisabledException": "the KMS key is disabled",
    "EntityTooSmall": "part_size_mb is below the endpoint's minimum part size (5 MiB on AWS)",
    "InternalError": "the endpoint failed internally (retry later; with encryption, check it supports SSE)",
    "ServiceUnavailable": "the endpoint is overloaded or down: retry later",
    "SlowDown": "the endpoint throttles requests: lower concurrency or retry later",
    "EndpointConnectionError": ("cannot connect to {endpoint}: check endpoint_url/region, DNS, firewall and that the "
                                "service is running"),
    "ConnectTimeoutError": "no answer from {endpoint} within the connect timeout: check endpoint_url, network, firewall",
    "ReadTimeoutError": "{endpoint} accepted the connection but did not answer within timeout: raise timeout or retry",
    "ConnectionClosedError": "{endpoint} closed the connection: check the endpoint, proxy and TLS settings",
    "SSLError": "TLS handshake with {endpoint} failed: check ca_bundle (or validate_certs) and the URL scheme",
    "NoCredentialsError": ("no credentials found: set access_key/secret_key, profile, or the AWS_ACCESS_KEY_ID/"
                           "AWS_SECRET_ACCESS_KEY environment, or use an instance role"),
    "PartialCredentialsError": "incomplete credentials: set both access_key and secret_key",
    "ProfileNotFound": "profile is not defined in ~/.aws/config or ~/.aws/credentials",
}

_CODE_IN_TEXT = re.compile(r"An error occurred \(([A-Za-z0-9.]+)\)")


# the option specs live in s3_options, which imports no SDK (a module that only takes the options, as
# dr_file_repo passing them to restic, does not pay for importing boto3)
s3_argument_spec = s3_options.s3_argument_spec
s3_module_kwargs = s3_options.s3_module_kwargs


def ensure_boto3(module):
    """Fail with ``missing_required_lib`` when boto3/botocore cannot be imported."""
    if not HAS_BOTO3:
        module.fail_json(msg=missing_required_lib("boto3"), exception=BOTO3_IMPORT_ERROR)


def sdk_versions():
    """``{'boto3_version': ..., 'botocore_version': ...}`` (empty without boto3)."""
    if not HAS_BOTO3:
        return {}
    return dict(boto3_version=boto3.__version__, botocore_version=botocore.__version__)


def client_settings(params):
    """Keyword arguments of ``botocore.config.Config`` for the module parameters.

    ``timeout`` bounds how long an unreachable endpoint can hold the module: the connect timeout is split
    over ``max_attempts`` so connecting fails after about ``timeout`` seconds in total, while each read
    (a response, a chunk of a download) may take up to ``timeout`` seconds.
    """
    timeout = params.get("timeout") or 60
    attempts = max(1, params.get("max_attempts") or 1)
    settings = dict(
        connect_timeout=max(1.0, float(timeout) / attempts),
        read_timeout=float(timeout),
        retries={"total_max_attempts": attempts, "mode": "standard"},
        s3={"addressing_style": params.get("addressing_style") or "auto"},
    )
    if params.get("checksum_calculation") == "when_required":  # when_supported is the SDK's default
        settings.update(request_checksum_calculation="when_required", response_checksum_validation="when_required")
    return settings


def validate_connection_params(module):
    """Checks the argument spec cannot express; fails the module on error."""
    params = module.params
    url = params.get("endpoint_url")
    if url and not re.match(r"^https?://[^/\s]+", url):
        module.fail_json(msg="endpoint_url must be an http:// or https:// URL, got %r" % url)
    if params.get("timeout") is not None and params["timeout"] < 1:
        module.fail_json(msg="timeout must be at least 1 second")
    if params.get("max_attempts") is not None and params["max_attempts"] < 1:
        module.fail_json(msg="max_attempts must be at least 1")


def get_s3_client(module):
    """A boto3 S3 client from the module's connection options (else boto3's credential chain)."""
    ensure_boto3(module)
    validate_connection_params(module)
    params = module.params
    region = params.get("region")
    if not region and params.get("endpoint_url"):
        region = "us-east-1"  # S3-compatible servers ignore it, but SigV4 needs one
    verify = params.get("validate_certs")
    if verify and params.get("ca_bundle"):
        verify = params["ca_bundle"]
    try:
        session = boto3.session.Session(
            aws_access_key_id=params.get("access_key"), aws_secret_access_key=params.get("secret_key"),
            aws_session_token=params.get("session_token"), profile_name=params.get("profile"), region_name=region)
        return session.client("s3", endpoint_url=params.get("endpoint_url") or None, verify=verify,
                              config=Config(**client_settings(params)))
    except (ClientError, BotoCoreError, Boto3Error) as exc:
        fail_json_aws(module, exc, msg="cannot create the S3 client")


def endpoint_of(module):
    params = module.params
    if params.get("endpoint_url"):
        return params["endpoint_url"]
    return "AWS S3 (%s)" % (params.get("region") or "default region")


def error_code(exc):
    """The SDK's error code: ``NoSuchBucket``, ``AccessDenied``, ``EndpointConnectionError``..."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if code:
            return str(code)
    match = _CODE_IN_TEXT.search(to_native(exc))
    if match:
        return match.group(1)
    cause = getattr(exc, "__cause__", None) or getattr(exc, "__context__", None)
    if cause is not None and cause is not exc and isinstance(cause, AWS_ERRORS):
        return error_code(cause)
    return type(exc).__name__


def is_not_found(exc):
    """True for a missing object answer (HEAD answers a bare ``404``, also for a missing bucket)."""
    return error_code(exc) in NOT_FOUND_CODES


def _operation(exc):
    return getattr(exc, "operation_name", None)


def describe_error(exc, bucket=None, endpoint=None):
    """``(code, hint)`` with an actionable hint (``None`` when there is nothing to add)."""
    code = error_code(exc)
    operation = _operation(exc)
    if code in ("404", "NotFound", "Not Found") and operation == "HeadBucket":
        code = "NoSuchBucket"
    elif code in ("404", "NotFound", "Not Found"):
        code = "NoSuchKey"
    elif code == "403":
        code = "Forbidden"
    hint = _HINTS.get(code)
    if hint:
        hint = hint.format(bucket=bucket, endpoint=endpoint or "the endpoint")
    return code, hint


def error_result(exc, bucket=None, endpoint=None):
    """Structured ``error`` return value (code, message, hint, operation, HTTP status)."""
    code, hint = describe_error(exc, bucket, endpoint)
    response = getattr(exc, "response", None) or {}
    return dict(
        code=code,
        message=to_native(exc),
        hint=hint,
        operation=_operation(exc),
        http_status=(response.get("ResponseMetadata") or {}).get("HTTPStatusCode") if isinstance(response, dict) else None,
    )


def fail_json_aws(module, exc, msg=None, **kwargs):
    """``fail_json`` with the SDK error: ``"<msg>: <code>: <SDK text>. <what to check>"``.

    The result carries ``error`` (see :func:`error_result`), the snake_cased SDK ``response`` (without
    body streams), the traceback and the boto3/botocore versions. ``kwargs`` are added to the result.
    """
    bucket = module.params.get("bucket")
    details = error_result(exc, bucket=bucket, endpoint=endpoint_of(module))
    text = details["message"]
    if details["code"] and details["code"] not in text:
        text = "%s: %s" % (details["code"], text)
    message = "%s: %s" % (msg, text) if msg else text
    if details["hint"]:
        message = "%s. %s" % (message.rstrip("."), details["hint"])
    failure = dict(msg=message, error=details, exception=traceback.format_exc())
    failure.update(sdk_versions())
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        failure["response"] = camel_dict_to_snake_dict(
            dict((k, v) for k, v in response.items() if k not in ("Body", "StreamingBody")))
    failure.update(kwargs)
    module.fail_json(**failure)


def normalize_prefix(prefix):
    """A key prefix as a "folder": ``''`` for the bucket's root, else with exactly one trailing ``/``."""
    prefix = (prefix or "").strip().lstrip("/")
    if not prefix:
        return ""
    return prefix.rstrip("/") + "/"


def s3_url(bucket, key=""):
    return "s3://%s/%s" % (bucket, key)


def list_level(client, bucket, prefix):
    """One "folder" level: ``(objects, folders)``.

    ``objects`` are dicts (``key``, ``size``, ``last_modified``, ``storage_class``, ``etag``) of the keys
    directly under ``prefix``; ``folders`` are the common prefixes (``<prefix><name>/``) below it, i.e.
    directory artifacts and sub-folders. Uses a paginator (any number of keys).
    """
    objects, folders = [], []
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        for item in page.get("Contents", []):
            if item["Key"] == prefix:
                continue  # a "folder marker" object
            objects.append(_object_info(item))
        for common in page.get("CommonPrefixes", []):
            folders.append(common["Prefix"])
    return objects, folders


def has_objects(client, bucket, prefix):
    """Whether at least one object lives below ``prefix``."""
    answer = client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
    return bool(answer.get("KeyCount", len(answer.get("Contents", []) or [])))


def drop_empty_folders(client, bucket, folders, only=None):
    """``folders`` without the ones that hold no object.

    Filer-backed servers (SeaweedFS) keep listing an emptied folder as a common prefix for a while; such a
    "ghost" must not count as a backup. ``only(folder)`` limits the (one request each) check to some folders.
    """
    return [folder for folder in folders
            if (only is not None and not only(folder)) or has_objects(client, bucket, folder)]


def list_tree(client, bucket, prefix):
    """Every object below ``prefix`` (recursive), as :func:`list_level` object dicts."""
    objects = []
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            objects.append(_object_info(item))
    return objects


def _object_info(item):
    modified = item.get("LastModified")
    return dict(key=item["Key"], size=item.get("Size", 0),
                last_modified=modified.isoformat() if hasattr(modified, "isoformat") else modified,
                storage_class=item.get("StorageClass", "STANDARD"), etag=(item.get("ETag") or "").strip('"'))


def list_versions(client, bucket, prefix, keys=None):
    """Versions and delete markers below ``prefix``: ``[{'Key', 'VersionId', 'IsLatest', 'DeleteMarker'}]``.

    ``keys`` (a set) restricts the answer to these keys.
    """
    found = []
    paginator = client.get_paginator("list_object_versions")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for kind, marker in (("Versions", False), ("DeleteMarkers", True)):
            for item in page.get(kind, []) or []:
                if keys is not None and item["Key"] not in keys:
                    continue
                found.append(dict(Key=item["Key"], VersionId=item.get("VersionId"), IsLatest=item.get("IsLatest", False),
                                  DeleteMarker=marker))
    return found


def delete_batch(client, bucket, objects, batch_size=DELETE_BATCH, pause=0.0):
    """Delete ``objects`` (``{'Key': k[, 'VersionId': v]}``) with ``DeleteObjects``, ``batch_size`` per call.

    Returns ``(deleted, errors)``: ``deleted`` lists the objects the endpoint confirmed (keys not reported
    as errors), ``errors`` one dict per failed key (``key``, ``version_id``, ``code``, ``message``). A
    whole failed request is reported for each key of its batch, and the remaining batches still run.
    """
    deleted, errors = [], []
    batch_size = max(1, min(batch_size, DELETE_BATCH))
    for start in range(0, len(objects), batch_size):
        chunk = [dict((k, v) for k, v in obj.items() if k in ("Key", "VersionId") and v is not None)
                 for obj in objects[start:start + batch_size]]
        try:
            answer = client.delete_objects(Bucket=bucket, Delete={"Objects": chunk, "Quiet": True})
        except (ClientError, BotoCoreError, Boto3Error) as exc:
            code = error_code(exc)
            for obj in chunk:
                errors.append(dict(key=obj["Key"], version_id=obj.get("VersionId"), code=code, message=to_native(exc)))
            continue
        failed = set()
        for err in answer.get("Errors", []) or []:
            failed.add((err.get("Key"), err.get("VersionId")))
            errors.append(dict(key=err.get("Key"), version_id=err.get("VersionId"), code=err.get("Code"),
                               message=err.get("Message")))
        for obj in chunk:
            if (obj["Key"], obj.get("VersionId")) not in failed and (obj["Key"], None) not in failed:
                deleted.append(obj)
        if pause:
            time.sleep(pause)
    return deleted, errors


def head_object(client, bucket, key):
    """``head_object`` answer, or ``None`` when the key does not exist (other errors propagate)."""
    try:
        return client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if is_not_found(exc):
            return None
        raise
