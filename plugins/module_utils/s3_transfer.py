# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The S3 transfer engine of the collection: upload, download, list and exists of backup artifacts.

Every object carries its own SHA-256 and MD5 in its metadata (an ETag is never trusted as a checksum); a
download is verified against the metadata and the artifact's sidecars before it takes its final name. Used by
the ``s3_backup_transfer`` module and by ``backup_locate`` (fetching a set). :class:`BackupTransfer` takes any
object with ``params`` (the options of ``s3_backup_transfer``) and ``check_mode``.
"""

from __future__ import annotations

import hashlib
import math
import os
import time

from ansible.module_utils.common.text.converters import to_native

from ansible_collections.atlasia.dr.plugins.module_utils.atomic import commit, remove_path, temp_path_for, write_text
from ansible_collections.atlasia.dr.plugins.module_utils.checksum import (
    ChecksumError,
    MultiHasher,
    artifact_digests,
    file_digests,
    parse_sidecar_text,
    tree_listing,
)
from ansible_collections.atlasia.dr.plugins.module_utils.naming import manifest_name, parse_backup_name, sidecar_names
from ansible_collections.atlasia.dr.plugins.module_utils.progress import Reporter
from ansible_collections.atlasia.dr.plugins.module_utils.retention import group_names
from ansible_collections.atlasia.dr.plugins.module_utils.s3 import (
    Boto3Error,
    BotoCoreError,
    ClientError,
    MiB,
    STORAGE_CLASSES,
    delete_batch,
    drop_empty_folders,
    head_object,
    is_not_found,
    list_level,
    list_tree,
    normalize_prefix,
    s3_argument_spec,
    s3_module_kwargs,
    s3_url,
)

try:
    from boto3.s3.transfer import TransferConfig
except ImportError:
    pass  # ensure_boto3() reports it

CHUNK = MiB
MAX_PARTS = 10000
RESERVED_METADATA = ("sha256", "md5")


class TransferError(Exception):
    """A refusal or a verification failure, with a message for the user."""


def transfer_argument_spec():
    """The options of ``s3_backup_transfer``: the S3 connection plus what to move and how."""
    spec = s3_argument_spec()
    spec.update(
        mode=dict(type="str", required=True, choices=["upload", "download", "list", "exists"]),
        src=dict(type="path"),
        srcs=dict(type="list", elements="path"),
        dest=dict(type="path"),
        key=dict(type="str", no_log=False),
        prefix=dict(type="str"),
        series=dict(type="list", elements="str"),
        with_sidecars=dict(type="bool", default=True),
        storage_class=dict(type="str", default="STANDARD_IA", choices=STORAGE_CLASSES),
        encryption=dict(type="str", default="AES256", choices=["AES256", "aws:kms", "none"]),
        kms_key_id=dict(type="str", no_log=False),
        metadata=dict(type="dict"),
        part_size_mb=dict(type="int", default=64),
        concurrency=dict(type="int", default=4),
        verify=dict(type="str", default="metadata", choices=["metadata", "full"]),
        overwrite=dict(type="str", default="never", choices=["never", "different", "always"]),
        require_checksum=dict(type="bool", default=True),
    )
    return spec


def transfer_module_kwargs():
    """Constraints of ``s3_backup_transfer``'s options, to merge into the module's constructor."""
    kwargs = s3_module_kwargs()
    kwargs["mutually_exclusive"] = kwargs["mutually_exclusive"] + [["key", "prefix"], ["src", "srcs"]]
    kwargs["required_if"] = [
        ["mode", "upload", ["src", "srcs"], True],
        ["mode", "upload", ["key", "prefix"], True],
        ["mode", "download", ["key", "dest"]],
        ["mode", "exists", ["key"]],
    ]
    return kwargs


# -- pure helpers (unit tested) -----------------------------------------------------------------------


def parse_checksum_text(text):
    """``[(hexdigest, name)]`` of a ``md5sum``/``sha256sum`` file from a bucket (hexadecimal digests only)."""
    return parse_sidecar_text(text, hex_only=True)


def listing_entries(text):
    """Directory sidecar text as ``{relative path inside the artifact: hexdigest}`` (first component dropped)."""
    entries = {}
    for digest, path in parse_checksum_text(text):
        parts = path.split("/", 1)
        if len(parts) != 2:
            raise ChecksumError("directory checksum line %r does not name a file inside the artifact" % path)
        entries[parts[1]] = digest
    return entries


def effective_part_size(size, part_size_mb):
    """Part size in bytes: the requested one, raised so ``size`` fits in 10000 parts."""
    part = part_size_mb * MiB
    if size > part * MAX_PARTS:
        part = int(math.ceil(float(size) / (MAX_PARTS - 1) / MiB)) * MiB
    return part


def sidecar_keys(key):
    """``{'md5': key.md5, 'sha256': key.sha256, 'manifest': <folder>/<stem>.json or None}``."""
    keys = dict((algo, key + suffix) for algo, suffix in sidecar_names("").items())
    parsed = parse_backup_name(key)
    folder = key.rsplit("/", 1)[0] + "/" if "/" in key else ""
    keys["manifest"] = folder + manifest_name(parsed.stem) if parsed else None
    return keys


def safe_relative(rel):
    """Reject keys that would escape the destination directory."""
    parts = rel.split("/")
    if not rel or rel.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise TransferError("refusing the object name %r inside a directory artifact (unsafe path)" % rel)
    return os.path.join(*parts)


def group_listing(objects, folders, series=None):
    """Group a folder listing into backups: ``(backups newest first, ignored keys)``.

    ``objects`` are :func:`list_level` dicts; ``folders`` common prefixes (directory artifacts).
    """
    by_key = dict((obj["key"], obj) for obj in objects)
    names = list(by_key) + list(folders)
    groups, ignored = group_names(names)
    backups = []
    for (prefix, stem), group in groups.items():
        if series is not None and prefix not in series:
            continue
        entry = dict(stem=stem, series=prefix, timestamp=group["timestamp"].isoformat(), artifacts=[], sidecars=[],
                     manifest=None, complete=False, size=0)
        for name in sorted(group["names"]):
            parsed = parse_backup_name(name)
            if parsed.role == "manifest":
                entry["manifest"] = name
                entry["complete"] = True
            elif parsed.role in ("md5", "sha256"):
                entry["sidecars"].append(name)
            else:
                obj = by_key.get(name)
                entry["artifacts"].append(dict(
                    key=name.rstrip("/"), name=parsed.name, directory=name.endswith("/"),
                    size=obj["size"] if obj else None, storage_class=obj["storage_class"] if obj else None,
                    last_modified=obj["last_modified"] if obj else None, sha256=None, md5=None))
        backups.append(entry)
    backups.sort(key=lambda b: b["stem"])
    backups.sort(key=lambda b: b["timestamp"], reverse=True)  # newest first, ties by name
    return backups, ignored


# -- the module ---------------------------------------------------------------------------------------


class BackupTransfer(object):

    def __init__(self, module, client):
        self.module = module
        self.client = client
        self.params = module.params
        self.bucket = self.params["bucket"]
        self.result = dict(changed=False, mode=self.params["mode"])
        # progress lines of the action plugin (a no-op unless it set progress_file)
        self.progress = Reporter(self.params.get("progress_file"),
                                 verb="uploaded" if self.params["mode"] == "upload" else "downloaded")

    def run(self):
        """Do what ``params['mode']`` says; the outcome is in :attr:`result`."""
        dict(upload=self.upload, download=self.download, list=self.listing, exists=self.exists)[self.params["mode"]]()

    def what(self):
        """``'<mode> of s3://bucket/key-or-prefix'``, for error messages."""
        where = self.params["key"] or normalize_prefix(self.params["prefix"])
        return "%s of %s" % (self.params["mode"], s3_url(self.bucket, where))

    def finish(self, started):
        """:attr:`result` with ``duration``, the seconds since ``started`` (a ``time.monotonic()`` value)."""
        self.result["duration"] = round(time.monotonic() - started, 3)
        return self.result

    # S3 helpers -----------------------------------------------------------------------------------------
    def _fetch(self, key, path=None):
        """Stream ``key`` into a new file ``path`` (private, created exclusively) while hashing it.

        Without ``path`` the content is only hashed. Returns ``(GetObject answer, MultiHasher)``; the bytes
        received are added to the result's ``bytes_transferred`` when they are written.
        """
        answer = self.client.get_object(Bucket=self.bucket, Key=key)
        hasher = MultiHasher()
        body = answer["Body"]
        try:
            if path is None:
                for chunk in body.iter_chunks(CHUNK):
                    hasher.update(chunk)
                return answer, hasher
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                for chunk in body.iter_chunks(CHUNK):
                    handle.write(chunk)
                    hasher.update(chunk)
                    self.progress.add(len(chunk))
        finally:
            body.close()
        self.result["bytes_transferred"] += hasher.size
        return answer, hasher

    def get_small(self, key):
        """Content of a small object (sidecar, manifest) or ``None``; verified against its sha256 metadata."""
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if is_not_found(exc):
                return None
            raise
        data = answer["Body"].read()
        expected = (answer.get("Metadata") or {}).get("sha256")
        if expected and hashlib.sha256(data).hexdigest() != expected:
            raise TransferError("%s is damaged: its SHA-256 %s does not match its metadata %s" % (
                s3_url(self.bucket, key), hashlib.sha256(data).hexdigest(), expected))
        return data

    def _transfer_config(self, size):
        part = effective_part_size(size, self.params["part_size_mb"])
        concurrency = self.params["concurrency"]
        return TransferConfig(multipart_threshold=part, multipart_chunksize=part, max_concurrency=concurrency,
                              use_threads=concurrency > 1)

    def _extra_args(self, digests):
        metadata = dict((str(k), str(v)) for k, v in (self.params["metadata"] or {}).items())
        metadata.update(sha256=digests["sha256"], md5=digests["md5"])
        extra = dict(Metadata=metadata, StorageClass=self.params["storage_class"])
        if self.params["encryption"] != "none":
            extra["ServerSideEncryption"] = self.params["encryption"]
            if self.params["encryption"] == "aws:kms" and self.params["kms_key_id"]:
                extra["SSEKMSKeyId"] = self.params["kms_key_id"]
        return extra

    # upload -----------------------------------------------------------------------------------------------
    def _upload_items(self, src, key):
        """``[(local path, key, digests, size)]`` of the artifact (its files for a directory) and its sidecars.

        Also returns the artifact's own digests and size, and checks the local sidecars first.
        """
        name = os.path.basename(src.rstrip("/"))
        directory = os.path.dirname(src)
        items = []
        digests, size, texts = artifact_digests(src)
        if os.path.isdir(src):
            per_file = dict((algo, listing_entries(texts[algo])) for algo in texts)
            for rel in sorted(per_file["sha256"]):
                path = os.path.join(src, *rel.split("/"))
                items.append((path, "%s/%s" % (key, rel), dict((a, per_file[a][rel]) for a in per_file),
                              os.path.getsize(path)))
            self._check_local_sidecars(src, name, texts=texts)
        else:
            items.append((src, key, digests, size))
            self._check_local_sidecars(src, name, digests=digests)
        if self.params["with_sidecars"]:
            remote = sidecar_keys(key)
            local = dict((algo, os.path.join(directory, side)) for algo, side in sidecar_names(name).items())
            parsed = parse_backup_name(name)
            local["manifest"] = os.path.join(directory, manifest_name(parsed.stem)) if parsed else None
            for role in ("md5", "sha256", "manifest"):
                path = local.get(role)
                if path and remote.get(role) and os.path.isfile(path):
                    side_digests, side_size = file_digests(path)
                    items.append((path, remote[role], side_digests, side_size))
        return items, digests, size

    def _check_local_sidecars(self, src, name, digests=None, texts=None):
        directory = os.path.dirname(src)
        for algo, side in sidecar_names(name).items():
            path = os.path.join(directory, side)
            if not os.path.isfile(path):
                continue
            with open(path, "r") as handle:
                text = handle.read()
            try:
                if texts is not None:
                    ok = listing_entries(text) == listing_entries(texts[algo])
                else:
                    ok = parse_checksum_text(text)[0][0] == digests[algo]
            except ChecksumError as exc:
                raise TransferError("%s: %s" % (path, exc))
            if not ok:
                raise TransferError("%s does not match its %s sidecar %s: the local backup is damaged or incomplete; "
                                    "not uploading it" % (src, algo.upper(), path))

    def _check_upload_settings(self):
        params = self.params
        if params["srcs"] is not None and params["key"]:
            raise TransferError("key names a single object: it cannot be used with srcs, where each source is "
                                "uploaded as prefix + its base name (use prefix, or one task per key with src)")
        if params["part_size_mb"] < 5:
            raise TransferError("part_size_mb must be at least 5 (the S3 minimum part size)")
        if params["concurrency"] < 1:
            raise TransferError("concurrency must be at least 1")
        if params["kms_key_id"] and params["encryption"] != "aws:kms":
            raise TransferError("kms_key_id needs encryption=aws:kms")
        reserved = set(RESERVED_METADATA) & set(k.lower() for k in (params["metadata"] or {}))
        if reserved:
            raise TransferError("metadata keys %s are reserved for the module's checksums" % ", ".join(sorted(reserved)))

    def _upload_key(self, src):
        """Key of the artifact ``src``: ``key`` (a trailing ``/`` appends the base name), else prefix + base name."""
        name = os.path.basename(src.rstrip("/"))
        if self.params["key"]:
            key = self.params["key"].lstrip("/")
            return key + name if key.endswith("/") else key
        return normalize_prefix(self.params["prefix"]) + name

    def _plan_source(self, src):
        """What uploading one source means: its key, digests and the ``(path, key, digests, size)`` items."""
        src = os.path.abspath(src)
        if not os.path.exists(src):
            raise TransferError("src %s does not exist" % src)
        key = self._upload_key(src)
        items, digests, size = self._upload_items(src, key)
        return dict(src=src, key=key, items=items, directory=os.path.isdir(src),
                    artifact=dict(src=src, key=key, size=size, sha256=digests["sha256"], md5=digests["md5"]))

    @staticmethod
    def _merge_items(plans):
        """The items of every source in upload order, one per key.

        A key several sources share (the manifest of artifacts with the same stem) is uploaded once, at its last
        place: after every artifact that names it. Two different contents for one key are refused.
        """
        merged = {}
        owners = {}
        for plan in plans:
            for path, item_key, digests, size in plan["items"]:
                if item_key in merged:
                    if merged[item_key][2]["sha256"] != digests["sha256"] or merged[item_key][3] != size:
                        raise TransferError("%s and %s would both be uploaded to %s; not uploading anything" % (
                            owners[item_key], path, item_key))
                    del merged[item_key]  # re-inserted: moves to its last place
                merged[item_key] = (path, item_key, digests, size)
                owners[item_key] = path
        return list(merged.values())

    def upload(self):
        params = self.params
        self._check_upload_settings()
        single = params["srcs"] is None
        plans = [self._plan_source(src) for src in ([params["src"]] if single else params["srcs"])]
        artifact_keys = {}
        for plan in plans:
            if plan["key"] in artifact_keys:
                raise TransferError("srcs %s and %s would both be uploaded to %s; not uploading anything" % (
                    artifact_keys[plan["key"]], plan["src"], plan["key"]))
            artifact_keys[plan["key"]] = plan["src"]
        items = self._merge_items(plans)
        result = self.result
        result.update(keys=[item[1] for item in items], artifacts=[plan["artifact"] for plan in plans], transferred=[],
                      skipped_keys=[], bytes_transferred=0, verified=[])
        if single:
            artifact = plans[0]["artifact"]
            result.update(key=artifact["key"], size=artifact["size"], sha256=artifact["sha256"], md5=artifact["md5"])

        # decide everything, for every source, before sending anything
        todo, conflicts = [], []
        for path, item_key, item_digests, item_size in items:
            head = head_object(self.client, self.bucket, item_key)
            if head is not None:
                same = head.get("ContentLength") == item_size and \
                    (head.get("Metadata") or {}).get("sha256") == item_digests["sha256"]
                if same and params["overwrite"] != "always":
                    result["skipped_keys"].append(item_key)
                    continue
                if not same and params["overwrite"] == "never":
                    conflicts.append(item_key)
                    continue
            todo.append((path, item_key, item_digests, item_size))
        stale = []  # (artifact key, [remote files of a directory artifact no longer in it])
        wanted = set(result["keys"])
        for plan in plans:
            if plan["directory"]:
                extra = [obj["key"] for obj in list_tree(self.client, self.bucket, plan["key"] + "/")
                         if obj["key"] not in wanted]
                if extra:
                    stale.append((plan["key"], extra))
                    if params["overwrite"] == "never":
                        conflicts.extend(extra)
        if conflicts:
            where = plans[0]["key"] if len(plans) == 1 else normalize_prefix(params["prefix"])
            raise TransferError("%s already exist(s) with different content; refusing to replace a backup "
                                "(overwrite=different replaces it): %s" % (
                                    s3_url(self.bucket, where), ", ".join(conflicts[:10])))
        if self.module.check_mode:
            result["transferred"] = [item[1] for item in todo]
            result["changed"] = bool(todo or stale)
            result["bytes_transferred"] = sum(item[3] for item in todo)
            return
        self.progress.set_total(sum(item[3] for item in todo))
        for path, item_key, item_digests, item_size in todo:
            self.client.upload_file(path, self.bucket, item_key, ExtraArgs=self._extra_args(item_digests),
                                    Config=self._transfer_config(item_size), Callback=self.progress.add)
            result["changed"] = True
            result["transferred"].append(item_key)
            result["bytes_transferred"] += item_size
            self._verify_upload(item_key, item_digests, item_size)
        for artifact_key, extra in stale:
            result["changed"] = True
            done, errors = delete_batch(self.client, self.bucket, [dict(Key=k) for k in extra])
            if errors:
                raise TransferError("cannot delete stale files of %s: %s" % (s3_url(self.bucket, artifact_key), errors[:3]))
        result["verified"] = ["metadata", "download"] if params["verify"] == "full" else ["metadata"]

    def _verify_upload(self, key, digests, size):
        head = self.client.head_object(Bucket=self.bucket, Key=key)
        problem = None
        if head.get("ContentLength") != size:
            problem = "size %s, expected %s" % (head.get("ContentLength"), size)
        elif (head.get("Metadata") or {}).get("sha256") != digests["sha256"]:
            problem = "sha256 metadata %r, expected %s" % ((head.get("Metadata") or {}).get("sha256"), digests["sha256"])
        elif self.params["verify"] == "full":
            remote = self._fetch(key)[1]
            if remote.hexdigests()["sha256"] != digests["sha256"] or remote.size != size:
                problem = "downloaded content has SHA-256 %s (%d bytes), expected %s (%d bytes)" % (
                    remote.hexdigests()["sha256"], remote.size, digests["sha256"], size)
        if problem:
            try:
                self.client.delete_object(Bucket=self.bucket, Key=key)
                removed = "the object was deleted"
            except (ClientError, BotoCoreError, Boto3Error) as exc:
                removed = "deleting the object failed too (%s): delete it by hand" % to_native(exc)
            raise TransferError("verification of %s after upload failed: %s; %s" % (s3_url(self.bucket, key), problem, removed))

    # download ---------------------------------------------------------------------------------------------
    def _final_path(self, key):
        dest = self.params["dest"]
        name = key.rstrip("/").rsplit("/", 1)[-1]
        if os.path.isdir(dest) or self.params["dest"].endswith("/"):
            return os.path.join(os.path.abspath(dest), name)
        return os.path.abspath(dest)

    def _references(self, key, metadata):
        """Checksums the artifact must match: ``{source: {'sha256': .., 'md5': ..}}`` plus the sidecar texts."""
        refs = {}
        meta = dict((k, v) for k, v in (metadata or {}).items() if k in RESERVED_METADATA)
        if meta:
            refs["metadata"] = meta
        texts = {}
        if self.params["with_sidecars"] or self.params["require_checksum"]:
            for algo, side_key in sidecar_keys(key).items():
                if algo == "manifest" or side_key is None:
                    continue
                data = self.get_small(side_key)
                if data is not None:
                    texts[algo] = (side_key, data.decode("utf-8", "replace"))
        return refs, texts

    def download(self):
        params = self.params
        key = params["key"].lstrip("/").rstrip("/")
        head = head_object(self.client, self.bucket, key)
        files = None
        if head is None:
            files = list_tree(self.client, self.bucket, key + "/")
            if not files:
                self.client.head_bucket(Bucket=self.bucket)  # NoSuchBucket / AccessDenied surface here
                raise TransferError("%s does not exist (NoSuchKey): check key, or list the prefix with mode=list" % (
                    s3_url(self.bucket, key)))
        final = self._final_path(key)
        result = self.result
        result.update(key=key, dest=final, keys=[], transferred=[], skipped_keys=[], bytes_transferred=0, verified=[])
        refs, texts = self._references(key, head.get("Metadata") if head else None)
        if files is None:
            self._download_file(key, head, final, refs, texts)
        else:
            self._download_tree(key, files, final, texts)
        if params["with_sidecars"]:
            self._download_sidecars(key, final, texts)

    def _check_existing(self, final, matches):
        """``True`` when ``final`` exists and ``matches()``; raises under overwrite=never when it differs."""
        if not os.path.lexists(final):
            return False
        if self.params["overwrite"] == "always":
            return False
        if matches():
            return True
        if self.params["overwrite"] == "never":
            raise TransferError("%s already exists with different content; refusing to replace it "
                                "(overwrite=different replaces it)" % final)
        return False

    def _start_download(self, final, keys, matches):
        """A temporary path next to ``final`` to download ``keys`` into, or ``None`` when nothing is to be written.

        Nothing is written when ``final`` already holds the artifact (``matches()``, per ``overwrite``: the keys
        are skipped) or in check mode (the keys would be transferred). Creates the parent directory.
        """
        if self._check_existing(final, matches):
            self.result["skipped_keys"].extend(keys)
            return None
        if self.module.check_mode:
            self.result["transferred"].extend(keys)
            self.result["changed"] = True
            return None
        parent = os.path.dirname(final)
        if not os.path.isdir(parent):
            os.makedirs(parent, exist_ok=True)
        return temp_path_for(final)

    def _compare_file(self, digests, size, refs, texts, expected_size):
        """Raise :class:`ChecksumError` unless ``digests`` match every reference; returns the sources checked."""
        checked = []
        if expected_size is not None and size != expected_size:
            raise ChecksumError("size %d, expected %d (incomplete transfer)" % (size, expected_size))
        for source, values in refs.items():
            for algo in sorted(values, reverse=True):  # sha256 first: it names the damage in messages
                expected = values[algo]
                if digests[algo] != expected.lower():
                    raise ChecksumError("content %s is %s, the object's %s says %s" % (
                        algo.upper(), digests[algo], source, expected))
            checked.append(source)
        for algo, (side_key, text) in texts.items():
            expected = parse_checksum_text(text)[0][0]
            if digests[algo] != expected:
                raise ChecksumError("%s is %s, the sidecar %s says %s" % (algo.upper(), digests[algo], side_key, expected))
            if "sidecar" not in checked:
                checked.append("sidecar")
        return checked

    def _download_file(self, key, head, final, refs, texts):
        result = self.result
        result["keys"].append(key)
        result["size"] = head.get("ContentLength")
        if not refs and not texts and self.params["require_checksum"]:
            raise TransferError("%s has no sha256/md5 metadata and no .sha256/.md5 sidecar object: nothing to verify "
                                "it against (require_checksum=false accepts it unverified)" % s3_url(self.bucket, key))

        def matches():
            if not os.path.isfile(final):
                return False
            digests, size = file_digests(final)
            try:
                result["verified"] = self._compare_file(digests, size, refs, texts, head.get("ContentLength"))
            except ChecksumError:
                return False
            result.update(sha256=digests["sha256"], md5=digests["md5"])
            return True

        temp = self._start_download(final, [key], matches)
        if temp is None:
            return
        self.progress.set_total(head.get("ContentLength"))
        try:
            answer, hasher = self._fetch(key, temp)
            digests = hasher.hexdigests()
            refs = dict(refs)
            meta = dict((k, v) for k, v in (answer.get("Metadata") or {}).items() if k in RESERVED_METADATA)
            if meta:
                refs["metadata"] = meta  # what was actually served
            try:
                result["verified"] = self._compare_file(digests, hasher.size, refs, texts, answer.get("ContentLength"))
            except ChecksumError as exc:
                raise TransferError("download of %s is corrupt: %s; no file was written to %s" % (
                    s3_url(self.bucket, key), exc, final))
            commit(temp, final, overwrite=self.params["overwrite"] != "never")
        except BaseException:
            remove_path(temp)
            raise
        result["transferred"].append(key)
        result["changed"] = True
        result.update(sha256=digests["sha256"], md5=digests["md5"], size=hasher.size)

    def _download_tree(self, key, files, final, texts):
        result = self.result
        prefix = key + "/"
        entries = []
        for obj in files:
            entries.append((safe_relative(obj["key"][len(prefix):]), obj))
        result["keys"].extend(obj["key"] for rel, obj in entries)
        result["size"] = sum(obj["size"] for rel, obj in entries)
        listings = dict((algo, listing_entries(text)) for algo, (side_key, text) in texts.items())

        def matches():
            if not os.path.isdir(final):
                return False
            local_texts, local_size = tree_listing(final)
            local = listing_entries(local_texts["sha256"]) if local_texts["sha256"] else {}
            if "sha256" in listings:
                result["verified"] = ["sidecar"]
                return local == listings["sha256"]
            remote = {}
            for rel, obj in entries:
                head = self.client.head_object(Bucket=self.bucket, Key=obj["key"])
                remote[rel.replace(os.sep, "/")] = (head.get("Metadata") or {}).get("sha256")
            result["verified"] = ["metadata"]
            return local == remote

        temp = self._start_download(final, result["keys"], matches)
        if temp is None:
            return
        old = None
        try:
            os.mkdir(temp, 0o700)
            for rel, obj in entries:
                self._fetch_tree_file(obj["key"], rel, temp, listings)
            for algo, listing in listings.items():
                missing = set(listing) - set(rel.replace(os.sep, "/") for rel, obj in entries)
                if missing:
                    raise ChecksumError("files listed in the %s sidecar are missing in the bucket: %s" % (
                        algo, ", ".join(sorted(missing))))
            if os.path.lexists(final):
                if self.params["overwrite"] == "never":
                    raise TransferError("%s already exists" % final)
                old = temp_path_for(final)
                os.rename(final, old)
            commit(temp, final)
        except ChecksumError as exc:
            remove_path(temp)
            raise TransferError("download of %s is corrupt: %s; nothing was written to %s" % (
                s3_url(self.bucket, key), exc, final))
        except BaseException:
            remove_path(temp)
            if old and not os.path.lexists(final):
                os.rename(old, final)
                old = None
            raise
        result["transferred"].extend(result["keys"])
        result["changed"] = True
        if old:
            remove_path(old)
        digests, size = artifact_digests(final)[:2]
        result.update(sha256=digests["sha256"], md5=digests["md5"], size=size)

    def _fetch_tree_file(self, key, rel, temp, listings):
        """Download one file of a directory artifact into ``temp`` and check it against its references.

        ``listings``: ``{algo: {relative path: hexdigest}}`` of the artifact's sidecars. Raises
        :class:`ChecksumError` (named after ``key``) on a mismatch.
        """
        path = os.path.join(temp, rel)
        if not os.path.isdir(os.path.dirname(path)):
            os.makedirs(os.path.dirname(path), 0o700)
        answer, hasher = self._fetch(key, path)
        meta = answer.get("Metadata") or {}
        rel_key = rel.replace(os.sep, "/")
        refs = {}
        if meta.get("sha256"):
            refs["metadata"] = dict((k, v) for k, v in meta.items() if k in RESERVED_METADATA)
        for algo, listing in listings.items():
            if rel_key not in listing:
                raise ChecksumError("%s is not listed in the %s sidecar" % (key, algo))
            refs.setdefault("sidecar", {})[algo] = listing[rel_key]
        if not refs and self.params["require_checksum"]:
            raise TransferError("%s has no sha256 metadata and the artifact has no sidecar: nothing to verify "
                                "it against (require_checksum=false accepts it unverified)" % key)
        try:
            checked = self._compare_file(hasher.hexdigests(), hasher.size, refs, {}, answer.get("ContentLength"))
        except ChecksumError as exc:
            raise ChecksumError("%s: %s" % (key, exc))
        for source in checked:
            if source not in self.result["verified"]:
                self.result["verified"].append(source)

    def _download_sidecars(self, key, final, texts):
        result = self.result
        remote_name = key.rsplit("/", 1)[-1]
        final_name = os.path.basename(final)
        directory = os.path.dirname(final)
        wanted = {}
        for algo, (side_key, text) in texts.items():
            if remote_name != final_name:
                text = "".join(line.replace("  " + remote_name, "  " + final_name, 1) for line in text.splitlines(True))
            wanted[side_key] = (os.path.join(directory, sidecar_names(final_name)[algo]), text.encode("utf-8"))
        manifest_key = sidecar_keys(key)["manifest"]
        if manifest_key:
            data = self.get_small(manifest_key)
            if data is not None:
                wanted[manifest_key] = (os.path.join(directory, manifest_key.rsplit("/", 1)[-1]), data)
        for side_key, (path, data) in sorted(wanted.items()):
            result["keys"].append(side_key)
            if os.path.isfile(path):
                with open(path, "rb") as handle:
                    current = handle.read()
                if current == data and self.params["overwrite"] != "always":
                    result["skipped_keys"].append(side_key)
                    continue
                if current != data and self.params["overwrite"] == "never":
                    raise TransferError("%s already exists with different content; refusing to replace it "
                                        "(overwrite=different replaces it)" % path)
            if not self.module.check_mode:
                write_text(path, data.decode("utf-8"), mode=0o644)
                result["bytes_transferred"] += len(data)
            result["transferred"].append(side_key)
            result["changed"] = True

    # list / exists ---------------------------------------------------------------------------------------
    def listing(self):
        prefix = normalize_prefix(self.params["prefix"])
        objects, folders = list_level(self.client, self.bucket, prefix)
        folders = drop_empty_folders(self.client, self.bucket, folders, only=parse_backup_name)
        backups, ignored = group_listing(objects, folders, self.params["series"])
        latest = {}
        for backup in backups:
            for artifact in backup["artifacts"]:
                if artifact["directory"]:
                    files = list_tree(self.client, self.bucket, artifact["key"] + "/")
                    artifact["size"] = sum(obj["size"] for obj in files)
                else:
                    head = self.client.head_object(Bucket=self.bucket, Key=artifact["key"])
                    meta = head.get("Metadata") or {}
                    artifact.update(sha256=meta.get("sha256"), md5=meta.get("md5"))
            backup["size"] = sum(a["size"] or 0 for a in backup["artifacts"])
            latest.setdefault(backup["series"], backup)
        self.result.update(prefix=prefix, backups=backups, latest=latest, ignored=ignored)

    def exists(self):
        key = self.params["key"].lstrip("/").rstrip("/")
        result = self.result
        result.update(key=key, exists=False)
        head = head_object(self.client, self.bucket, key)
        if head is not None:
            meta = head.get("Metadata") or {}
            modified = head.get("LastModified")
            result.update(exists=True, directory=False, size=head.get("ContentLength"), sha256=meta.get("sha256"),
                          md5=meta.get("md5"), storage_class=head.get("StorageClass", "STANDARD"),
                          last_modified=modified.isoformat() if hasattr(modified, "isoformat") else modified)
            return
        files = list_tree(self.client, self.bucket, key + "/")
        if files:
            result.update(exists=True, directory=True, size=sum(obj["size"] for obj in files), sha256=None, md5=None)
            return
        self.client.head_bucket(Bucket=self.bucket)  # a missing bucket is an error, not "exists: false"
