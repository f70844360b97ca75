#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: dr_file_repo
short_description: Back file data (uploads, plugins, logs) up into a deduplicating restic repository, restore, check, forget
version_added: 0.2.0
description:
  - Keeps the file components of the backup sets in a restic repository (U(https://restic.net), Debian package
    C(restic)) with content-defined deduplication (a night stores only what changed), client-side encryption,
    and a local directory or an S3 bucket (under its own prefix) as the back end.
  - The repository password is derived from O(key), the environment's secret (HMAC-SHA256 of a fixed label), so
    the same secret opens the repository on a fresh host; the secret itself is never given to restic, and the
    password and S3 credentials travel in restic's environment, never on its command line.
  - O(state=backup) makes one snapshot of O(paths) tagged C(set=<timestamp>) and C(component=<component>),
    creating the repository first when it does not exist (O(init)). Paths are stored absolute (as
    M(atlasia.dr.dr_archive) does), the latest snapshot of the same component is the parent, so unchanged files
    are not read again (in a local repository restic picks it itself, the latest snapshot of the same host and
    paths, so the backup is the only restic run that opens the repository).
  - O(state=restore) restores a snapshot, whole or the O(include) paths, under O(dest) (absolute paths below it),
    with the rules of M(atlasia.dr.dr_archive)'s extraction; restic itself overwrites what is in its target and
    follows the links there, so it only ever writes into a new private folder (mode 0700, O(staging_dir)). The
    restored tree is then checked as an archive would be (an entry written through a symbolic link leading out of
    O(dest), or a link pointing out of it, refuses the snapshot whole with O(dest) unchanged), and only the
    entries that differ from O(dest) and O(overwrite) allows are copied there by tar (permissions, owners,
    times, C(--keep-directory-symlink)). The private folder is removed afterwards, whatever happens.
  - With O(set_snapshots) (the C(file_snapshots) of a set manifest) and O(component), the snapshot of that
    component is taken from the local repository O(repository) when it holds it, else from the S3 repository
    (O(bucket)), as sets are located; a repository passed over is named in a warning.
  - O(state=forget) forgets the snapshots named in O(snapshots), those of the set O(timestamp), or those of every
    set not in O(keep_sets) (the sets a rotation kept); a snapshot already gone is not an error. The data they
    alone held is freed by O(state=prune) (or O(prune=true)).
  - O(state=check) checks the repository's structure and reads back O(read_data_subset) of its data; damage (a
    pack whose content no longer matches its id) fails the task. With O(sample_files), a sample of files is then
    restored and compared with the snapshot's listing.
  - O(state=rekeyed) adds the key of O(new_key) to the repository and removes that of O(key). It is resumable, a
    repository already opened by O(new_key) only has the old key removed, one opened by O(new_key) alone is left as is.
  - O(state=snapshots) lists the snapshots (of a set or component when O(timestamp) or O(component) is given).
author:
  - atlasia DevOps team (@atlasia-devops)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - atlasia.dr.s3
attributes:
  check_mode:
    support: full
    details:
      - O(state=backup) runs C(restic backup --dry-run) (the files and bytes a real run would add) when the
        repository exists, else reports that it would be created; no data, index, snapshot or lock is written
        (O(state=backup), O(state=restore), O(state=forget) and O(state=snapshots) run restic with C(--no-lock) in
        check mode).
      - O(state=restore) lists the files the snapshot would restore; O(dest) is not touched.
      - O(state=forget) reports the snapshots it would forget; O(state=prune) runs C(restic prune --dry-run).
      - O(state=check) and O(state=snapshots) only read, and run as usual.
      - O(state=rekeyed) reports whether it would add the new key and which keys it would remove.
  diff_mode:
    support: none
  platform:
    support: full
    platforms: posix
    details: Needs the C(restic) program (0.14 or later).
options:
  state:
    description: What to do (see the description).
    type: str
    default: backup
    choices: [backup, restore, forget, check, prune, snapshots, rekeyed]
  s3:
    description:
      - V(false) keeps the repository in the local directory O(repository); V(true) in O(bucket) under O(prefix)
        (C(s3:<endpoint_url>/<bucket>/<prefix>)), with the connection options of the C(s3) group.
      - Explicit, so a play that sets O(bucket) in its C(group/atlasia.dr.s3) defaults still reaches its local
        repository.
    type: bool
    default: false
  repository:
    description: Absolute path of the local repository. Required with O(s3=false); not used with O(s3=true).
    type: path
  bucket:
    description: S3 bucket of the repository. Required with O(s3=true).
    type: str
    required: false
  prefix:
    description: Key prefix of the repository in O(bucket), for example V(atlasia-prod/files).
    type: str
    default: files
  key:
    description:
      - The environment's secret (the encryption passphrase of the backup sets); the repository password is
        derived from it.
    type: str
    required: true
  new_key:
    description:
      - With O(state=rekeyed), the environment's new secret (a key rotation). A key for its derived password is
        added to the repository and the key of O(key) removed, so the rotated environment opens the repository and
        the old secret no longer does. The data is not re-encrypted (restic's keys wrap one master key).
    type: str
  init:
    description: With O(state=backup), create the repository when it does not exist yet.
    type: bool
    default: true
  paths:
    description:
      - With O(state=backup), absolute paths of the directories and files to back up, and glob patterns (as
        M(atlasia.dr.dr_archive) takes them). Required with O(state=backup).
    type: list
    elements: path
  exclude:
    description: Glob patterns of entries to leave out, with the semantics of M(atlasia.dr.dr_archive).
    type: list
    elements: str
    default: []
  max_age_days:
    description: Back up only files modified in the last O(max_age_days) days (the plan keeps 7 days of logs).
    type: int
  missing:
    description: What to do with a path that does not exist (as M(atlasia.dr.dr_archive)).
    type: str
    default: warn
    choices: [ignore, warn, fail]
  component:
    description:
      - The set component the snapshot holds (V(uploads), V(plugins), V(logs)); tagged C(component=<component>).
      - Required with O(state=backup).
    type: str
  timestamp:
    description:
      - The backup set, C(YYYYMMDD_HHMMSS) (tagged C(set=<timestamp>)). Defaults to now with O(state=backup).
      - With O(state=forget), forget every snapshot of this set; with O(state=snapshots), list them.
    type: str
  host:
    description: Host name recorded in the snapshot (restic's default is this host's name).
    type: str
  snapshot:
    description:
      - With O(state=restore), the snapshot id (full or short), or V(latest) of O(component).
      - O(snapshot) or O(set_snapshots) is required with O(state=restore).
    type: str
  snapshots:
    description:
      - With O(state=forget), ids of the snapshots to forget.
      - With O(state=check) and O(sample_files), the snapshots the sample is drawn from (default the newest).
    type: list
    elements: str
  keep_sets:
    description:
      - With O(state=forget), the sets that remain, as set ids or as the paths and keys of their set manifests (the
        RV(atlasia.dr.backup_rotate#module:kept) of M(atlasia.dr.backup_rotate) or
        RV(atlasia.dr.s3_rotate#module:kept) of M(atlasia.dr.s3_rotate); other entries are ignored). Every snapshot
        tagged with another set is forgotten, so the snapshots follow the sets whatever rotated them, and a run
        killed before it forgot is caught up by the next one. Snapshots without a set tag are kept. A list naming no
        set is refused (it would forget everything).
    type: list
    elements: str
  prune:
    description: With O(state=forget), prune the repository afterwards (frees the data no snapshot uses).
    type: bool
    default: false
  dest:
    description:
      - With O(state=restore), the directory the snapshot is restored under (created, mode 0700, when missing).
        Paths are absolute in the snapshot, so V(/) puts every file back where it was backed up from, and
        another directory receives a copy of the tree (C(<dest>/srv/atlasia/uploads/...)).
      - Existing entries at the same paths are replaced as O(overwrite) says.
    type: path
  overwrite:
    description:
      - With O(state=restore), what happens to entries that already exist under O(dest), as in
        M(atlasia.dr.dr_archive) (V(always) replaces those that differ, V(never) keeps them, V(older) replaces
        only files older than the snapshot's copy).
    type: str
    default: always
    choices: [always, never, older]
  staging_dir:
    description:
      - With O(state=restore), the directory that receives the private folder restic restores into. By default
        the nearest existing directory above the first restored path as placed under O(dest) (beside the
        destination, on its filesystem), or O(dest) itself.
      - With O(state=check) and O(sample_files), where the sample is restored (default the system's temporary
        directory).
    type: path
  set_snapshots:
    description:
      - With O(state=restore), the C(file_snapshots) of a set manifest; with O(component), restores that component
        of the set from the local repository, or from S3 when the local one is missing or lacks the snapshot
        (needs O(bucket)). Other failures (a wrong key, damage) stop the restore. Mutually exclusive with
        O(snapshot).
    type: list
    elements: dict
  include:
    description: With O(state=restore), restore only these paths of the snapshot (absolute, as backed up).
    type: list
    elements: str
    default: []
  read_data_subset:
    description:
      - With O(state=check), the part of the data read back and verified, C(n/t) (V(1/10)), a percentage
        (V(5%)) or a size (V(200M)). Empty checks the structure only.
    type: str
    default: 5%
  sample_files:
    description:
      - With O(state=check), after C(restic check), restore this many files drawn at random from O(snapshots) into a
        private folder (under O(staging_dir), removed afterwards) and compare each with the snapshot's listing
        (size, modification time, permissions); restic checks every piece it reads against its id on the way. A
        difference fails the task (C(damaged)). V(0) restores nothing.
    type: int
    default: 0
  cache_dir:
    description: restic's cache directory (default C(~/.cache/restic) of the user running the task).
    type: path
  light_key:
    description:
      - After O(state=backup), make sure the key this password opens is a light one (scrypt N=2^14, r=8, p=1)
        instead of the one C(restic init) calibrated to cost about half a second of CPU on every restic run. The
        password is an HMAC-SHA256 output of the environment's secret (256 bits), which a work factor does not
        make stronger. The light key is written in restic's key-file format, restic must open the repository
        with it, and only then is the calibrated key removed (C(restic key remove)); keys of other passwords are
        left alone. Once done, it costs a listing of the key files.
      - A failure here is a warning, the backup being made either way.
    type: bool
    default: true
  repository_size:
    description:
      - Also report the size of a repository in S3 (RV(total_bytes)), which costs one more restic run
        (C(restic stats --mode raw-data) opens the repository again and loads its index).
      - The size of a local repository is read from its folder without a restic run and is always reported.
    type: bool
    default: false
notes:
  - The S3 options O(timeout) and O(max_attempts) are not used (restic has its own retries); O(region),
    O(addressing_style), O(validate_certs), O(ca_bundle), O(profile) and the credentials are.
seealso:
  - module: atlasia.dr.dr_archive
  - module: atlasia.dr.backup_rotate
"""

EXAMPLES = r"""
- name: Back the uploads of tonight's set up into the environment's repository in S3
  atlasia.dr.dr_file_repo:
    paths: [/srv/atlasia/uploads]
    component: uploads
    timestamp: "{{ backup_timestamp }}"
    key: "{{ vault_dr_encryption_key }}"
    s3: true
    bucket: atlasia-backups
    prefix: atlasia-prod/files
    endpoint_url: https://s3.example.org

- name: Logs of the last 7 days into a local repository
  atlasia.dr.dr_file_repo:
    repository: /srv/atlasia/backups/files
    paths: [/srv/atlasia/logs]
    max_age_days: 7
    component: logs
    timestamp: "{{ backup_timestamp }}"
    key: "{{ vault_dr_encryption_key }}"

- name: Restore two folders of a set's uploads next to the current ones
  atlasia.dr.dr_file_repo:
    state: restore
    repository: /srv/atlasia/backups/files
    snapshot: 3e98b70a
    include: [/srv/atlasia/uploads/2026/11]
    dest: /srv/restore-check
    key: "{{ vault_dr_encryption_key }}"

- name: Restore the uploads of a located set, from the local repository or else from S3
  atlasia.dr.dr_file_repo:
    state: restore
    set_snapshots: "{{ located.backup_set.file_snapshots }}"
    component: uploads
    repository: /srv/atlasia/backups/files-repository
    bucket: atlasia-backups
    prefix: atlasia-prod/files-repository
    dest: /
    key: "{{ vault_dr_encryption_key }}"

- name: Check the repository, reading a tenth of its data back
  atlasia.dr.dr_file_repo:
    state: check
    repository: /srv/atlasia/backups/files
    read_data_subset: 1/10
    key: "{{ vault_dr_encryption_key }}"

- name: Forget the snapshots of an expired set, then prune
  atlasia.dr.dr_file_repo:
    state: forget
    repository: /srv/atlasia/backups/files
    timestamp: "20261101_020000"
    prune: true
    key: "{{ vault_dr_encryption_key }}"
"""

RETURN = r"""
repository:
  description: The repository (a path or C(s3:<endpoint>/<bucket>/<prefix>)).
  returned: always
  type: str
  sample: s3:https://s3.example.org/atlasia-backups/atlasia-prod/files
created:
  description: Whether O(state=backup) created the repository (or would, in check mode).
  returned: O(state=backup)
  type: bool
snapshot_id:
  description: Id of the snapshot made (O(state=backup)) or restored (O(state=restore)); empty in check mode for a backup.
  returned: O(state=backup) or O(state=restore)
  type: str
  sample: 3e98b70a45196c195519aff8d3e55926a76b3ffcef93cc418db220a434b41a0c
short_id:
  description: Its short form.
  returned: O(state=backup) or O(state=restore)
  type: str
  sample: 3e98b70a
files:
  description: Files in the snapshot (backup), or restored (restore; that would be in check mode).
  returned: O(state=backup) or O(state=restore)
  type: int
  sample: 1204
files_new:
  description: Files the snapshot added that its parent did not have.
  returned: O(state=backup)
  type: int
  sample: 12
files_changed:
  description: Files that changed since the parent snapshot.
  returned: O(state=backup)
  type: int
  sample: 3
bytes:
  description: Bytes of the files backed up (before deduplication) or restored.
  returned: O(state=backup) or O(state=restore)
  type: int
  sample: 301989888
bytes_added:
  description: Bytes this backup added to the repository (new data only, before compression).
  returned: O(state=backup)
  type: int
  sample: 3145728
total_bytes:
  description:
    - Bytes the repository stores after the operation. Of a local repository, the size of its pack files on disk,
      read without opening the repository again; of a repository in S3, C(restic stats --mode raw-data), only with
      O(repository_size=true) (null otherwise).
  returned: O(state=backup), O(state=forget), O(state=prune), O(state=snapshots) when not in check mode
  type: int
  sample: 302014464
key_lightened:
  description:
    - With O(light_key), what was done to the repository's keys ("added <id>", "removed <id>"); empty when the key
      already was a light one.
  returned: O(state=backup) when not in check mode
  type: list
  elements: str
  sample: ["added 5f0c...", "removed 9a41..."]
manifest_entry:
  description:
    - What the set manifest records of this snapshot (C(name) is O(component); C(component) is V(files), as for a
      file-data archive; C(store) is V(repository)), so a set still names everything it contains.
  returned: O(state=backup)
  type: dict
  sample:
    name: uploads
    component: files
    store: repository
    repository: s3:https://s3.example.org/atlasia-backups/atlasia-prod/files
    snapshot_id: 3e98b70a45196c195519aff8d3e55926a76b3ffcef93cc418db220a434b41a0c
    paths: [/srv/atlasia/uploads]
    files: 1204
    bytes: 301989888
    bytes_added: 3145728
    total_bytes: 302014464
source:
  description: With O(set_snapshots), the repository the snapshot was restored from, V(local) or V(s3).
  returned: O(state=restore) with O(set_snapshots)
  type: str
  sample: local
passed_over:
  description: With O(set_snapshots), the repositories passed over and why (missing, or without the snapshot).
  returned: O(state=restore) with O(set_snapshots)
  type: list
  elements: str
written:
  description: Entries written under O(dest) (those that differed and O(overwrite) allowed).
  returned: O(state=restore) when not in check mode
  type: int
  sample: 3
written_paths:
  description: Their paths (the first 1000).
  returned: O(state=restore) when not in check mode
  type: list
  elements: str
staging_dir:
  description: The private folder restic restored into (removed at the end).
  returned: O(state=restore) when not in check mode
  type: str
incomplete:
  description: Some files could not be read (restic exit status 3); the snapshot holds the others (see warnings).
  returned: O(state=backup)
  type: bool
skipped_missing:
  description: Paths of O(paths) that did not exist.
  returned: O(state=backup)
  type: list
  elements: str
snapshots:
  description: The snapshots (O(state=snapshots)), oldest first, with id, short_id, time, paths, tags, set, component.
  returned: O(state=snapshots)
  type: list
  elements: dict
forgotten:
  description: Ids of the snapshots forgotten (or that would be).
  returned: O(state=forget)
  type: list
  elements: str
kept_sets:
  description: With O(keep_sets), the set ids read from it.
  returned: O(state=forget) with O(keep_sets)
  type: list
  elements: str
sampled:
  description: With O(sample_files), the files restored as a sample (snapshot, path, size).
  returned: O(state=check) with O(sample_files)
  type: list
  elements: dict
sample_problems:
  description: With O(sample_files), the differences found (empty when every sampled file matches).
  returned: O(state=check) with O(sample_files)
  type: list
  elements: str
added:
  description: With O(state=rekeyed), whether the new key was added (or would be).
  returned: O(state=rekeyed)
  type: bool
removed:
  description: With O(state=rekeyed), ids of the keys removed (or that would be).
  returned: O(state=rekeyed)
  type: list
  elements: str
output:
  description: What C(restic check) or C(restic prune) printed.
  returned: O(state=check) or O(state=prune)
  type: str
duration:
  description: Seconds the task took.
  returned: always
  type: float
  sample: 0.62
error_kind:
  description:
    - On failure, what went wrong, V(password) (the key does not open the repository), V(missing) (no repository),
      V(locked), V(credentials), V(bucket), V(unreachable), V(space), V(damaged) (check found damage),
      V(not_found) (no such snapshot), V(request) (invalid options), V(unsafe_member) (a restore that would write
      or point outside O(dest), refused with nothing changed), V(io), V(restic).
  returned: failure
  type: str
"""

import calendar
import datetime
import os
import random
import re
import shutil
import stat
import tempfile
import time

from ansible_collections.atlasia.dr.plugins.module_utils import archive, naming, restic
from ansible_collections.atlasia.dr.plugins.module_utils.common import DRModule
from ansible_collections.atlasia.dr.plugins.module_utils.s3 import HAS_BOTO3, get_s3_client
from ansible_collections.atlasia.dr.plugins.module_utils.s3_options import s3_argument_spec, s3_module_kwargs


def snapshot_facts(snap):
    return dict(id=snap.get("id"), short_id=snap.get("short_id"), time=snap.get("time"), paths=snap.get("paths"),
                tags=snap.get("tags") or [], host=snap.get("hostname"),
                set=restic.tag_value(snap, restic.TAG_SET), component=restic.tag_value(snap, restic.TAG_COMPONENT))


#: the states whose check mode only reads (snapshots, ls, backup --dry-run): run without restic's shared lock, so
#: that a check-mode run leaves the repository as it found it
NO_LOCK_IN_CHECK_MODE = ("backup", "restore", "forget", "snapshots")


def open_repository(module, s3=None):
    """The :class:`restic.Restic` of the module's options (``s3`` overrides O(s3))."""
    p = module.params
    if p["s3"] if s3 is None else s3:
        location = restic.repository_location(bucket=p["bucket"], prefix=p["prefix"],
                                              endpoint_url=p.get("endpoint_url"), region=p.get("region"))
        env, options = restic.s3_settings(p)
    else:
        location = restic.repository_location(path=p["repository"])
        env, options = {}, []
    if module.check_mode and p["state"] in NO_LOCK_IN_CHECK_MODE:
        options = options + ["--no-lock"]  # reads only: not even a lock file is written into the repository
    binary = module.get_bin_path("restic", required=True)
    return restic.Restic(module.run_command, binary, location, restic.repository_password(p["key"]), env=env,
                         options=options, cache_dir=p["cache_dir"])


def _roots(selection):
    """The top entries of a selection (the directories and files named, globs expanded)."""
    paths = [entry.path for entry in selection.entries]
    chosen = set()
    roots = []
    for path in paths:
        if os.path.dirname(path) in chosen or any(path.startswith(root + "/") for root in roots):
            continue
        roots.append(path)
        chosen.add(path)
    return roots


def do_backup(module, repo, result):
    p = module.params
    try:
        moment = naming.parse_timestamp(p["timestamp"]) if p["timestamp"] else naming.utc_now()
    except ValueError:
        raise restic.ResticError("timestamp %r is not YYYYMMDD_HHMMSS" % p["timestamp"], kind="request")
    timestamp = moment.strftime("%Y%m%d_%H%M%S")
    if p["max_age_days"] is not None and p["max_age_days"] < 0:
        raise restic.ResticError("max_age_days must be 0 or more", kind="request")
    try:
        selection = archive.select(p["paths"], exclude=p["exclude"], max_age_days=p["max_age_days"])
    except archive.ArchiveError as exc:
        raise restic.ResticError(str(exc), kind="request")
    result["skipped_missing"] = selection.missing
    if selection.missing:
        text = "paths not found: %s" % ", ".join(selection.missing)
        if p["missing"] == "fail":
            raise restic.ResticError(text + " (missing=fail): fix paths or the folder", kind="request")
        if p["missing"] == "warn":
            module.warn(text)
    if not selection.entries:
        raise restic.ResticError("nothing to back up under %s: check paths (a wrong list must not make an empty "
                                 "snapshot)" % ", ".join(p["paths"]), kind="request")
    tags = [restic.TAG_SET + timestamp, restic.TAG_COMPONENT + p["component"]]
    result.update(timestamp=timestamp, component=p["component"], tags=tags)
    filtered = p["max_age_days"] is not None or any(selection.omitted.values())
    if repo.local_dir() and not filtered:
        # restic itself takes the latest snapshot of the same host and paths (the component's) as the parent, and a
        # local repository exists when its config file does: the backup is the only run that opens the repository
        parents, exists = [], os.path.isfile(os.path.join(repo.local_dir(), "config"))
    elif not filtered and not module.check_mode:
        # In S3 the same: the backup is tried at once (restic finds the parent itself) and a missing repository is
        # told by its refusal, so a nightly snapshot into an existing repository is one restic run
        parents, exists = [], None
    else:
        try:  # the parent (the latest snapshot of the component), and whether the repository exists, in one run
            parents = repo.snapshots(tags=[restic.TAG_COMPONENT + p["component"]])
            exists = True
        except restic.ResticError as exc:
            if exc.kind != "missing":
                raise
            parents, exists = [], False
    if exists is None:
        summary = _backup_or_create(repo, p, tags, _roots(selection), result)
        _backup_result(module, repo, result, summary, None, p)
        return
    result["created"] = not exists
    if not exists and not p["init"]:
        raise restic.ResticError(restic.classify("Is there a repository at the following location?",
                                                 repo.location)[1], kind="missing")
    if module.check_mode and not exists:
        result.update(changed=True, files=selection.files, bytes=selection.total_bytes, snapshot_id="")
        return
    if not exists:
        repo.init()
    parent = parents[-1]["id"] if parents else None
    list_file = None
    try:
        if filtered:
            handle, list_file = tempfile.mkstemp(prefix=".dr-file-repo-", suffix=".list")
            with os.fdopen(handle, "w") as out:
                for entry in selection.entries:
                    if entry.kind != "dir":
                        out.write(entry.path + "\n")
        roots = None if filtered else _roots(selection)
        if module.check_mode:
            summary = _dry_run(repo, roots, tags, list_file, p, parent)
        else:
            summary = repo.backup(paths=roots, tags=tags, files_from=list_file, exclude=None, host=p["host"],
                                  parent=parent)
    finally:
        if list_file:
            os.unlink(list_file)
    _backup_result(module, repo, result, summary, parent, p)


def _backup_or_create(repo, p, tags, roots, result):
    """The backup into a repository not known to exist: tried first; when restic says there is no repository there,
    created (O(init)) and the backup made again. Any other failure raises as it is."""
    try:
        summary = repo.backup(paths=roots, tags=tags, host=p["host"])
        result["created"] = False
        return summary
    except restic.ResticError as exc:
        if exc.kind != "missing":
            raise
        if not p["init"]:
            raise
    repo.init()
    result["created"] = True
    return repo.backup(paths=roots, tags=tags, host=p["host"])


def _backup_result(module, repo, result, summary, parent, p):
    snapshot_id = "" if module.check_mode else summary.get("snapshot_id") or ""
    result.update(
        changed=True, snapshot_id=snapshot_id, short_id=snapshot_id[:8], parent=parent,
        files=int(summary.get("total_files_processed") or 0), files_new=int(summary.get("files_new") or 0),
        files_changed=int(summary.get("files_changed") or 0), bytes=int(summary.get("total_bytes_processed") or 0),
        bytes_added=int(summary.get("data_added") or 0), incomplete=bool(summary.get("incomplete")))
    if summary.get("incomplete"):
        module.warn("some files could not be read and are not in snapshot %s: %s"
                    % (snapshot_id[:8], (summary.get("stderr") or "").strip()[-1000:]))
    if not module.check_mode:
        result["total_bytes"] = repository_size(module, repo)
        lighten_key(module, repo, result)
    result["manifest_entry"] = dict(
        name=p["component"], component="files", store="repository", repository=repo.location,
        snapshot_id=snapshot_id, paths=p["paths"], files=result["files"], bytes=result["bytes"],
        bytes_added=result["bytes_added"], total_bytes=result.get("total_bytes"))


def _dry_run(repo, roots, tags, list_file, p, parent):
    args = ["--quiet", "--dry-run"]
    for tag in tags:
        args += ["--tag", tag]
    if p["host"]:
        args += ["--host", p["host"]]
    if parent:
        args += ["--parent", parent]
    if list_file:
        args += ["--files-from-verbatim", list_file]
    args += list(roots or [])
    dummy, out, dummy = repo.run("backup", args, ok=(0, 3))
    found = [item for item in restic.json_lines(out) if item.get("message_type") == "summary"]
    return found[-1] if found else {}


def _set_candidates(module):
    """The repositories to restore a set's component from, in order: the local one, then S3 (when configured)."""
    p = module.params
    entries = [entry for entry in p["set_snapshots"] if isinstance(entry, dict) and entry.get("name") == p["component"]
               and entry.get("store", "repository") == "repository" and entry.get("snapshot_id")]
    if not entries:
        raise restic.ResticError("the set records no snapshot of component %s (its file_snapshots name %s): it holds "
                                 "no file data of that name, or its file data is an archive" % (
                                     p["component"], ", ".join(sorted(set(str(e.get("name")) for e in
                                                                          p["set_snapshots"] if isinstance(e, dict))))
                                     or "nothing"), kind="not_found")
    local = [e for e in entries if not str(e.get("repository", "")).startswith("s3:")]
    remote = [e for e in entries if str(e.get("repository", "")).startswith("s3:")]
    candidates = []
    if local and p["repository"]:
        candidates.append(("local", local[0]["snapshot_id"], False))
    if remote and p["bucket"]:
        candidates.append(("s3", remote[0]["snapshot_id"], True))
    if not candidates:
        raise restic.ResticError("the set's snapshots of %s are in %s, and no such repository is configured here "
                                 "(repository for the local one, bucket for S3)" % (
                                     p["component"], ", ".join(str(e.get("repository")) for e in entries)),
                                 kind="request")
    return candidates


def _find_in_set(module, result):
    """Open the first repository of the set's component that holds its snapshot (local first, then S3).

    A repository that is missing, or lacks the snapshot, is passed over (and said so); any other failure (wrong
    key, damage, credentials) stops the restore."""
    passed = []
    candidates = _set_candidates(module)
    for index, (source, snapshot_id, s3) in enumerate(candidates):
        repo = open_repository(module, s3=s3)
        try:
            snap = repo.find(snapshot_id)
        except restic.ResticError as exc:
            if exc.kind not in ("missing", "not_found") or index == len(candidates) - 1:
                if passed:
                    exc.msg = "%s (also passed over: %s)" % (exc.msg, "; ".join(passed))
                raise
            passed.append("%s repository %s: %s" % (source, repo.location, exc.msg))
            continue
        result.update(source=source, repository=repo.location, passed_over=passed)
        for reason in passed:
            module.warn("restored from the %s repository; passed over the %s" % (source, reason))
        return repo, snap
    raise restic.ResticError("no repository to restore from", kind="request")  # not reached


def _under(path, directory):
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def _beside(dest, roots):
    """Where the private staging folder goes by default: the nearest existing directory above the first restored
    path, as placed under ``dest`` (so the restored data is staged on the filesystem it is written to), when
    that directory really is under ``dest`` (no link leads out of it); else ``dest``."""
    real_dest = os.path.realpath(dest)
    if roots:
        probe = os.path.join(dest, os.path.dirname(sorted(roots)[0].rstrip("/")).lstrip("/"))
        while probe != dest and not os.path.isdir(probe):
            probe = os.path.dirname(probe)
        if os.path.isdir(probe) and not os.path.islink(probe) and _under(os.path.realpath(probe), real_dest):
            return probe
    return dest


def _staged_restore(module, repo, snap, result):
    """restic restores into a private folder; the tree is then checked and copied as an archive would be."""
    p = module.params
    dest = p["dest"]
    roots = snap.get("paths") or []
    if p["include"]:
        roots = [path for path in p["include"]
                 if any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)] + \
                [root for root in roots if any(root.startswith(path.rstrip("/") + "/") for path in p["include"])]
    staging_parent = p["staging_dir"] or _beside(dest, roots)
    if not os.path.isdir(staging_parent):
        os.makedirs(staging_parent, mode=0o700)
    staging = tempfile.mkdtemp(prefix=".dr-file-restore-", dir=staging_parent)
    result["staging_dir"] = staging
    try:
        repo.restore(snap["id"], staging, p["include"])
        members = [m for m in archive.tree_members(staging, roots)
                   if not _under(os.path.join(dest, m.name), staging)]
        try:
            written = archive.plan(members, dest, p["overwrite"])
        except archive.UnsafeMember as exc:
            raise restic.ResticError("snapshot %s refused, nothing was changed under %s: %s" % (
                snap["short_id"], dest, exc), kind="unsafe_member")
        result.update(written=len(written),
                      written_paths=[os.path.join(dest, m.name) for m in written[:archive.LIST_LIMIT]])
        if written:
            try:
                archive.apply_tree(module, archive.gnu_tar(module), staging, dest, p["overwrite"],
                                   [m.name for m in written])
            except archive.ArchiveError as exc:
                raise restic.ResticError(str(exc), kind="io")
        return bool(written)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def do_restore(module, repo, result):
    p = module.params
    if not os.path.isabs(p["dest"]):
        raise restic.ResticError("dest must be an absolute path, got %r" % p["dest"], kind="request")
    for path in p["include"]:
        if not path.startswith("/"):
            raise restic.ResticError("include paths are absolute, as backed up: got %r" % path, kind="request")
    if bool(p["snapshot"]) == bool(p["set_snapshots"]):
        raise restic.ResticError("state=restore takes snapshot (an id, or latest) or set_snapshots (the set "
                                 "manifest's file_snapshots, with component), one of them", kind="request")
    if p["set_snapshots"]:
        if not p["component"]:
            raise restic.ResticError("set_snapshots needs component (which file set of the set to restore)",
                                     kind="request")
        repo, snap = _find_in_set(module, result)
    elif p["snapshot"] == "latest":
        if not p["component"]:
            raise restic.ResticError("snapshot=latest needs component (the latest snapshot of which component?)",
                                     kind="request")
        found = repo.snapshots(tags=[restic.TAG_COMPONENT + p["component"]])
        if not found:
            raise restic.ResticError("%s has no snapshot of component %s" % (repo.location, p["component"]),
                                     kind="not_found")
        snap = found[-1]
    else:
        snap = repo.find(p["snapshot"])
    files, size = repo.list_files(snap["id"], p["include"])
    if p["include"] and not files:
        raise restic.ResticError("snapshot %s holds no file under %s: list it with `restic ls %s`"
                                 % (snap["short_id"], ", ".join(p["include"]), snap["short_id"]), kind="not_found")
    result.update(changed=True, snapshot_id=snap["id"], short_id=snap["short_id"], files=files, bytes=size,
                  dest=p["dest"], snapshot=snapshot_facts(snap))
    if module.check_mode:
        return
    result["changed"] = _staged_restore(module, repo, snap, result)


def kept_set_ids(entries):
    """Set ids named by ``entries``: set ids C(YYYYMMDD_HHMMSS), or paths and keys of set manifests (the C(kept)
    of backup_rotate and s3_rotate); anything else (artifacts, sidecars) names no set."""
    ids = set()
    for entry in entries:
        text = str(entry).rstrip("/")
        try:
            ids.add(naming.format_timestamp(naming.parse_timestamp(text)))
            continue
        except ValueError:
            pass
        parsed = naming.parse_backup_name(os.path.basename(text))
        if parsed is not None and parsed.prefix == "set" and parsed.role == "manifest":
            ids.add(naming.format_timestamp(parsed.timestamp))
    return ids


def key_store(module, repo):
    """The key files of the repository: its folder, or the objects under the prefix in S3."""
    if repo.local_dir():
        return restic.LocalKeys(repo.local_dir())
    if not HAS_BOTO3:
        raise restic.ResticError("reading the key files in S3 needs boto3 (Debian python3-boto3) on this host")
    return restic.S3Keys(get_s3_client(module), module.params["bucket"], module.params["prefix"])


def lighten_key(module, repo, result):
    """O(light_key): the key this password opens rewritten with light KDF parameters (restic.Restic.lighten)."""
    result["key_lightened"] = []
    if not module.params["light_key"]:
        return
    try:
        result["key_lightened"] = repo.lighten(key_store(module, repo))
    # the backup is made: any failure here is a warning
    except Exception as exc:  # pylint: disable=broad-except
        module.warn("the key of %s was not rewritten with light KDF parameters, so every restic run keeps paying "
                    "about half a second to open it (the backup itself is complete): %s"
                    % (repo.location, getattr(exc, "msg", None) or exc))


def repository_size(module, repo):
    """The repository's size in bytes: a local one's from its folder (no restic run); one in S3 only when the task
    asks for it (O(repository_size): one more run, its key derivation and index load), else None."""
    if repo.local_dir() or module.params["repository_size"]:
        return repo.stored_bytes()
    return None


def do_forget(module, repo, result):
    p = module.params
    wanted = list(p["snapshots"] or [])
    keep = None
    if p["keep_sets"] is not None:
        keep = kept_set_ids(p["keep_sets"])
        if not keep:
            raise restic.ResticError("keep_sets names no set (no set id, no set_<ts>.json among %d entries): "
                                     "refusing to forget every snapshot of %s; pass the sets that remain (the "
                                     "kept of backup_rotate or s3_rotate)" % (len(p["keep_sets"]), repo.location),
                                     kind="request")
    present = repo.snapshots()
    ids = []
    for snap in present:
        named = any(snap["id"] == s or snap["id"].startswith(s) for s in wanted if s)
        set_id = restic.tag_value(snap, restic.TAG_SET)
        in_set = p["timestamp"] and set_id == p["timestamp"]
        expired = keep is not None and set_id and set_id not in keep
        if named or in_set or expired:
            ids.append(snap["id"])
    if keep is not None:
        result["kept_sets"] = sorted(keep)
    result.update(forgotten=ids, changed=bool(ids) or (p["prune"] and not module.check_mode))
    if module.check_mode:
        return
    repo.forget(ids)
    if p["prune"]:
        repo.prune()
    result["total_bytes"] = repository_size(module, repo)


def do_prune(module, repo, result):
    if module.check_mode:
        dummy, out, err = repo.run("prune", ["--dry-run"], json_output=False)
    else:
        dummy, out, err = repo.run("prune", json_output=False)
        result["total_bytes"] = repository_size(module, repo)
    result.update(changed=not module.check_mode, output=(out or "") + (err or ""))


_RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")


def rfc3339_ns(text):
    """Nanoseconds since the epoch of restic's RFC 3339 time (nanosecond fraction, any offset); None if other."""
    match = _RFC3339.match(text or "")
    if not match:
        return None
    zone = "+00:00" if match.group(3) == "Z" else match.group(3)
    moment = datetime.datetime.strptime(match.group(1) + zone.replace(":", ""), "%Y-%m-%dT%H:%M:%S%z")
    return calendar.timegm(moment.utctimetuple()) * 10 ** 9 + int((match.group(2) or "0").ljust(9, "0"))


def sample_restore(module, repo, snapshot_ids, count, result):
    """Restore ``count`` files drawn at random from the snapshots into a private folder, and compare each with the
    snapshot's listing (size, modification time, permissions); restic checks every blob it reads against its id.
    Returns the problems found."""
    nodes = []
    for snapshot_id in snapshot_ids:
        nodes.extend((snapshot_id, node) for node in repo.file_nodes(snapshot_id))
    chosen = random.SystemRandom().sample(nodes, min(count, len(nodes)))
    problems, sampled = [], []
    if module.params["staging_dir"] and not os.path.isdir(module.params["staging_dir"]):
        os.makedirs(module.params["staging_dir"], mode=0o700)
    staging = tempfile.mkdtemp(prefix=".dr-file-sample-", dir=module.params["staging_dir"])
    try:
        by_snapshot = {}
        for snapshot_id, node in chosen:
            by_snapshot.setdefault(snapshot_id, []).append(node)
        for snapshot_id, wanted in sorted(by_snapshot.items()):
            target = os.path.join(staging, snapshot_id[:16])
            os.mkdir(target, 0o700)
            try:
                repo.restore(snapshot_id, target, [node["path"] for node in wanted])
            except restic.ResticError as exc:
                problems.append("snapshot %s: the sample could not be restored: %s" % (snapshot_id[:8], exc.msg))
                continue
            for node in wanted:
                path = os.path.join(target, node["path"].lstrip("/"))
                sampled.append(dict(snapshot=snapshot_id[:8], path=node["path"], size=node.get("size")))
                try:
                    st = os.lstat(path)
                except OSError:
                    problems.append("%s (snapshot %s) was not restored" % (node["path"], snapshot_id[:8]))
                    continue
                expected_ns = rfc3339_ns(node.get("mtime"))
                if st.st_size != int(node.get("size") or 0):
                    problems.append("%s (snapshot %s): %d bytes restored, the snapshot lists %s" % (
                        node["path"], snapshot_id[:8], st.st_size, node.get("size")))
                elif expected_ns is not None and st.st_mtime_ns != expected_ns:
                    problems.append("%s (snapshot %s): modification time %d differs from the listing (%s)" % (
                        node["path"], snapshot_id[:8], st.st_mtime_ns, node.get("mtime")))
                elif node.get("mode") is not None and stat.S_IMODE(st.st_mode) & 0o777 != int(node["mode"]) & 0o777:
                    problems.append("%s (snapshot %s): permissions %o differ from the listing (%o)" % (
                        node["path"], snapshot_id[:8], stat.S_IMODE(st.st_mode) & 0o777, int(node["mode"]) & 0o777))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    result.update(sampled=sampled, sample_problems=problems)
    return problems


def do_check(module, repo, result):
    p = module.params
    result.update(changed=False, output=repo.check(p["read_data_subset"]))
    if not p["sample_files"]:
        return
    if p["snapshots"]:
        ids = [repo.find(snapshot)["id"] for snapshot in p["snapshots"]]
    else:
        found = repo.snapshots()
        ids = [found[-1]["id"]] if found else []
    problems = sample_restore(module, repo, ids, p["sample_files"], result)
    if problems:
        raise restic.ResticError("%d of the %d files restored from %s as a sample differ from their snapshot's "
                                 "listing: %s" % (len(problems), len(result["sampled"]), repo.location,
                                                  "; ".join(problems[:10])), kind="damaged")


def do_rekeyed(module, repo, result):
    """Open the repository with the new key's password too, and no longer with the old one.

    restic encrypts the data with a master key that the repository's keys (one per password) wrap: adding the new
    password's key and removing the old one re-encrypts nothing. Resumable: a repository the new password opens
    already gets only the old key removed; one only the new password opens is done."""
    p = module.params
    new = repo.with_password(restic.repository_password(p["new_key"]))
    old_opens = repo.opens()
    new_opens = new.opens()
    result.update(added=False, removed=[])
    if not old_opens:
        if new_opens:
            result.update(changed=False, msg="%s is already opened by the new key only" % repo.location)
            return
        raise restic.ResticError("neither the current key (key) nor the new one (new_key) opens %s: give the key the "
                                 "repository was created with as key" % repo.location, kind="password")
    old_ids = [k["id"] for k in repo.keys() if k.get("current")]
    result["changed"] = True
    if module.check_mode:
        result.update(added=not new_opens, removed=old_ids)
        return
    if not new_opens:
        repo.add_key(new.env["RESTIC_PASSWORD"])
        result["added"] = True
        if not new.opens():
            raise restic.ResticError("the key added to %s does not open it; the old key was kept" % repo.location)
    current = [k["id"] for k in new.keys() if k.get("current")]
    for key_id in old_ids:
        if key_id not in current:
            new.remove_key(key_id)
            result["removed"].append(key_id)
    if repo.opens():
        raise restic.ResticError("the old key still opens %s after its key was removed: another key of the repository "
                                 "has the same password; list them with `restic key list`" % repo.location)


def do_snapshots(module, repo, result):
    p = module.params
    tags = []
    if p["timestamp"]:
        tags.append(restic.TAG_SET + p["timestamp"])
    if p["component"]:
        tags.append(restic.TAG_COMPONENT + p["component"])
    result.update(changed=False, snapshots=[snapshot_facts(s) for s in repo.snapshots(tags=tags)])
    result["total_bytes"] = repository_size(module, repo)


ACTIONS = dict(backup=do_backup, restore=do_restore, forget=do_forget, prune=do_prune, check=do_check,
               snapshots=do_snapshots, rekeyed=do_rekeyed)


def main():
    spec = s3_argument_spec()
    spec.update(
        bucket=dict(type="str"),
        state=dict(type="str", default="backup", choices=sorted(ACTIONS)),
        s3=dict(type="bool", default=False),
        repository=dict(type="path"),
        prefix=dict(type="str", default="files"),
        key=dict(type="str", required=True, no_log=True),
        new_key=dict(type="str", no_log=True),
        init=dict(type="bool", default=True),
        paths=dict(type="list", elements="path"),
        exclude=dict(type="list", elements="str", default=[]),
        max_age_days=dict(type="int"),
        missing=dict(type="str", default="warn", choices=["ignore", "warn", "fail"]),
        component=dict(type="str"),
        timestamp=dict(type="str"),
        host=dict(type="str"),
        snapshot=dict(type="str"),
        snapshots=dict(type="list", elements="str"),
        keep_sets=dict(type="list", elements="str"),
        prune=dict(type="bool", default=False),
        dest=dict(type="path"),
        include=dict(type="list", elements="str", default=[]),
        set_snapshots=dict(type="list", elements="dict"),
        overwrite=dict(type="str", default="always", choices=["always", "never", "older"]),
        staging_dir=dict(type="path"),
        read_data_subset=dict(type="str", default="5%"),
        sample_files=dict(type="int", default=0),
        cache_dir=dict(type="path"),
        repository_size=dict(type="bool", default=False),
        light_key=dict(type="bool", default=True),
    )
    module = DRModule(
        argument_spec=spec,
        **s3_module_kwargs(),
        required_if=[("s3", True, ("bucket",)), ("s3", False, ("repository",)),
                     ("state", "backup", ("paths", "component")), ("state", "restore", ("dest",)),
                     ("state", "forget", ("snapshots", "timestamp", "keep_sets"), True),
                     ("state", "rekeyed", ("new_key",))],
        supports_check_mode=True,
    )
    t0 = time.time()
    result = dict(changed=False, state=module.params["state"])
    try:
        repo = open_repository(module)
        result["repository"] = repo.location
        ACTIONS[module.params["state"]](module, repo, result)
    except restic.ResticError as exc:
        result["duration"] = round(time.time() - t0, 3)
        module.fail_json(msg=exc.msg, error_kind=exc.kind, rc=exc.rc, stderr=exc.stderr, **result)
    except OSError as exc:
        result["duration"] = round(time.time() - t0, 3)
        module.fail_json(msg="%s failed on this host: %s" % (module.params["state"], exc), error_kind="io", **result)
    result["duration"] = round(time.time() - t0, 3)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
