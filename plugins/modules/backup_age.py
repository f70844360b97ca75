#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: backup_age
short_description: Age of the newest backup of each component, locally and in S3, and of the last restore test
version_added: 0.1.0
description:
  - Finds the newest backup of each component (C(database), C(schema), C(vault), C(config), C(files)) in the
    local tiers of O(root) (C(daily), C(weekly), C(monthly)) and O(paths), and, when O(bucket) is set, under
    O(prefix) in S3. Reports for each its name, timestamp, age, size and how many backups exist.
  - The backup time is the timestamp in the artifact's name (C(<prefix>_<YYYYMMDD>_<HHMMSS>)), never a file
    or object modification time, so a copy made later does not look fresher than it is.
  - Components are read from the set manifests (C(set_<YYYYMMDD>_<HHMMSS>.json)); an artifact outside any set
    is classified by its name prefix (C(backup) is C(database), C(schema), C(globals), C(vault) and C(config)
    are themselves, safety backups C(prerestore)/C(prerollback) are ignored, any other prefix is C(files)).
  - File data kept in the file repository (C(dr_backup_files_store=repository)) is in no archive; the snapshots a
    set manifest records (C(file_snapshots)) count as C(files) backups of the set's time, in C(local) for the
    local repository and in C(s3) for the S3 one (as read from the manifests in S3, so among the newest
    O(manifest_scan) sets there).
  - Reports the last restore test recorded in the set manifests by the C(verify) role (C(verified.at),
    C(verified.result)), and the free space of the filesystem holding O(root).
  - Lists problems (an expected component missing or older than O(max_age_seconds), less than
    O(min_free_percent) free, the last restore test failed or older than O(verify_max_age_seconds)); with
    O(fail_on_problems=true) the task fails when there is one.
  - Read-only; never changes anything.
author:
  - atlasia DevOps team (@atlasia-devops)
extends_documentation_fragment:
  - atlasia.dr.s3
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reads only; the same answer as without check mode.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  root:
    description:
      - Backup root holding the C(daily), C(weekly) and C(monthly) tiers.
      - At least one of O(root), O(paths) and O(bucket) is required.
    type: path
  paths:
    description:
      - Further local directories searched for backups (for example a restore staging folder).
    type: list
    elements: path
  bucket:
    description:
      - S3 bucket of the offsite copies; when set, the backups under O(prefix) are examined too.
      - Without it, only local backups are examined and the S3 options are ignored.
    type: str
    required: false
  prefix:
    description:
      - Key prefix ("folder") of the backups in O(bucket).
    type: str
    default: ""
  components:
    description:
      - Components that must have a recent backup in every examined location. Components found but not listed
        are reported without being checked.
    type: list
    elements: str
    default: [database]
  max_age_seconds:
    description:
      - Oldest acceptable age of the newest backup of each component in O(components); 26 hours by default, a
        daily backup plus two hours of grace.
    type: int
    default: 93600
  min_free_percent:
    description:
      - Free space, in percent of the filesystem holding O(root), below which a problem is reported (the plan's
        10 %). V(0) disables the check.
    type: float
    default: 10
  verify_max_age_seconds:
    description:
      - Oldest acceptable age of the last successful restore test recorded in the set manifests. A failed last
        restore test is always a problem when this is set. V(0) disables both checks.
    type: int
    default: 0
  manifest_scan:
    description:
      - How many of the newest set manifests in S3 are read (one request each) for their components and
        restore-test records. Local set manifests are always all read.
    type: int
    default: 10
  fail_on_problems:
    description: Fail the task when a problem is found.
    type: bool
    default: false
notes:
  - The C(verified) record of a set manifest is written by the C(atlasia.dr.dr_verify) role through
    M(atlasia.dr.backup_set) with O(atlasia.dr.backup_set#module:state=updated).
seealso:
  - module: atlasia.dr.backup_set
  - module: atlasia.dr.s3_backup_transfer
"""

EXAMPLES = r"""
- name: How old are the newest backups, locally and in S3?
  atlasia.dr.backup_age:
    root: /srv/atlasia/backups
    bucket: atlasia-backups
    prefix: atlasia-backups/
    components: [database, vault, config, files]
    verify_max_age_seconds: 691200
  register: ages

- name: Age of the newest database dump in S3
  ansible.builtin.debug:
    msg: "{{ ages.components.database.s3.age_seconds }}"

- name: Fail when the newest local database backup is older than a day
  atlasia.dr.backup_age:
    root: /srv/atlasia/backups
    max_age_seconds: 86400
    min_free_percent: 0
    fail_on_problems: true
"""

RETURN = r"""
components:
  description:
    - Per component, per location (C(local), C(s3)), the newest backup. A location without a backup of the
      component has C(present=false).
  returned: always
  type: dict
  sample:
    database:
      local: {present: true, name: backup_20261126_020000.sql.gz, set_id: "20261126_020000",
              timestamp: "2026-11-26T02:00:00+00:00", epoch: 1795658400.0, age_seconds: 3600.0, size: 107112,
              count: 3, expected: true, ok: true}
      s3: {present: false, count: 0, expected: true, ok: false}
sets:
  description: Per location, how many complete sets (with a set manifest) exist and the newest one.
  returned: always
  type: dict
  sample: {local: {count: 3, newest: "20261126_020000", epoch: 1795658400.0, age_seconds: 3600.0}}
verify:
  description:
    - The last restore test recorded in a set manifest (C(present), C(at), C(epoch), C(result), C(set_id),
      C(age_seconds)) and the last successful one (C(last_passed) with C(at), C(epoch), C(set_id),
      C(backup_epoch)).
  returned: always
  type: dict
  sample: {present: true, at: "2026-11-26T03:10:00+00:00", result: passed, set_id: "20261126_020000",
           last_passed: {at: "2026-11-26T03:10:00+00:00", set_id: "20261126_020000", backup_epoch: 1795658400.0}}
disk:
  description: Free space of the filesystem holding O(root) (C(path), C(free_bytes), C(total_bytes), C(free_percent), C(ok)).
  returned: when O(root) is set
  type: dict
  sample: {path: /srv/atlasia/backups, free_bytes: 52613349376, total_bytes: 105226698752, free_percent: 50.0, ok: true}
problems:
  description: What is wrong, one sentence each; empty when everything is fine.
  returned: always
  type: list
  elements: str
  sample: ["the newest vault backup in s3 is 2 d 03 h old (vault_20261124_020000.snap), older than 26 h"]
ok:
  description: True when there is no problem.
  returned: always
  type: bool
locations:
  description: The locations examined, C(local) and/or C(s3).
  returned: always
  type: list
  elements: str
  sample: [local, s3]
now:
  description: The moment the ages are computed against (UTC, ISO 8601).
  returned: always
  type: str
  sample: "2026-11-26T03:00:00+00:00"
"""

import datetime
import json
import os
import time

from ansible.module_utils.common.text.converters import to_native

from ansible_collections.atlasia.dr.plugins.module_utils import backupset, naming
from ansible_collections.atlasia.dr.plugins.module_utils.common import DRModule
from ansible_collections.atlasia.dr.plugins.module_utils.s3 import (
    Boto3Error,
    BotoCoreError,
    ClientError,
    drop_empty_folders,
    fail_json_aws,
    get_s3_client,
    list_level,
    list_tree,
    normalize_prefix,
    s3_argument_spec,
    s3_module_kwargs,
)

#: Components of artifacts outside any set manifest, by name prefix (any other prefix is "files").
COMPONENT_OF_PREFIX = {"backup": "database", "schema": "schema", "globals": "globals", "vault": "vault", "config": "config"}
#: Prefixes that are not backups of the platform (set manifests, pre-restore safety backups).
NOT_BACKUPS = ("set", "prerestore", "prerollback", "vault-prerestore")
LOCATIONS = ("local", "s3")


def utc_now():
    return datetime.datetime.fromtimestamp(time.time(), datetime.timezone.utc)


def human(seconds):
    """``3 d 04 h``, ``5 h 02 min``, ``12 min``, ``40 s``."""
    seconds = max(0, int(seconds))
    if seconds >= 86400:
        return "%d d %02d h" % (seconds // 86400, (seconds % 86400) // 3600)
    if seconds >= 3600:
        return "%d h %02d min" % (seconds // 3600, (seconds % 3600) // 60)
    if seconds >= 60:
        return "%d min" % (seconds // 60)
    return "%d s" % seconds


def component_of(prefix):
    """Component of an artifact outside any set, from its name prefix; None for non-backups."""
    if prefix in NOT_BACKUPS:
        return None
    return COMPONENT_OF_PREFIX.get(prefix, "files")


def _path_size(path):
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(r, f)) for r, d, fs in os.walk(path) for f in fs)
    return os.path.getsize(path)


def scan_local(directories):
    """Backups under ``directories``: ``(artifacts, manifests)``.

    ``artifacts`` maps a base name to ``{name, prefix, timestamp, size}`` (the first directory holding a name
    wins: tiers share their files through hard links); ``manifests`` maps a set id to the parsed set manifest.
    Unreadable set manifests are skipped (``backup_set`` reports them).
    """
    artifacts, manifests = {}, {}
    for directory in directories:
        if not os.path.isdir(directory):
            continue
        for name in sorted(os.listdir(directory)):
            parsed = naming.parse_backup_name(name)
            if parsed is None:
                continue
            path = os.path.join(directory, name)
            if backupset.is_set_manifest(parsed):
                set_id = naming.format_timestamp(parsed.timestamp)
                if set_id not in manifests:
                    try:
                        manifests[set_id] = backupset.load(path)
                    except backupset.SetError:
                        continue
                continue
            if parsed.role != "artifact" or name in artifacts:
                continue
            try:
                size = _path_size(path)
            except OSError:
                continue
            artifacts[name] = dict(name=name, prefix=parsed.prefix, timestamp=parsed.timestamp, size=size)
    return artifacts, manifests


def components_from_manifests(manifests):
    """``{artifact name: (component, set id)}`` from set manifests."""
    known = {}
    for set_id, data in manifests.items():
        for entry in data.get("artifacts") or []:
            if isinstance(entry, dict) and entry.get("name"):
                known[entry["name"]] = (entry.get("component") or None, set_id)
    return known


def snapshots_of(manifests, location):
    """The file-repository snapshots the set manifests record for ``location`` (``local``: the local repository;
    ``s3``: an ``s3:`` one), as ``(artifacts, known)`` in the shapes :func:`newest_per_component` takes: each is a
    ``files`` backup timed by its set."""
    artifacts, known = {}, {}
    for set_id, data in manifests.items():
        try:
            moment = naming.parse_timestamp(set_id)
        except ValueError:
            continue
        for entry in data.get("file_snapshots") or []:
            if not isinstance(entry, dict) or not entry.get("snapshot_id"):
                continue
            if str(entry.get("repository") or "").startswith("s3:") != (location == "s3"):
                continue
            component = entry.get("name") or "files"
            name = "%s snapshot %s of set %s" % (component, str(entry["snapshot_id"])[:8], set_id)
            artifacts[name] = dict(name=name, prefix=component, timestamp=moment, size=entry.get("bytes"))
            known[name] = (entry.get("component") or "files", set_id)
    return artifacts, known


def with_snapshots(artifacts, known, manifests, location):
    """``artifacts`` and ``known`` with the file-repository snapshots of ``location`` added."""
    snapshots, snapshot_known = snapshots_of(manifests, location)
    merged, merged_known = dict(artifacts), dict(known)
    merged.update(snapshots)
    merged_known.update(snapshot_known)
    return merged, merged_known


def newest_per_component(artifacts, known, now):
    """``{component: summary of its newest artifact}`` (with ``count``) for one location."""
    found = {}
    for name, art in artifacts.items():
        component, set_id = known.get(name, (None, None))
        if component is None:
            component = component_of(art["prefix"])
        if component is None:
            continue
        current = found.get(component)
        count = (current or {}).get("count", 0) + 1
        if current is None or (art["timestamp"], name) > (current["_moment"], current["name"]):
            current = dict(present=True, name=name, set_id=set_id or naming.format_timestamp(art["timestamp"]),
                           timestamp=art["timestamp"].isoformat(), epoch=art["timestamp"].timestamp(),
                           age_seconds=round((now - art["timestamp"]).total_seconds(), 3), size=art.get("size"),
                           key=art.get("key"), directory=art.get("directory", False), _moment=art["timestamp"])
        current["count"] = count
        found[component] = current
    for summary in found.values():
        summary.pop("_moment", None)
        if summary.get("key") is None:
            summary.pop("key", None)
    return found


def set_summary(manifest_ids, now):
    """Count and newest of the complete sets of one location."""
    ids = sorted(manifest_ids)
    if not ids:
        return dict(count=0, newest=None)
    newest = naming.parse_timestamp(ids[-1])
    return dict(count=len(ids), newest=ids[-1], epoch=newest.timestamp(),
                age_seconds=round((now - newest).total_seconds(), 3))


def _parse_time(value):
    if value in (None, ""):
        return None
    try:
        if isinstance(value, (int, float)):
            return datetime.datetime.fromtimestamp(float(value), datetime.timezone.utc)
        moment = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment


def verify_summary(manifests, now):
    """The last restore test and the last successful one, from the ``verified`` records of set manifests."""
    records = []
    for set_id, data in manifests.items():
        record = data.get("verified")
        if not isinstance(record, dict):
            continue
        moment = _parse_time(record.get("at"))
        if moment is None:
            continue
        try:
            backup_moment = naming.parse_timestamp(set_id)
        except ValueError:
            continue
        records.append((moment, set_id, str(record.get("result") or "unknown"), backup_moment))
    if not records:
        return dict(present=False, last_passed=None)
    records.sort()
    moment, set_id, result, backup_moment = records[-1]
    summary = dict(present=True, at=moment.isoformat(), epoch=moment.timestamp(), result=result, set_id=set_id,
                   age_seconds=round((now - moment).total_seconds(), 3), backup_epoch=backup_moment.timestamp(),
                   last_passed=None)
    passed = [r for r in records if r[2] == "passed"]
    if passed:
        # the newest backup that passed a restore test (the RPO of verified backups), and when that test ran
        p_backup = max(passed, key=lambda r: (r[3], r[0]))
        p_last = passed[-1]
        summary["last_passed"] = dict(
            at=p_last[0].isoformat(), epoch=p_last[0].timestamp(), set_id=p_last[1],
            age_seconds=round((now - p_last[0]).total_seconds(), 3),
            newest_backup_set_id=p_backup[1], backup_epoch=p_backup[3].timestamp(),
            backup_age_seconds=round((now - p_backup[3]).total_seconds(), 3))
    return summary


def find_problems(components, expected, locations, max_age, disk, min_free, verify, verify_max_age):
    """Problems, one sentence each, in a stable order."""
    problems = []
    for component in expected:
        for location in locations:
            summary = components.get(component, {}).get(location) or {}
            if not summary.get("present"):
                problems.append("no %s backup in %s" % (component, location))
            elif summary["age_seconds"] > max_age:
                problems.append("the newest %s backup in %s is %s old (%s), older than %s" % (
                    component, location, human(summary["age_seconds"]), summary["name"], human(max_age)))
    if disk is not None and min_free > 0 and disk["free_percent"] < min_free:
        problems.append("only %.1f %% free on the filesystem of %s (less than %g %%)" % (
            disk["free_percent"], disk["path"], min_free))
    if verify_max_age > 0:
        if not verify.get("present"):
            problems.append("no restore test is recorded in any set manifest (run playbooks/verify.yml)")
        else:
            if verify["result"] != "passed":
                problems.append("the last restore test (%s, set %s) %s" % (verify["at"], verify["set_id"],
                                                                           verify["result"]))
            last = verify.get("last_passed")
            if last is None:
                problems.append("no restore test has ever passed")
            elif last["age_seconds"] > verify_max_age:
                problems.append("the last successful restore test ran %s ago (%s), more than %s" % (
                    human(last["age_seconds"]), last["at"], human(verify_max_age)))
    return problems


class S3Scanner(object):
    """The backups under a prefix of a bucket, in the shape :func:`scan_local` returns."""

    def __init__(self, module, client):
        self.module = module
        self.client = client
        self.bucket = module.params["bucket"]
        self.prefix = normalize_prefix(module.params["prefix"])

    def scan(self):
        objects, folders = list_level(self.client, self.bucket, self.prefix)
        folders = drop_empty_folders(self.client, self.bucket, folders, only=naming.parse_backup_name)
        artifacts, manifest_keys = {}, {}
        entries = [(obj["key"], obj, False) for obj in objects] + [(f.rstrip("/"), None, True) for f in folders]
        for key, obj, is_dir in entries:
            parsed = naming.parse_backup_name(key)
            if parsed is None:
                continue
            if backupset.is_set_manifest(parsed):
                manifest_keys[naming.format_timestamp(parsed.timestamp)] = key
                continue
            if parsed.role != "artifact":
                continue
            artifacts[parsed.name] = dict(name=parsed.name, prefix=parsed.prefix, timestamp=parsed.timestamp,
                                          size=obj["size"] if obj else None, key=key, directory=is_dir)
        manifests = {}
        for set_id in sorted(manifest_keys, reverse=True)[:max(0, self.module.params["manifest_scan"])]:
            body = self.client.get_object(Bucket=self.bucket, Key=manifest_keys[set_id])["Body"]
            try:
                data = json.loads(body.read().decode("utf-8"))
            except ValueError:
                continue
            finally:
                body.close()
            if isinstance(data, dict) and "artifacts" in data:
                manifests[set_id] = data
        return artifacts, manifests, sorted(manifest_keys)

    def directory_size(self, key):
        return sum(obj["size"] for obj in list_tree(self.client, self.bucket, key.rstrip("/") + "/"))


def main():
    argument_spec = s3_argument_spec()
    argument_spec["bucket"] = dict(type="str", required=False)
    argument_spec.update(
        root=dict(type="path"),
        paths=dict(type="list", elements="path"),
        prefix=dict(type="str", default=""),
        components=dict(type="list", elements="str", default=["database"]),
        max_age_seconds=dict(type="int", default=93600),
        min_free_percent=dict(type="float", default=10),
        verify_max_age_seconds=dict(type="int", default=0),
        manifest_scan=dict(type="int", default=10),
        fail_on_problems=dict(type="bool", default=False),
    )
    module = DRModule(argument_spec=argument_spec, supports_check_mode=True,
                      required_one_of=[("root", "paths", "bucket")], **s3_module_kwargs())
    p = module.params
    now = utc_now()
    locations = []
    per_location = {}
    all_manifests = {}
    sets = {}

    if p["root"] or p["paths"]:
        directories = ([os.path.join(p["root"], tier) for tier in backupset.TIERS] if p["root"] else []) + (
            p["paths"] or [])
        artifacts, manifests = scan_local(directories)
        locations.append("local")
        per_location["local"] = newest_per_component(
            *with_snapshots(artifacts, components_from_manifests(manifests), manifests, "local"), now=now)
        sets["local"] = set_summary(manifests, now)
        all_manifests.update(manifests)

    if p["bucket"]:
        client = get_s3_client(module)
        scanner = S3Scanner(module, client)
        try:
            artifacts, manifests, manifest_ids = scanner.scan()
            found = newest_per_component(
                *with_snapshots(artifacts, components_from_manifests(manifests), manifests, "s3"), now=now)
            for summary in found.values():
                if summary.get("directory"):
                    summary["size"] = scanner.directory_size(summary["key"])
        except (ClientError, BotoCoreError, Boto3Error) as exc:
            fail_json_aws(module, exc, msg="cannot list s3://%s/%s" % (p["bucket"], normalize_prefix(p["prefix"])))
        locations.append("s3")
        per_location["s3"] = found
        sets["s3"] = set_summary(manifest_ids, now)
        for set_id, data in manifests.items():
            local = all_manifests.get(set_id)
            # a local manifest may lack the restore-test record its S3 copy has, and the other way round
            if local is None or (not local.get("verified") and data.get("verified")):
                all_manifests[set_id] = data

    components = {}
    names = sorted(set(p["components"]) | set(c for found in per_location.values() for c in found))
    for component in names:
        components[component] = {}
        for location in locations:
            summary = per_location[location].get(component) or dict(present=False, count=0)
            summary["expected"] = component in p["components"]
            summary["ok"] = (not summary["expected"]) or bool(
                summary.get("present") and summary["age_seconds"] <= p["max_age_seconds"])
            components[component][location] = summary

    disk = None
    if p["root"]:
        try:
            free, total = backupset.disk_space(p["root"])
        except OSError as exc:
            module.fail_json(msg="cannot read the free space under %s: %s" % (p["root"], to_native(exc)))
        percent = round(100.0 * free / total, 2) if total else 0.0
        disk = dict(path=p["root"], free_bytes=free, total_bytes=total, free_percent=percent,
                    free_ratio=round(float(free) / total, 4) if total else 0.0,
                    ok=p["min_free_percent"] <= 0 or percent >= p["min_free_percent"])

    verify = verify_summary(all_manifests, now)
    problems = find_problems(components, p["components"], locations, p["max_age_seconds"], disk,
                             p["min_free_percent"], verify, p["verify_max_age_seconds"])
    result = dict(changed=False, components=components, sets=sets, verify=verify, problems=problems,
                  ok=not problems, now=now.isoformat(), locations=locations)
    if disk is not None:
        result["disk"] = disk
    if problems and p["fail_on_problems"]:
        module.fail_json(msg="%d backup monitoring problem(s): %s" % (len(problems), "; ".join(problems)), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
