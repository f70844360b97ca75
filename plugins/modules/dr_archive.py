#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: dr_archive
short_description: Archive files and directories into a verified, checksummed backup artifact, or extract one
version_added: 0.1.0
description:
  - With O(state=created), archives files, directories and shell-style globs (application configuration such
    as C(.env.prod) and compose files, uploads, plugin artifacts, recent logs) into
    C(<prefix>_<YYYYMMDD>_<HHMMSS>.tar.gz), C(.tar.zst) or C(.tar) (UTC), with constant memory.
  - The module selects the entries itself (globs expanded by Python, never by a shell; O(exclude); O(max_age_days))
    and gives GNU tar that exact list. Members are stored relative to C(/) (C(/srv/app/.env.prod) is stored as
    C(srv/app/.env.prod)) with their permissions, numeric owners and modification times; symbolic links are stored
    as links, never followed; empty directories are kept.
  - The stream C(tar | compressor) is hashed while it is written under a hidden temporary name; every stage is
    checked; the temporary file is read back whole (decompression and C(tar --list)) and its member names compared
    with the selection. Only then are C(<file>.md5) (C(md5sum -c) format), C(<file>.sha256) and the JSON manifest
    C(<prefix>_<YYYYMMDD>_<HHMMSS>.json) written and the archive renamed. A killed run never leaves a file with a
    final name.
  - With O(state=extracted), the archive O(src) is checked against its sidecars and read whole before anything is
    touched, so a damaged or truncated archive is refused with the destination unchanged. Then it is extracted
    under O(dest) with permissions, owners (when run as root) and modification times.
  - Extraction writes only the entries that differ from the destination (type, size, modification time,
    permissions, owner, link target) and are allowed by O(overwrite); unchanged files are left alone, and
    extracting the same archive twice changes nothing the second time.
author:
  - atlasia DevOps team (@atlasia-devops)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - atlasia.dr.compression
attributes:
  check_mode:
    support: full
    details:
      - O(state=created) reports the path and the number of entries it would archive; writes nothing.
      - O(state=extracted) verifies the archive completely and lists the entries it would write; the destination
        is not changed. An archive that would write outside O(dest) is refused as in a real run.
  diff_mode:
    support: none
  platform:
    support: full
    platforms: posix
    details: Needs GNU tar (Linux and other systems with GNU tar).
options:
  state:
    description:
      - V(created) writes a new archive of O(paths) into the directory O(dest).
      - V(extracted) extracts the archive O(src) under the directory O(dest).
    type: str
    default: created
    choices: [created, extracted]
  paths:
    description:
      - Absolute paths of files, directories (archived with everything below them) and glob patterns
        (C(*), C(?), C([...]), and C(**) for any depth), for example V(/srv/atlasia/.env*).
      - As in the shell, C(*) does not match a leading dot unless the pattern has one. A path that exists is taken
        literally, even when it holds glob characters.
      - Entries named twice (directly or through a directory) are archived once.
      - Required with O(state=created).
    type: list
    elements: path
  exclude:
    description:
      - Glob patterns of entries to leave out. A pattern holding C(/) is matched against the whole absolute path
        (there C(*) also matches C(/)); any other pattern against the base name, at any depth.
      - An excluded directory is left out with everything below it.
    type: list
    elements: str
    default: []
  max_age_days:
    description:
      - Archive only files, links and special files modified in the last O(max_age_days) days (the plan keeps
        the logs of the last 7 days). Directories are kept when they hold something archived, or when named in
        O(paths).
      - Unset archives everything, whatever its age.
    type: int
  dest:
    description:
      - With O(state=created), the directory receiving the archive, its sidecars and manifest; created (mode 0700)
        when missing. Required.
      - With O(state=extracted), the directory the members are extracted under; members are relative to C(/),
        so the default V(/) puts every file back where it was archived from, and another directory receives a
        copy of the tree (for example C(<dest>/srv/atlasia/.env.prod)). Created (mode 0700) when missing.
    type: path
  prefix:
    description:
      - First part of the archive name, for example V(config), V(uploads), V(plugins) or V(logs).
      - Letters, digits and C(-); an C(_) must be followed by a letter.
      - Required with O(state=created).
    type: str
  timestamp:
    description:
      - Timestamp to name the archive with, C(YYYYMMDD_HHMMSS) in UTC. Defaults to now. Lets every artifact of
        one backup set share one timestamp.
    type: str
  compression:
    description:
      - V(gzip) is produced by C(pigz) when installed (parallel, gzip-compatible; C(tar -xzf) works), else
        C(gzip). V(zstd) is faster at a similar ratio. V(none) writes a plain C(.tar).
    type: str
    default: gzip
    choices: [gzip, zstd, none]
  mode:
    description:
      - Permissions of the archive file. The default keeps it private to its owner, since configuration archives
        hold secrets. The sidecars and the manifest (names and checksums only) are 0644.
    type: raw
    default: '0600'
  missing:
    description:
      - What to do with a path that does not exist or a pattern that matches nothing.
      - V(ignore) skips it silently, V(warn) skips it with a warning, V(fail) fails the task before anything is
        written. Skipped paths are returned in RV(skipped_missing) and recorded in the manifest.
    type: str
    default: warn
    choices: [ignore, warn, fail]
  allow_empty:
    description:
      - Write an archive even when nothing was selected. By default the task fails instead, so a wrong path list
        cannot produce a backup that holds nothing.
    type: bool
    default: false
  src:
    description:
      - Archive to extract (made by this module, or any tar archive, plain, gzip or zstd compressed).
      - Required with O(state=extracted).
    type: path
  overwrite:
    description:
      - With O(state=extracted), what happens to entries that already exist under O(dest).
      - V(always) replaces them (an existing file is removed before the archived copy is written).
      - V(never) keeps every existing entry and writes only the missing ones (C(tar --skip-old-files)).
      - V(older) replaces existing files only when they are older than the archived copy
        (C(tar --keep-newer-files)).
    type: str
    default: always
    choices: [always, never, older]
  require_checksum:
    description:
      - With O(state=extracted), refuse an archive that has no C(.md5) or C(.sha256) sidecar. A sidecar that is
        present is always checked.
    type: bool
    default: false
notes:
  - Needs GNU tar. Sockets are never archived (tar cannot store them); they are counted in RV(omitted) and in the manifest.
  - A file that changes while it is read (a log being written) is archived and reported in a warning and in the
    manifest (C(changed_while_read)). A file removed between the selection and its reading (a rotated log) is
    left out and reported (C(vanished_while_read)); the verification then expects the archive without it. Any
    other tar error fails the task.
  - A path named in O(paths) that is a symbolic link to a directory is archived as the link only, with a warning;
    name its target to archive the content.
  - Extended attributes, ACLs and SELinux labels are not archived.
  - Extraction is not atomic per file; it happens only after the whole archive was verified. Stop the services
    using the files first.
  - An existing symbolic link to a directory under O(dest) is kept when the archive holds a directory of that name
    (C(tar --keep-directory-symlink)); the files are extracted into the directory it points to, when that
    directory is under O(dest).
  - Extraction never writes outside O(dest). Before tar runs, the path of every member is resolved component by
    component through the symbolic links already under O(dest) (made by anyone, for example by an earlier archive
    of the same restore) and those the archive itself holds. The archive is refused whole, nothing extracted
    from it and in check mode too, when a member would be written through a link leading out of O(dest), when a
    symbolic link member points out of O(dest) (its target read from its directory; an absolute target is read
    from C(/) as the system does, so with O(dest=/) it is always inside), or when a hard link member names a file
    out of O(dest). The error names the member and the link it goes through.
seealso:
  - module: atlasia.dr.pg_dump_backup
  - module: atlasia.dr.dr_lock
  - name: GNU tar manual
    description: Options used to create and extract the archives.
    link: https://www.gnu.org/software/tar/manual/tar.html
"""

EXAMPLES = r"""
- name: Archive the application configuration (secrets, so mode 0600) for the backup set
  atlasia.dr.dr_archive:
    paths:
      - /srv/atlasia/.env*
      - /srv/atlasia/docker-compose*.yml
      - /srv/atlasia/config/application*.properties
    prefix: config
    dest: /srv/atlasia/backups/daily
    timestamp: "{{ backup_timestamp }}"
  register: config_archive

- name: Archive uploads and plugin artifacts, without temporary files
  atlasia.dr.dr_archive:
    paths:
      - /srv/atlasia/data/uploads
      - /srv/atlasia/data/plugins
    exclude:
      - "*.tmp"
      - /srv/atlasia/data/uploads/cache
    prefix: uploads
    compression: zstd
    dest: /srv/atlasia/backups/daily
    timestamp: "{{ backup_timestamp }}"

- name: Archive the logs of the last 7 days, a missing log directory is an error
  atlasia.dr.dr_archive:
    paths:
      - /srv/atlasia/logs
    max_age_days: 7
    missing: fail
    prefix: logs
    dest: /srv/atlasia/backups/daily
    timestamp: "{{ backup_timestamp }}"

- name: Preview a restore of the configuration (verifies the archive, lists what would change)
  atlasia.dr.dr_archive:
    state: extracted
    src: /srv/atlasia/backups/daily/config_20261126_020000.tar.gz
    require_checksum: true
  check_mode: true
  register: preview

- name: Restore the configuration in place
  atlasia.dr.dr_archive:
    state: extracted
    src: /srv/atlasia/backups/daily/config_20261126_020000.tar.gz
    dest: /
    require_checksum: true

- name: Restore the uploads next to the current ones, for comparison
  atlasia.dr.dr_archive:
    state: extracted
    src: /srv/atlasia/backups/daily/uploads_20261126_020000.tar.zst
    dest: /srv/restore-check
"""

RETURN = r"""
path:
  description: Path of the archive (written, or that would be written in check mode; O(src) when extracting).
  returned: always
  type: str
  sample: /srv/atlasia/backups/daily/config_20261126_020000.tar.gz
size:
  description: Size of the archive file in bytes; 0 in check mode with O(state=created).
  returned: always
  type: int
  sample: 48213
md5:
  description: MD5 of the archive, as in the C(.md5) sidecar.
  returned: O(state=created), success and not check mode
  type: str
  sample: 9e107d9d372bb6826bd81d3542a419d6
sha256:
  description: SHA-256 of the archive, as in the C(.sha256) sidecar.
  returned: O(state=created), success and not check mode
  type: str
  sample: d7a8fbb307d7809469ca9abcb0082e4f8d5651e46d3cdb762d02d0bf37c9e592
files:
  description:
    - Entries other than directories (files, links, special files) archived, or that would be in check mode.
    - With O(state=extracted), the members of the archive that are not directories.
  returned: always
  type: int
  sample: 12
directories:
  description: Directories archived (or that would be), or with O(state=extracted) held by the archive.
  returned: always
  type: int
  sample: 3
total_bytes:
  description: Bytes of file data archived (before compression; hard-linked data counted once).
  returned: O(state=created)
  type: int
  sample: 1048576
duration:
  description: Seconds the task took, verification included.
  returned: always
  type: float
  sample: 1.42
manifest:
  description: Path of the JSON manifest (written, or that would be written in check mode).
  returned: O(state=created)
  type: str
  sample: /srv/atlasia/backups/daily/config_20261126_020000.json
manifest_data:
  description: Content of the manifest.
  returned: O(state=created), success and not check mode
  type: dict
  sample: {"type": "archive", "prefix": "config", "files": 12, "total_bytes": 1048576, "compression": "gzip"}
skipped_missing:
  description: Entries of O(paths) that did not exist or matched nothing, and were skipped.
  returned: O(state=created)
  type: list
  elements: str
  sample: [/srv/atlasia/.env.local]
omitted:
  description: Entries left out, by reason (C(excluded), C(older) than O(max_age_days), C(sockets)).
  returned: O(state=created)
  type: dict
  sample: {"excluded": 2, "older": 140, "sockets": 0}
dest:
  description: Directory extracted under.
  returned: O(state=extracted)
  type: str
  sample: /
written:
  description: Number of members written (or that would be written in check mode) because they differ from
    O(dest).
  returned: O(state=extracted)
  type: int
  sample: 3
written_paths:
  description: Destination paths of the members written (or that would be), at most 1000.
  returned: O(state=extracted)
  type: list
  elements: str
  sample: [/srv/atlasia/.env.prod, /srv/atlasia/docker-compose.yml]
compression:
  description: Compression of the archive.
  returned: always
  type: str
  sample: gzip
checksums:
  description: Result of the sidecar check per algorithm (V(ok) or V(missing)).
  returned: O(state=extracted)
  type: dict
  sample: {"md5": "ok", "sha256": "ok"}
"""

import os
import time

from ansible_collections.atlasia.dr.plugins.module_utils import archive
from ansible_collections.atlasia.dr.plugins.module_utils.common import DRModule


def run_created(module, t0):
    params = module.params
    try:
        opts = archive.resolve(params)
        selection = archive.select(params["paths"], params["exclude"], params["max_age_days"])
    except archive.ArchiveError as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg="cannot read %s: %s" % (exc.filename or "the paths to archive", exc.strerror or exc))
    result = dict(path=opts["path"], manifest=opts["manifest_path"], size=0, files=selection.files,
                  directories=selection.directories, total_bytes=selection.total_bytes,
                  skipped_missing=selection.missing, omitted=selection.omitted, compression=opts["compression"])
    if selection.missing:
        text = "%d path(s) do not exist or match nothing: %s" % (len(selection.missing), ", ".join(selection.missing))
        if params["missing"] == "fail":
            module.fail_json(msg="%s (missing=fail); nothing was written" % text, **result)
        if params["missing"] == "warn":
            module.warn(text)
    for linked in selection.linked_dirs:
        module.warn("%s is a symbolic link to a directory: only the link is archived, not the files it points to"
                    % linked)
    if not selection.entries and not params["allow_empty"]:
        module.fail_json(msg="nothing to archive: the paths matched no entry (set allow_empty to write an empty "
                             "archive); nothing was written", **result)
    if module.check_mode:
        module.exit_json(changed=True, duration=round(time.time() - t0, 3), **result)
    try:
        result.update(archive.create(module, opts, selection, warn=module.warn))
    except archive.ArchiveError as exc:
        module.fail_json(msg="archive %s failed and nothing was written: %s" % (opts["name"], exc),
                         error_kind="verification", **result)
    except OSError as exc:
        module.fail_json(msg="archive %s failed and nothing was written: %s: %s" % (
            opts["name"], exc.filename or opts["dest"], exc.strerror or exc),
            error_kind="disk_full" if exc.errno == 28 else "io", **result)
    module.exit_json(changed=True, **result)


def run_extracted(module, t0):
    params = module.params
    src = params["src"]
    dest = params["dest"] or "/"
    result = dict(path=src, dest=dest, size=0, files=0, directories=0, written=0, written_paths=[], checksums={},
                  compression=None)
    tar = archive.gnu_tar(module)
    try:
        result["size"] = os.path.getsize(src) if os.path.isfile(src) else 0
        comp, members, status = archive.inspect(module, tar, src, require_checksum=params["require_checksum"])
    except archive.ArchiveError as exc:
        module.fail_json(msg="archive refused, nothing was changed: %s" % exc, error_kind="bad_archive", **result)
    try:
        written = archive.plan(members, dest, params["overwrite"])
    except archive.UnsafeMember as exc:
        module.fail_json(msg="archive %s refused, nothing was changed: %s" % (src, exc), error_kind="unsafe_member",
                         **result)
    except OSError as exc:
        module.fail_json(msg="cannot inspect %s: %s" % (exc.filename or dest, exc.strerror or exc), **result)
    result.update(compression=comp, checksums=status, written=len(written),
                  files=sum(1 for member in members if member.type != "d"),
                  directories=sum(1 for member in members if member.type == "d"),
                  written_paths=[os.path.join(dest, member.name) for member in written[:archive.LIST_LIMIT]])
    changed = bool(written)
    if changed and not module.check_mode:
        try:
            names = None if len(written) == len(members) else [member.name for member in written]
            archive.extract(module, tar, src, comp, dest, params["overwrite"], names)
        except archive.ArchiveError as exc:
            module.fail_json(msg=str(exc), error_kind="extract", changed=True, **result)
        except OSError as exc:
            module.fail_json(msg="cannot extract into %s: %s" % (dest, exc), error_kind="io", changed=True, **result)
    module.exit_json(changed=changed, duration=round(time.time() - t0, 3), **result)


def main():
    module = DRModule(
        argument_spec=archive.archive_argument_spec(),
        required_if=[
            ("state", "created", ("paths", "dest", "prefix")),
            ("state", "extracted", ("src",)),
        ],
        supports_check_mode=True,
    )
    t0 = time.time()
    if module.params["state"] == "created":
        run_created(module, t0)
    else:
        run_extracted(module, t0)


if __name__ == "__main__":
    main()
