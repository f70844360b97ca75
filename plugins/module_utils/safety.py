# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The copies a restore leaves behind, and how many of them are kept.

A restore saves what it replaces: the database's safety dump (``prerestore_<ts>…``, M(atlasia.dr.pg_restore_db)),
Vault's safety snapshot (``vault-prerestore_<ts>…``, M(atlasia.dr.vault_snapshot)) and the replaced database
itself (``<db>_previous_<ts>``). Each kind is kept by count, newest first (:func:`retention.keep_newest`); the
copy the current restore just made is always kept, whatever the count. Files whose manifest names another
database, and names outside the convention, are never touched.
"""

from __future__ import annotations

import json
import os

from ansible_collections.atlasia.dr.plugins.module_utils import atomic, naming, retention


def _manifest_database(directory, stem):
    try:
        with open(os.path.join(directory, naming.manifest_name(stem))) as handle:
            return json.load(handle).get("database")
    except (OSError, ValueError, AttributeError):
        return None


def prune_files(directory, prefix, keep, protect=None, database=None, check_mode=False):
    """Delete the copies named ``<prefix>_<ts>…`` in ``directory`` beyond the ``keep`` newest (-1: keep all).

    ``protect`` is the stem of the copy just made (always kept, and counted). With ``database``, only copies
    whose manifest names that database count (the others, and copies without a readable manifest, are left
    alone). An artifact goes with its sidecars and manifest. Returns the deleted artifacts' names, oldest last.
    """
    if keep == -1 or not os.path.isdir(directory):
        return []
    groups, dummy = retention.group_names(os.listdir(directory))
    items = []
    for (group_prefix, stem), group in groups.items():
        if group_prefix != prefix or stem == protect:
            continue
        if database is not None and _manifest_database(directory, stem) != database:
            continue
        items.append((stem, group["timestamp"]))
    dummy, forget = retention.keep_newest(items, max(0, keep - (1 if protect else 0)))
    removed = []
    for stem in forget:
        names = groups[(prefix, stem)]["names"]
        artifacts = sorted(name for name in names if naming.parse_backup_name(name).role == "artifact")
        removed.extend(artifacts)
        if check_mode:
            continue
        # the artifact first, its manifest last: a run killed half-way leaves the manifest, and the next run
        # finds the stem again and finishes the job
        order = sorted(names, key=lambda name: {"artifact": 0, "manifest": 2}.get(naming.parse_backup_name(name).role, 1))
        for name in order:
            atomic.remove_path(os.path.join(directory, name))
    return removed


def previous_databases(names, db):
    """``[(name, moment)]`` of the ``<db>_previous_<ts>`` databases among ``names``."""
    found = []
    for name in names:
        moment = naming.parse_scratch_db_name(name, db, kind="previous")
        if moment is not None:
            found.append((name, moment))
    return found


def previous_to_drop(names, db, keep, protect=None):
    """Names of the ``<db>_previous_*`` databases beyond the ``keep`` newest (-1: none); ``protect`` always kept."""
    if keep == -1:
        return []
    items = [item for item in previous_databases(names, db) if item[0] != protect]
    dummy, forget = retention.keep_newest(items, max(0, keep - (1 if protect else 0)))
    return forget
