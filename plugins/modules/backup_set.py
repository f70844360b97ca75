#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: backup_set
short_description: Record, find and verify backup sets (all artifacts of one backup run)
version_added: 0.1.0
description:
  - A backup set is every artifact of one run (database dump, schema dump, Vault snapshot, configuration
    and file archives) sharing one timestamp, listed with sizes and checksums in C(set_<YYYYMMDD>_<HHMMSS>.json).
  - O(state=present) writes the set manifest from the artifacts' sidecars and hard-links the set into the
    C(weekly) and C(monthly) tiers of O(root) when its date calls for it (Sunday, 1st of the month).
  - O(state=query) lists the sets under O(root) (or O(roots)) newest first and selects one, either the newest set
    whose checksums verify (O(select=latest)), a given set id, or a given set manifest. Damaged sets are
    skipped and reported, so a restore falls back to the newest good set and says so.
  - O(state=verified) checks every artifact of one set against its sidecars and the set manifest.
  - O(state=updated) merges O(changes) into a set manifest (for example the offsite copy or the result of a
    restore test).
  - O(state=refreshed) re-reads the sizes and checksums of every artifact of a set from its sidecars, after the
    artifacts were re-encrypted under a new key.
author:
  - atlasia DevOps team (@atlasia-devops)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: O(state=present), O(state=updated) and O(state=refreshed) report what they would write; the others only read.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  state:
    description: What to do.
    type: str
    default: query
    choices: [present, query, verified, updated, refreshed]
  path:
    description:
      - Directory holding the set (O(state=present), O(state=verified), O(state=updated)). With
        O(state=query), a set manifest path or a directory is accepted by O(select) instead.
    type: path
  root:
    description:
      - Backup root with the C(daily), C(weekly) and C(monthly) tiers. O(state=present) creates the missing tiers
        (mode 0700) and links into those of the set; O(state=query) searches them.
    type: path
  roots:
    description:
      - Directories to search with O(state=query), in order of preference (instead of the tiers of O(root)).
    type: list
    elements: path
  timestamp:
    description: Set id, C(YYYYMMDD_HHMMSS) in UTC.
    type: str
  artifacts:
    description:
      - Artifacts of the set (O(state=present)), base names in O(path) or dicts with C(name) and C(component)
        (C(database), C(schema), C(vault), C(config), C(files)...).
    type: list
    elements: raw
  environment:
    description: Environment recorded in the set manifest.
    type: str
  extra:
    description: Additional keys recorded in the set manifest.
    type: dict
  tiers:
    description:
      - Tiers of the set; by default C(daily), plus C(weekly) on O(weekly_day) and C(monthly) on O(monthly_day).
    type: list
    elements: str
  weekly_day:
    description: Weekday whose set is also weekly (0 = Monday, 6 = Sunday).
    type: int
    default: 6
  monthly_day:
    description: Day of the month whose set is also monthly.
    type: int
    default: 1
  select:
    description:
      - With O(state=query), V(latest) (newest set that verifies), V(newest) (newest set, unverified), a set
        id C(YYYYMMDD_HHMMSS), or the path of a set manifest.
    type: str
    default: latest
  components:
    description: Verify only the artifacts of these components.
    type: list
    elements: str
  changes:
    description: Keys to merge into the set manifest (O(state=updated)).
    type: dict
  auth_key:
    description:
      - The environment's secret (the encryption passphrase). With O(state=present) and O(state=refreshed) the set
        manifest carries an HMAC-SHA256 over its artifacts (names, sizes, checksums), environment and database,
        under a key derived from it, which M(atlasia.dr.backup_locate) checks before a set is used.
    type: str
    version_added: 0.2.0
  repair_tiers:
    description:
      - With O(state=present) and O(root), check every tier afterwards. A tier copy whose set manifest lists files
        the tier does not hold (a run killed while linking it) is completed by hard-linking the missing files from
        another tier where they verify against that manifest, or, when no tier holds them intact, removed from
        C(weekly)/C(monthly) (its set manifest first) so it is no longer offered as a restore point. An incomplete
        copy in C(daily) is only reported. Each repair is a warning in the run output and an entry of
        RV(repairs).
    type: bool
    default: false
    version_added: 0.2.0
  fail_on_problems:
    description:
      - With O(state=verified), fail when the set does not verify; with O(state=query), fail when no set is
        selected.
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: Record tonight's set and link it into the weekly/monthly tiers
  atlasia.dr.backup_set:
    state: present
    root: /srv/atlasia/backups
    path: /srv/atlasia/backups/daily
    timestamp: "{{ backup_timestamp }}"
    environment: prod
    artifacts:
      - {name: "backup_{{ backup_timestamp }}.sql.gz", component: database}
      - {name: "schema_{{ backup_timestamp }}.sql", component: schema}

- name: Newest set whose checksums verify
  atlasia.dr.backup_set:
    state: query
    root: /srv/atlasia/backups
  register: found

- name: Verify one set
  atlasia.dr.backup_set:
    state: verified
    path: /srv/atlasia/backups/daily
    timestamp: "20261126_020000"
"""

RETURN = r"""
manifest:
  description: Path of the set manifest (present, verified, updated, refreshed, and the selected set of query).
  returned: when a set is involved
  type: str
  sample: /srv/atlasia/backups/daily/set_20261126_020000.json
set:
  description: Content of the set manifest.
  returned: when a set is involved
  type: dict
  sample: {"set_id": "20261126_020000", "artifacts": [{"name": "backup_20261126_020000.sql.gz"}]}
linked:
  description: Files hard-linked into other tiers.
  returned: state=present
  type: list
  elements: str
  sample: [/srv/atlasia/backups/weekly/backup_20261126_020000.sql.gz]
repairs:
  description:
    - Tier copies found incomplete by O(repair_tiers), each with C(tier), C(set_id), C(manifest), C(missing) (the
      files it lacked), C(action) (V(completed), V(removed), V(incomplete), or V(would_complete)/V(would_remove) in
      check mode), C(source) (the tier it was completed from), C(linked), C(removed) and C(problems).
  returned: state=present with repair_tiers
  type: list
  elements: dict
  sample: [{"tier": "weekly", "set_id": "20261122_020000", "action": "completed", "source": "daily",
            "missing": ["backup_20261122_020000.sql.gz.enc"]}]
selected:
  description: The set chosen by O(select) (manifest path, directory, set id, timestamp, size), or null.
  returned: state=query
  type: dict
  sample: {"set_id": "20261126_020000", "directory": /srv/atlasia/backups/daily}
sets:
  description:
    - Sets found, newest first, with C(verified) (true, false, or null when not checked), C(set_id),
      C(manifest), C(directory), C(size), C(components) and C(artifacts) (the names of their files).
  returned: state=query
  type: list
  elements: dict
passed_over:
  description:
    - Newer sets passed over because they did not verify, with the problems found. (Not named C(skipped), which
      Ansible would read as "the task was skipped".)
  returned: state=query
  type: list
  elements: dict
problems:
  description: What does not verify (empty when the set is sound).
  returned: state=verified
  type: list
  elements: str
free_bytes:
  description: Free space on the filesystem of O(path) or O(root).
  returned: always
  type: int
total_bytes:
  description: Size of the filesystem of O(path) or O(root).
  returned: always
  type: int
"""

import os

from ansible_collections.atlasia.dr.plugins.module_utils import backupset, naming
from ansible_collections.atlasia.dr.plugins.module_utils.common import DRModule


def _roots(params):
    if params["roots"]:
        return params["roots"]
    if params["root"]:
        return [os.path.join(params["root"], tier) for tier in backupset.TIERS]
    return []


def _describe(manifest_path, data):
    return dict(set_id=data["set_id"], manifest=manifest_path, directory=os.path.dirname(manifest_path),
                timestamp=data.get("timestamp"), size=data.get("size"), environment=data.get("environment"),
                components=sorted(set(a.get("component") or "" for a in data["artifacts"])),
                artifacts=[a["name"] for a in data["artifacts"] if a.get("name")],
                offsite=data.get("offsite"), verified_record=data.get("verified"))


def query(module):
    p = module.params
    select = p["select"]
    if select not in ("latest", "newest") and (select.endswith(".json") or os.path.isdir(select)):
        candidates = [select] if select.endswith(".json") else backupset.discover([select])
    else:
        candidates = backupset.discover(_roots(p))
    sets, passed_over, selected = [], [], None
    for manifest_path in candidates:
        try:
            data = backupset.load(manifest_path)
        except backupset.SetError as exc:
            entry = dict(manifest=manifest_path, verified=False, problems=[str(exc)])
            sets.append(entry)
            if selected is None and select in ("latest",):
                passed_over.append(entry)
            continue
        entry = _describe(manifest_path, data)
        entry["verified"] = None
        wanted = selected is None and (select in ("latest", "newest") or select == data["set_id"] or
                                       select == manifest_path)
        if wanted and select != "newest":
            problems = backupset.verify(entry["directory"], data, p["components"])
            entry["verified"] = not problems
            entry["problems"] = problems
            if problems:
                passed_over.append(entry)
                if select != "latest":
                    selected = entry
            else:
                selected = entry
        elif wanted:
            selected = entry
        sets.append(entry)
    free, total = backupset.disk_space(p["path"] or p["root"] or (candidates[0] if candidates else "/"))
    result = dict(changed=False, sets=sets, passed_over=passed_over, selected=selected, free_bytes=free,
                  total_bytes=total)
    if selected is not None:
        result["manifest"] = selected["manifest"]
        result["set"] = backupset.load(selected["manifest"])
    if p["fail_on_problems"] and (selected is None or selected.get("verified") is False):
        if selected is not None:
            msg = "backup set %s does not verify: %s" % (selected["set_id"], "; ".join(selected.get("problems", [])))
        elif not sets:
            msg = "no backup set found under %s" % ", ".join(_roots(p) or [select])
        else:
            damaged = "; ".join("%s: %s" % (s.get("set_id", s["manifest"]), ", ".join(s["problems"])) for s in passed_over)
            msg = "no backup set under %s verifies (%d damaged): %s" % (", ".join(_roots(p)), len(passed_over), damaged)
        module.fail_json(msg=msg, **result)
    return result


def _repair(module, dry_run):
    """Repair the tiers of O(root) when asked (O(repair_tiers)); every repair is also a warning."""
    p = module.params
    if not (p["repair_tiers"] and p["root"]):
        return {}
    repairs = backupset.repair_tiers(p["root"], dry_run=dry_run)
    for report in repairs:
        module.warn(backupset.describe_repair(report))
    return dict(repairs=repairs)


def argument_spec():
    return dict(
        state=dict(type="str", default="query", choices=["present", "query", "verified", "updated", "refreshed"]),
        path=dict(type="path"),
        root=dict(type="path"),
        roots=dict(type="list", elements="path"),
        timestamp=dict(type="str"),
        artifacts=dict(type="list", elements="raw"),
        environment=dict(type="str"),
        extra=dict(type="dict"),
        tiers=dict(type="list", elements="str"),
        weekly_day=dict(type="int", default=6),
        monthly_day=dict(type="int", default=1),
        select=dict(type="str", default="latest"),
        components=dict(type="list", elements="str"),
        changes=dict(type="dict"),
        fail_on_problems=dict(type="bool", default=True),
        repair_tiers=dict(type="bool", default=False),
        auth_key=dict(type="str", no_log=True),
    )


def record(module, manifest_path, free, total):
    """state=present: write the set manifest and link the set into its tiers."""
    p = module.params
    moment = naming.parse_timestamp(p["timestamp"])
    tiers = p["tiers"] or backupset.tiers_for(moment, p["weekly_day"], p["monthly_day"])
    if module.check_mode:
        repairs = _repair(module, dry_run=True)
        module.exit_json(changed=True, manifest=manifest_path, linked=[], tiers=tiers, free_bytes=free,
                         total_bytes=total, **repairs)
    path, data = backupset.build(p["path"], p["timestamp"], p["artifacts"], p["environment"], p["extra"],
                                 tiers, auth_key=p["auth_key"])
    linked = []
    if p["root"]:
        for tier in backupset.TIERS:  # every tier exists (private) once a set was recorded
            if not os.path.isdir(os.path.join(p["root"], tier)):
                os.makedirs(os.path.join(p["root"], tier), 0o700)
        for tier in tiers:
            target = os.path.join(p["root"], tier)
            if os.path.abspath(target) != os.path.abspath(p["path"]):
                linked.extend(backupset.link_into(p["path"], data, target))
    repairs = _repair(module, dry_run=False)
    module.exit_json(changed=True, manifest=path, set=data, linked=linked, tiers=tiers, free_bytes=free,
                     total_bytes=total, **repairs)


def main():
    module = DRModule(
        argument_spec=argument_spec(),
        required_if=[
            ("state", "present", ("path", "timestamp", "artifacts")),
            ("state", "verified", ("path", "timestamp")),
            ("state", "updated", ("path", "timestamp", "changes")),
            ("state", "refreshed", ("path", "timestamp")),
        ],
        supports_check_mode=True,
    )
    p = module.params
    state = p["state"]
    try:
        if state == "query":
            module.exit_json(**query(module))
        try:
            naming.parse_timestamp(p["timestamp"])
        except ValueError:
            module.fail_json(msg="timestamp %r is not YYYYMMDD_HHMMSS" % p["timestamp"])
        manifest_path = os.path.join(p["path"], backupset.set_manifest_name(p["timestamp"]))
        free, total = backupset.disk_space(p["path"])
        if state == "present":
            record(module, manifest_path, free, total)
        data = backupset.load(manifest_path)
        if state == "verified":
            problems = backupset.verify(p["path"], data, p["components"])
            result = dict(changed=False, manifest=manifest_path, set=data, problems=problems, verified=not problems,
                          free_bytes=free, total_bytes=total)
            if problems and p["fail_on_problems"]:
                module.fail_json(msg="backup set %s does not verify: %s" % (p["timestamp"], "; ".join(problems)),
                                 **result)
            module.exit_json(**result)
        if module.check_mode:
            module.exit_json(changed=True, manifest=manifest_path, set=data, free_bytes=free, total_bytes=total)
        if state == "refreshed":
            data = backupset.refresh(p["path"], p["timestamp"], auth_key=p["auth_key"])
        else:
            data = backupset.update(manifest_path, p["changes"])
        module.exit_json(changed=True, manifest=manifest_path, set=data, free_bytes=free, total_bytes=total)
    except backupset.SetError as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg="cannot access the backup set: %s" % exc)


if __name__ == "__main__":
    main()
