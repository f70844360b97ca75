# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Backup sets: every artifact of one backup run, sharing one timestamp, listed in ``set_<ts>.json``.

Layout (the plan's): ``<root>/daily``, ``<root>/weekly``, ``<root>/monthly``. A set lives in ``daily``;
Sunday's set is also hard-linked into ``weekly`` and the 1st of the month's into ``monthly``. The set
manifest names each artifact with its component, size and checksums, so a set can be verified as a whole
(locally or after download) without trusting anything but the files and their sidecars.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil

from ansible_collections.atlasia.dr.plugins.module_utils import atomic, checksum, naming, setauth

SET_PREFIX = "set"
FORMAT_VERSION = 1
TIERS = ("daily", "weekly", "monthly")


class SetError(Exception):
    """A set that cannot be used: missing artifact, checksum mismatch, unreadable manifest."""


def is_set_manifest(parsed):
    """True when a parsed name (:func:`naming.parse_backup_name`) is a set manifest, ``set_<ts>.json``."""
    return parsed is not None and parsed.prefix == SET_PREFIX and parsed.role == "manifest"


def set_manifest_name(timestamp):
    """``set_<YYYYMMDD>_<HHMMSS>.json`` for a ``YYYYMMDD_HHMMSS`` timestamp."""
    return naming.manifest_name("%s_%s" % (SET_PREFIX, timestamp))


def tiers_for(moment, weekly_day=6, monthly_day=1):
    """Tiers a set taken at ``moment`` belongs to: daily always, weekly on ``weekly_day`` (0=Monday,
    6=Sunday), monthly on day ``monthly_day`` of the month."""
    tiers = ["daily"]
    if moment.weekday() == weekly_day:
        tiers.append("weekly")
    if moment.day == monthly_day:
        tiers.append("monthly")
    return tiers


def _read_sidecar_digest(path, algo):
    sidecar = naming.sidecar_names(os.path.basename(path.rstrip("/")))[algo]
    sidecar_path = os.path.join(os.path.dirname(os.path.abspath(path)), sidecar)
    if not os.path.exists(sidecar_path):
        return None
    with open(sidecar_path) as handle:
        text = handle.read()
    if os.path.isdir(path):
        return hashlib.new(algo, text.encode("utf-8")).hexdigest()
    first = text.split(None, 1)
    return first[0].lower() if first else None


def _size(path):
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(r, f)) for r, d, fs in os.walk(path) for f in fs)
    return os.path.getsize(path)


def artifact_entry(directory, name, component=None):
    """Set-manifest entry of one artifact, from its sidecars and own manifest (nothing is re-hashed)."""
    path = os.path.join(directory, name)
    if not os.path.exists(path):
        raise SetError("artifact %s does not exist" % path)
    parsed = naming.parse_backup_name(name)
    entry = dict(name=name, component=component or (parsed.prefix if parsed else None), size=_size(path),
                 md5=_read_sidecar_digest(path, "md5"), sha256=_read_sidecar_digest(path, "sha256"),
                 directory=os.path.isdir(path), files=[name] + sorted(
                     side for side in naming.sidecar_names(name).values()
                     if os.path.exists(os.path.join(directory, side))))
    if parsed:
        own = naming.manifest_name(parsed.stem)
        if os.path.exists(os.path.join(directory, own)):
            entry["manifest"] = own
            entry["files"].append(own)
            try:
                with open(os.path.join(directory, own)) as handle:
                    data = json.load(handle)
                entry["type"] = data.get("type")
                for key in ("database", "format", "compression", "tables", "server_version", "database_properties",
                            "files"):
                    if key in data and key != "files":
                        entry[key] = data[key]
                if "files" in data and isinstance(data["files"], int):
                    entry["file_count"] = data["files"]
            except (OSError, ValueError) as exc:
                raise SetError("manifest %s is unreadable: %s" % (own, exc))
    if not entry["sha256"] and not entry["md5"]:
        raise SetError("artifact %s has no checksum sidecar; it cannot be part of a verifiable set" % path)
    return entry


def build(directory, timestamp, artifacts, environment=None, extra=None, tiers=None, auth_key=None):
    """Write ``set_<ts>.json`` in ``directory`` for ``artifacts`` (list of names or dicts with name/component).

    With ``auth_key`` (the environment's secret) the manifest carries its MAC (:mod:`setauth`).
    """
    moment = naming.parse_timestamp(timestamp)
    entries = []
    for item in artifacts:
        if isinstance(item, dict):
            entries.append(artifact_entry(directory, item["name"], item.get("component")))
        else:
            entries.append(artifact_entry(directory, item))
    data = dict(format_version=FORMAT_VERSION, set_id=timestamp, timestamp=moment.isoformat(), environment=environment,
                tiers=tiers or tiers_for(moment), artifacts=entries, size=sum(e["size"] for e in entries),
                created=naming.utc_now().isoformat(), offsite=dict(s3=False), verified=None)
    if extra:
        data.update(extra)
    if auth_key:
        data["auth"] = setauth.sign(data, auth_key)
    path = os.path.join(directory, set_manifest_name(timestamp))
    atomic.write_json(path, data, mode=0o644)
    return path, data


def refresh(directory, timestamp, auth_key=None):
    """Re-read every artifact entry of a set from its sidecars (after a re-encryption); other keys are kept.

    With ``auth_key`` the MAC is computed again under it (the new key after a rotation).
    """
    path = os.path.join(directory, set_manifest_name(timestamp))
    data = load(path)
    data["artifacts"] = [artifact_entry(directory, entry["name"], entry.get("component")) for entry in data["artifacts"]]
    data["size"] = sum(entry["size"] for entry in data["artifacts"])
    data["refreshed"] = naming.utc_now().isoformat()
    if auth_key:
        data["auth"] = setauth.sign(data, auth_key)
    atomic.write_json(path, data, mode=0o644)
    return data


def load(path):
    try:
        with open(path) as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        raise SetError("set manifest %s is unreadable: %s" % (path, exc))
    if not isinstance(data, dict) or "artifacts" not in data or "set_id" not in data:
        raise SetError("set manifest %s is not a backup-set manifest" % path)
    return data


def update(path, changes):
    """Merge ``changes`` into the set manifest (atomically). Returns the new content."""
    data = load(path)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    atomic.write_json(path, data, mode=0o644)
    return data


def all_files(data):
    """Every file name of a set: artifacts, their sidecars and manifests, and the set manifest."""
    names = [set_manifest_name(data["set_id"])]
    for entry in data["artifacts"]:
        names.extend(entry.get("files") or [entry["name"]])
    return names


def verify(directory, data, components=None):
    """Check every artifact of a set against its sidecars and the set manifest.

    Returns a list of problems (empty when the set verifies).
    """
    problems = []
    for entry in data["artifacts"]:
        if components and entry.get("component") not in components:
            continue
        path = os.path.join(directory, entry["name"])
        if not os.path.exists(path):
            problems.append("%s is missing" % entry["name"])
            continue
        try:
            status, digests = checksum.verify_sidecars(path, required=True)
        except checksum.ChecksumError as exc:
            problems.append(str(exc))
            continue
        except OSError as exc:
            problems.append("%s: %s" % (entry["name"], exc))
            continue
        for algo in ("sha256", "md5"):
            recorded = entry.get(algo)
            if recorded and status.get(algo) == "ok":
                current = _read_sidecar_digest(path, algo)
                if current != recorded:
                    problems.append("%s: its %s sidecar (%s) differs from the set manifest (%s)" % (
                        entry["name"], algo, current, recorded))
        if entry.get("size") is not None and _size(path) != entry["size"]:
            problems.append("%s: size %d differs from the set manifest (%d)" % (entry["name"], _size(path),
                                                                                entry["size"]))
    return problems


def discover(roots):
    """Every set manifest under ``roots`` (directories), newest first, one per set id (first root wins)."""
    found = {}
    for root in roots:
        if not os.path.isdir(root):
            continue
        for name in os.listdir(root):
            parsed = naming.parse_backup_name(name)
            if not is_set_manifest(parsed):
                continue
            set_id = naming.format_timestamp(parsed.timestamp)
            found.setdefault(set_id, os.path.join(root, name))
    return [found[key] for key in sorted(found, reverse=True)]


def _link_one(source, target):
    """Hard-link ``source`` as ``target`` (a directory artifact is recreated with linked files, then renamed)."""
    if os.path.isdir(source):
        temp = atomic.temp_path_for(target)
        shutil.copytree(source, temp, copy_function=os.link)
        os.rename(temp, target)
    else:
        os.link(source, target)


def _files_in_link_order(data):
    """Every file of a set, the set manifest last: a tier never holds a set manifest before the files it lists."""
    names = all_files(data)
    return names[1:] + names[:1]


def link_into(directory, data, target_dir):
    """Hard-link every file of a set into ``target_dir`` (directory artifacts are recreated with linked files).

    The artifacts, their sidecars and manifests are linked first and the set manifest last, so a run killed
    part-way leaves at most files no set manifest lists yet, never a set manifest listing missing files
    (:func:`repair_tiers` completes or removes such a copy). A file missing from ``directory`` is an error
    raised before anything is linked.
    """
    names = _files_in_link_order(data)
    absent = [name for name in names if not os.path.lexists(os.path.join(directory, name))
              and not os.path.lexists(os.path.join(target_dir, name))]
    if absent:
        raise SetError("set %s cannot be linked into %s: %s missing from %s" % (
            data.get("set_id"), target_dir, ", ".join(absent), directory))
    if not os.path.isdir(target_dir):
        os.makedirs(target_dir, 0o700, exist_ok=True)
    linked = []
    for name in names:
        source = os.path.join(directory, name)
        target = os.path.join(target_dir, name)
        if os.path.lexists(target):
            continue
        if name == names[-1] and linked:
            atomic.fsync_dir(target_dir)  # the files are durable before the manifest that lists them
        _link_one(source, target)
        linked.append(target)
    if linked:
        atomic.fsync_dir(target_dir)
    return linked


def _missing_files(directory, data):
    return [name for name in all_files(data) if not os.path.lexists(os.path.join(directory, name))]


def _entries_with(data, names):
    names = set(names)
    return [entry for entry in data["artifacts"] if names & set(entry.get("files") or [entry["name"]])]


def repair_tiers(root, tiers=TIERS, removable=("weekly", "monthly"), dry_run=False):
    """Complete or remove the tier copies of sets whose manifest lists files the tier does not hold.

    A copy left by a run killed while linking it (or damaged since) is completed by hard-linking the missing
    files from another tier that holds all of them and where they verify against this copy's set manifest
    (sidecars, sizes and checksums); the files are linked first and the copy checked again. When no tier can
    complete it, a copy in a ``removable`` tier (the linked ones: the set's original lives in ``daily``) is
    removed, its set manifest first, so it is no longer offered as a restore point; an incomplete ``daily``
    copy is reported only. Returns one dict per incomplete copy: ``tier``, ``set_id``, ``manifest``,
    ``missing``, ``action`` (``completed``, ``removed``, ``incomplete``, or ``would_complete``/``would_remove``
    with ``dry_run``), ``source`` (the tier it was completed from), ``linked``, ``removed`` and ``problems``.
    """
    dirs = dict((tier, os.path.join(root, tier)) for tier in tiers)
    repairs = []
    for tier in tiers:
        directory = dirs[tier]
        if not os.path.isdir(directory):
            continue
        for name in sorted(os.listdir(directory)):
            if not is_set_manifest(naming.parse_backup_name(name)):
                continue
            manifest_path = os.path.join(directory, name)
            try:
                data = load(manifest_path)
            except SetError:
                continue  # unreadable: reported by query/verify, not something a link can repair
            missing = _missing_files(directory, data)
            if not missing:
                continue
            report = dict(tier=tier, set_id=data["set_id"], manifest=manifest_path, missing=missing, source=None,
                          linked=[], removed=[], problems=[])
            subset = dict(data, artifacts=_entries_with(data, missing))
            for other in tiers:
                source_dir = dirs[other]
                if other == tier or any(not os.path.lexists(os.path.join(source_dir, m)) for m in missing):
                    continue
                problems = verify(source_dir, subset)
                if problems:
                    report["problems"].append("%s: %s" % (other, "; ".join(problems)))
                    continue
                report["source"] = other
                break
            if report["source"]:
                if dry_run:
                    report["action"] = "would_complete"
                else:
                    source_dir = dirs[report["source"]]
                    for missing_name in missing:
                        _link_one(os.path.join(source_dir, missing_name), os.path.join(directory, missing_name))
                        report["linked"].append(os.path.join(directory, missing_name))
                    atomic.fsync_dir(directory)
                    problems = verify(directory, data)
                    report["action"] = "completed" if not problems else "incomplete"
                    report["problems"].extend(problems)
            elif tier in removable:
                if dry_run:
                    report["action"] = "would_remove"
                else:
                    for file_name in [name] + [f for f in all_files(data) if f != name]:
                        path = os.path.join(directory, file_name)
                        if os.path.lexists(path):
                            atomic.remove_path(path)
                            report["removed"].append(path)
                    atomic.fsync_dir(directory)
                    report["action"] = "removed"
            else:
                report["action"] = "incomplete"
            repairs.append(report)
    return repairs


def describe_repair(report):
    """One sentence for the run output."""
    missing = ", ".join(report["missing"])
    if report["action"] in ("completed", "would_complete"):
        return "%s/%s listed files it did not hold (%s): %s by linking them from %s/" % (
            report["tier"], set_manifest_name(report["set_id"]), missing,
            "completed" if report["action"] == "completed" else "would be completed", report["source"])
    if report["action"] in ("removed", "would_remove"):
        return ("%s/%s listed files no tier holds intact (%s): the incomplete copy %s; it is no longer a restore "
                "point%s" % (report["tier"], set_manifest_name(report["set_id"]), missing,
                             "was removed" if report["action"] == "removed" else "would be removed",
                             (" (%s)" % "; ".join(report["problems"])) if report["problems"] else ""))
    return "%s/%s is incomplete (%s) and could not be repaired%s" % (
        report["tier"], set_manifest_name(report["set_id"]), missing,
        (": %s" % "; ".join(report["problems"])) if report["problems"] else "")


def disk_space(path):
    """``(free_bytes, total_bytes)`` of the filesystem holding ``path`` (or its nearest existing parent)."""
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    stats = os.statvfs(probe)
    return stats.f_bavail * stats.f_frsize, stats.f_blocks * stats.f_frsize
