# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):
    """Retention policy options (``module_utils.retention.retention_argument_spec`` plus O(series))."""

    DOCUMENTATION = r"""
options:
  keep_last:
    description:
      - Keep the N newest backups of each series. V(-1) keeps all of them.
    type: int
    default: 0
  keep_daily:
    description:
      - Keep the newest backup of each of the N newest calendar days (UTC) that have a backup. V(-1) means unlimited.
    type: int
    default: 7
  keep_weekly:
    description:
      - Keep the newest backup of each of the N newest ISO weeks that have a backup. V(-1) means unlimited.
    type: int
    default: 4
  keep_monthly:
    description:
      - Keep the newest backup of each of the N newest calendar months that have a backup. V(-1) means unlimited.
    type: int
    default: -1
  series:
    description:
      - Name prefixes (the C(<prefix>) of C(<prefix>_<YYYYMMDD>_<HHMMSS>)) to rotate, for example V([backup, schema]).
      - Every series is rotated on its own. Backups of other series are left alone and reported as kept.
      - By default every series found is rotated.
    type: list
    elements: str
notes:
  - The policy follows C(restic forget) semantics. Each rule is evaluated on the backups' own timestamps,
    taken from their names, never against the current date, so a pause in backups never deletes the last
    ones. A backup is kept when any rule keeps it.
  - Checksum sidecars (C(.md5), C(.sha256)) and the C(<prefix>_<YYYYMMDD>_<HHMMSS>.json) manifest share the
    fate of their backup.
  - Names outside the convention (and hidden temporary files) are never deleted; they are returned in RV(ignored).
  - A policy where every C(keep_*) option is V(0) is refused, because it would delete every backup.
"""
