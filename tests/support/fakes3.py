# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""An in-memory S3 client for unit tests: just enough of boto3's for the collection's S3 modules.

Objects are ``{key: (bytes, metadata)}``; listings are paginated (``page_size``) with common prefixes, and
``ghosts`` are emptied folders a filer-backed server (SeaweedFS) still lists. Calls are recorded in ``calls``
(``(operation, key)``, or ``(paginator operation, Prefix, Delimiter)``), DeleteObjects batches in
``delete_calls``; ``refuse`` names keys whose deletion is denied.
"""

from __future__ import annotations

import datetime

from ansible_collections.atlasia.dr.plugins.module_utils.s3 import ClientError

UTC = datetime.timezone.utc


def _not_found(operation, code="404"):
    return ClientError(dict(Error=dict(Code=code, Message="Not Found")), operation)


class FakeBody(object):
    """A GetObject ``Body``: streamed in chunks, or read whole."""

    def __init__(self, data):
        self.data = data
        self.closed = False

    def iter_chunks(self, chunk_size):
        for start in range(0, len(self.data), chunk_size):
            yield self.data[start:start + chunk_size]

    def read(self):
        return self.data

    def close(self):
        self.closed = True


class FakePaginator(object):
    def __init__(self, client, operation):
        self.client = client
        self.operation = operation

    def paginate(self, Bucket, Prefix="", Delimiter=None):
        self.client.calls.append((self.operation, Prefix, Delimiter))
        keys = sorted(k for k in self.client.objects if k.startswith(Prefix))
        if self.operation == "list_object_versions":
            yield dict(Versions=[dict(Key=k, VersionId="v1", IsLatest=True) for k in keys], DeleteMarkers=[])
            return
        entries, seen = [], set()
        for key in keys:
            rest = key[len(Prefix):]
            if Delimiter and Delimiter in rest:
                common = Prefix + rest.split(Delimiter, 1)[0] + Delimiter
                if common not in seen:
                    seen.add(common)
                    entries.append(("prefix", common))
            else:
                entries.append(("key", key))
        for ghost in self.client.ghosts:  # emptied folders a filer-backed server still lists
            if ghost.startswith(Prefix) and ghost not in seen and Delimiter:
                entries.append(("prefix", ghost))
        page_size = self.client.page_size
        for start in range(0, max(len(entries), 1), page_size):
            chunk = entries[start:start + page_size]
            yield dict(
                Contents=[dict(Key=k, Size=len(self.client.objects[k][0]), StorageClass="STANDARD",
                               LastModified=datetime.datetime(2026, 11, 25, tzinfo=UTC), ETag='"x"')
                          for kind, k in chunk if kind == "key"],
                CommonPrefixes=[dict(Prefix=k) for kind, k in chunk if kind == "prefix"])


class FakeS3(object):
    """``FakeS3({key: (bytes, metadata)})``, ``FakeS3({key: bytes})`` or ``FakeS3([key, ...])`` (content b"data")."""

    def __init__(self, objects=None, page_size=1000, refuse=(), ghosts=()):
        if objects is None:
            objects = {}
        elif not isinstance(objects, dict):
            objects = dict((key, b"data") for key in objects)
        self.objects = dict((key, value if isinstance(value, tuple) else (value, {})) for key, value in objects.items())
        self.page_size = page_size
        self.refuse = set(refuse)
        self.ghosts = list(ghosts)
        self.calls = []
        self.delete_calls = []

    def head_bucket(self, Bucket):
        self.calls.append(("head_bucket", Bucket))
        return {}

    def head_object(self, Bucket, Key):
        self.calls.append(("head_object", Key))
        if Key not in self.objects:
            raise _not_found("HeadObject")
        data, meta = self.objects[Key]
        return dict(ContentLength=len(data), Metadata=dict(meta))

    def get_object(self, Bucket, Key):
        self.calls.append(("get_object", Key))
        if Key not in self.objects:
            raise _not_found("GetObject", "NoSuchKey")
        data, meta = self.objects[Key]
        return dict(Body=FakeBody(data), ContentLength=len(data), Metadata=dict(meta))

    def upload_file(self, Filename, Bucket, Key, ExtraArgs=None, Config=None, Callback=None):
        self.calls.append(("upload_file", Key))
        with open(Filename, "rb") as handle:
            self.objects[Key] = (handle.read(), dict((ExtraArgs or {}).get("Metadata", {})))
        if Callback is not None:  # boto3 reports the bytes sent, part by part
            Callback(len(self.objects[Key][0]))

    def delete_object(self, Bucket, Key):
        self.calls.append(("delete_object", Key))
        self.objects.pop(Key, None)

    def delete_objects(self, Bucket, Delete):
        assert len(Delete["Objects"]) <= 1000
        self.delete_calls.append([o["Key"] for o in Delete["Objects"]])
        errors = []
        for obj in Delete["Objects"]:
            if obj["Key"] in self.refuse:
                errors.append(dict(Key=obj["Key"], Code="AccessDenied", Message="Access Denied"))
            else:
                self.objects.pop(obj["Key"], None)
        return dict(Errors=errors) if errors else {}

    def list_objects_v2(self, Bucket, Prefix, MaxKeys):
        count = min(MaxKeys, sum(1 for k in self.objects if k.startswith(Prefix)))
        return dict(KeyCount=count)

    def get_paginator(self, operation):
        return FakePaginator(self, operation)

    def uploads(self):
        """Keys uploaded, in order."""
        return [call[1] for call in self.calls if call[0] == "upload_file"]
