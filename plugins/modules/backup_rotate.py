#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: backup_rotate
short_description: Apply a daily/weekly/monthly retention policy to backups in a local directory
version_added: 0.1.0
description:
  - Lists the backups in O(path), decides with a C(restic forget)-style policy which ones to keep, and deletes
    the others together with their checksum sidecars and manifest.
  - Backups are recognised by their names C(<prefix>_<YYYYMMDD>_<HHMMSS>[.<ext>]); the policy is evaluated on
    these timestamps, never on the current date or on the files' modification times.
  - Directory artifacts (C(pg_dump --format=directory) dumps such as C(backup_20261125_020000.dir)) are removed
    as a whole.
  - Files and directories outside the naming convention, and hidden temporary files of running backups, are
    never deleted.
  - The same policy over S3 is M(atlasia.dr.s3_rotate).
author:
  - atlasia DevOps team (@atlasia-devops)
options:
  path:
    description:
      - Directory holding the backups, for example C(/srv/backups/daily).
    type: path
    required: true
  recurse:
    description:
      - Also rotate the sub-directories of O(path) that are not backups themselves (for example C(daily/),
        C(weekly/)), each one on its own with the same policy. Symbolic links to directories are not followed.
    type: bool
    default: false
  orphans:
    description:
      - For directories of backup sets (C(set_<YYYYMMDD>_<HHMMSS>.json) manifests, module M(atlasia.dr.backup_set)),
        first delete the artifacts whose timestamp has no set manifest in the same directory (what a killed or
        failed run left behind), then rotate. Rotated as their own series, such artifacts would push out the
        artifacts of older sets that are kept.
    type: bool
    default: false
  tiers:
    description:
      - Rotate these sub-directories of O(path) instead, each with its own policy, in one call (the plan's
        daily, weekly and monthly tiers). Each key is a sub-directory name; its value holds any of C(keep_last),
        C(keep_daily), C(keep_weekly), C(keep_monthly) (missing ones are V(0)). The top-level C(keep_*) options
        are not used then.
      - A tier directory that does not exist yet (no set was linked into it) has nothing to rotate and is
        listed in RV(missing_tiers).
    type: dict
extends_documentation_fragment:
  - atlasia.dr.retention
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: >-
      Plans as usual, deletes nothing, and returns what would be deleted. A missing O(path) is taken as a
      directory an earlier task of the same check-mode run would have created: nothing to rotate.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: The list of backup paths before and after rotation.
seealso:
  - module: atlasia.dr.s3_rotate
  - name: restic forget policy
    description: The retention semantics this module follows.
    link: https://restic.readthedocs.io/en/stable/060_forget.html
"""

EXAMPLES = r"""
- name: Keep the last 7 days of daily backups
  atlasia.dr.backup_rotate:
    path: /srv/backups/daily
    keep_daily: 7
    keep_weekly: 0
    keep_monthly: 0

- name: Keep 4 weekly backups
  atlasia.dr.backup_rotate:
    path: /srv/backups/weekly
    keep_daily: 0
    keep_weekly: 4
    keep_monthly: 0

- name: Keep every monthly backup of the database dumps, rotate the schema dumps to 12 months
  atlasia.dr.backup_rotate:
    path: /srv/backups/monthly
    series: [schema]
    keep_daily: 0
    keep_weekly: 0
    keep_monthly: 12

- name: The plan's tiers in one call, each with its own rule
  atlasia.dr.backup_rotate:
    path: /srv/backups
    tiers:
      daily: {keep_last: 3, keep_daily: 7}
      weekly: {keep_weekly: 4}
      monthly: {keep_monthly: 12}

- name: Preview what a policy would delete
  atlasia.dr.backup_rotate:
    path: /srv/backups/daily
    keep_last: 3
  check_mode: true
  register: preview
"""

RETURN = r"""
path:
  description: The rotated directory.
  returned: always
  type: str
  sample: /srv/backups/daily
kept:
  description: Paths kept, sidecars and manifests included.
  returned: success
  type: list
  elements: str
  sample: [/srv/backups/daily/backup_20261125_020000.sql.gz, /srv/backups/daily/backup_20261125_020000.sql.gz.md5]
deleted:
  description: Paths deleted (in check mode, that would be deleted), sidecars, manifests and directory artifacts included.
  returned: success
  type: list
  elements: str
  sample: [/srv/backups/daily/backup_20261101_020000.sql.gz, /srv/backups/daily/backup_20261101_020000.dir]
ignored:
  description: Paths outside the naming convention (and hidden temporary files); never deleted.
  returned: success
  type: list
  elements: str
  sample: [/srv/backups/daily/README, /srv/backups/daily/.backup_20261125_020000.sql.gz.tmp-4242-0a1b2c3d]
reasons:
  description:
    - For each kept backup (by stem), the rules that keep it.
    - With O(recurse=true) or O(tiers) the stem is prefixed with its directory relative to O(path).
  returned: success
  type: dict
  sample: {backup_20261125_020000: [daily 2026-11-25, weekly 2026-W48, monthly 2026-11]}
missing_tiers:
  description: With O(tiers), the tier directories that do not exist (nothing to rotate there).
  returned: when O(tiers) is set
  type: list
  elements: str
  sample: [monthly]
errors:
  description: One entry per path that could not be deleted (the module then fails).
  returned: on partial failure
  type: list
  elements: dict
  sample: [{path: /srv/backups/daily/backup_20261101_020000.sql.gz, message: "[Errno 13] Permission denied"}]
duration:
  description: Seconds the module ran.
  returned: always
  type: float
  sample: 0.01
"""

import os
import time

from ansible.module_utils.common.text.converters import to_native

from ansible_collections.atlasia.dr.plugins.module_utils.atomic import remove_path
from ansible_collections.atlasia.dr.plugins.module_utils.common import DRModule
from ansible_collections.atlasia.dr.plugins.module_utils.naming import parse_backup_name
from ansible_collections.atlasia.dr.plugins.module_utils.retention import (
    PolicyError,
    orphans,
    plan,
    retention_argument_spec,
    validate_policy,
)

POLICY_OPTIONS = ("keep_last", "keep_daily", "keep_weekly", "keep_monthly")


def argument_spec():
    spec = retention_argument_spec()
    spec.update(
        path=dict(type="path", required=True),
        series=dict(type="list", elements="str"),
        recurse=dict(type="bool", default=False),
        tiers=dict(type="dict"),
        orphans=dict(type="bool", default=False),
    )
    return spec


def tier_policies(tiers):
    """``[(name, policy)]`` of the ``tiers`` option, sorted by name; raises :class:`PolicyError`."""
    out = []
    for name in sorted(tiers):
        rules = tiers[name] if tiers[name] is not None else {}
        if not isinstance(rules, dict):
            raise PolicyError("tiers.%s must be a dict of keep_* rules, not %r" % (name, rules))
        unknown = sorted(set(rules) - set(POLICY_OPTIONS))
        if unknown:
            known = ", ".join(POLICY_OPTIONS)
            raise PolicyError("tiers.%s: unknown rule(s) %s (known: %s)" % (name, ", ".join(unknown), known))
        if not name or name.startswith(".") or os.sep in name:
            raise PolicyError("tiers: %r is not a plain sub-directory name" % name)
        policy = {}
        for option in POLICY_OPTIONS:
            try:
                policy[option] = int(rules.get(option) or 0)
            except (TypeError, ValueError):
                raise PolicyError("tiers.%s.%s must be an integer, not %r" % (name, option, rules.get(option)))
        validate_policy(**policy)
        out.append((name, policy))
    return out


def directories(root, recurse):
    """``root`` and, with ``recurse``, every sub-directory that is not a backup (nor a link), top-down."""
    yield root
    if not recurse:
        return
    for name in sorted(os.listdir(root)):
        full = os.path.join(root, name)
        if os.path.isdir(full) and not os.path.islink(full) and parse_backup_name(name) is None \
                and not name.startswith("."):
            yield from directories(full, recurse)


def plan_directory(directory, policy, series, recurse, drop_orphans=False):
    """Plan one directory: returns the :func:`plan` answer with full paths (orphans of sets deleted first)."""
    names = []
    for name in sorted(os.listdir(directory)):
        full = os.path.join(directory, name)
        if recurse and os.path.isdir(full) and not os.path.islink(full) and parse_backup_name(name) is None \
                and not name.startswith("."):
            continue  # rotated on its own
        names.append(name)
    lost = orphans(names) if drop_orphans else []
    lost_set = set(lost)
    decision = plan([name for name in names if name not in lost_set], prefixes=series, **policy)
    decision["deleted"] = sorted(decision["deleted"] + lost)
    for field in ("kept", "deleted", "ignored"):
        decision[field] = [os.path.join(directory, name) for name in decision[field]]
    return decision


def main():
    module = DRModule(argument_spec=argument_spec(), supports_check_mode=True,
                      mutually_exclusive=[["tiers", "recurse"]])
    started = time.monotonic()
    params = module.params
    root = os.path.abspath(params["path"])
    result = dict(changed=False, path=root)
    policy = dict((name, params[name]) for name in POLICY_OPTIONS)
    try:
        validate_policy(**policy)
        tiers = tier_policies(params["tiers"]) if params["tiers"] is not None else None
    except PolicyError as exc:
        module.fail_json(msg=str(exc), **result)
    if not os.path.isdir(root):
        if module.check_mode and not os.path.lexists(root):  # an earlier task of this check-mode run would create it
            result.update(kept=[], deleted=[], ignored=[], reasons={}, duration=0.0,
                          msg="path %s does not exist yet: nothing to rotate" % root)
            if tiers is not None:
                result["missing_tiers"] = [name for name, rules in tiers]
            module.exit_json(**result)
        module.fail_json(msg="path %s is not a directory (does it exist?)" % root, **result)

    if tiers is None:
        work = [(directory, policy) for directory in directories(root, params["recurse"])]
    else:
        work = [(os.path.join(root, name), rules) for name, rules in tiers]
        result["missing_tiers"] = [name for name, rules in tiers if not os.path.isdir(os.path.join(root, name))]
        work = [(directory, rules) for directory, rules in work if os.path.isdir(directory)]
    kept, deleted, ignored, reasons = [], [], [], {}
    try:
        for directory, rules in work:
            decision = plan_directory(directory, rules, params["series"], params["recurse"], params["orphans"])
            kept.extend(decision["kept"])
            deleted.extend(decision["deleted"])
            ignored.extend(decision["ignored"])
            relative = os.path.relpath(directory, root)
            for stem, why in decision["reasons"].items():
                reasons[stem if relative == "." else os.path.join(relative, stem)] = why
    except OSError as exc:
        module.fail_json(msg="cannot list %s: %s" % (root, to_native(exc)), **result)
    result.update(kept=kept, deleted=deleted, ignored=ignored, reasons=reasons)
    if module._diff:
        result["diff"] = dict(before_header=root, after_header=root,
                              before="".join(p + "\n" for p in sorted(kept + deleted)),
                              after="".join(p + "\n" for p in sorted(kept)))

    errors = []
    if deleted:
        result["changed"] = True
        if not module.check_mode:
            for path in deleted:
                try:
                    remove_path(path)
                except OSError as exc:
                    errors.append(dict(path=path, message=to_native(exc)))
    result["duration"] = round(time.monotonic() - started, 3)
    if errors:
        failed = set(err["path"] for err in errors)
        result["deleted"] = [path for path in deleted if path not in failed]
        result["changed"] = bool(result["deleted"])
        result["errors"] = errors
        module.fail_json(msg="%d of %d deletions failed (first: %s: %s)" % (
            len(errors), len(deleted), errors[0]["path"], errors[0]["message"]), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
