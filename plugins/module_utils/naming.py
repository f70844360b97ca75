# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Backup naming, the one place that knows ``<prefix>_<YYYYMMDD>_<HHMMSS>.<ext>``.

Every artifact of the collection (database dumps, schema dumps, Vault snapshots, archives, safety
backups) is named by :func:`backup_name` and recognised by :func:`parse_backup_name`. Sidecars
(``.md5``, ``.sha256``) and manifests (``<prefix>_<YYYYMMDD>_<HHMMSS>.json``) are tied to their artifact
here too, so retention, restore and upload agree on what belongs together.
"""

from __future__ import annotations

import datetime
import os
import re
import secrets
from collections import namedtuple

TIMESTAMP_FORMAT = "%Y%m%d_%H%M%S"
SIDECAR_SUFFIXES = (".md5", ".sha256")
MANIFEST_EXT = "json"
TEMP_MARKER = ".tmp-"

# A prefix may hold '_' only before a letter: "_<digit>" would be ambiguous with the timestamp that follows.
_PREFIX_PATTERN = r"[A-Za-z0-9][A-Za-z0-9-]*(?:_[A-Za-z][A-Za-z0-9-]*)*"
_PREFIX_RE = re.compile(_PREFIX_PATTERN)
_NAME_RE = re.compile(
    r"^(?P<prefix>" + _PREFIX_PATTERN + r")"
    r"_(?P<date>\d{8})_(?P<time>\d{6})"
    r"(?:\.(?P<ext>[A-Za-z0-9][A-Za-z0-9.]*))?$"
)

BackupName = namedtuple("BackupName", ["name", "prefix", "timestamp", "ext", "stem", "role", "artifact"])
"""A parsed name.

``role`` is ``artifact``, ``md5``, ``sha256`` or ``manifest``; ``artifact`` is the name of the artifact
a sidecar belongs to (the name itself for an artifact, ``None`` for a manifest, which belongs to the
whole ``stem``).
"""


def utc_now():
    """Current time in UTC, whole seconds (names have one-second resolution)."""
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def format_timestamp(moment):
    """``YYYYMMDD_HHMMSS`` of an aware or naive-UTC datetime."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(datetime.timezone.utc)
    return moment.strftime(TIMESTAMP_FORMAT)


def parse_timestamp(text):
    """Aware UTC datetime of ``YYYYMMDD_HHMMSS``; ``ValueError`` when malformed."""
    return datetime.datetime.strptime(text, TIMESTAMP_FORMAT).replace(tzinfo=datetime.timezone.utc)


def backup_stem(prefix, moment):
    """``<prefix>_<YYYYMMDD>_<HHMMSS>``."""
    if not prefix or not _PREFIX_RE.fullmatch(prefix):
        raise ValueError("invalid backup prefix %r: use letters, digits, '-' and '_' (an '_' must be followed by "
                         "a letter, so that the name stays recognisable)" % (prefix,))
    return "%s_%s" % (prefix, format_timestamp(moment))


def backup_name(prefix, moment, ext):
    """``<prefix>_<YYYYMMDD>_<HHMMSS>.<ext>`` (no dot when ``ext`` is empty)."""
    stem = backup_stem(prefix, moment)
    return "%s.%s" % (stem, ext.lstrip(".")) if ext else stem


def manifest_name(stem):
    """Name of the JSON manifest of the artifact(s) sharing ``stem``."""
    return "%s.%s" % (stem, MANIFEST_EXT)


def manifest_path_for(artifact_path):
    """Path of the JSON manifest next to an artifact named by the convention, or ``None`` (no name, no file)."""
    parsed = parse_backup_name(artifact_path)
    if not parsed:
        return None
    path = os.path.join(os.path.dirname(os.path.abspath(artifact_path)), manifest_name(parsed.stem))
    return path if os.path.isfile(path) else None


def artifact_result(opts, manifest, **extra):
    """What a module returns for an artifact it wrote: path, size, digests, duration, manifest (and ``extra``)."""
    result = dict(path=opts["path"], size=manifest["size"], md5=manifest["md5"], sha256=manifest["sha256"],
                  duration=manifest["duration"], manifest=opts["manifest_path"], manifest_data=manifest)
    result.update(extra)
    return result


def sidecar_names(artifact_name):
    """Names of the checksum sidecars of an artifact, ``{'md5': ..., 'sha256': ...}``."""
    return dict((suffix.lstrip("."), artifact_name + suffix) for suffix in SIDECAR_SUFFIXES)


def parse_backup_name(name):
    """Parse a base name; ``None`` when it does not follow the convention (such keys are never touched)."""
    name = os.path.basename(name.rstrip("/"))
    if name.startswith(".") or TEMP_MARKER in name:
        return None
    match = _NAME_RE.match(name)
    if not match:
        return None
    try:
        moment = parse_timestamp("%s_%s" % (match.group("date"), match.group("time")))
    except ValueError:
        return None
    prefix = match.group("prefix")
    ext = match.group("ext") or ""
    stem = "%s_%s_%s" % (prefix, match.group("date"), match.group("time"))
    role, artifact = "artifact", name
    for suffix in SIDECAR_SUFFIXES:
        if name.endswith(suffix) and len(ext) > len(suffix) - 1:
            role, artifact = suffix.lstrip("."), name[: -len(suffix)]
            break
    else:
        if ext == MANIFEST_EXT:
            role, artifact = "manifest", None
    return BackupName(name, prefix, moment, ext, stem, role, artifact)


def temp_name(final_name):
    """A hidden temporary name next to ``final_name`` that no parser takes for a backup.

    The PID is embedded so a later run can tell a temporary file of a dead run from one in use.
    """
    return ".%s%s%d-%s" % (os.path.basename(final_name), TEMP_MARKER, os.getpid(), secrets.token_hex(4))


def temp_owner_pid(name):
    """PID embedded by :func:`temp_name`, or ``None`` when ``name`` is not one of ours."""
    match = re.match(r"^\..+" + re.escape(TEMP_MARKER) + r"(\d+)-[0-9a-f]{8}$", os.path.basename(name))
    return int(match.group(1)) if match else None


def scratch_db_name(db, moment, kind="restore"):
    """Name of a temporary database derived from ``db`` (63 bytes at most, PostgreSQL's limit)."""
    suffix = "_%s_%s" % (kind, format_timestamp(moment))
    return db[: 63 - len(suffix)] + suffix


def parse_scratch_db_name(name, db, kind="restore"):
    """Timestamp of a database that :func:`scratch_db_name` made for ``db``, or ``None``."""
    suffix_len = len("_%s_" % kind) + len("YYYYMMDD_HHMMSS")
    head = db[: 63 - suffix_len]
    match = re.match(r"^%s_%s_(\d{8}_\d{6})$" % (re.escape(head), re.escape(kind)), name)
    if not match:
        return None
    try:
        return parse_timestamp(match.group(1))
    except ValueError:
        return None
