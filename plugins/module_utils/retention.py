# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Retention policy with restic ``forget`` semantics, shared by S3 and local rotation.

Each rule is evaluated on its own over the backups' own timestamps (from their names), never against the
wall clock: ``keep_daily=N`` keeps the newest backup of each of the last N calendar days *that have
backups*; weekly uses ISO weeks, monthly calendar months; ``-1`` means unlimited. The union is kept. A
pause in backups therefore never deletes everything.

Artifacts are grouped by stem (``<prefix>_<YYYYMMDD>_<HHMMSS>``); sidecars and the manifest share their
artifact's fate. Each prefix is its own series (``backup``, ``schema``, ``vault``... are rotated
independently). Names that do not follow the convention are never deleted.
"""

from __future__ import annotations

from ansible_collections.atlasia.dr.plugins.module_utils.backupset import is_set_manifest
from ansible_collections.atlasia.dr.plugins.module_utils.naming import parse_backup_name

RULES = (
    ("daily", lambda ts: ts.strftime("%Y-%m-%d")),
    ("weekly", lambda ts: "%04d-W%02d" % ts.isocalendar()[:2]),
    ("monthly", lambda ts: ts.strftime("%Y-%m")),
)


class PolicyError(ValueError):
    """A policy that would delete every backup, or malformed numbers."""


def retention_argument_spec():
    """Options shared by every module that rotates backups."""
    return dict(
        keep_last=dict(type="int", default=0),
        keep_daily=dict(type="int", default=7),
        keep_weekly=dict(type="int", default=4),
        keep_monthly=dict(type="int", default=-1),
    )


def validate_policy(keep_last=0, keep_daily=7, keep_weekly=4, keep_monthly=-1):
    values = dict(last=keep_last, daily=keep_daily, weekly=keep_weekly, monthly=keep_monthly)
    for name, value in values.items():
        if value is None or value < -1:
            raise PolicyError("keep_%s must be -1 (unlimited), 0 or a positive number, got %r" % (name, value))
    if not any(values.values()):
        raise PolicyError("every keep_* option is 0: this policy would delete every backup; refusing")
    return values


def select(items, keep_last=0, keep_daily=7, keep_weekly=4, keep_monthly=-1):
    """Apply the policy to ``items``: an iterable of ``(key, aware_datetime)``.

    Returns ``(keep, forget)``: ``keep`` maps each kept key to the list of reasons (``daily 2026-11-25``,
    ``last``...), ``forget`` lists the other keys, newest first.
    """
    policy = validate_policy(keep_last, keep_daily, keep_weekly, keep_monthly)
    ordered = sorted(items, key=lambda item: (item[1], item[0]), reverse=True)
    keep = {}
    for index, (key, moment) in enumerate(ordered):
        if policy["last"] == -1 or index < policy["last"]:
            keep.setdefault(key, []).append("last")
    for rule, bucket_of in RULES:
        limit = policy[rule]
        if limit == 0:
            continue
        seen = set()
        for key, moment in ordered:
            bucket = bucket_of(moment)
            if bucket in seen:
                continue
            if limit != -1 and len(seen) >= limit:
                break
            seen.add(bucket)
            keep.setdefault(key, []).append("%s %s" % (rule, bucket))
    forget = [key for key, moment in ordered if key not in keep]
    return keep, forget


def keep_newest(items, count):
    """``(keep, forget)`` keeping the ``count`` newest of ``items`` (``(key, aware_datetime)``); -1 keeps all.

    The count-only policy of the copies a restore leaves (safety dumps, replaced databases); ``0`` forgets all,
    for callers that set aside what they always keep before asking.
    """
    items = list(items)
    if count == 0:
        return {}, [key for key, moment in sorted(items, key=lambda item: (item[1], item[0]), reverse=True)]
    return select(items, keep_last=count, keep_daily=0, keep_weekly=0, keep_monthly=0)


def group_names(names):
    """Group object/file names into backups.

    Returns ``(groups, ignored)``: ``groups`` maps ``(prefix, stem)`` to
    ``{'timestamp': dt, 'names': [all names of that stem]}``; ``ignored`` lists names outside the convention.
    """
    groups = {}
    ignored = []
    for name in names:
        parsed = parse_backup_name(name)
        if parsed is None:
            ignored.append(name)
            continue
        group = groups.setdefault((parsed.prefix, parsed.stem), dict(timestamp=parsed.timestamp, names=[]))
        group["names"].append(name)
    return groups, sorted(ignored)


def orphans(names):
    """Names of artifacts that no set names: their timestamp has no set manifest (``set_<ts>.json``) among ``names``.

    What a killed or failed run left behind; rotated as their own series they would push out the artifacts of
    older sets that are kept, so callers delete them first and let the rotation keep or delete whole sets.
    Names outside the convention are never orphans.
    """
    parsed = [(name, parse_backup_name(name)) for name in names]
    stamps = set(p.timestamp for name, p in parsed if is_set_manifest(p))
    return sorted(name for name, p in parsed if p is not None and p.timestamp not in stamps)


def plan(names, keep_last=0, keep_daily=7, keep_weekly=4, keep_monthly=-1, prefixes=None):
    """Decide which names to keep and which to delete.

    ``names`` are base names or keys (a key's directory part is kept in the output but ignored for
    parsing). ``prefixes`` restricts rotation to these series; other series are left alone (reported as
    kept). Returns a dict with ``kept``, ``deleted`` and ``ignored`` name lists and ``reasons`` (stem ->
    why it was kept).
    """
    by_base = {}
    for name in names:
        by_base.setdefault(name.rstrip("/").rsplit("/", 1)[-1], []).append(name)
    groups, ignored_bases = group_names(by_base)
    series = {}
    for (prefix, stem), group in groups.items():
        series.setdefault(prefix, []).append((stem, group))
    kept, deleted, reasons = [], [], {}
    for prefix, members in sorted(series.items()):
        if prefixes is not None and prefix not in prefixes:
            for stem, group in members:
                kept.extend(group["names"])
            continue
        keep, forget = select([(stem, group["timestamp"]) for stem, group in members],
                              keep_last, keep_daily, keep_weekly, keep_monthly)
        for stem, group in members:
            (deleted if stem in forget else kept).extend(group["names"])
            if stem in keep:
                reasons[stem] = keep[stem]

    def expand(bases):
        return sorted(full for base in bases for full in by_base[base])

    return dict(kept=expand(kept), deleted=expand(deleted), ignored=expand(ignored_bases), reasons=reasons)
